"""Hot swap of the index set: a finished build is picked up, requests in flight keep their set, and every process
serves the newest set whenever it started."""
import dataclasses
import os
import sqlite3
from pathlib import Path

import numpy as np

from lib.data.synthetic import generate_dataset
from lib.data.vocabulary import read_vocabulary
from lib.ingest.image_index import build_image_index
from lib.ingest.text_index import build_text_index
from lib.model.loading import load_encoder
from lib.serve.index_set import LiveIndexSet
from lib.serve.search import SearchService
from lib.settings import load_settings
from lib.store.catalog import CATALOG_NAME, SCHEMA, Catalog, DatasetRecord
from lib.store.identity import ModelIdentity
from lib.store.index_files import commit_partition


def build_first(workspace: Path, root: Path, encoder):
    """The tiny dataset built as "first" in the workspace; its settings."""
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="first",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, encoder, progress=False)
    return settings


def test_a_new_build_is_picked_up_without_a_restart(tmp_path, tiny_dataset, demo_encoder):
    root, _ = tiny_dataset
    settings = build_first(tmp_path, root, demo_encoder)
    live = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity, check_every=0)
    in_flight = live.current()
    assert set(in_flight.datasets) == {"first"}
    assert live.current() is in_flight  # nothing changed: the same set, nothing reloaded
    second_root = tmp_path / "second"
    generate_dataset(second_root, seed=9, per_class=1)
    build_image_index(dataclasses.replace(settings, dataset_name="second", dataset_path=second_root), demo_encoder,
                      progress=False)
    fresh = live.current()
    assert set(fresh.datasets) == {"first", "second"} and fresh is not in_flight
    # The request that started before the swap still searches its own, complete set.
    partition = next(iter(in_flight.datasets["first"].partitions))
    assert in_flight.datasets["first"].search(demo_encoder.encode_texts(["red"]), 1, [partition])[1][0][0] > 0


def test_datasets_of_another_model_are_left_out_with_the_reason(built_workspace, other_model_dir, demo_encoder,
                                                                 model_cache):
    other = load_encoder(str(other_model_dir), cache_dir=model_cache)
    live = LiveIndexSet(built_workspace.indexes_dir, built_workspace.indexes_text_dir, other.identity)
    current = live.current()
    assert not current.datasets and not current.vocabularies
    assert "was built with model 'demo'" in current.left_out["dataset tiny"]
    assert set(current.left_out) == {"dataset tiny", f"vocabulary text_tiny_{demo_encoder.dim}"}


def served_after_a_fork(live: LiveIndexSet) -> set[str]:
    """The datasets (and "text <name>" vocabularies) that `live` serves in a process forked now, as a gunicorn
    worker that starts after a build is forked from the master that loaded the set at start-up."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child answers through the pipe and leaves at once, whatever happens
        try:
            os.close(read)
            current = live.current()
            os.write(write, ",".join(sorted(current.datasets) + sorted(f"text {v}" for v in current.vocabularies)
                                     ).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return set(answer.split(","))


def test_every_process_serves_the_newest_set_whenever_it_started(tmp_path, tiny_dataset, demo_encoder):
    root, _ = tiny_dataset
    settings = build_first(tmp_path, root, demo_encoder)
    before = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity, check_every=0)
    assert served_after_a_fork(before) == {"first"}
    second_root = tmp_path / "second"
    generate_dataset(second_root, seed=9, per_class=1)
    build_image_index(dataclasses.replace(settings, dataset_name="second", dataset_path=second_root), demo_encoder,
                      progress=False)
    entries, stats = read_vocabulary(str(root / "words.txt"), settings.cache_dir)
    build_text_index("words", entries, stats, demo_encoder, settings.indexes_text_dir, settings.cache_dir,
                     progress=False)
    newest = {"first", "second", "text words"}
    after = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity, check_every=0)
    assert served_after_a_fork(after) == newest
    assert served_after_a_fork(before) == newest  # a fresh connection: the old check saw no change of datasets
    assert set(before.current().datasets) == set(after.refresh().datasets) == {"first", "second"}


def copy_of(catalog: Path, name: str) -> Path:
    """A whole copy of a catalog (its WAL included), through SQLite's backup API."""
    copy = catalog.with_name(name)
    with sqlite3.connect(catalog) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def put_in_place(copy: Path, catalog: Path) -> None:
    """`copy` becomes the catalog, as when the index folder's catalog is deleted (with its WAL and shared memory,
    which belong to the old file) and another takes its place while the server runs."""
    for old in (catalog, catalog.with_name(catalog.name + "-wal"), catalog.with_name(catalog.name + "-shm")):
        old.unlink(missing_ok=True)
    os.replace(copy, catalog)


def test_a_catalog_put_in_the_old_ones_place_is_a_new_set(tmp_path, tiny_dataset, demo_encoder):
    """Another file in the catalog's place is loaded, even at the same generation, and images are looked up in it."""
    root, _ = tiny_dataset
    settings = build_first(tmp_path, root, demo_encoder)
    catalog = settings.indexes_dir / CATALOG_NAME
    first_only = copy_of(catalog, "first.sqlite")
    live = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity, check_every=0)
    service = SearchService(demo_encoder, live)
    second_root = tmp_path / "second"
    generate_dataset(second_root, seed=9, per_class=1)
    build_image_index(dataclasses.replace(settings, dataset_name="second", dataset_path=second_root), demo_encoder,
                      progress=False)
    both = copy_of(catalog, "both.sqlite")
    second_id = max(live.current().datasets["second"].order.ids)
    put_in_place(first_only, catalog)
    assert set(live.current().datasets) == {"first"} and service.record(1).dataset == "first"
    loaded = live.current()
    put_in_place(copy_of(catalog, "same.sqlite"), catalog)
    assert live.current() is not loaded  # the same generation, another file
    put_in_place(both, catalog)
    assert set(live.current().datasets) == {"first", "second"}
    assert service.record(int(second_id)).dataset == "second"  # not looked up in the file that was replaced


def test_each_commit_that_changes_the_served_set_bumps_the_generation(tmp_path):
    catalog = Catalog.in_folder(tmp_path)
    seen = [catalog.generation()]
    identity = ModelIdentity("m", "0" * 64, 4)
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("d", tmp_path, "flat", "flat", identity))
    seen.append(catalog.generation())
    vectors = np.eye(4, dtype=np.float32)
    commit_partition(catalog, tmp_path, "d", "p", np.arange(1, 5), vectors)
    seen.append(catalog.generation())
    commit_partition(catalog, tmp_path, "d", "p", np.zeros(0, np.int64), np.zeros((0, 4), np.float32), [1, 2, 3, 4])
    seen.append(catalog.generation())
    catalog.drop_dataset("d")
    seen.append(catalog.generation())
    assert seen == [0, 1, 2, 3, 4]
    reader = Catalog.in_folder(tmp_path, readonly=True)
    assert reader.generation() == 4  # durable: any new connection reads the same


def test_an_old_catalog_gets_its_generation_in_place(tmp_path):
    old = sqlite3.connect(tmp_path / CATALOG_NAME)
    old.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS generation")[0])
    old.close()
    assert Catalog.in_folder(tmp_path, readonly=True).generation() == 0  # read-only: the table is missing
    catalog = Catalog.in_folder(tmp_path)
    catalog.drop_dataset("none")
    assert catalog.generation() == 1
