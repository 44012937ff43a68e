"""A dataset's vectors in the store database: searched, read by id, and written a partition at a time.

The read side (`PostgresVectors`) answers what the files' DatasetIndex answers (lib/store/vector_index.py)
through a StorePool: top-k by inner product over the chosen partitions and among a filter's ids, vectors
by id, the ids a partition holds. Approximate search walks the HNSW index with the dataset's tuned
`hnsw.ef_search` (at least the depth asked) and pgvector's iterative scan, so a filter that admits few
rows still fills its page; `exact` orders by an expression the index cannot serve, a scan of every row,
as do partitions chosen that hold fewer than EXACT_BELOW vectors (through the partition's b-tree: 10 of
200 partitions at 100k, 5,000 vectors, took 1.6 ms exactly where HNSW at ef_search 40 found 0.73 of the
top 10); a filter that admits at most SUBSET_SCAN ids reads their vectors and scores them here.

The write side (`put_partition`, `drop_partition`, `ensure_hnsw`) changes one partition in one
transaction: its rows, its version and the dataset's generation, so a writer killed at any point leaves
every partition at one version, and readers see a partition whole or not at all.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql

from lib.errors import NotFoundError
from lib.store.postgres_pool import StorePool
from lib.store.postgres_rows import PartitionRows, images_table, put_rows

log = logging.getLogger(__name__)

SUBSET_SCAN = 10_000  # a filter admitting at most this many ids is scored from their vectors, here
EXACT_BELOW = 20_000  # chosen partitions holding fewer vectors are scanned exactly (about 1.6 ms for 5,000)
EF_SEARCH_MOST = 1000  # pgvector's upper bound for hnsw.ef_search
HNSW_INDEX = "{}_hnsw"
GRAPH_MEMORY_LEAST_KB = 64 * 1024  # maintenance_work_mem for the HNSW build, however small the dataset


def _ranked(found: list[tuple[int, float]], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) rows of `depth`, padded with -inf and -1, best first (ties by id, as faiss)."""
    found = sorted(found, key=lambda row: (-row[1], row[0]))[:depth]
    scores, ids = np.full(depth, -np.inf, np.float32), np.full(depth, -1, np.int64)
    if found:
        ids[:len(found)], scores[:len(found)] = zip(*found, strict=True)
    return scores, ids


class PostgresVectors:
    """The vectors of one dataset's partitions (name -> count) at the versions a reader checked."""

    exact_below = EXACT_BELOW  # chosen partitions holding fewer vectors are scanned exactly

    def __init__(self, pool: StorePool, table: str, counts: dict[str, int], dim: int, ef_search: int) -> None:
        self.pool, self.table, self.counts, self.dim = pool, sql.Identifier(table), counts, dim
        self.ef_search = ef_search

    def count(self, chosen: Sequence[str] | None = None) -> int:
        return sum(self.counts.values()) if chosen is None else sum(self.counts[name] for name in chosen)

    def _partitions(self, chosen: Sequence[str] | None) -> list[str]:
        return list(self.counts) if chosen is None else [name for name in chosen if name in self.counts]

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               exact: bool = False, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) for each query over the chosen partitions, among the ids `among` if given."""
        names = self._partitions(chosen)
        if among is not None and len(among) <= SUBSET_SCAN:
            return self._search_among(vectors, depth, self.held(among, names))
        exact = exact or (chosen is not None and self.count(names) < self.exact_below)  # HNSW lost recall there
        order = sql.SQL("(embedding <#> %(q)s) + 0" if exact else "embedding <#> %(q)s")
        among_sql = sql.SQL("" if among is None else " AND id = ANY(%(among)s)")
        query = sql.SQL("WITH found AS MATERIALIZED (SELECT id, -(embedding <#> %(q)s) AS score FROM {} "
                        "WHERE partition = ANY(%(names)s){} ORDER BY {} LIMIT %(depth)s) "
                        "SELECT id, score FROM found").format(self.table, among_sql, order)
        rows = []
        with self.pool.connection() as connection, connection.transaction():
            connection.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                sql.Literal(min(max(self.ef_search, depth), EF_SEARCH_MOST))))
            connection.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            for vector in np.asarray(vectors, np.float32):
                found = connection.execute(query, {"q": HalfVector(vector), "names": names, "depth": depth,
                                                   "among": None if among is None else np.asarray(among).tolist()})
                rows.append(_ranked([(int(i), float(s)) for i, s in found.fetchall()], depth))
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def _search_among(self, vectors: np.ndarray, depth: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stored = self.vectors(ids) if len(ids) else np.zeros((0, self.dim), np.float32)
        scores = np.asarray(vectors, np.float32) @ stored.T
        rows = [_ranked(list(zip(ids.tolist(), row.tolist(), strict=True)), depth) for row in scores]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def held(self, ids: np.ndarray, chosen: Sequence[str] | None = None) -> np.ndarray:
        """The ids the chosen partitions (or all) hold, in the order given."""
        ids = np.asarray(ids, np.int64)
        with self.pool.connection() as connection:
            found = connection.execute(sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) AND partition = ANY(%s)")
                                       .format(self.table), (ids.tolist(), self._partitions(chosen))).fetchall()
        return ids[np.isin(ids, np.array([row[0] for row in found], np.int64))]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in order, as float32; NotFoundError for an id not held."""
        ids = np.asarray(ids, np.int64)
        with self.pool.connection() as connection:
            found = dict(connection.execute(sql.SQL("SELECT id, embedding FROM {} WHERE id = ANY(%s) AND "
                                                    "partition = ANY(%s)").format(self.table),
                                            (ids.tolist(), list(self.counts))).fetchall())
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise NotFoundError(f"no indexed vector with id {missing[0]}")
        out = np.empty((len(ids), self.dim), np.float32)
        for row, image_id in enumerate(ids.tolist()):
            out[row] = found[image_id].to_numpy()
        return out

    def ids_of(self, partition: str) -> np.ndarray:
        """The ids of one partition, ascending."""
        with self.pool.connection() as connection:
            rows = connection.execute(sql.SQL("SELECT id FROM {} WHERE partition = %s ORDER BY id")
                                      .format(self.table), (partition,)).fetchall()
        return np.array([row[0] for row in rows], np.int64)

    def sample_ids(self, count: int) -> np.ndarray:
        """Up to `count` ids of the partitions, the same ones each time (ordered by a hash of the id)."""
        with self.pool.connection() as connection:
            rows = connection.execute(sql.SQL("SELECT id FROM {} WHERE partition = ANY(%s) ORDER BY md5(id::text) "
                                              "LIMIT %s").format(self.table), (list(self.counts), count)).fetchall()
        return np.array([row[0] for row in rows], np.int64)

    def blocks(self, names: Sequence[str] | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of the chosen partitions, ascending by id, about `rows` at a time."""
        with (self.pool.connection() as connection, connection.transaction(),
              connection.cursor(name="clipsearch_blocks") as cursor):
            cursor.itersize = rows
            cursor.execute(sql.SQL("SELECT id, embedding FROM {} WHERE partition = ANY(%s) ORDER BY id")
                           .format(self.table), (self._partitions(names),))
            while batch := cursor.fetchmany(rows):
                yield (np.array([row[0] for row in batch], np.int64),
                       np.stack([row[1].to_numpy() for row in batch]).astype(np.float32))


def put_partition(connection: psycopg.Connection, table: str, dataset: str, name: str, version: str,
                  ids: np.ndarray, vectors: np.ndarray, rows: PartitionRows | None = None) -> None:
    """Replace a partition's vectors and its images' rows (lib/store/postgres_rows.py), and record its version
    and the rows' digest, in one transaction (bumping the generation).

    Binary COPY through psycopg's write_row: 150,000 rows of 512-d a second here, as fast as a COPY stream
    built by numpy (measured side by side), and a thousandth of the time the HNSW index then takes.
    """
    rows = rows or PartitionRows()
    with connection.transaction():
        connection.execute(sql.SQL("DELETE FROM {} WHERE partition = %s").format(sql.Identifier(table)), (name,))
        with connection.cursor().copy(sql.SQL("COPY {} (id, partition, embedding) FROM STDIN WITH (FORMAT BINARY)")
                                      .format(sql.Identifier(table))) as copy:
            copy.set_types(["int8", "text", "halfvec"])
            for image_id, vector in zip(np.asarray(ids, np.int64).tolist(), np.asarray(vectors, np.float32),
                                        strict=True):
                copy.write_row((image_id, name, HalfVector(vector)))
        _put_rows(connection, table, dataset, name, rows)
        connection.execute("UPDATE clipsearch_partitions SET version = %s, count = %s WHERE dataset = %s AND "
                           "name = %s", (version, len(ids), dataset, name))


def put_partition_rows(connection: psycopg.Connection, table: str, dataset: str, name: str,
                       rows: PartitionRows) -> None:
    """Replace a partition's rows whose vectors are unchanged, in one transaction (bumping the generation)."""
    with connection.transaction():
        _put_rows(connection, table, dataset, name, rows)


def _put_rows(connection: psycopg.Connection, table: str, dataset: str, name: str, rows: PartitionRows) -> None:
    put_rows(connection, images_table(table), name, rows)
    connection.execute("INSERT INTO clipsearch_partitions (dataset, name, version, count, rows_digest) "
                       "VALUES (%s, %s, '', 0, %s) ON CONFLICT (dataset, name) DO UPDATE SET "
                       "rows_digest = excluded.rows_digest", (dataset, name, rows.digest()))
    _bump(connection, dataset)


def drop_partition(connection: psycopg.Connection, table: str, dataset: str, name: str) -> None:
    """Remove a partition's rows and its version, in one transaction."""
    with connection.transaction():
        for held in (table, images_table(table)):
            connection.execute(sql.SQL("DELETE FROM {} WHERE partition = %s").format(sql.Identifier(held)), (name,))
        connection.execute("DELETE FROM clipsearch_partitions WHERE dataset = %s AND name = %s", (dataset, name))
        _bump(connection, dataset)


def _bump(connection: psycopg.Connection, dataset: str) -> None:
    connection.execute("UPDATE clipsearch_datasets SET generation = generation + 1 WHERE name = %s", (dataset,))


def versions(connection: psycopg.Connection, dataset: str) -> dict[str, str]:
    """The version of each partition the database holds for a dataset."""
    rows = connection.execute("SELECT name, version FROM clipsearch_partitions WHERE dataset = %s", (dataset,))
    return dict(rows.fetchall())


def digests(connection: psycopg.Connection, dataset: str) -> dict[str, str | None]:
    """The digest of each partition's rows the database holds (None: copied without them, by an older version)."""
    rows = connection.execute("SELECT name, rows_digest FROM clipsearch_partitions WHERE dataset = %s", (dataset,))
    return dict(rows.fetchall())


def set_version(connection: psycopg.Connection, dataset: str, name: str, version: str) -> None:
    """A partition's version changed without its content (its file written again from these same rows)."""
    with connection.transaction():
        connection.execute("UPDATE clipsearch_partitions SET version = %s WHERE dataset = %s AND name = %s",
                           (version, dataset, name))
        _bump(connection, dataset)


def graph_bytes(rows: int, dim: int, m: int) -> int:
    """The memory pgvector's HNSW build holds its graph in (hnswbuild.c, hnswutils.c), a quarter over: per
    vector its halfvec (2 bytes a dimension), 2m neighbours on layer 0 and about one more above (16 bytes
    each), and the element's header. With less the build writes the graph out and goes on on disk,
    "significantly" slower (pgvector's words): 1M x 512 at m 32 takes 2.2 GB, more than the 2 GB first set."""
    return int(1.25 * rows * (2 * dim + 16 * (2 * m + 1) + 160))


def ensure_hnsw(connection: psycopg.Connection, table: str, dataset: str, m: int, ef_construction: int) -> bool:
    """Build the dataset's HNSW index with these parameters if it has none with them (after a bulk load,
    which is faster than inserting into the graph row by row); record them. True when it was built now.

    An index with other parameters is replaced in the same transaction: the new one is built beside it
    (reads go on; writes wait) and the old one dropped at the end, so searches never go without one.
    `maintenance_work_mem` is set for the graph to fit (graph_bytes); if it still does not, pgvector's
    notice is logged as a warning.
    """
    wanted = HNSW_INDEX.format(table) + f"_{m}_{ef_construction}"
    held = [row[0] for row in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND "
                                                 "indexdef LIKE %s", (table, "%USING hnsw%")).fetchall()]
    if wanted in held:
        return False
    rows, dim = connection.execute(sql.SQL("SELECT count(*), (SELECT vector_dims(embedding) FROM {0} LIMIT 1) "
                                           "FROM {0}").format(sql.Identifier(table))).fetchone() or (0, 0)
    memory_kb = max(GRAPH_MEMORY_LEAST_KB, graph_bytes(rows, dim or 0, m) // 1024)
    notice = lambda diagnostic: log.warning("building %s: %s", wanted, diagnostic.message_primary)  # noqa: E731
    connection.add_notice_handler(notice)
    try:
        with connection.transaction():
            connection.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory_kb}kB")))
            connection.execute(sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding halfvec_ip_ops) "
                                       "WITH (m = {}, ef_construction = {})").format(
                sql.Identifier(wanted), sql.Identifier(table), sql.Literal(m), sql.Literal(ef_construction)))
            for old in held:
                connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(old)))
            connection.execute("UPDATE clipsearch_datasets SET hnsw_m = %s, hnsw_ef_construction = %s, "
                               "generation = generation + 1 WHERE name = %s", (m, ef_construction, dataset))
    finally:
        connection.remove_notice_handler(notice)
    return True


def record_tuning(connection: psycopg.Connection, dataset: str, ef_search: int, recall: float) -> None:
    with connection.transaction():
        connection.execute("UPDATE clipsearch_datasets SET ef_search = %s, recall = %s, generation = generation + 1 "
                           "WHERE name = %s", (ef_search, recall, dataset))
