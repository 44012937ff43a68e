"""--from-embeddings and lib.ingest.export: clip-retrieval folders in and out, incremental, refusals, skips."""
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lib.data.embeddings_folder import EmbeddingsPartWriter, read_embeddings
from lib.errors import ClipSearchError, IndexMismatchError
from lib.ingest.embeddings_import import import_embeddings
from lib.ingest.export import export_dataset
from lib.ingest.image_index import build_image_index
from lib.store.catalog import Catalog
from tests.conftest import REPO, ivf_settings
from tests.helpers import share_model_cache
from tests.ingest.test_image_index import assert_consistent


def unit(count, dim, seed, dtype=np.float32):
    x = np.random.default_rng(seed).normal(size=(count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def write_folder(folder, parts, **columns):
    """parts: list of (vectors, paths); extra columns are lists per part."""
    for number, (vectors, paths) in enumerate(parts):
        writer = EmbeddingsPartWriter(folder, number, len(vectors), vectors.shape[1], vectors.dtype.type)
        writer.add(vectors, pa.table({"image_path": paths, **{k: v[number] for k, v in columns.items()}}))
        writer.close()
    return folder


def exported(folder):
    chunks = list(read_embeddings(folder, columns=("image_path", "id", "partition")))
    raw = np.concatenate([np.load(p, mmap_mode="r") for p in sorted((folder / "img_emb").glob("*.npy"),
                                                                      key=lambda p: int(p.stem.split("_")[-1]))])
    return raw, [p for c in chunks for p in c.paths], chunks


@pytest.mark.parametrize("dtype, min_vectors", [(np.float32, 50_000), (np.float16, 1_000)])
def test_import_then_export_gives_back_the_same_vectors_and_paths(tmp_path, demo_encoder, dtype, min_vectors):
    """float32 into an exact dataset, float16 into an IVF one (stored as float16): both come back bit for bit."""
    vectors = [unit(1_500, 128, 1, dtype), unit(900, 128, 2, dtype)]
    paths = [[f"a/{i}.jpg" for i in range(1_500)], [f"b/{i}.jpg" for i in range(900)]]
    source = write_folder(tmp_path / "in", list(zip(vectors, paths, strict=True)))
    settings = ivf_settings(tmp_path / "ws", ivf_min_vectors=min_vectors, embeddings_partition_size=1_000)
    report = import_embeddings(settings, demo_encoder, source, progress=False)
    assert (report.added, report.partitions_written, report.layout) == (2_400, 3, "embeddings")
    assert (Catalog.in_folder(settings.indexes_dir).ivf("mix") is not None) == (min_vectors < 2_400)
    assert export_dataset(settings, "mix", tmp_path / "out", rows_per_file=1_000, progress=False) == 2_400
    raw, out_paths, _ = exported(tmp_path / "out")
    assert raw.dtype == dtype and len(list((tmp_path / "out" / "img_emb").glob("*.npy"))) == 3
    np.testing.assert_array_equal(raw, np.concatenate(vectors))
    assert out_paths == paths[0] + paths[1]
    with pytest.raises(ClipSearchError, match="already holds embeddings"):
        export_dataset(settings, "mix", tmp_path / "out", progress=False)


def test_incremental_reimport_keeps_ids_of_unchanged_rows(tmp_path, demo_encoder):
    settings = ivf_settings(tmp_path / "ws")
    first = [(unit(600, 128, 1), [f"p/{i}.jpg" for i in range(600)])]
    source = write_folder(tmp_path / "in", first, label=[["x"] * 300 + ["y"] * 300])
    import_embeddings(settings, demo_encoder, source, class_column="label", progress=False)
    catalog = Catalog.in_folder(settings.indexes_dir)
    ids = {r.path: r.id for r in catalog.images("mix")}
    again = import_embeddings(settings, demo_encoder, source, class_column="label", progress=False)
    assert (again.unchanged, again.encoded, again.partitions_written) == (600, 0, 0)
    # In part 0 the rows of class y move to class z (only its metadata changes); part 1 adds 50 rows of y.
    pq.write_table(pa.table({"image_path": first[0][1], "label": ["x"] * 300 + ["z"] * 300}),
                   source / "metadata" / "metadata_0.parquet")
    writer = EmbeddingsPartWriter(source, 1, 50, 128, np.float32)
    writer.add(unit(50, 128, 3), pa.table({"image_path": [f"q/{i}.jpg" for i in range(50)], "label": ["y"] * 50}))
    writer.close()
    report = import_embeddings(settings, demo_encoder, source, class_column="label", progress=False)
    rows = {r.path: r for r in catalog.images("mix")}
    assert len(rows) == 650 and {r.partition for r in rows.values()} == {"x", "y", "z"}
    assert rows["p/299.jpg"].id == ids["p/299.jpg"] and rows["p/300.jpg"].partition == "z"
    assert (report.added, report.removed, report.unchanged, report.partitions_written) == (350, 300, 300, 2)
    assert_consistent(settings, "mix")


def test_rows_without_a_path_repeated_paths_and_bad_vectors_are_skipped(tmp_path, demo_encoder):
    vectors = unit(6, 128, 1)
    vectors[4] = 0.0
    vectors[5, 0] = np.nan
    source = write_folder(tmp_path / "in", [(vectors, ["a.jpg", "", "a.jpg", "b.jpg", "zero.jpg", "nan.jpg"])])
    settings = ivf_settings(tmp_path / "ws")
    report = import_embeddings(settings, demo_encoder, source, progress=False)
    assert report.added == 2 and set(report.skipped) == {"<row 1>", "a.jpg (row 2)", "zero.jpg", "nan.jpg"}
    assert "repeats the image_path" in report.skipped["a.jpg (row 2)"]
    assert "no image_path" in report.skipped["<row 1>"] and "zero or not finite" in report.skipped["nan.jpg"]
    assert {r.path for r in Catalog.in_folder(settings.indexes_dir).images("mix")} == {"a.jpg", "b.jpg"}
    assert "zero.jpg" in report.report_file.read_text()


def test_a_folder_of_another_dimension_is_refused(tmp_path, demo_encoder, model_cache):
    source = write_folder(tmp_path / "in", [(unit(10, 64, 1), [f"{i}.jpg" for i in range(10)])])
    with pytest.raises(IndexMismatchError, match="have 64 dimensions but model 'demo' makes 128-d vectors"):
        import_embeddings(ivf_settings(share_model_cache(tmp_path / "ws", model_cache)), demo_encoder, source,
                          progress=False)
    assert not (tmp_path / "ws" / "indexes" / "catalog.sqlite").exists() or \
        not Catalog.in_folder(tmp_path / "ws" / "indexes").datasets()
    result = subprocess.run([sys.executable, "build_image_index.py", "mix", "--from-embeddings", str(source),
                             "--workspace", str(tmp_path / "ws")], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and last.startswith("build_image_index: error: the embeddings in")
    assert "Traceback" not in result.stderr


def test_images_and_embeddings_do_not_mix_in_one_dataset(tmp_path, tiny_dataset, demo_encoder):
    root, _ = tiny_dataset
    settings = ivf_settings(tmp_path / "ws", dataset_path=str(root))
    build_image_index(settings, demo_encoder, progress=False)
    source = write_folder(tmp_path / "in", [(unit(10, 128, 1), [f"{i}.jpg" for i in range(10)])])
    with pytest.raises(ClipSearchError, match="was built from images"):
        import_embeddings(settings, demo_encoder, source, progress=False)
    import_embeddings(settings, demo_encoder, source, rebuild=True, progress=False)
    with pytest.raises(ClipSearchError, match="imported with --from-embeddings"):
        build_image_index(settings, demo_encoder, progress=False)


def test_metadata_rows_must_match_the_vectors(tmp_path, demo_encoder):
    source = write_folder(tmp_path / "in", [(unit(4, 128, 1), ["a", "b", "c", "d"])])
    pq.write_table(pa.table({"image_path": ["a", "b"]}), source / "metadata" / "metadata_0.parquet")
    with pytest.raises(ClipSearchError, match="has 2 rows but"):
        import_embeddings(ivf_settings(tmp_path / "ws"), demo_encoder, source, progress=False)


def test_a_dataset_without_images_groups_duplicates_and_refuses_calibration(tmp_path, demo_encoder):
    """Imported without --images-root there are no files to read: grouping keeps modification times for the
    keeper rule (it once joined None with each path), rows without a hash are not one exact group (all 40 once
    were), and calibration, which edits images, says what to do."""
    from lib.ingest.calibrate import calibrate_duplicates
    from lib.serve.duplicate_finder import group_dataset
    from lib.serve.index_set import load_dataset
    from lib.store.dataset_figures import DuplicateThresholds

    vectors = unit(40, demo_encoder.dim, 3)
    vectors[20:] = vectors[:20]  # every vector twice: 20 near-identical pairs
    source = write_folder(tmp_path / "in", [(vectors, [f"p/{i}.jpg" for i in range(40)])])
    settings = ivf_settings(tmp_path / "ws")
    import_embeddings(settings, demo_encoder, source, progress=False)
    dataset = load_dataset(settings.indexes_dir, "mix")
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    report = group_dataset(dataset, catalog, DuplicateThresholds(0.99, 0.9, None, "", {"given": True}))
    catalog.close()
    assert sorted(len(g.members) for g in report.groups) == [2] * 20
    with pytest.raises(ClipSearchError, match="--images-root"):
        calibrate_duplicates(settings.indexes_dir, "mix", demo_encoder)


def test_imported_rows_have_folders_and_names_but_no_capture_time(tmp_path, demo_encoder):
    """Imported embeddings record no file of their own (their mtime is the part file's), so their rows keep
    captured_from '' and pass no date filter; folders and file names come from their paths, captions from
    the captions.csv of --images-root."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "captions.csv").write_text("image,caption\ntrips/IMG_1-holidayBeach.jpg,sunset at the sea\n")
    paths = ["trips/IMG_1-holidayBeach.jpg", "home/cat.jpg"]
    source = write_folder(tmp_path / "in", [(unit(2, 128, 1), paths)])
    settings = ivf_settings(tmp_path / "ws")
    report = import_embeddings(settings, demo_encoder, source, images_root=images, progress=False)
    assert (report.added, report.dated, report.texts) == (2, 0, 2)
    catalog = Catalog.in_folder(settings.indexes_dir)
    rows = {r.path: r for r in catalog.images("mix")}
    assert {(r.folder, r.captured_from) for r in rows.values()} == {("trips", ""), ("home", "")}
    assert catalog.filtered_ids("mix", date_from_ns=0).tolist() == []
    assert catalog.filtered_ids("mix", folder="home").tolist() == [rows["home/cat.jpg"].id]
    beach = rows[paths[0]].id
    assert [i for i, _ in catalog.text_search("mix", "holiday", 5)] == [beach]
    assert [i for i, _ in catalog.text_search("mix", "sunset", 5)] == [beach]
