"""Figures measured on a dataset and recorded beside its index set, each with the model it holds for.

`indexes/duplicates_<dataset>.json`: the near and similar cosine thresholds calibrated for the model
the dataset was built with (lib/ingest/calibrate.py writes them; the duplicate finder reads them).
`indexes/evaluation_<dataset>.json`: how well each model evaluated on the dataset's class folders did
(lib/model/evaluate.py writes them; the classification page shows them), one entry per model weights.

Files beside the catalog rather than tables in it: they are written after a build, by other tools, and
a reader that finds one missing, damaged or made for other weights simply has no figures. A copy into the
store database takes them along (`read_figures`, its datasets' `figures` column), for a server with only its URL.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lib.errors import ClipSearchError
from lib.store.files import write_atomic
from lib.store.identity import ModelIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicateThresholds:
    """Cosine cut-offs: `near` for the same picture edited (with its perceptual signature), `similar` for a
    burst or re-take (the embedding alone). `details["defaults"]`: a small library's documented defaults."""

    near: float
    similar: float
    model: ModelIdentity | None = None
    calibrated_at: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (-1.0 <= self.similar <= 1.0 and -1.0 <= self.near <= 1.0):
            raise ClipSearchError(f"duplicate thresholds are cosines between -1 and 1, not similar={self.similar} "
                                  f"and near={self.near}")

    @property
    def defaults(self) -> bool:
        return bool(self.details.get("defaults"))

    def to_dict(self) -> dict[str, Any]:
        return {"near": self.near, "similar": self.similar, "calibrated_at": self.calibrated_at,
                "model": self.model.to_dict() if self.model else None, "details": self.details}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


FIGURE_KINDS = ("duplicates", "evaluation")


def figures_path(folder: Path, kind: str, dataset: str) -> Path:
    return folder / f"{kind}_{dataset}.json"


def read_figures(folder: Path, dataset: str) -> dict[str, dict[str, Any]]:
    """kind -> the dataset's recorded figures of that kind, for those it has (as their files hold them)."""
    found = {kind: _read(figures_path(folder, kind, dataset)) for kind in FIGURE_KINDS}
    return {kind: data for kind, data in found.items() if isinstance(data, dict)}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignored %s: %s", path, err)
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    write_atomic(json.dumps(data, indent=1, ensure_ascii=False).encode(), path)


def write_figures(folder: Path, kind: str, dataset: str, data: dict[str, Any]) -> None:
    """Figures of one kind, as read_figures read them, back into their file (a restore from the store database)."""
    _write(figures_path(folder, kind, dataset), data)


def save_thresholds(folder: Path, dataset: str, thresholds: DuplicateThresholds) -> Path:
    path = figures_path(folder, "duplicates", dataset)
    _write(path, {"dataset": dataset, **thresholds.to_dict()})
    return path


def load_thresholds(folder: Path, dataset: str, model: ModelIdentity) -> DuplicateThresholds | None:
    """The thresholds calibrated for this dataset with these weights, or None (never calibrated, or another model)."""
    return thresholds_from(_read(figures_path(folder, "duplicates", dataset)), dataset, model)


def thresholds_from(data: dict[str, Any] | None, dataset: str, model: ModelIdentity) -> DuplicateThresholds | None:
    """The thresholds of a duplicates figure (load_thresholds), from wherever it was read."""
    if not data or not data.get("model"):
        return None
    recorded = ModelIdentity.from_dict(data["model"])
    if (recorded.weights_sha256, recorded.dim) != (model.weights_sha256, model.dim):
        return None
    try:
        return DuplicateThresholds(float(data["near"]), float(data["similar"]), recorded,
                                   str(data.get("calibrated_at", "")), dict(data.get("details", {})))
    except (KeyError, TypeError, ValueError, ClipSearchError) as err:
        log.warning("ignored the duplicate thresholds of %r: %s", dataset, err)
        return None


def save_evaluation(folder: Path, dataset: str, model: ModelIdentity, figures: dict[str, Any]) -> Path:
    """Record one model's figures on the dataset, replacing that model's earlier ones and keeping the others'."""
    path = figures_path(folder, "evaluation", dataset)
    entries = [e for e in load_evaluations(folder, dataset)
               if e.get("model", {}).get("weights_sha256") != model.weights_sha256]
    entries.append({"model": model.to_dict(), "computed_at": now(), **figures})
    _write(path, {"dataset": dataset, "evaluations": entries})
    return path


def load_evaluations(folder: Path, dataset: str) -> list[dict[str, Any]]:
    """Every model's recorded figures on the dataset, oldest first (empty when none was computed)."""
    return evaluations_from(_read(figures_path(folder, "evaluation", dataset)))


def evaluations_from(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The entries of an evaluation figure (load_evaluations), from wherever it was read."""
    entries = (data or {}).get("evaluations", [])
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
