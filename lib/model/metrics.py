"""Figures of a model on images of known class, from their embeddings: zero-shot accuracy, text-to-image
precision@10 and mAP, image-to-image recall@10. The synthetic held-out evaluation and the evaluation on a
user's own class folders compute them here, the same way, so that their figures compare."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import faiss
import numpy as np

from lib.model.encoder import ClipEncoder
from lib.model.prompts import embed_labels

K = 10


class ClassFigures(NamedTuple):
    zero_shot_top1: float
    zero_shot_top5: float
    precision_at_10: float
    map: float
    image_recall_at_10: float
    image_precision_at_10: float


def average_precision(ranking: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranked list: `ranking` holds item indices best first, `relevant` a boolean per item."""
    hits = relevant[ranking]
    if not hits.any():
        return 0.0
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.mean())


def retrieval_scores(query_vectors: np.ndarray, image_vectors: np.ndarray, relevant: np.ndarray,
                     k: int = K) -> tuple[float, float]:
    """Mean precision@k and mean AP of text queries over images; relevant[q, i] says image i answers query q."""
    rankings = np.argsort(-(query_vectors @ image_vectors.T), axis=1, kind="stable")
    precisions = [relevant[q, rankings[q, :k]].mean() for q in range(len(rankings))]
    aps = [average_precision(rankings[q], relevant[q]) for q in range(len(rankings))]
    return float(np.mean(precisions)), float(np.mean(aps))


def top_k_accuracy(image_vectors: np.ndarray, label_vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose class is among the k labels closest to them."""
    best = np.argsort(-(image_vectors @ label_vectors.T), axis=1, kind="stable")[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def image_neighbours(image_vectors: np.ndarray, labels: np.ndarray, k: int = K) -> tuple[float, float]:
    """(recall@k, precision@k) of every image as a query over the others, its own class relevant.

    recall@k as image retrieval papers report it: the share of queries with a relevant image among the
    k nearest (a class holds far more than k images, so the share of the class found would be tiny).
    """
    if len(image_vectors) < 2:
        return 0.0, 0.0
    vectors = np.ascontiguousarray(image_vectors, np.float32)
    _, found = faiss.knn(vectors, vectors, min(k + 1, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
    others = [[j for j in row if j != i][:k] for i, row in enumerate(found)]
    same = [labels[row] == labels[i] for i, row in enumerate(others)]
    return float(np.mean([hits.any() for hits in same])), float(np.mean([hits.mean() for hits in same]))


def class_figures(encoder: ClipEncoder, image_vectors: np.ndarray, labels: np.ndarray, names: Sequence[str],
                  templates: Sequence[str]) -> ClassFigures:
    """All figures for embedded images of class `names[labels[i]]`; the class names are the text queries."""
    prompts = embed_labels(encoder, list(names), templates)
    relevant = labels[None, :] == np.arange(len(names))[:, None]
    p10, mean_ap = retrieval_scores(encoder.encode_texts(list(names)), image_vectors, relevant)
    recall, precision = image_neighbours(image_vectors, labels)
    top1, top5 = (top_k_accuracy(image_vectors, prompts, labels, k) for k in (1, 5))
    return ClassFigures(top1, top5, p10, mean_ap, recall, precision)
