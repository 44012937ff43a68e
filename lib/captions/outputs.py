"""The CSV files of a scoring run: output.csv (pass two over the rows), outliers.csv and suggestions.csv.

Each is written to a temporary name and renamed when complete, so a stopped run never leaves a file
that looks finished but is not.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from tqdm import tqdm

from lib.captions.encode import EncodedPairs
from lib.captions.pairs import PairsSource
from lib.captions.scores import Outliers, RowScores
from lib.captions.search import TopK

if TYPE_CHECKING:
    from _csv import Writer as CsvWriter  # what csv.writer returns

ADDED_COLUMNS = ("similarity", "best_other_caption", "best_other_score", "error", "rank_of_own_caption", "z")
OUTLIER_COLUMNS = ("image", "caption", "similarity", "best_other_caption", "best_other_score", "reason")
SUGGESTION_COLUMNS = ("query_kind", "query", "rank", "suggestion_kind", "suggestion", "score")


class Original(NamedTuple):
    """A row's image and caption exactly as the input has them."""

    image: str
    caption: str


@dataclass
class BestOther:
    """Per image: the best caption that is not one of its own (-1 where none), and its score."""

    caption: np.ndarray
    score: np.ndarray

    @classmethod
    def empty(cls, images: int) -> BestOther:
        return cls(np.full(images, -1, dtype=np.int64), np.full(images, np.nan, dtype=np.float32))


def number(value: float, digits: int = 6) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


@contextmanager
def staged_csv(path: Path, columns: tuple[str, ...] | list[str]) -> Iterator[CsvWriter]:
    """A csv writer to `path`'s temporary sibling, renamed to `path` when the block ends without error."""
    staging = path.with_name(path.name + ".partial")
    try:
        with open(staging, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            yield writer
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    staging.replace(path)


def added_values(encoded: EncodedPairs, scores: RowScores, best: BestOther, row: int) -> list[str]:
    """The values of ADDED_COLUMNS for one row."""
    error = encoded.error(row)
    if error or math.isnan(scores.similarity[row]):
        return ["", "", "", error, "", ""]
    other = int(best.caption[encoded.image_ids[row]])
    return [number(scores.similarity[row]), encoded.captions[other] if other >= 0 else "",
            number(best.score[encoded.image_ids[row]]), "", str(scores.rank[row]), number(scores.z[row], 3)]


def write_output(source: PairsSource, encoded: EncodedPairs, scores: RowScores, best: BestOther, path: Path,
                 chunk_rows: int, keep: set[int], progress: bool = True) -> dict[int, Original]:
    """Every input row with ADDED_COLUMNS; returns the original image and caption of the rows in `keep`."""
    columns = source.columns + [c for c in ADDED_COLUMNS if c not in source.columns]
    kept: dict[int, Original] = {}
    at = 0
    with staged_csv(path, columns) as writer, tqdm(total=encoded.rows, desc="writing output.csv", unit=" rows",
                                                   disable=not progress) as bar:
        for chunk in source.chunks(chunk_rows):
            for row in chunk:
                values = {**row, **dict(zip(ADDED_COLUMNS, added_values(encoded, scores, best, at), strict=True))}
                writer.writerow([values.get(c, "") for c in columns])
                if at in keep:
                    kept[at] = Original(row.get(source.image_column, ""), row.get(source.caption_column, ""))
                at += 1
            bar.update(len(chunk))
    return kept


def write_outliers(path: Path, outliers: Outliers, originals: dict[int, Original], encoded: EncodedPairs,
                   scores: RowScores, best: BestOther) -> None:
    with staged_csv(path, OUTLIER_COLUMNS) as writer:
        for row, reason in zip(outliers.rows, outliers.reasons, strict=True):
            image, caption = originals[int(row)]
            similarity, other, other_score = added_values(encoded, scores, best, int(row))[:3]
            writer.writerow([image, caption, similarity, other, other_score, reason])


class SuggestionWriter:
    """suggestions.csv, one line per suggestion: for an image the K best captions of the pool that are not
    its own, for a caption the K best images that are not its own, ranked 1..K with their scores."""

    def __init__(self, writer: CsvWriter, encoded: EncodedPairs) -> None:
        self.writer, self.encoded = writer, encoded
        self.written = 0

    def add(self, top: TopK, query_kind: str) -> None:
        """Write one batch of search results; `query_kind` is "image" (captions suggested) or "caption"."""
        queries, suggestions = ((self.encoded.images, self.encoded.captions) if query_kind == "image"
                                else (self.encoded.captions, self.encoded.images))
        suggestion_kind = "caption" if query_kind == "image" else "image"
        for query, ids, scores in zip(top.queries, top.ids, top.scores, strict=True):
            for rank, (found, score) in enumerate(zip(ids, scores, strict=True), start=1):
                if found >= 0:
                    self.writer.writerow([query_kind, queries[query], rank, suggestion_kind, suggestions[found],
                                          number(score)])
                    self.written += 1
