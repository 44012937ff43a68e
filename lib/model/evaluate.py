"""Measure a model on a freshly generated held-out synthetic set: zero-shot accuracy and retrieval quality.

    python -m lib.model.evaluate --model demo --seed 7     (or python -m lib.evaluate)
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from lib.cli import new_parser, run
from lib.data.images import open_image
from lib.data.synthetic import COLOURS, SHAPES, class_names, generate_dataset
from lib.model.encoder import ClipEncoder
from lib.model.backends import BACKENDS, PRECISIONS
from lib.model.loading import load_encoder
from lib.settings import load_settings

DEFAULT_TEMPLATE = "a photo of a {}."


class Scores(NamedTuple):
    zero_shot_top1: float
    precision_at_10: float
    map: float
    attribute_precision_at_10: float
    attribute_map: float


def average_precision(ranking: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranked list: `ranking` holds item indices best first, `relevant` a boolean per item."""
    hits = relevant[ranking]
    if not hits.any():
        return 0.0
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.mean())


def retrieval_scores(query_vectors: np.ndarray, image_vectors: np.ndarray, relevant: np.ndarray,
                     k: int = 10) -> tuple[float, float]:
    """Mean precision@k and mean AP of text queries over images; relevant[q, i] says image i answers query q."""
    rankings = np.argsort(-(query_vectors @ image_vectors.T), axis=1, kind="stable")
    precisions = [relevant[q, rankings[q, :k]].mean() for q in range(len(rankings))]
    aps = [average_precision(rankings[q], relevant[q]) for q in range(len(rankings))]
    return float(np.mean(precisions)), float(np.mean(aps))


def score(encoder: ClipEncoder, image_vectors: np.ndarray, labels: Sequence[str],
          template: str = DEFAULT_TEMPLATE) -> Scores:
    """All the figures for images of known class ("<colour> <shape>") already embedded."""
    names = class_names()
    label_index = np.array([names.index(label) for label in labels])
    prompts = encoder.encode_texts([template.format(name) for name in names])
    zero_shot = float((np.argmax(image_vectors @ prompts.T, axis=1) == label_index).mean())
    class_relevant = label_index[None, :] == np.arange(len(names))[:, None]
    p10, mean_ap = retrieval_scores(encoder.encode_texts(names), image_vectors, class_relevant)
    attributes = [*COLOURS, *SHAPES]
    attribute_relevant = np.array([[attribute in label.split() for label in labels] for attribute in attributes])
    attribute_p10, attribute_map = retrieval_scores(encoder.encode_texts(attributes), image_vectors,
                                                    attribute_relevant)
    return Scores(zero_shot, p10, mean_ap, attribute_p10, attribute_map)


def evaluate(encoder: ClipEncoder, seed: int, per_class: int = 20, batch_size: int = 128) -> Scores:
    """Generate a held-out set with this seed in a temporary folder, embed it and score it."""
    with tempfile.TemporaryDirectory(prefix="clip-eval-") as tmp:
        images = generate_dataset(Path(tmp), seed=seed, per_class=per_class)
        vectors = encoder.encode_images([open_image(item.path) for item in images], batch_size=batch_size)
    return score(encoder, vectors, [item.scene.class_name for item in images])


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser("Evaluate a CLIP model on a held-out synthetic set.")
    parser.add_argument("--model", default="demo", help="model spec (demo, a folder, a Hugging Face id)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the held-out set")
    parser.add_argument("--per-class", type=int, default=20, help="held-out images per class")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="what runs the encoder: auto is OpenVINO on CPU, PyTorch on CUDA")
    return parser


def report(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    encoder = load_encoder(args.model, precision=args.precision, backend=args.backend,
                           cache_dir=load_settings().cache_dir)
    scores = evaluate(encoder, args.seed, args.per_class)
    print(f"held-out set: seed {args.seed}, {args.per_class} images x {len(class_names())} classes")
    print(f"zero-shot top-1 accuracy        {scores.zero_shot_top1:.3f}")
    print(f"class query precision@10 / mAP  {scores.precision_at_10:.3f} / {scores.map:.3f}")
    print(f"attribute precision@10 / mAP    {scores.attribute_precision_at_10:.3f} / {scores.attribute_map:.3f}")
    print(f"time                            {time.perf_counter() - started:.1f} s")
    print(json.dumps(scores._asdict()))


def main(argv: list[str] | None = None) -> None:
    run("evaluate", make_parser(), report, argv)


if __name__ == "__main__":
    main()
