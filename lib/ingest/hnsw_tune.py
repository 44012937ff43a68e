"""`hnsw.ef_search` tuned for a dataset in the store database, as nprobe is for IVF (lib/ingest/ivf_tune.py)."""
from __future__ import annotations

import numpy as np

from lib.settings import Settings
from lib.store.postgres_pool import StorePool
from lib.store.postgres_vectors import EF_SEARCH_MOST, PostgresVectors

EF_SEARCH_STEPS = (10, 20, 40, 80, 160, 320, 640, EF_SEARCH_MOST)
TUNING_QUERIES, K = 100, 10


def tune_ef_search(settings: Settings, table: str, dim: int, partitions: dict[str, str]) -> tuple[int, float]:
    """The smallest hnsw.ef_search of EF_SEARCH_STEPS whose recall@10 reaches target_recall, and that recall.

    The queries are the dataset's own vectors with their own match dropped from both lists, as for IVF's
    nprobe: a query that is itself in the graph is found more easily than one that is not (measured at 100k:
    recall 0.963 on own vectors counted whole, 0.947 on held-out queries, at the same ef_search).
    """
    pool = StorePool(settings.store, size=1)
    try:
        probe = PostgresVectors(pool, table, dict.fromkeys(partitions, 0), dim, EF_SEARCH_STEPS[0])
        own = probe.sample_ids(TUNING_QUERIES)
        if len(own) <= K + 1:
            return EF_SEARCH_STEPS[0], 1.0
        queries = probe.vectors(own)
        truth = [t[t != i][:K] for t, i in zip(probe.search(queries, K + 1, exact=True)[1], own, strict=True)]
        recall = 0.0
        for ef_search in EF_SEARCH_STEPS:
            probe.ef_search = ef_search
            found = [f[f != i][:K] for f, i in zip(probe.search(queries, K + 1)[1], own, strict=True)]
            recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
            if recall >= settings.target_recall:
                return ef_search, recall
        return EF_SEARCH_STEPS[-1], recall
    finally:
        pool.close()
