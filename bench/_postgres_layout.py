"""One table per dataset, or one table for every dataset with a dataset column: measured (issue 29).

The store keeps a table, and so an HNSW graph, per dataset. The other layout puts every dataset's rows in
one table and searches a dataset through `WHERE dataset = ...` on one shared graph. A dataset B that is a
few partitions of the benchmark's dataset A stands for a smaller dataset sharing A's table: its rows in A's
table, picked by a column's value (here `partition = ANY(...)`, the same kind of filter). Searched with the
same held-out queries, three ways:
- its own table and graph, as the store does (its own `hnsw.ef_search`, tuned when it was copied on its own
  vectors, and A's: the held-out queries come from every cluster of the mixture, most of them far from B's,
  which the tuning's own vectors are not);
- inside A's table through the shared graph, filtered, with pgvector's iterative scan (what the column gives);
- inside A's table by an exact scan of its rows through the column's b-tree.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.large_collection import build, recall, single
from lib.data.embeddings_folder import PATH_COLUMN, EmbeddingsPartWriter, read_embeddings
from lib.data.synthetic_vectors import CLASS_COLUMN
from lib.ingest.store_copy import copy_dataset
from lib.serve.index_set import load_index_set
from lib.serve.loaded_dataset import LoadedDataset
from lib.settings import Settings
from lib.store.postgres_pool import StorePool

PART = "part"  # dataset B's name


def write_subset(source: Path, target: Path, classes: list[str]) -> int:
    """The rows of `source` whose class is one of `classes`, as an embeddings folder of one part; their count."""
    value_set = pa.array(classes, pa.string())
    wanted = lambda chunk: pc.is_in(chunk.metadata.column(CLASS_COLUMN), value_set=value_set)  # noqa: E731
    columns = (PATH_COLUMN, CLASS_COLUMN)
    rows = sum(int(pc.sum(wanted(chunk)).as_py() or 0) for chunk in read_embeddings(source, columns=columns))
    writer = EmbeddingsPartWriter(target, 0, rows, next(read_embeddings(source)).vectors.shape[1])
    for chunk in read_embeddings(source, columns=columns):
        mask = wanted(chunk)
        writer.add(chunk.vectors[np.asarray(mask)], chunk.metadata.filter(mask))
    writer.close()
    return rows


def compare_layouts(root: Path, args: argparse.Namespace, settings: Settings, model, large: LoadedDataset,
                    chosen: list[str], queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Rows of the layouts table for B = the `chosen` partitions of `large` (A, served from the database),
    whose exact top 10 over those partitions is `truth`."""
    workspace = settings.workspace
    count = write_subset(root / "embeddings", root / "part", chosen)
    build(root / "part", workspace, args, PART)
    copied = copy_dataset(settings, PART)
    own_files = load_index_set(workspace / "indexes", workspace / "indexes_text", model.identity).datasets[PART]
    own_truth = own_files.search(queries, 10, exact=True)[1]
    pool = StorePool(settings.store, 1)
    try:
        own = load_index_set(workspace / "indexes", workspace / "indexes_text", model.identity,
                             pool=pool).datasets[PART]
        walk = copy.copy(large.index)
        walk.exact_below = 0  # through the graph however few rows the filter admits
        shared = {"exact": lambda q: large.index.search(q, 10, chosen, exact=True),
                  "graph": lambda q: walk.search(q, 10, chosen)}
        size = f"{count:,} of {large.index.count():,} vectors"
        rows = []
        for ef_search in sorted({copied.ef_search, large.index.ef_search}):  # its tuned one, and the shared graph's
            own.index.ef_search = ef_search
            rows.append({"layout": "a table per dataset (the store's)", "b": size,
                         "search": f"its own graph, ef_search {ef_search}", "graph_s": copied.hnsw_s,
                         "recall": recall(own.search(queries, 10)[1], own_truth),
                         "ms": single(lambda q: own.search(q, 10), queries)})
        for label, search in (("the shared graph, filtered, ef_search "
                               f"{large.index.ef_search}, iterative scan", shared["graph"]),
                              ("an exact scan of its rows (b-tree)", shared["exact"])):
            rows.append({"layout": "one table, a dataset column", "b": size, "search": label, "graph_s": None,
                         "recall": recall(search(queries)[1], truth), "ms": single(search, queries)})
    finally:
        pool.close()
    return rows


def print_layouts(rows: list[dict]) -> None:
    print("\n| layout | dataset B | searched by | B's own graph built in s | recall@10 | in-process ms |")
    print("|" + "---|" * 6)
    for r in rows:
        graph = "-" if r["graph_s"] is None else f"{r['graph_s']:.1f}"
        print(f"| {r['layout']} | {r['b']} | {r['search']} | {graph} | {r['recall']:.3f} | {r['ms']:.2f} |")
