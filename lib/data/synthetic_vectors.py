"""Structured synthetic embeddings: a hierarchical Gaussian mixture on the unit sphere, written as a
clip-retrieval embeddings folder, so benchmarks and tests build large collections without encoding images.

Uniform random vectors are a pathological case for any approximate index (every point is as far from
every other); real embeddings cluster. Here `clusters` centres hang around `clusters // 20` super-centres;
a point is normalise(centre + B_k (lambda * z) + sigma e), with B_k a random rank-`rank` basis per cluster
(low intrinsic dimension, decaying spectrum, as real embeddings have) and e isotropic noise. Cluster
sizes are log-normal. The class of a point (the `class` column) is its cluster modulo `classes`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from lib.data.embeddings_folder import PATH_COLUMN, EmbeddingsPartWriter

CLASS_COLUMN = "class"


@dataclass(frozen=True)
class Mixture:
    dim: int = 512
    clusters: int = 2000
    rank: int = 24  # dimensions of each cluster's own subspace
    spread: float = 0.35  # scale of a point's offset within its cluster's subspace (the first dimension's)
    sigma: float = 0.25  # scale of the isotropic noise
    seed: int = 0

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit cluster centres, cluster weights)."""
        rng = np.random.default_rng((self.seed, 0))
        supers = rng.standard_normal((max(1, self.clusters // 20), self.dim)).astype(np.float32)
        supers /= np.linalg.norm(supers, axis=1, keepdims=True)
        offsets = rng.standard_normal((self.clusters, self.dim)).astype(np.float32) / np.float32(np.sqrt(self.dim))
        centres = supers[rng.integers(0, len(supers), self.clusters)] + offsets
        weights = rng.lognormal(0.0, 0.7, self.clusters)
        return centres / np.linalg.norm(centres, axis=1, keepdims=True), weights / weights.sum()

    def sample(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(count unit float32 vectors, their clusters)."""
        centres, weights, bases = _parameters(self)
        clusters = rng.choice(self.clusters, size=count, p=weights)
        lam = (self.spread / np.sqrt(np.arange(1, self.rank + 1))).astype(np.float32)
        vectors = rng.standard_normal((count, self.dim), dtype=np.float32)
        vectors *= np.float32(self.sigma / np.sqrt(self.dim))
        vectors += centres[clusters]
        order = np.argsort(clusters, kind="stable")
        bounds = np.searchsorted(clusters[order], np.arange(self.clusters + 1))
        for cluster in np.flatnonzero(np.diff(bounds)):
            rows = order[bounds[cluster]:bounds[cluster + 1]]
            vectors[rows] += (rng.standard_normal((len(rows), self.rank), dtype=np.float32) * lam) @ bases[cluster]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors, clusters


@lru_cache(maxsize=2)
def _parameters(mixture: Mixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, weights and the per-cluster bases (clusters x rank x dim floats: 98 MB at the defaults)."""
    centres, weights = mixture.centres()
    rng = np.random.default_rng((mixture.seed, 1))
    bases = rng.standard_normal((mixture.clusters, mixture.rank, mixture.dim), dtype=np.float32)
    return centres, weights, bases / np.float32(np.sqrt(mixture.dim))


def write_mixture(folder: Path, count: int, mixture: Mixture, classes: int = 200, part_rows: int = 1_000_000,
                  chunk: int = 100_000, dtype: type = np.float16) -> None:
    """`count` vectors of the mixture as an embeddings folder: parts of `part_rows`, paths img/<n>.jpg,
    a `class` column; generated `chunk` rows at a time (memory bounded by the chunk)."""
    rng = np.random.default_rng((mixture.seed, 2))
    for number, start in enumerate(range(0, count, part_rows)):
        rows = min(part_rows, count - start)
        writer = EmbeddingsPartWriter(folder, number, rows, mixture.dim, dtype)
        for offset in range(0, rows, chunk):
            vectors, clusters = mixture.sample(min(chunk, rows - offset), rng)
            first = start + offset
            table = pa.table({PATH_COLUMN: [f"img/{first + i:09d}.jpg" for i in range(len(vectors))],
                              CLASS_COLUMN: [f"class{c % classes:04d}" for c in clusters]})
            writer.add(vectors, table)
        writer.close()
