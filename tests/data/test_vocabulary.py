"""Vocabulary sources: txt, JSON, CSV, tiny-imagenet words.txt and a URL served locally."""
import functools
import http.server
import threading

import pytest

from lib.data.vocabulary import read_vocabulary
from lib.errors import VocabularyError


def labels(source, tmp_path, **kwargs):
    entries, stats = read_vocabulary(str(source), tmp_path / "cache", **kwargs)
    return [e.label for e in entries], stats


def test_txt_drops_blank_and_duplicate_lines(tmp_path):
    source = tmp_path / "v.txt"
    source.write_text("cat\n\n  dog  \nCat\nsnow   leopard\n   \n")
    found, stats = labels(source, tmp_path)
    assert found == ["cat", "dog", "snow leopard"]
    assert (stats.read, stats.blank, stats.duplicates) == (6, 2, 1)


def test_json_list_mapping_and_imagenet_index(tmp_path):
    (tmp_path / "list.json").write_text('["cat", "dog", ""]')
    (tmp_path / "map.json").write_text('{"c1": "cat", "c2": "dog"}')
    (tmp_path / "imagenet.json").write_text('{"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}')
    assert labels(tmp_path / "list.json", tmp_path)[0] == ["cat", "dog"]
    entries, _ = read_vocabulary(str(tmp_path / "map.json"), tmp_path)
    assert [(e.id, e.label) for e in entries] == [("c1", "cat"), ("c2", "dog")]
    assert labels(tmp_path / "imagenet.json", tmp_path)[0] == ["tench", "goldfish"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VocabularyError, match="not valid JSON"):
        labels(tmp_path / "bad.json", tmp_path)


def test_csv_columns(tmp_path):
    source = tmp_path / "v.csv"
    source.write_text("id,name,group\n1,cat,pets\n2,dog,pets\n")
    assert labels(source, tmp_path)[0] == ["cat", "dog"]  # the 'name' column is found by itself
    assert labels(source, tmp_path, column="group")[0] == ["pets"]
    with pytest.raises(VocabularyError, match="no column 'colour'; its columns are id, name, group"):
        labels(source, tmp_path, column="colour")


def test_tiny_imagenet_words_restricted_to_wnids(tmp_path):
    (tmp_path / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n"
                                        "n09999999\tnot in this dataset\n")
    (tmp_path / "wnids.txt").write_text("n01443537\nn01629819\n")
    entries, _ = read_vocabulary(str(tmp_path / "words.txt"), tmp_path)
    assert [(e.id, e.label) for e in entries] == [("n01443537", "goldfish"), ("n01629819", "European fire salamander")]


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(VocabularyError, match="has no entries"):
        labels(tmp_path / "empty.txt", tmp_path)
    with pytest.raises(VocabularyError, match="cannot read vocabulary"):
        labels(tmp_path / "absent.txt", tmp_path)


@pytest.fixture
def http_folder(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_is_downloaded_once(tmp_path, http_folder):
    served, base = http_folder
    (served / "animals.txt").write_text("cat\ndog\n")
    assert labels(f"{base}/animals.txt", tmp_path)[0] == ["cat", "dog"]
    (served / "animals.txt").unlink()  # the cached copy is used from now on
    assert labels(f"{base}/animals.txt", tmp_path)[0] == ["cat", "dog"]
    with pytest.raises(VocabularyError, match="cannot download vocabulary .*404"):
        labels(f"{base}/missing.txt", tmp_path)
