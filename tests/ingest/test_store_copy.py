"""Builds with `store` a PostgreSQL URL: vectors copied in incrementally, kill -9 safe, tuned; errors in one line."""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from lib.errors import IndexMismatchError, NotFoundError, StoreError
from lib.ingest.image_index import build_image_index
from lib.ingest.store_copy import copy_dataset
from lib.ingest.store_restore import restore_dataset
from lib.serve.index_set import load_index_set
from lib.store.catalog import Catalog
from lib.store.identity import ModelIdentity
from lib.store.postgres_pool import StorePool
from tests.conftest import held_out, recall_at_10

REPO = Path(__file__).resolve().parent.parent.parent


def held_versions(url: str, dataset: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT name, version, count FROM clipsearch_partitions WHERE dataset = %s",
                                  (dataset,)).fetchall()
    return {name: (version, count) for name, version, count in rows}


def catalog_versions(settings, dataset: str) -> dict[str, tuple[str, int]]:
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    try:
        return {p.name: (p.index_sha256, p.count) for p in catalog.partitions(dataset)}
    finally:
        catalog.close()


def settled(url: str, deadline_s: float = 30) -> None:
    """Once no other session is connected to the database (a killed writer's backend has ended)."""
    deadline = time.time() + deadline_s
    with psycopg.connect(url, autocommit=True) as connection:
        while time.time() < deadline and connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()").fetchone()[0]:
            time.sleep(0.05)


def test_a_build_copies_its_partitions_and_later_builds_only_what_changed(tiny_dataset, demo_encoder, postgres,
                                                                          tmp_path, model_cache):
    from tests.helpers import share_model_cache

    root = tmp_path / "images"
    shutil.copytree(tiny_dataset[0], root)
    workspace = share_model_cache(tmp_path / "workspace", model_cache)
    from lib.settings import load_settings

    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0,
                                                        store=postgres.database()))
    report = build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert any(note.startswith("store: dataset 'tiny': 36 partition(s) (72 vectors) copied") for note in report.notes)
    assert held_versions(settings.store, "tiny") == catalog_versions(settings, "tiny")
    again = build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert [n for n in again.notes if n.startswith("store:")][0].startswith("store: dataset 'tiny': 0 partition(s)")
    shutil.rmtree(sorted((root / "train").iterdir())[0])  # a class removed: its partition leaves the database
    build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert held_versions(settings.store, "tiny") == catalog_versions(settings, "tiny")
    assert len(held_versions(settings.store, "tiny")) == 35


def test_the_database_copy_searches_like_the_files_within_the_target_recall(ivf_workspace, demo_encoder, postgres):
    settings = dataclasses.replace(ivf_workspace, store=postgres.database())
    report = copy_dataset(settings, "mix")
    assert report.copied == 12 and report.rows == 12_000 and report.recall >= settings.target_recall
    pool = StorePool(settings.store)
    try:
        stored = load_index_set(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity,
                                pool=pool).datasets["mix"]
        files = load_index_set(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity).datasets["mix"]
        queries = held_out(50)
        truth = files.search(queries, 10, exact=True)[1]
        assert recall_at_10(stored.search(queries, 10)[1], truth) >= 0.95
        chosen = sorted(files.partitions)[3:5]
        assert recall_at_10(stored.search(queries, 10, chosen)[1], files.search(queries, 10, chosen, exact=True)[1]) \
            >= 0.95
        assert stored.count == files.count == 12_000 and stored.store == "postgresql"
        some = files.index.ids_of(chosen[0])[:5]
        assert np.allclose(stored.index.vectors(some), files.index.vectors(some), atol=1e-3)
    finally:
        pool.close()


def killed_once_three_are_in(command: list[str], settings) -> dict[str, tuple[str, int]]:
    """Run the command with the settings' workspace and store, kill -9 it once the database holds three
    partitions, and check that every partition there is whole and at a version the catalog records."""
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(settings.workspace), "CLIPSEARCH_STORE": settings.store}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            if len(held_versions(settings.store, "mix")) >= 3:
                break
        except psycopg.errors.UndefinedTable:  # the schema is not made yet
            pass
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    settled(settings.store)  # a COMMIT already sent when the writer died still counts
    held, recorded = held_versions(settings.store, "mix"), catalog_versions(settings, "mix")
    assert 3 <= len(held) < 12 or process.returncode == 0  # killed mid-way (or, on a fast machine, done)
    assert all(recorded[name] == version for name, version in held.items())
    with psycopg.connect(settings.store) as connection:  # no partition holds a row more or less than recorded
        table = connection.execute("SELECT vectors_table FROM clipsearch_datasets WHERE name = 'mix'").fetchone()[0]
        counts = dict(connection.execute(f'SELECT partition, count(*) FROM "{table}" GROUP BY partition').fetchall())
    assert counts == {name: count for name, (_, count) in held.items()}
    return held


def test_a_copy_killed_at_any_point_keeps_whole_partitions_and_resumes(ivf_workspace, postgres):
    settings = dataclasses.replace(ivf_workspace, store=postgres.database())
    held = killed_once_three_are_in([sys.executable, "-m", "lib.ingest.store_copy", "mix"], settings)
    report = copy_dataset(settings, "mix")
    assert report.copied == 12 - len(held) and held_versions(settings.store, "mix") == catalog_versions(settings, "mix")


def test_a_build_killed_mid_way_keeps_whole_partitions_and_the_next_completes_them(mixture_folder, demo_encoder,
                                                                                  postgres, tmp_path, model_cache):
    from lib.ingest.embeddings_import import import_embeddings
    from tests.conftest import ivf_settings
    from tests.helpers import share_model_cache

    settings = ivf_settings(share_model_cache(tmp_path / "workspace", model_cache), store=postgres.database())
    killed_once_three_are_in([sys.executable, "build_image_index.py", "mix", "--from-embeddings", str(mixture_folder),
                              "--class-column", "class", "--model", "demo", "--ivf-min-vectors", "2000",
                              "--num-workers", "0", "--no-progress"], settings)
    report = import_embeddings(settings, demo_encoder, mixture_folder, class_column="class", progress=False)
    assert report.added + report.unchanged == 12_000  # the killed build's committed rows are kept
    assert held_versions(settings.store, "mix") == catalog_versions(settings, "mix")
    assert len(catalog_versions(settings, "mix")) == 12


@pytest.mark.parametrize("store", ["postgresql://nobody@127.0.0.1:1/none", "postgresql://a:b@[oops/x"])
def test_a_build_with_an_unusable_store_stops_at_once_in_one_line(store, tmp_path):
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(tmp_path)}
    result = subprocess.run([sys.executable, "build_image_index.py", "x", str(tmp_path), "--store", store],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "store" in result.stderr
    assert "b@" not in result.stderr  # no password in the message
    assert not (tmp_path / "indexes").exists() or not any((tmp_path / "indexes").iterdir())


def test_a_database_gone_mid_build_lets_the_build_go_on_and_the_end_catch_up(ivf_workspace, postgres, caplog):
    from lib.ingest.store_copy import StoreWriter

    settings = dataclasses.replace(ivf_workspace, store=postgres.database())
    first, second, *_ = sorted(catalog_versions(settings, "mix"))
    writer = StoreWriter(settings, "mix")
    try:
        writer.committed(first)
        assert set(held_versions(settings.store, "mix")) == {first}
        postgres.stop()
        try:
            writer.committed(second)  # no exception: the files' build goes on
            assert "falls behind" in caplog.text
        finally:
            postgres.start()
        report = writer.finish()  # a new connection, the writer lock taken again
    finally:
        writer.close()
    assert report.copied == 12 and held_versions(settings.store, "mix") == catalog_versions(settings, "mix")
    with pytest.raises(IndexMismatchError, match="in the store database"):  # before a build does any work
        StoreWriter(settings, "mix", model=ModelIdentity("other", "b" * 64, 128))
    rebuilt = StoreWriter(settings, "mix", rebuild=True)  # --rebuild: the database's copy starts over
    try:
        with psycopg.connect(settings.store) as connection:
            assert connection.execute("SELECT count(*) FROM clipsearch_datasets").fetchone()[0] == 0
    finally:
        rebuilt.close()


def test_each_image_row_reaches_the_database_and_a_new_caption_writes_only_rows(tiny_dataset, demo_encoder,
                                                                                  postgres, tmp_path, model_cache):
    from lib.settings import load_settings
    from lib.store.postgres import connect, vectors_table
    from lib.store.postgres_rows import catalog_rows, images_table, read_rows
    from tests.helpers import share_model_cache

    root = tmp_path / "images"
    shutil.copytree(tiny_dataset[0], root)
    first = sorted((root / "train").iterdir())[0]
    picture = sorted((first / "images").iterdir())[0]
    odd = picture.with_name(os.fsdecode(b"caf\xe9" + picture.suffix.encode()))  # Latin-1 bytes, not UTF-8
    picture.rename(odd)
    workspace = share_model_cache(tmp_path / "workspace", model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0,
                                                        store=postgres.database()))

    def rows_agree() -> None:
        catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
        try:
            expected, model = catalog_rows(catalog, "tiny"), catalog.dataset("tiny").model
        finally:
            catalog.close()
        connection = connect(settings.store, autocommit=True)
        try:
            table = images_table(vectors_table(connection, "tiny", model.dim, model))
            for name, rows in expected.items():
                assert read_rows(connection, table, "tiny", name) == rows, name
        finally:
            connection.close()

    build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    rows_agree()
    odd.with_suffix(".txt").write_text("a café at dusk")  # a caption: the partition is committed again
    build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    rows_agree()
    with psycopg.connect(settings.store) as connection:
        found = connection.execute("SELECT path FROM clipsearch_images_1 WHERE text_sidecar LIKE 'a caf%'").fetchall()
        assert [os.fsdecode(bytes(path)) for path, in found] == [odd.relative_to(root).as_posix()]
        # as a database copied before images had rows holds it: vectors, no rows, no digest
        partition = connection.execute("SELECT partition FROM clipsearch_images_1 WHERE path = %s",
                                       (os.fsencode(odd.relative_to(root).as_posix()),)).fetchone()[0]
        connection.execute("DELETE FROM clipsearch_images_1 WHERE partition = %s", (partition,))
        connection.execute("UPDATE clipsearch_partitions SET rows_digest = NULL WHERE name = %s", (partition,))
    report = copy_dataset(settings, "tiny")
    assert (report.copied, report.rows_written) == (0, 1)
    rows_agree()


def test_a_dataset_comes_back_from_the_database_into_a_new_folder_and_a_differing_folder_is_refused(
        tiny_dataset, demo_encoder, postgres, tmp_path, model_cache):
    from lib.ingest.store_copy import main as store_copy_main
    from lib.settings import load_settings
    from lib.store.dataset_figures import read_figures, save_evaluation
    from lib.store.postgres_rows import catalog_rows
    from tests.helpers import share_model_cache

    url = postgres.database()

    def settings_in(workspace: Path):
        return load_settings(environ={}, overrides=dict(workspace=str(share_model_cache(workspace, model_cache)),
                                                        dataset_name="tiny", dataset_path=str(tiny_dataset[0]),
                                                        num_workers=0, store=url))

    def rows_and_vectors(settings):
        catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
        try:
            rows = {name: part.digest() for name, part in catalog_rows(catalog, "tiny").items()}
        finally:
            catalog.close()
        loaded = load_index_set(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity)
        blocks = list(loaded.datasets["tiny"].index.blocks())
        return rows, np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])

    built = settings_in(tmp_path / "built")
    build_image_index(built, demo_encoder, progress=False, calibrate=False)
    save_evaluation(built.indexes_dir, "tiny", demo_encoder.identity, {"top1": 0.75})
    copy_dataset(built, "tiny")  # the figures beside the catalog go along
    restored = settings_in(tmp_path / "restored")
    store_copy_main(["tiny", "--to-files", "--workspace", str(restored.workspace), "--store", url])
    assert read_figures(restored.indexes_dir, "tiny") == read_figures(built.indexes_dir, "tiny") != {}
    rows, ids, vectors = rows_and_vectors(restored)
    rows_built, ids_built, vectors_built = rows_and_vectors(built)
    order, order_built = np.argsort(ids), np.argsort(ids_built)
    assert rows == rows_built and np.array_equal(ids[order], ids_built[order_built]) and len(ids) == 72
    np.testing.assert_array_equal(vectors[order], vectors_built[order_built].astype(np.float16).astype(np.float32))
    assert held_versions(url, "tiny") == catalog_versions(restored, "tiny")  # the database follows the new files
    again = restore_dataset(restored, "tiny")
    assert (again.restored, again.kept) == (0, 36)
    report = build_image_index(restored, demo_encoder, progress=False, calibrate=False)  # nothing to encode again
    assert report.encoded == 0
    with psycopg.connect(url) as connection:  # the database's rows now differ from the first folder's
        connection.execute("UPDATE clipsearch_images_1 SET text_caption = 'changed' WHERE id = %s", (int(ids[0]),))
    with pytest.raises(IndexMismatchError, match="differs from the store database's"):
        restore_dataset(built, "tiny")
    with pytest.raises(NotFoundError, match="holds no dataset 'nothing'"):
        restore_dataset(restored, "nothing")
    with psycopg.connect(url) as connection:  # as a database copied by a version that kept only the vectors
        connection.execute("UPDATE clipsearch_datasets SET layout = NULL")
    with pytest.raises(StoreError, match="holds only the vectors of dataset 'tiny'"):
        restore_dataset(settings_in(tmp_path / "third"), "tiny")


def test_a_restore_killed_at_any_point_keeps_whole_partitions_and_resumes(ivf_workspace, postgres, tmp_path):
    import sqlite3

    from lib.store.index_files import read_index

    settings = dataclasses.replace(ivf_workspace, store=postgres.database())
    copy_dataset(settings, "mix")
    restored = dataclasses.replace(settings, workspace=tmp_path / "restored")
    env = {**os.environ, "CLIPSEARCH_STORE": settings.store}
    process = subprocess.Popen([sys.executable, "-m", "lib.ingest.store_copy", "mix", "--to-files",
                                "--workspace", str(restored.workspace)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:
            if len(catalog_versions(restored, "mix")) >= 3:
                break
        except sqlite3.Error:  # the catalog is not made yet
            pass
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = catalog_versions(restored, "mix")
    assert 3 <= len(done) < 12 or process.returncode == 0
    catalog = Catalog.in_folder(restored.indexes_dir, readonly=True)
    try:  # each partition the catalog records is whole: its file at its SHA-256, every vector with a row
        for partition in catalog.partitions("mix"):
            index = read_index(restored.indexes_dir / partition.index_file, partition.index_sha256)
            assert index.ntotal == partition.count == len(catalog.images("mix", partition.name))
    finally:
        catalog.close()
    report = restore_dataset(restored, "mix")
    assert report.restored + report.kept == 12 and report.kept >= len(done) - 1  # the last may lack its version
    assert held_versions(settings.store, "mix") == catalog_versions(restored, "mix")
