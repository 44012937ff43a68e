"""lib.serve.search over the built demo workspace: merged top-k across partitions equals brute force."""
import numpy as np
import pytest

from lib.serve.index_set import LiveIndexSet
from lib.serve.search import SearchService


@pytest.fixture(scope="module")
def service(built_workspace, demo_encoder):
    live = LiveIndexSet(built_workspace.indexes_dir, built_workspace.indexes_text_dir, demo_encoder.identity)
    return SearchService(demo_encoder, live)


def brute_force(dataset, query, names, k):
    ids, vectors = zip(*dataset.index.blocks(names), strict=True)
    scores = np.concatenate(vectors) @ query[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return list(np.concatenate(ids)[order]), scores[order]


@pytest.mark.parametrize("query", ["red circle", "two small blue stars", "checkered"])
def test_top_k_over_all_or_some_partitions_is_exact(service, demo_encoder, query):
    dataset = service.indexes.current().datasets["tiny"]
    vector = demo_encoder.encode_texts([query])
    names = sorted(dataset.partitions)
    for chosen in (None, names[::5], [names[3]]):
        want_ids, want_scores = brute_force(dataset, vector, chosen or names, 7)
        hits = service.search_text(query, 7, "tiny", chosen)
        np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-5)
        assert {h.id for h in hits} == set(want_ids) or len(set(np.round(want_scores, 5))) < len(want_scores)
        assert all(h.partition in (chosen or names) for h in hits)


def test_similar_excludes_the_query_and_ranks_the_rest(service):
    dataset = service.indexes.current().datasets["tiny"]
    query_id = int(dataset.index.ids_of(next(iter(dataset.partitions)))[0])
    hits = service.similar(10, image_id=query_id)
    assert query_id not in [h.id for h in hits] and len(hits) == 10
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
