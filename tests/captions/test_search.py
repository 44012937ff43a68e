"""FAISS top-k that leaves out each query's own: the same answer as a dense search, in bounded batches."""
import numpy as np

from lib.captions import search
from lib.captions.search import OwnGroups, top_others


def unit(rng, rows, dim=16):
    vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def dense_answer(queries, pool, own, k):
    scores = queries @ pool.T
    for q, ids in own.items():
        scores[q, list(ids)] = -np.inf
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return best, np.take_along_axis(scores, best, 1)


def test_matches_a_dense_search_without_the_own_ones(monkeypatch):
    monkeypatch.setattr(search, "MAX_BATCH", 16)  # many batches, of different widths
    monkeypatch.setattr(search, "MAX_RESULTS", 400)
    rng = np.random.default_rng(0)
    queries, pool = unit(rng, 100), unit(rng, 300)
    own = {q: set(rng.choice(300, size=int(rng.integers(0, 6)), replace=False).tolist()) for q in range(100)}
    own[7] = set(range(0, 300, 2))  # one query owns half the pool
    pairs = np.array([(q, p) for q, ids in own.items() for p in ids])
    groups = OwnGroups.from_pairs(pairs[:, 0], pairs[:, 1], 100, 300)
    found = {}
    for top in top_others(queries, np.arange(100), pool, groups, 4):
        assert top.ids.shape == (len(top.queries), 4)
        found.update({int(q): (ids, scores) for q, ids, scores in zip(top.queries, top.ids, top.scores, strict=True)})
    best, scores = dense_answer(queries, pool, own, 4)
    assert sorted(found) == list(range(100))
    for q in range(100):
        assert list(found[q][0]) == list(best[q]) and np.allclose(found[q][1], scores[q], atol=1e-5)


def test_a_small_pool_pads_with_minus_one():
    rng = np.random.default_rng(1)
    queries, pool = unit(rng, 3), unit(rng, 4)
    groups = OwnGroups.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 3, 4)
    tops = list(top_others(queries, np.array([0, 2]), pool, groups, 3))
    ids = {int(q): list(row) for top in tops for q, row in zip(top.queries, top.ids, strict=True)}
    assert ids[0] == [3, -1, -1]
    assert ids[2] == list(dense_answer(queries, pool, {}, 3)[0][2])
    scores = {int(q): row for top in tops for q, row in zip(top.queries, top.scores, strict=True)}
    assert np.isnan(scores[0][1:]).all() and not np.isnan(scores[2]).any()
