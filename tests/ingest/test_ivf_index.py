"""index_type auto: exact below the crossover, shared-quantizer IVF above it; recall, new partitions, retraining."""
import dataclasses

import numpy as np
import pytest

from lib.data.synthetic_vectors import write_mixture
from lib.errors import SettingsError
from lib.ingest.embeddings_import import import_embeddings
from lib.ingest.image_index import build_image_index
from lib.ingest.ivf_layout import bytes_per_vector, choose_layout, nlist_for, parse_size
from lib.serve.index_set import load_index_set
from lib.settings import load_settings
from lib.store.catalog import Catalog
from lib.store.ivf_files import TrainedIVF
from tests.conftest import MIXTURE, held_out, ivf_settings, recall_at_10
from tests.ingest.test_image_index import assert_consistent, save


def loaded(settings, encoder, name="mix"):
    return load_index_set(settings.indexes_dir, settings.indexes_text_dir, encoder.identity).datasets[name]


def test_auto_chooses_exact_below_the_crossover_and_codes_that_fit_the_budget():
    settings = load_settings(environ={}, overrides={"memory_budget": "16G"})
    assert choose_layout(49_999, 512, settings) is None  # the measured crossover: exact
    assert choose_layout(10**9, 512, dataclasses.replace(settings, index_type="flat")) is None
    million = choose_layout(1_000_000, 512, settings)
    assert (million.nlist, million.storage, million.sample, million.fits) == (4096, "flat", 163_840, True)
    ten_million = choose_layout(10_000_000, 512, settings)
    assert (ten_million.nlist, ten_million.storage, ten_million.fits) == (8192, "sq8", True)  # flat: 20.6 GB
    small_budget = choose_layout(10_000_000, 512, dataclasses.replace(settings, memory_budget="11G"))
    assert small_budget.storage == "pq64" and bytes_per_vector("pq64", 512) == 64 + 8 + 1024
    assert not choose_layout(10_000_000, 512, dataclasses.replace(settings, memory_budget="1G")).fits
    assert nlist_for(50_000) == 1024 and nlist_for(2_000) == 32  # at least 40 training vectors a list
    assert parse_size("1.5G") == 1.5 * 2**30 and parse_size("800M") == 800 * 2**20
    with pytest.raises(SettingsError, match="not a size"):
        parse_size("lots")


def test_small_dataset_stays_exact_large_one_gets_ivf(tmp_path, mixture_folder, demo_encoder):
    exact = ivf_settings(tmp_path / "a", ivf_min_vectors=50_000)
    import_embeddings(exact, demo_encoder, mixture_folder, progress=False)
    assert Catalog.in_folder(exact.indexes_dir).ivf("mix") is None and loaded(exact, demo_encoder).ivf is None
    assert not list(exact.indexes_dir.glob("*.ivf"))
    ivf = ivf_settings(tmp_path / "b")
    import_embeddings(ivf, demo_encoder, mixture_folder, progress=False)
    record = Catalog.in_folder(ivf.indexes_dir).ivf("mix")
    assert record.storage == "flat" and record.nlist == 256 and record.trained_on == 12_000
    partitions = Catalog.in_folder(ivf.indexes_dir).partitions("mix")
    assert len(list(ivf.indexes_dir.glob("image_mix_*.ivf"))) == len(partitions)


@pytest.mark.parametrize("budget, storage", [("auto", "flat"), ("5M", "sq8"), ("3.5M", "pq16")])
def test_ivf_recall_against_exact_on_a_structured_set(tmp_path, mixture_folder, demo_encoder, budget, storage):
    settings = ivf_settings(tmp_path, memory_budget=budget)
    import_embeddings(settings, demo_encoder, mixture_folder, class_column="class", progress=False)
    dataset = loaded(settings, demo_encoder)
    assert dataset.ivf.storage == storage and dataset.ivf.nprobe > 0 and dataset.ivf.recall >= 0.95
    queries = held_out()
    truth = dataset.search(queries, 10, exact=True)[1]
    assert recall_at_10(dataset.search(queries, 10)[1], truth) >= 0.95
    assert dataset.ivf.nprobe < dataset.ivf.nlist // 4  # it really probes a few lists, not the whole set


def test_deeper_searches_continue_the_shallower_ones(ivf_workspace, demo_encoder):
    dataset = loaded(ivf_workspace, demo_encoder)
    queries = held_out(20)
    shallow, deep = dataset.search(queries, 10)[1], dataset.search(queries, 40)[1]
    np.testing.assert_array_equal(deep[:, :10], shallow)


def test_partition_filters_search_only_the_chosen_partitions(ivf_workspace, demo_encoder):
    dataset = loaded(ivf_workspace, demo_encoder)
    catalog = Catalog.in_folder(ivf_workspace.indexes_dir)
    queries = held_out()
    for chosen in (["class0003"], ["class0001", "class0005", "class0009"], sorted(dataset.partitions)[:8]):
        allowed = {r.id for name in chosen for r in catalog.images("mix", name)}
        found = dataset.search(queries, 10, chosen)[1]
        assert set(found[found >= 0].tolist()) <= allowed
        truth = dataset.search(queries, 10, chosen, exact=True)[1]
        assert recall_at_10(found, truth) >= 0.9, chosen
    assert dataset.ivf.nprobe_filtered > 0 and dataset.ivf.recall_filtered >= 0.95


def test_exact_search_is_brute_force_over_the_stored_vectors(ivf_workspace, demo_encoder):
    dataset = loaded(ivf_workspace, demo_encoder)
    ids, vectors = zip(*dataset.index.exact.blocks(), strict=True)
    ids, vectors = np.concatenate(ids), np.concatenate(vectors)
    queries = held_out(5)
    expected = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    np.testing.assert_array_equal(dataset.search(queries, 10, exact=True)[1], expected)


def test_a_partition_added_later_is_encoded_without_retraining(tmp_path, demo_encoder):
    folder = tmp_path / "embeddings"
    write_mixture(folder, 6_000, MIXTURE, classes=6, part_rows=6_000)
    settings = ivf_settings(tmp_path / "ws")
    import_embeddings(settings, demo_encoder, folder, class_column="class", progress=False)
    catalog = Catalog.in_folder(settings.indexes_dir)
    before, quantizer = {p.name: p for p in catalog.partitions("mix")}, catalog.ivf("mix")
    extra = dataclasses.replace(MIXTURE, seed=11)  # other clusters: a class the quantizer never saw
    write_mixture(tmp_path / "more", 800, extra, classes=1, part_rows=800)
    (tmp_path / "more" / "img_emb" / "img_emb_0.npy").rename(folder / "img_emb" / "img_emb_1.npy")
    (tmp_path / "more" / "metadata" / "metadata_0.parquet").rename(folder / "metadata" / "metadata_1.parquet")
    _new_class(folder / "metadata" / "metadata_1.parquet", "brand-new")
    report = import_embeddings(settings, demo_encoder, folder, class_column="class", progress=False)
    assert report.added == 800 and report.unchanged == 6_000 and report.partitions_written == 1
    assert any("fit the quantizer worse" in note for note in report.notes)  # drift is noticed, and said
    after = {p.name: p for p in catalog.partitions("mix")}
    assert catalog.ivf("mix").quantizer_sha256 == quantizer.quantizer_sha256  # not retrained
    assert {n: p for n, p in after.items() if n != "brand-new"} == before  # other partitions untouched
    assert after["brand-new"].ivf_file and after["brand-new"].count == 800
    new_vectors, _ = extra.sample(50, np.random.default_rng(5))
    dataset = loaded(settings, demo_encoder)
    found = dataset.search(new_vectors, 10)[1]
    new_ids = {r.id for r in catalog.images("mix", "brand-new")}
    assert np.mean([row[0] in new_ids for row in found]) > 0.9


def _new_class(path, name):
    """Give every row of a metadata file the class `name` and a path of its own."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    paths = pa.array([f"{name}/{i}.jpg" for i in range(len(table))])
    pq.write_table(pa.table({"image_path": paths, "class": pa.array([name] * len(table))}), path)


def test_growth_past_the_factor_asks_for_retrain_and_retrain_does_it(tmp_path, mixture_folder, demo_encoder):
    small = tmp_path / "small"
    write_mixture(small, 2_500, MIXTURE, classes=3, part_rows=2_500)
    settings = ivf_settings(tmp_path / "ws")
    import_embeddings(settings, demo_encoder, small, progress=False)
    catalog = Catalog.in_folder(settings.indexes_dir)
    first = catalog.ivf("mix")
    report = import_embeddings(settings, demo_encoder, mixture_folder, progress=False)  # 12,000: 4.8x
    assert any("--retrain" in note for note in report.notes)
    assert catalog.ivf("mix").quantizer_sha256 == first.quantizer_sha256
    report = import_embeddings(settings, demo_encoder, mixture_folder, progress=False, retrain=True)
    record = catalog.ivf("mix")
    assert not report.notes and record.trained_on == 12_000 and record.quantizer_sha256 != first.quantizer_sha256
    assert record.nlist > first.nlist and record.nprobe > 0
    trained = TrainedIVF.read(settings.indexes_dir / record.quantizer_file)
    for partition in catalog.partitions("mix"):  # every partition was encoded with the new quantizer
        assert trained.open(settings.indexes_dir / partition.ivf_file).nlist == record.nlist


def test_an_image_build_crossing_the_crossover_switches_to_ivf(tmp_path, demo_encoder):
    root = tmp_path / "photos"
    colours = ["red", "green", "blue", "yellow", "white", "black", "purple", "orange"]
    for i in range(24):
        save(root / f"class{i % 3}" / f"{i}.png", colours[i % 8], size=(32 + i, 32))
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path / "ws"), dataset_name="test",
                                                        dataset_path=str(root), num_workers=0, ivf_min_vectors=20))
    build_image_index(settings, demo_encoder, progress=False)
    catalog = assert_consistent(settings)
    quantizer = catalog.ivf("test")
    assert quantizer is not None and all(p.ivf_file for p in catalog.partitions("test"))
    save(root / "class3" / "new.png", "pink")
    report = build_image_index(settings, demo_encoder, progress=False)
    assert report.encoded == 1 and catalog.ivf("test").quantizer_sha256 == quantizer.quantizer_sha256
    assert_consistent(settings)
    dataset = loaded(settings, demo_encoder, "test")
    new_id = next(r.id for r in catalog.images("test") if r.path == "class3/new.png")
    assert dataset.search(dataset.vector(new_id), 1)[1][0][0] == new_id
    flat = build_image_index(dataclasses.replace(settings, index_type="flat"), demo_encoder, progress=False)
    assert "dropped the IVF layer" in flat.notes[0] and catalog.ivf("test") is None
    assert not list(settings.indexes_dir.glob("*.ivf")) and not list(settings.indexes_dir.glob("*.quantizer"))
