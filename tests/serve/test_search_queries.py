"""Issue 23 on the read side: composed queries, pages that continue exactly, the relevance cut-off, ranked lists."""
import numpy as np
import pytest

from lib.errors import QueryError
from lib.ingest.embeddings_import import import_embeddings
from lib.serve import ranking
from lib.serve.index_set import LiveIndexSet
from lib.serve.paged_search import SearchRequest
from lib.serve.query_terms import Term, parse_query, query_vector
from lib.serve.search import SearchService
from tests.conftest import held_out, ivf_settings


def service_of(settings, encoder) -> SearchService:
    return SearchService(encoder, LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, encoder.identity))


@pytest.fixture(scope="module")
def tiny(built_workspace, demo_encoder):
    return service_of(built_workspace, demo_encoder)


@pytest.mark.parametrize("query, terms", [
    ("red circle", [Term(1.0, "red circle")]),
    ("red circle - circle + square", [Term(1.0, "red circle"), Term(-1.0, "circle"), Term(1.0, "square")]),
    ("2:red + 0.5:img:12", [Term(2.0, "red"), Term(0.5, image_id=12)]),
    ("- red", [Term(-1.0, "red")]),
    ("t-shirt + black-and-white", [Term(1.0, "t-shirt"), Term(1.0, "black-and-white")]),
    ('"img:12" - "a - b"', [Term(1.0, "img:12"), Term(-1.0, "a - b")]),
    ("IMG:7", [Term(1.0, image_id=7)]),
])
def test_the_grammar(query, terms):
    assert parse_query(query) == terms


@pytest.mark.parametrize("query, words", [("red -", "term 2 is empty"), ("red + + blue", "term 2 is empty"),
                                          ("0:red", "weight 0.0"), ("1000:red", "weight 1000.0")])
def test_the_grammar_names_what_it_cannot_read(query, words):
    with pytest.raises(QueryError, match=words):
        parse_query(query)


def test_the_query_vector_is_the_normalised_weighted_sum():
    units = {"a": np.array([[3.0, 0.0]]), "b": np.array([[0.0, 0.5]])}
    vector = query_vector([Term(2.0, "a"), Term(-1.0, "b")], lambda term: units[term.text])
    np.testing.assert_allclose(vector, [[2 / np.sqrt(5), -1 / np.sqrt(5)]], rtol=1e-6)
    with pytest.raises(QueryError, match="cancel out"):
        query_vector([Term(1.0, "a"), Term(-1.0, "a")], lambda term: units[term.text])


def test_red_circle_minus_circle_plus_square_ranks_red_squares_first(tiny):
    page = tiny.search(SearchRequest(parse_query("red circle - circle + square"), k=2, dataset="tiny"))
    assert [hit.class_name for hit in page.hits] == ["red square", "red square"]
    plain = tiny.search(SearchRequest(parse_query("red circle"), k=2, dataset="tiny"))
    assert {hit.class_name for hit in plain.hits} == {"red circle"}


def test_an_indexed_image_as_a_term_finds_its_own_class(tiny):
    first = tiny.search(SearchRequest(parse_query("blue star"), k=1, dataset="tiny")).hits[0]
    page = tiny.search(SearchRequest(parse_query(f"img:{first.id}"), k=2, dataset="tiny"))
    assert page.hits[0].id == first.id and page.hits[0].score == pytest.approx(1.0, abs=1e-4)


def pages(service, query, k, **fields):
    """Every page of a query, read through next_offset."""
    offset, seen = 0, []
    while offset is not None:
        page = service.search(SearchRequest(parse_query(query), k=k, offset=offset, **fields))
        seen.append(page)
        offset = page.next_offset
        assert len(seen) < 1000
    return seen


def assert_continuous(found, whole):
    ids = [hit.id for page in found for hit in page.hits]
    scores = [hit.score for page in found for hit in page.hits]
    assert len(ids) == len(set(ids)), "a result shown twice"
    assert scores == sorted(scores, reverse=True)
    assert ids == whole


def test_pages_continue_each_other_exactly_on_a_flat_dataset(tiny):
    whole = [hit.id for hit in tiny.search(SearchRequest(parse_query("green ring"), k=72, dataset="tiny")).hits]
    found = pages(tiny, "green ring", 5, dataset="tiny")
    assert_continuous(found, whole)
    assert len(whole) == 72 and found[-1].next_offset is None and len(found) == 15


@pytest.fixture(scope="module")
def reranked(tmp_path_factory, mixture_folder, demo_encoder):
    """The 12,000-vector mixture through IVF with sq8 codes, re-ranked: it cannot page past RERANK_FLOOR alone."""
    settings = ivf_settings(tmp_path_factory.mktemp("sq8"), memory_budget="5M")
    import_embeddings(settings, demo_encoder, mixture_folder, class_column="class", progress=False)
    service = service_of(settings, demo_encoder)
    assert service.indexes.current().datasets["mix"].ivf.storage == "sq8"
    return service


def vector_terms(service, vector):
    """A query given as an indexed image's term: the mixture has no text, so queries are its own vectors."""
    dataset = service.indexes.current().datasets["mix"]
    _, ids = dataset.search(vector[None, :], 1, exact=True)
    return [Term(1.0, image_id=int(ids[0, 0]))]


@pytest.mark.parametrize("k", [7, 50])
def test_pages_continue_each_other_on_ivf_with_reranked_codes(reranked, k):
    for vector in held_out(3, seed=7):
        terms = vector_terms(reranked, vector)
        offset, ids, scores = 0, [], []
        while offset is not None and offset < 600:
            page = reranked.search(SearchRequest(terms, k=k, offset=offset, dataset="mix"))
            ids += [hit.id for hit in page.hits]
            scores += [hit.score for hit in page.hits]
            offset = page.next_offset
        assert len(ids) >= 600 and len(ids) == len(set(ids))
        assert scores == sorted(scores, reverse=True)
        # another worker, without the cache, gives the same pages
        fresh = SearchService(reranked.encoder, LiveIndexSet(reranked.indexes.indexes_dir,
                                                             reranked.indexes.indexes_text_dir,
                                                             reranked.encoder.identity))
        again = fresh.search(SearchRequest(terms, k=k, offset=(400 // k) * k, dataset="mix"))
        assert [hit.id for hit in again.hits] == ids[(400 // k) * k:(400 // k) * k + k]


def test_ranked_lists_grow_without_reordering():
    rng = np.random.default_rng(0)
    truth = rng.random(5000).astype(np.float32)

    def noisy(depth, exact):  # an approximate search: deeper ones find some results the shallower ones missed
        seen = rng.random(5000) < 0.9
        order = np.argsort(-np.where(seen, truth, -1))[:depth]
        return truth[order], np.where(truth[order] >= 0, order, -1)

    ranked = ranking.extend(None, noisy, 3000)
    assert len(ranked) >= 3000 and len(set(ranked.ids.tolist())) == len(ranked)
    assert np.all(np.diff(ranked.scores) <= 0)


def test_the_cache_keeps_lists_for_a_while():
    now = [0.0]
    calls = []

    def search(depth, exact):
        calls.append(depth)
        return (1 - np.arange(depth) / 1e6).astype(np.float32), np.arange(depth)

    lists = ranking.RankedLists(seconds=10, size=2, clock=lambda: now[0])
    lists.get("q", search, 150)
    lists.get("q", search, 150)
    assert calls == [100, 200]
    now[0] = 30
    lists.get("q", search, 10)
    assert calls == [100, 200, 100]
    small = ranking.RankedLists(results=250)
    small.get("a", search, 150)  # 300 results
    small.get("b", search, 10)  # 100 more: "a" goes
    small.get("a", search, 10)
    assert calls[-4:] == [100, 200, 100, 100]


def test_auto_cutoff_finds_the_gap():
    scores = np.concatenate([np.linspace(0.9, 0.8, 20), np.linspace(0.5, 0.1, 400)]).astype(np.float32)
    assert ranking.auto_cutoff(scores, 2000) == pytest.approx(0.65)
    assert ranking.auto_cutoff(scores[:3], 2000) is None


def test_min_score_and_auto_cutoff_end_the_pages(tiny):
    page = tiny.search(SearchRequest(parse_query("yellow triangle"), k=50, dataset="tiny", min_score=0.3))
    assert all(hit.score >= 0.3 for hit in page.hits) and page.cutoff_score == 0.3
    assert page.relevant == len(page.hits) and page.next_offset is None
    auto = tiny.search(SearchRequest(parse_query("yellow triangle"), k=50, dataset="tiny", cutoff="auto"))
    assert auto.cutoff_score is not None and 4 <= len(auto.hits) < 72
    assert all(hit.score >= auto.cutoff_score for hit in auto.hits)
    assert {hit.class_name for hit in auto.hits[:2]} == {"yellow triangle"}


@pytest.mark.parametrize("fields, words", [
    (dict(terms=[]), "at least one term"),
    (dict(terms=[Term(float("nan"), "red")]), "weight nan"),
    (dict(terms=[Term(1.0, "red")], mode="text", min_score=0.2), "mode"),
])
def test_bad_requests_name_the_field(tiny, fields, words):
    with pytest.raises(QueryError, match=words):
        tiny.search(SearchRequest(k=5, dataset="tiny", **fields))


@pytest.fixture(scope="module")
def held_out_demo(tmp_path_factory, model_cache):
    """The demo data of a seed the model did not train on, 10 images a class (360), built with the demo model."""
    from argparse import Namespace

    from bench.search_relevance import built
    from tests.helpers import share_model_cache

    tmp = tmp_path_factory.mktemp("relevance")
    workspace = share_model_cache(tmp / "workspace", model_cache)
    return built(tmp / "demo", workspace, Namespace(seed=2024, per_class=10, model="demo"))[:2]


@pytest.mark.slow
def test_the_auto_cutoff_keeps_the_relevant_images(held_out_demo):
    """Issue 23's floor for colour+shape queries (precision >= 0.85, recall >= 0.7 averaged); measured 0.887 and
    0.989 here (bench.search_relevance: 0.932 / 0.974 on 1,800 images)."""
    from bench.search_relevance import kept, precision_recall, queries

    service, sizes = held_out_demo
    found = {kind: [] for kind in ("colour+shape", "colour", "shape")}
    for kind, query, relevant in queries():
        found[kind].append(precision_recall(kept(service, query, cutoff="auto"), relevant, sizes))
    precision, recall = np.mean(found["colour+shape"], axis=0)
    assert precision >= 0.85 and recall >= 0.7
    for kind in ("colour", "shape"):
        precision, recall = np.mean(found[kind], axis=0)
        assert precision >= 0.8 and recall >= 0.8, kind


@pytest.mark.parametrize("scan_below", [0, 10**9])  # faiss's id selector with more lists probed, or a subset scan
def test_a_filter_is_applied_inside_the_search(ivf_workspace, demo_encoder, monkeypatch, scan_below):
    from lib.store import dataset_index
    from tests.conftest import recall_at_10

    monkeypatch.setattr(dataset_index, "SUBSET_SCAN", scan_below)
    dataset = service_of(ivf_workspace, demo_encoder).indexes.current().datasets["mix"]
    every = dataset.order.ids
    among = np.sort(np.random.default_rng(3).choice(every, len(every) // 5, replace=False))
    queries = held_out(50, seed=11)
    _, found = dataset.search(queries, 10, among=among)
    assert np.isin(found, among).all() and (found >= 0).all()  # every page full, only admitted images
    vectors = dataset.index.exact.vectors(among)
    truth = among[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    assert recall_at_10(found, truth) >= (0.999 if scan_below else 0.9)
    chosen = sorted(dataset.partitions)[:3]
    _, found = dataset.search(queries, 10, chosen, among=among)
    held = dataset.held(among, chosen)
    assert np.isin(found[found >= 0], held).all() and len(held) < len(among)
