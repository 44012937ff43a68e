"""The evaluation figures recorded beside the index set for the datasets the server has loaded."""
from __future__ import annotations

from typing import Any

from lib.errors import NotFoundError
from lib.serve.index_set import LiveIndexSet
from lib.store.dataset_figures import evaluations_from


def dataset_evaluations(indexes: LiveIndexSet, dataset: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Per dataset (one, or every loaded one), each model's recorded figures, `in_use` marking the server's model."""
    index_set = indexes.current()
    if dataset is not None and dataset not in index_set.datasets:
        raise NotFoundError(f"unknown dataset {dataset!r}; known: {', '.join(index_set.datasets) or 'none'}")
    weights = index_set.model.weights_sha256
    return {name: [{**entry, "in_use": entry.get("model", {}).get("weights_sha256") == weights}
                   for entry in evaluations_from(indexes.figures(name).get("evaluation"))]
            for name in ([dataset] if dataset else sorted(index_set.datasets))}
