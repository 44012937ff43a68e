"""The `store` setting's PostgreSQL database: connections, their one-line errors, the schema, the writer's lock.

The database holds, per dataset, one table of vectors (`clipsearch_vectors_<n>`: id, partition, a
`halfvec(dim)` with an HNSW index), beside it one of images (`clipsearch_images_<n>`: each image's catalog
row, text and words, lib/store/postgres_rows.py), and a row in `clipsearch_datasets` (its tables, dimension,
model identity, root, layout, HNSW parameters and tuned `ef_search`, and a `generation` every commit bumps);
`clipsearch_partitions` holds the version of each partition it has (the SHA-256 of the partition's exact file
in the index folder) and the digest of its rows, so a reader serves a partition only at the version the
catalog records. One table per dataset rather than one
with a dataset column: pgvector's HNSW index is one graph per index, and a dataset filter on a shared
graph either loses recall or needs iterative scans (bench/postgres_store.py measures the one we chose).

Errors become one line: a wrong URL, a refused login or a database without pgvector (>= 0.8) are a
StoreError; a database that cannot be reached, or that went away mid-query, a StoreUnavailableError, which
the API answers with 503 (lib/store/postgres_pool.py hands the server its connections).

Statements are never prepared (psycopg prepares one after 5 runs by default): a prepared statement's
generic plan does not know the query vector or the LIMIT, and chose a scan of every row over the HNSW
index, 53 ms instead of 1-5 ms a search at 100k vectors (measured through /search).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

from lib.errors import StoreError, StoreUnavailableError
from lib.store.identity import ModelIdentity
from lib.store.postgres_rows import add_missing_columns, create_images_table, images_table
from lib.store.records import DatasetRecord

URL_SCHEMES = ("postgresql://", "postgres://")
PGVECTOR_OLDEST = (0, 8)  # halfvec and HNSW over it came in 0.7, the iterative scans that searches set in 0.8
CONNECT_TIMEOUT_S = 5
DISK_FULL = "53100"  # SQLSTATE disk_full: a table or a temporary file could not grow

SCHEMA = """
CREATE TABLE IF NOT EXISTS clipsearch_datasets (
    name text PRIMARY KEY,
    vectors_table text UNIQUE NOT NULL,
    dim integer NOT NULL,
    model jsonb NOT NULL,
    hnsw_m integer,
    hnsw_ef_construction integer,
    ef_search integer,
    recall real,
    generation bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS clipsearch_partitions (
    dataset text NOT NULL REFERENCES clipsearch_datasets (name) ON DELETE CASCADE,
    name text NOT NULL,
    version text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (dataset, name)
);
CREATE SEQUENCE IF NOT EXISTS clipsearch_table_numbers;
"""
# Columns added since the first schema, given to a database that lacks them (lib/store/postgres_rows.py has the
# dataset tables' own): the dataset's catalog record and figures, and the digest of a partition's rows.
ADDED = {"clipsearch_datasets": [("root", "bytea"), ("layout", "text"), ("index_type", "text"),
                                 ("regions", "boolean"), ("reads_words", "boolean"), ("figures", "jsonb")],
         "clipsearch_partitions": [("rows_digest", "text")]}


def is_database(store: str) -> bool:
    """Whether a `store` setting names a PostgreSQL database (else it is `files`)."""
    return store.startswith(URL_SCHEMES)


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def database_error(err: psycopg.Error, url: str) -> StoreError:
    """One line for a psycopg error: unavailable (503 in the API) when the server is gone or unreachable."""
    first = _line(err, url)
    if getattr(err, "sqlstate", None) == DISK_FULL:  # an OperationalError too: the build goes on, copies later
        return StoreUnavailableError(f"the store database {shown(url)} has no space left on its disk ({first}): "
                                     "free space there and copy again (python -m lib.ingest.store_copy DATASET)")
    if isinstance(err, psycopg.OperationalError) and not _refused(first):
        return StoreUnavailableError(f"the store database {shown(url)} is not reachable: {first}")
    return StoreError(f"the store database {shown(url)} refused: {first}")


def _line(err: BaseException, url: str) -> str:
    """The error's first line, with the URL's password masked wherever psycopg quotes the URL."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0].replace(url, shown(url))


def _refused(message: str) -> bool:
    """An OperationalError that waiting will not cure: a login refused, a database that does not exist."""
    return any(words in message for words in ("password authentication failed", "does not exist",
                                              "no password supplied", "role", "invalid"))


def connect(url: str, autocommit: bool = False) -> psycopg.Connection:
    """A connection with pgvector's types registered; errors as StoreError (see database_error)."""
    try:
        connection = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=autocommit,
                                     prepare_threshold=None)
    except psycopg.ProgrammingError as err:
        raise StoreError(f"store is not a usable PostgreSQL URL ({shown(url)}): {_line(err, url)}") from None
    except psycopg.Error as err:
        raise database_error(err, url) from None
    try:
        prepare(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def prepare(connection: psycopg.Connection) -> None:
    """Check pgvector (creating the extension where allowed), create the schema, register the vector types."""
    with connection.transaction():
        available = connection.execute(
            "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available is None:
            raise StoreError("the store database has no pgvector extension; install pgvector >= 0.8 "
                             "(https://github.com/pgvector/pgvector) or use the packaged server (README)")
        if available[0] is None:
            try:
                connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege:
                raise StoreError("the store database lacks the pgvector extension, and this user may not create "
                                 "it: have its owner run CREATE EXTENSION vector") from None
        version = connection.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        if version is None or _version(version[0]) < PGVECTOR_OLDEST:
            raise StoreError(f"the store database's pgvector is {version and version[0]}; halfvec and HNSW "
                             f"need >= {'.'.join(map(str, PGVECTOR_OLDEST))} (ALTER EXTENSION vector UPDATE)")
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema"),))
        if connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm' "
                              "AND installed_version IS NULL").fetchone():
            try:
                with connection.transaction():  # a savepoint: a refusal leaves the rest standing
                    connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except psycopg.errors.InsufficientPrivilege:
                pass  # words read in pictures are then searched without their index (lib/store/postgres_rows.py)
        connection.execute(SCHEMA)
        for table, columns in ADDED.items():
            add_missing_columns(connection, table, columns)
    register_vector(connection)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def lock_key(what: str) -> int:
    """A stable 63-bit advisory lock key for a name (one dataset's writer, or the schema's creation)."""
    return int.from_bytes(hashlib.sha256(f"clipsearch:{what}".encode()).digest()[:8], "big") >> 1


@contextmanager
def writer_lock(connection: psycopg.Connection, dataset: str) -> Iterator[None]:
    """Hold the dataset's writer lock on this session for the block; a second writer is refused at once."""
    key = lock_key(f"writer:{dataset}")
    row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not (row and row[0]):
        raise StoreError(f"another build is writing dataset {dataset!r} into the store database; wait for it")
    try:
        yield
    finally:
        if not connection.closed:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


def vectors_table(connection: psycopg.Connection, dataset: str, dim: int, model: ModelIdentity) -> str:
    """The name of the dataset's table of images and their vectors, created (with its row in clipsearch_datasets)
    when it is new, given the columns it lacks when it is older; a dataset recorded with another model or
    dimension is refused."""
    with connection.transaction():
        row = connection.execute("SELECT vectors_table, model FROM clipsearch_datasets WHERE name = %s",
                                 (dataset,)).fetchone()
        if row is not None:
            ModelIdentity.from_dict(row[1]).check_same(model, f"dataset {dataset!r} in the store database")
            create_images_table(connection, images_table(str(row[0])))  # an older table: what it lacks
            return str(row[0])
        number = connection.execute("SELECT nextval('clipsearch_table_numbers')").fetchone()
        name = f"clipsearch_vectors_{number[0] if number else 0}"
        connection.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, partition text NOT NULL, "
                                   "embedding halfvec({}) NOT NULL)").format(sql.Identifier(name), sql.Literal(dim)))
        connection.execute(sql.SQL("CREATE INDEX ON {} (partition)").format(sql.Identifier(name)))
        create_images_table(connection, images_table(name))
        connection.execute("INSERT INTO clipsearch_datasets (name, vectors_table, dim, model) VALUES (%s, %s, %s, %s)",
                           (dataset, name, dim, json.dumps(model.to_dict())))
        return name


def record_dataset(connection: psycopg.Connection, record: DatasetRecord, reads_words: bool | None,
                   figures: dict[str, Any]) -> None:
    """The dataset's catalog record, whether its builds read words, and the figures recorded beside its catalog
    (lib/store/dataset_figures.py) in its row of clipsearch_datasets."""
    connection.execute("UPDATE clipsearch_datasets SET root = %s, layout = %s, index_type = %s, regions = %s, "
                       "reads_words = %s, figures = %s WHERE name = %s",
                       (None if record.root is None else os.fsencode(record.root), record.layout, record.index_type,
                        record.regions, reads_words, Jsonb(figures), record.name))


def record_figures(connection: psycopg.Connection, dataset: str, figures: dict[str, Any]) -> None:
    """The figures alone (calibration writes them after the build has copied the dataset)."""
    connection.execute("UPDATE clipsearch_datasets SET figures = %s WHERE name = %s", (Jsonb(figures), dataset))


def stored_record(row: dict[str, Any]) -> DatasetRecord:
    """The catalog record of a dataset from its row of clipsearch_datasets."""
    root = row["root"]
    return DatasetRecord(row["name"], None if root is None else Path(os.fsdecode(bytes(root))), row["layout"],
                         row["index_type"], ModelIdentity.from_dict(row["model"]), bool(row["regions"]))


def dataset_row(connection: psycopg.Connection, dataset: str) -> dict[str, Any] | None:
    """The dataset's row of clipsearch_datasets, by column name, or None."""
    cursor = connection.execute("SELECT * FROM clipsearch_datasets WHERE name = %s", (dataset,))
    row = cursor.fetchone()
    return None if row is None else dict(zip([c.name for c in cursor.description or ()], row, strict=True))


def dataset_bytes(connection: psycopg.Connection, dataset: str) -> tuple[int, int, int, int]:
    """(vectors' table with its TOAST, its indexes, images' table, its indexes) bytes of a dataset in the database."""
    row = connection.execute("SELECT vectors_table FROM clipsearch_datasets WHERE name = %s", (dataset,)).fetchone()
    if row is None:
        return 0, 0, 0, 0
    sizes = []
    for table in (row[0], images_table(row[0])):
        table_bytes, index_bytes = connection.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size("
                                                      "%s::regclass)", (table, table)).fetchone() or (0, 0)
        sizes += [int(table_bytes), int(index_bytes)]
    return sizes[0], sizes[1], sizes[2], sizes[3]


def create_database(url: str, name: str) -> None:
    """A new empty database on the server of `url` (whose user may create databases)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_dataset(connection: psycopg.Connection, dataset: str) -> None:
    """The dataset's table and rows gone from the database, in one transaction (a --rebuild starts over)."""
    with connection.transaction():
        row = connection.execute("DELETE FROM clipsearch_datasets WHERE name = %s RETURNING vectors_table",
                                 (dataset,)).fetchone()
        if row is not None:
            for table in (row[0], images_table(row[0])):
                connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
