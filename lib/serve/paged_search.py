"""A search as people ask for it: a composed query, one page of it, a relevance cut-off, filters, an order.

The request (`SearchRequest`) names the page by `offset` and `k`; results come from one ranked list per
query (lib/serve/ranking.py), so pages continue each other exactly. `min_score` and `cutoff="auto"` end
the list where relevance ends; filters (capture date, folder, pixel size) are applied inside the search
(lib/serve/index_set.LoadedDataset.search: `among`); `sort` orders the relevant results by capture time;
`mode` ranks by CLIP, by the words of names and captions (the catalog's FTS5 table), or fuses both.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from lib.errors import QueryError
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.query_terms import Term, check_terms, query_vector, texts_of
from lib.serve.ranking import (
    BASE_DEPTH,
    CUTOFF_DEPTH,
    CUTOFF_SHARE,
    FUSION_DEPTH,
    Ranked,
    auto_cutoff,
    date_order,
    fuse,
    kept_count,
)
from lib.serve.video_groups import VideosOf, entry_groups, grouped_list, one_per_video
from lib.store.catalog_words import substrings
from lib.store.names import fold
from lib.store.records import ImageWords

if TYPE_CHECKING:
    from lib.serve.search import SearchHit, SearchService

Sort = Literal["relevance", "newest", "oldest"]
Mode = Literal["clip", "text", "hybrid"]


@dataclass(frozen=True)
class SearchFilters:
    """What a result must be besides relevant; applied inside the search (lib/store/catalog.filtered_ids)."""

    date_from_ns: int | None = None
    date_to_ns: int | None = None
    folder: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    ocr: str | None = None  # words the text read in the picture must hold (lib/store/catalog_words.py)

    def given(self) -> bool:
        return self.catalog_given() or self.ocr is not None

    def catalog_given(self) -> bool:
        return any(value is not None for value in (self.date_from_ns, self.date_to_ns, self.folder,
                                                   self.min_width, self.min_height))


@dataclass(frozen=True)
class SearchRequest:
    """One page of a search: the query as terms, the page, the cut-off, filters, order and mode."""

    terms: Sequence[Term]
    k: int
    offset: int = 0
    dataset: str | None = None
    partitions: Sequence[str] | None = None
    exact: bool = False
    min_score: float | None = None
    cutoff: Literal["auto"] | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    sort: Sort = "relevance"
    mode: Mode = "clip"
    uploads: Sequence[Image.Image] = ()
    group_videos: bool = False  # one result per video: its best scene (lib/serve/video_groups.py)


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_offset: int | None  # where the next page starts; None on the last page
    cutoff_score: float | None  # the score results had to reach (min_score's, the auto cut-off's, the higher)
    relevant: int | None  # how many results there are in all, where that is known


def page_fields(page: SearchPage, query: str | None, asked: SearchRequest) -> dict:
    """The fields of an answer about its page, as the API (which adds links to each hit) and `search.py --json`
    give them."""
    return {"query": query, "parsed": [term.to_dict() for term in asked.terms], "offset": asked.offset,
            "next_offset": page.next_offset,
            "cutoff_score": None if page.cutoff_score is None else round(page.cutoff_score, 6),
            "relevant": page.relevant, "sort": asked.sort, "mode": asked.mode}


def parse_instant(text: str, end_of_day: bool = False) -> int:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as ns since the epoch; with
    `end_of_day`, a bare date means the last instant of that day (a `date_to` takes the whole day)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(f"{text!r} is not an ISO 8601 date or date-time, such as 2024-05-31 or "
                         "2024-05-31T18:30:00") from None
    if end_of_day and len(text.strip()) <= 10:
        moment += timedelta(days=1) - timedelta(microseconds=1)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def iso_time(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")



def with_text_matches(hit: SearchHit, words: ImageWords | None, asked: list[str], filtered: list[str]) -> SearchHit:
    """The hit with the boxes of its read text that hold a word of the query, when its text holds them all (it
    matched by text), or a word of the `ocr` filter (which it passed)."""
    if words is None or not words.boxes:
        return hit
    text = fold(words.text)
    wanted = (asked if asked and all(word in text for word in asked) else []) + filtered
    boxes = tuple(box for box in words.boxes if any(word in fold(box.text) for word in wanted))
    return replace(hit, text_matches=boxes) if boxes else hit


def grown_through(lists: Callable[[int], Ranked], start: int, threshold: float, up_to: int | None = None) -> Ranked:
    """A query's ranked list of at least `start` results, grown until its last score falls below `threshold`
    (so that it holds every result that reaches it), it is complete, or it holds `up_to` results."""
    found = lists(start)
    while not found.complete and len(found) and found.scores[-1] >= threshold and (up_to is None or len(found) < up_to):
        found = lists(len(found) + 1)
    return found


class PagedSearch:
    """One request's search over a SearchService's encoder, index set and catalog."""

    def __init__(self, service: SearchService) -> None:
        self.service = service

    def search(self, asked: SearchRequest) -> SearchPage:
        """One page of results of a composed query (lib/serve/query_terms.py), ranked by CLIP, by the text
        of names, captions and words read in the pictures, or both fused; cut where relevance ends when asked,
        filtered inside the search, in relevance or date order. Pages continue each other exactly
        (lib/serve/ranking.py). A hit whose read text matched carries the matching boxes."""
        page = self._search(asked)
        asked_words = substrings(" ".join(texts_of(asked.terms))) if asked.mode != "clip" else []
        filter_words = substrings(asked.filters.ocr or "")
        if not (asked_words or filter_words) or not page.hits:
            return page
        words = self.service.catalog().words_of(hit.id for hit in page.hits)
        return replace(page, hits=[with_text_matches(hit, words.get(hit.id), asked_words, filter_words)
                                   for hit in page.hits])

    def _search(self, asked: SearchRequest) -> SearchPage:
        check_terms(asked.terms)
        if asked.mode == "text" and (asked.min_score is not None or asked.cutoff is not None):
            raise QueryError("mode: min_score and cutoff apply to CLIP's scores, not to mode 'text'")
        dataset = self.service.dataset_named(self.service.indexes.current(), asked.dataset)
        self.service.check_partitions(dataset, asked.partitions)
        if not dataset.partitions:
            return SearchPage([], None, None, 0)
        among = self._filtered(dataset, asked.filters)
        threshold = asked.min_score
        lists: Callable[[int], Ranked] | None = None
        if asked.mode != "text":
            vector = query_vector(asked.terms, lambda term: self.service.term_vector(term, asked.uploads))
            # the ocr filter's ids grow as a build commits words, without a new index set: they are part of the key
            read = None
            if asked.filters.ocr is not None and among is not None:
                read = hashlib.blake2b(among.tobytes(), digest_size=16).digest()
            key = (vector.tobytes(), tuple(asked.partitions or ()), asked.exact, asked.filters, read)
            searched = len(among) if among is not None else dataset.count

            def search_depth(depth: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
                scores, ids = dataset.search(vector, depth, asked.partitions, asked.exact or exact, among)
                return scores[0], ids[0]

            def lists(count: int) -> Ranked:
                return dataset.ranked.get(key, search_depth, count)

            if asked.cutoff == "auto":
                window = min(CUTOFF_DEPTH, int(searched * CUTOFF_SHARE))
                cutoff = auto_cutoff(lists(window + 1).scores, searched)
                if cutoff is not None:
                    threshold = cutoff if threshold is None else max(threshold, cutoff)
        if asked.mode == "text":
            scores, ids = self._text_ranked(dataset, asked, among)
        elif asked.mode == "hybrid":
            assert lists is not None
            clip = lists(FUSION_DEPTH)
            clip_ids = clip.ids[:kept_count(clip, threshold)] if threshold is not None else clip.ids
            scores, ids = fuse([clip_ids] + [ids for _, ids in self._text_lists(dataset, asked, among) if len(ids)])
        else:
            scores, ids = None, None
        groups = self._grouping(asked, dataset)
        if scores is not None and ids is not None and groups is not None:
            scores, ids = one_per_video(scores, ids, groups)
        if asked.sort != "relevance":
            return self._by_date(asked, threshold, lists if ids is None else None, scores, ids, groups)
        if ids is not None:
            assert scores is not None
            return self._page(asked, scores, ids, complete=True, threshold=None)
        assert lists is not None
        wanted = asked.offset + asked.k + 1

        def grow(count: int) -> Ranked:
            assert lists is not None
            return lists(count) if threshold is None else grown_through(lists, count, threshold, up_to=count)

        found = grouped_list(grow, wanted, threshold, groups) if groups is not None else grow(wanted)
        return self._page(asked, found.scores, found.ids, found.complete, threshold)

    def _page(self, asked: SearchRequest, scores: np.ndarray, ids: np.ndarray, complete: bool,
              threshold: float | None) -> SearchPage:
        end = len(ids) if threshold is None else int(np.searchsorted(-scores, -threshold, side="right"))
        cut = threshold is not None and end < len(ids)
        page = list(zip(ids[asked.offset:min(end, asked.offset + asked.k)].tolist(),
                        scores[asked.offset:min(end, asked.offset + asked.k)].tolist(), strict=True))
        more = asked.offset + asked.k < end or (not complete and not cut)
        known = end if complete or cut else None
        return SearchPage(self.service.hits(page), asked.offset + asked.k if more else None, threshold, known)

    def _by_date(self, asked: SearchRequest, threshold: float | None, lists: Callable[[int], Ranked] | None,
                 scores: np.ndarray | None, ids: np.ndarray | None, groups: VideosOf | None) -> SearchPage:
        """The relevant results (the cut-off's or min_score's, else the first k x 10) by capture time."""
        if ids is None:
            assert lists is not None
            if threshold is None:
                found = lists(asked.k * 10)
                scores, ids = found.scores[:asked.k * 10], found.ids[:asked.k * 10]
            else:
                found = grown_through(lists, BASE_DEPTH, threshold)
                end = kept_count(found, threshold)
                scores, ids = found.scores[:end], found.ids[:end]
        elif asked.mode == "hybrid":
            assert scores is not None
            scores, ids = scores[:asked.k * 10], ids[:asked.k * 10]
        assert scores is not None
        if groups is not None and lists is not None:
            scores, ids = one_per_video(scores, ids, groups)
        records = self.service.records(ids.tolist())
        taken = np.array([r.captured_ns if (r := records.get(i)) is not None else 0 for i in ids.tolist()], np.int64)
        order = date_order(ids, scores, taken, asked.sort == "newest")
        page = order[asked.offset:asked.offset + asked.k]
        hits = self.service.hits([(int(ids[p]), float(scores[p])) for p in page], records)
        more = asked.offset + asked.k < len(ids)
        return SearchPage(hits, asked.offset + asked.k if more else None, threshold, len(ids))

    def _grouping(self, asked: SearchRequest, dataset: LoadedDataset) -> VideosOf | None:
        """A video's scenes with `group_videos`; with --regions, a picture's rows (lib/serve/video_groups.py)."""
        return entry_groups(self.service.records, asked.group_videos, dataset.record.regions)

    def _filtered(self, dataset: LoadedDataset, filters: SearchFilters) -> np.ndarray | None:
        """The ids that pass the filters (None: no filter given)."""
        catalog, name = self.service.catalog(), dataset.record.name
        passed = None
        if filters.catalog_given():
            passed = catalog.filtered_ids(name, date_from_ns=filters.date_from_ns, date_to_ns=filters.date_to_ns,
                                          folder=filters.folder, min_width=filters.min_width,
                                          min_height=filters.min_height)
        if filters.ocr is not None:
            if not substrings(filters.ocr):
                raise QueryError("ocr: give a word of three letters or more to find in the pictures' text")
            worded = catalog.words_matching_ids(name, filters.ocr)
            passed = worded if passed is None else np.intersect1d(passed, worded, assume_unique=True)
        return passed

    def _text_lists(self, dataset: LoadedDataset, asked: SearchRequest, among: np.ndarray | None
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The images whose names or captions hold the query's words (its positive text terms), and those whose
        read text does, each best first, within the chosen partitions and the filters."""
        texts = texts_of(asked.terms)
        if not texts:
            raise QueryError("mode: a text match needs a text term of positive weight")
        catalog, name, text = self.service.catalog(), dataset.record.name, " ".join(texts)
        ranked = []
        for found in (catalog.text_search(name, text, FUSION_DEPTH), catalog.words_search(name, text, FUSION_DEPTH)):
            ids = np.array([i for i, _ in found], np.int64)
            scores = np.array([s for _, s in found], np.float32)
            held = np.isin(ids, dataset.held(ids, asked.partitions))
            if among is not None:
                held &= np.isin(ids, among)
            ranked.append((scores[held], ids[held]))
        return ranked

    def _text_ranked(self, dataset: LoadedDataset, asked: SearchRequest, among: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The images whose names, captions or read text hold the query's words: one ranking, or the two fused
        when the words were found in pictures."""
        (names_scores, names), (_, words) = self._text_lists(dataset, asked, among)
        return fuse([names, words]) if len(words) else (names_scores, names)

