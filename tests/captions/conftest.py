"""Pairs tables made from the tiny dataset: each image with its three captions, some rows with a caption of
another class injected, and a row whose image is missing; and one scoring run over them, shared."""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from lib.captions.options import ScoreOptions
from lib.captions.pairs import open_pairs
from lib.captions.pipeline import score_captions
from lib.data.synthetic import COLOURS, SHAPES

HEADER = ["id", "file", "text"]
MISSING = "train/nowhere/missing.JPEG"


@dataclass
class PairsTable:
    path: Path
    root: Path  # the images dir
    rows: list[list[str]]
    wrong: set[int]  # row numbers whose caption names another colour and another shape


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def wrong_caption(colour: str, shape: str, rng: random.Random) -> str:
    other_colour = rng.choice([c for c in COLOURS if c != colour])
    other_shape = rng.choice([s for s in SHAPES if s != shape])
    return f"a photo of a {other_colour} {other_shape}."


@pytest.fixture(scope="session")
def pairs_table(tmp_path_factory, tiny_dataset) -> PairsTable:
    root, images = tiny_dataset
    rng = random.Random(5)
    rows, wrong = [], set()
    for number, item in enumerate(images):
        path = item.path.relative_to(root).as_posix()
        rows.extend([str(len(rows)), path, caption] for caption in item.captions)
        if number % 9 == 4:
            wrong.add(len(rows))
            rows.append([str(len(rows)), path, wrong_caption(item.scene.colour, item.scene.shape, rng)])
    rows.append([str(len(rows)), MISSING, "a photo of nothing."])
    path = write_csv(tmp_path_factory.mktemp("pairs") / "pairs.csv", HEADER, rows)
    return PairsTable(path, root, rows, wrong)


@pytest.fixture(scope="session")
def scored_run(pairs_table, demo_encoder, tmp_path_factory):
    """The tiny pairs scored once with suggestions: (summary, output folder)."""
    out = tmp_path_factory.mktemp("scored")
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=out, suggest=3, progress=False, chunk_rows=50)
    summary = score_captions(open_pairs(pairs_table.path), demo_encoder, 32, 0, options)
    return summary, out
