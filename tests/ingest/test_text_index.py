"""build_text_index: prompt ensembles, caching of chunks, loading, model mixing, the CLI."""
import json

import numpy as np
import pytest

from build_text_index import main
from lib.data.vocabulary import VocabEntry, VocabStats
from lib.errors import ClipSearchError, IndexMismatchError
from lib.ingest.text_index import build_text_index
from lib.model.loading import load_encoder
from lib.model.prompts import read_templates
from lib.store.index_files import vectors_of
from lib.store.vocab_index import load_text_index
from tests.helpers import share_model_cache

ENTRIES = [VocabEntry("a", "red circle"), VocabEntry("b", "blue square"), VocabEntry("c", "yellow star")]


def build(tmp_path, encoder, templates=("a photo of a {}.",), **kwargs):
    return build_text_index("colours", ENTRIES, VocabStats(), encoder, tmp_path / "indexes_text", tmp_path / "cache",
                            templates, progress=False, **kwargs)


def test_build_and_load(tmp_path, demo_encoder):
    report = build(tmp_path, demo_encoder)
    assert report.index_file.name == f"text_colours_{demo_encoder.dim}.index" and report.chunks_encoded == 1
    loaded = load_text_index(report.index_file)
    assert [e.label for e in loaded.entries] == ["red circle", "blue square", "yellow star"]
    assert loaded.model == demo_encoder.identity and loaded.index.ntotal == 3
    query = demo_encoder.encode_texts(["a photo of a blue square."])
    assert loaded.index.search(query, 1)[1][0][0] == 1
    again = build(tmp_path, demo_encoder)
    assert (again.chunks_encoded, again.chunks_cached) == (0, 1)


def test_template_ensemble_is_the_normalised_mean(tmp_path, demo_encoder):
    templates = ("a photo of a {}.", "a drawing of a {}.", "{}")
    report = build(tmp_path, demo_encoder, templates)
    _, vectors = vectors_of(load_text_index(report.index_file).index)
    per_template = np.stack([demo_encoder.encode_texts([t.format("red circle")])[0] for t in templates])
    expected = per_template.mean(0) / np.linalg.norm(per_template.mean(0))
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)
    assert load_text_index(report.index_file).templates == templates


def test_template_file(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("a photo of a {}.\n\nitap of a {}.\n")
    assert read_templates(good) == ("a photo of a {}.", "itap of a {}.")
    bad = tmp_path / "bad.txt"
    bad.write_text("a photo of a thing\n")
    with pytest.raises(ClipSearchError, match="exactly one"):
        read_templates(bad)


def test_refuses_to_mix_models(tmp_path, demo_encoder, other_model_dir, model_cache):
    build(tmp_path, demo_encoder)
    other = load_encoder(str(other_model_dir), cache_dir=model_cache)
    with pytest.raises(IndexMismatchError, match="vocabulary 'colours'"):
        build(tmp_path, other)
    assert load_text_index(build(tmp_path, other, rebuild=True).index_file).model == other.identity


def test_metadata_and_index_must_belong_together(tmp_path, demo_encoder):
    report = build(tmp_path, demo_encoder)
    meta = report.index_file.with_suffix(".json")
    data = json.loads(meta.read_text())
    data["index_sha256"] = "0" * 64
    meta.write_text(json.dumps(data))
    with pytest.raises(ClipSearchError, match="does not match"):
        load_text_index(report.index_file)


def test_cli_with_words_txt_and_long_entries(tmp_path, tiny_dataset, model_cache, capsys):
    root, _ = tiny_dataset
    share_model_cache(tmp_path, model_cache)  # the CLI loads the model: converted and measured once a session
    vocab = tmp_path / "long.txt"
    vocab.write_text("red circle\n" + "very " * 300 + "long entry\n\nred circle\n")
    main(["tiny", str(root / "words.txt"), "--workspace", str(tmp_path), "--no-progress"])
    main(["long", str(vocab), "--workspace", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert "tiny: 36 entries" in out and "long: 2 entries (1 blank and 1 duplicate lines dropped)" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["nope", str(tmp_path / "missing.txt"), "--workspace", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "cannot read vocabulary" in capsys.readouterr().err
