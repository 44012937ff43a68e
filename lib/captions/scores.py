"""How well each caption of an image-caption CSV fits its image, and which other caption fits it better."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from lib.data.images import open_image
from lib.errors import CaptionTableError, UnreadableImageError
from lib.model.encoder import ClipEncoder

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "img", "url")
CAPTION_COLUMNS = ("caption", "text", "description", "title", "label")
ADDED_COLUMNS = ("similarity", "best_other_caption", "best_other_score", "error")


@dataclass
class PairsTable:
    """The CSV as read: its columns, its rows, and which columns hold the image and the caption."""

    fieldnames: list[str]
    rows: list[dict[str, str]]
    image_column: str
    caption_column: str


@dataclass
class ScoredPairs:
    table: PairsTable
    valid: list[int]  # rows whose image could be read, in order
    matrix: np.ndarray  # cosine of valid images x valid captions
    errors: dict[int, str] = field(default_factory=dict)

    def similarity(self, row: int) -> float | None:
        if row not in self.errors:
            at = self.valid.index(row)
            return float(self.matrix[at, at])
        return None


def _pick(fieldnames: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in fieldnames:
            raise CaptionTableError(f"{path} has no {what} column {wanted!r}; its columns are {', '.join(fieldnames)}")
        return wanted
    lowered = {name.strip().lower(): name for name in fieldnames}
    found = next((lowered[c] for c in candidates if c in lowered), None)
    if found is None:
        raise CaptionTableError(f"{path} has no {what} column (looked for {', '.join(candidates)}); its columns are "
                              f"{', '.join(fieldnames) or 'none'}; name yours with --{what}-column")
    return found


def read_pairs(path: Path, image_column: str | None = None, caption_column: str | None = None) -> PairsTable:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CaptionTableError(f"cannot read {path}: {err}") from None
    image = _pick(fieldnames, image_column, IMAGE_COLUMNS, "image", path)
    caption = _pick(fieldnames, caption_column, CAPTION_COLUMNS, "caption", path)
    if not rows:
        raise CaptionTableError(f"{path} has a header but no rows")
    return PairsTable(fieldnames, rows, image, caption)


def _load(path: Path) -> tuple[object | None, str]:
    try:
        return open_image(path), ""
    except UnreadableImageError as err:
        return None, str(err)


def score_pairs(encoder: ClipEncoder, table: PairsTable, images_dir: Path, batch_size: int = 64,
                progress: bool = True) -> ScoredPairs:
    """Encode every readable image and every caption in batches; rows with no image keep an error."""
    errors: dict[int, str] = {}
    valid: list[int] = []
    image_vectors = []
    bar = tqdm(total=len(table.rows), desc="scoring", unit="pair", disable=not progress)
    for start in range(0, len(table.rows), batch_size):
        batch, rows = [], []
        for row in range(start, min(start + batch_size, len(table.rows))):
            name = (table.rows[row].get(table.image_column) or "").strip()
            if not name:
                errors[row] = "no image named in this row"
                continue
            image, error = _load(images_dir / name)
            if image is None:
                errors[row] = error
            else:
                batch.append(image)
                rows.append(row)
        if batch:
            image_vectors.append(encoder.encode_images(batch, batch_size=batch_size))
            valid.extend(rows)
        bar.update(min(batch_size, len(table.rows) - start))
    bar.close()
    captions = [table.rows[row].get(table.caption_column) or "" for row in valid]
    text_vectors = encoder.encode_texts(captions) if captions else np.zeros((0, encoder.dim), np.float32)
    images = np.concatenate(image_vectors) if image_vectors else np.zeros((0, encoder.dim), np.float32)
    return ScoredPairs(table, valid, images @ text_vectors.T, errors)


def best_other(scored: ScoredPairs, row: int) -> tuple[str, float] | None:
    """The caption of another row that fits this row's image best, and its score."""
    if row in scored.errors or len(scored.valid) < 2:
        return None
    column = scored.table.caption_column
    captions = [scored.table.rows[r][column] for r in scored.valid]
    at = scored.valid.index(row)
    scores = np.where([c == captions[at] for c in captions], -np.inf, scored.matrix[at])
    other = int(np.argmax(scores))
    return (captions[other], float(scores[other])) if np.isfinite(scores[other]) else None


def write_output(scored: ScoredPairs, path: Path) -> None:
    """The input rows unchanged, with the similarity, the best other caption and any error added."""
    table = scored.table
    columns = table.fieldnames + [c for c in ADDED_COLUMNS if c not in table.fieldnames]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row, values in enumerate(table.rows):
            similarity, other = scored.similarity(row), best_other(scored, row)
            writer.writerow({**values,
                             "similarity": "" if similarity is None else f"{similarity:.6f}",
                             "best_other_caption": other[0] if other else "",
                             "best_other_score": f"{other[1]:.6f}" if other else "",
                             "error": scored.errors.get(row, "")})
