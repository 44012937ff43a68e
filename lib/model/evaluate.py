"""Measure a model: on a freshly generated held-out synthetic set, or on an indexed dataset's own class folders.

    python -m lib.model.evaluate --model demo --seed 7     (or python -m lib.evaluate)
    python -m lib.model.evaluate --dataset photos [--model SPEC]

Both report zero-shot top-1/top-5 accuracy over the class names (with the prompt templates in use),
text-to-image precision@10 and mAP with each class name as the query, and image-to-image recall@10
(same class relevant), then a JSON line. On a dataset the figures are recorded beside its index set.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lib.cli import new_parser, run
from lib.data.images import open_image
from lib.data.synthetic import COLOURS, SHAPES, class_names, generate_dataset
from lib.model.encoder import ClipEncoder
from lib.model.loading import encoder_for
from lib.model.metrics import ClassFigures, class_figures, retrieval_scores
from lib.model.prompts import DEFAULT_TEMPLATES, read_templates
from lib.settings import add_settings_arguments, settings_from_args

# The figures of any class-labelled set, plus the synthetic set's attribute queries ("red", "star").
# (built from ClassFigures' fields so that the two cannot drift; mypy cannot follow a computed field list)
Scores = NamedTuple("Scores", [*ClassFigures.__annotations__.items(),  # type: ignore[misc]
                               ("attribute_precision_at_10", float), ("attribute_map", float)])


def score(encoder: ClipEncoder, image_vectors: np.ndarray, labels: Sequence[str],
          templates: Sequence[str] = DEFAULT_TEMPLATES) -> Scores:
    """All the figures for images of known class ("<colour> <shape>") already embedded."""
    names = class_names()
    label_index = np.array([names.index(label) for label in labels])
    figures = class_figures(encoder, image_vectors, label_index, names, templates)
    attributes = [*COLOURS, *SHAPES]
    attribute_relevant = np.array([[attribute in label.split() for label in labels] for attribute in attributes])
    attribute_p10, attribute_map = retrieval_scores(encoder.encode_texts(attributes), image_vectors,
                                                    attribute_relevant)
    return Scores(*figures, attribute_p10, attribute_map)  # type: ignore[call-arg]


def evaluate(encoder: ClipEncoder, seed: int, per_class: int = 20, batch_size: int = 128,
             templates: Sequence[str] = DEFAULT_TEMPLATES) -> Scores:
    """Generate a held-out set with this seed in a temporary folder, embed it and score it."""
    with tempfile.TemporaryDirectory(prefix="clip-eval-") as tmp:
        images = generate_dataset(Path(tmp), seed=seed, per_class=per_class)
        vectors = encoder.encode_images([open_image(item.path) for item in images], batch_size=batch_size)
    return score(encoder, vectors, [item.scene.class_name for item in images], templates)


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("--dataset", help="evaluate on this indexed dataset's class folders (not a synthetic set)")
    parser.add_argument("--model", help="model spec (default: demo; with --dataset, the model it was built with; "
                                        "another one is evaluated on the same images without touching the index)")
    parser.add_argument("--templates", type=Path,
                        help="prompt templates, one per line with {} (default: those of the vocabularies built "
                             "with the model, else 'a photo of a {}.')")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the held-out synthetic set")
    parser.add_argument("--per-class", type=int, default=20, help="held-out synthetic images per class")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, ["precision", "backend", "inference_threads", "num_workers", "workspace"])
    return parser


def print_figures(figures: dict[str, float]) -> None:
    print(f"zero-shot top-1 / top-5 accuracy      {figures['zero_shot_top1']:.3f} / {figures['zero_shot_top5']:.3f}")
    print(f"class query precision@10 / mAP        {figures['precision_at_10']:.3f} / {figures['map']:.3f}")
    print(f"image->image recall@10 / precision@10 {figures['image_recall_at_10']:.3f} / "
          f"{figures['image_precision_at_10']:.3f}")


def report(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    settings = settings_from_args(args)
    templates = read_templates(args.templates) if args.templates else None
    if args.dataset:
        from lib.model.folder_eval import evaluate_folders

        evaluation = evaluate_folders(settings.indexes_dir, settings.indexes_text_dir, args.dataset, args.model,
                                      templates, partial(encoder_for, settings),
                                      settings.num_workers, progress=not args.no_progress)
        summary = evaluation.to_dict()
        source = "vectors of its index" if evaluation.from_index else "images encoded afresh, index untouched"
        print(f"dataset {args.dataset}: {evaluation.images} images in {evaluation.classes} class folders, model "
              f"{evaluation.model.spec} ({source}); {evaluation.unreadable} unreadable")
        print(f"templates: {' | '.join(evaluation.templates)}")
    else:
        encoder = encoder_for(settings, args.model or "demo")
        summary = evaluate(encoder, args.seed, args.per_class, templates=templates or DEFAULT_TEMPLATES)._asdict()
        print(f"held-out set: seed {args.seed}, {args.per_class} images x {len(class_names())} classes")
        print(f"attribute precision@10 / mAP          {summary['attribute_precision_at_10']:.3f} / "
              f"{summary['attribute_map']:.3f}")
    print_figures(summary)
    print(f"time                                  {time.perf_counter() - started:.1f} s")
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    run("evaluate", make_parser(), report, argv)


if __name__ == "__main__":
    main()
