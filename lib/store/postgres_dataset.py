"""A dataset's vectors opened in the store database for the server, checked against its catalog.

A partition is served from the database only at the version the catalog records (the SHA-256 of its
exact file); one the database lacks, or holds at another version (a build whose copy has not finished), is
left out with why, as a damaged file is in the files store, until the copy catches up. A dataset the
database does not have, or has with another model, is left out whole.
"""
from __future__ import annotations

from lib.store.catalog import DatasetRecord, PartitionRecord
from lib.store.identity import ModelIdentity
from lib.store.postgres import dataset_row
from lib.store.postgres_pool import StorePool
from lib.store.postgres_vectors import PostgresVectors, versions

COPY_HINT = "build it again with this store, or run python -m lib.ingest.store_copy {name}"


def open_postgres(pool: StorePool, record: DatasetRecord, partitions: list[PartitionRecord]
                  ) -> tuple[PostgresVectors | None, dict[str, PartitionRecord], dict[str, str]]:
    """(the vectors, the partitions served, what is left out -> why); no vectors when the database lacks the
    dataset. Raises IndexMismatchError when it holds the dataset from another model."""
    name = record.name
    with pool.connection() as connection:
        row, held = dataset_row(connection, name), versions(connection, name)
    if row is None:
        return None, {}, {f"dataset {name}": "the store database does not hold it; " + COPY_HINT.format(name=name)}
    ModelIdentity.from_dict(row["model"]).check_same(record.model, f"dataset {name!r} in the store database")
    served, left = {}, {}
    for partition in partitions:
        version = held.get(partition.name)
        if version == partition.index_sha256:
            served[partition.name] = partition
        else:
            state = "does not hold it" if version is None else "holds another version of it"
            left[f"partition {name}/{partition.name}"] = (f"the store database {state}; its {partition.count} images "
                                                          f"are left out of search until then; "
                                                          + COPY_HINT.format(name=name))
    vectors = PostgresVectors(pool, row["vectors_table"], {p: served[p].count for p in served}, record.model.dim,
                              row["ef_search"] or 40)
    return vectors, served, left


def store_generations(pool: StorePool) -> tuple[tuple[str, int], ...]:
    """Each dataset's generation in the database: a reader reloads when it changes."""
    with pool.connection() as connection:
        return tuple(connection.execute("SELECT name, generation FROM clipsearch_datasets ORDER BY name").fetchall())

