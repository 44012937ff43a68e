"""Names split into words and captions read from captions.csv and .txt sidecars."""
import pytest

from lib.data.image_text import caption_files, name_words, parse_captions, read_captions, read_sidecar, sidecar_of


@pytest.mark.parametrize("name, words", [
    ("IMG_2041-holidayBeach.jpg", "IMG 2041 holiday Beach jpg holidayBeach"),
    ("HTMLParser.py", "HTML Parser py HTMLParser"),
    ("summer 2019/day.one", "summer 2019 day one"),
    ("DSC0042.JPG", "DSC 0042 JPG DSC0042"),
    ("été_Ünïcode", "été Ünïcode"),
    ("__.-", ""),
    ("caf\udce9.jpg", "caf\ufffd jpg"),  # a byte that is not UTF-8 (surrogateescape) becomes U+FFFD
])
def test_name_words(name, words):
    assert name_words(name) == words


def test_sidecars_and_caption_files():
    assert [sidecar_of(p) for p in ("a/b.jpg", "a/b.tar.gz", "top.png", "a/.hidden")] == [
        "a/b.txt", "a/b.tar.txt", "top.txt", "a/.hidden.txt"]
    scanned = {"a/b.jpg", "a/b.txt", "a/notes.txt", "captions.csv", "c/captions.csv", "top.png"}
    assert caption_files(scanned) == {"a/b.txt", "captions.csv"}


def test_captions_csv(tmp_path, caplog):
    text = 'image,caption\n./a/b.jpg,"red, round"\na\\c.jpg,blue\na/b.jpg,shiny\n,orphan\nd.jpg,\n'
    assert parse_captions(text) == {"a/b.jpg": "red, round / shiny", "a/c.jpg": "blue"}
    assert parse_captions("path,text\nx.jpg,y\n") == {} and "no 'image,caption' header" in caplog.text
    assert read_captions(tmp_path) == {}
    (tmp_path / "captions.csv").write_text("image,caption\nx.jpg,a caption\n")
    assert read_captions(tmp_path) == {"x.jpg": "a caption"}


def test_sidecar_text(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"  a caf\xe9 \n")
    assert read_sidecar(tmp_path / "a.txt") == "a caf\ufffd" and read_sidecar(tmp_path / "gone.txt") == ""
