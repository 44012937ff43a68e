"""Image ids in a fixed order and the way back from an id to its place; the merge of several top-k results."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge(results: Sequence[tuple[np.ndarray, np.ndarray]], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `depth` of several (scores, ids) results of the same queries."""
    if len(results) == 1:
        return results[0]
    scores, ids = np.hstack([r[0] for r in results]), np.hstack([r[1] for r in results])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class IdOrder:
    """Image ids in a fixed order, and the way back from an id to its place (made once per loaded dataset)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._by_id = np.argsort(ids)
        self._sorted = ids[self._by_id]

    def __len__(self) -> int:
        return len(self.ids)

    def places(self, ids: Sequence[int]) -> list[int | None]:
        """The place of each id (None for an id the dataset does not hold)."""
        found = np.searchsorted(self._sorted, ids)
        return [int(self._by_id[f]) if f < len(self._sorted) and self._sorted[f] == i else None
                for f, i in zip(found, ids, strict=True)]
