"""The identity of the model that wrote an index: indexes only mix with the same weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lib.errors import IndexMismatchError


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that wrote it."""

    spec: str
    weights_sha256: str
    dim: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        return cls(spec=str(data["spec"]), weights_sha256=str(data["weights_sha256"]), dim=int(data["dim"]))

    def check_same(self, other: ModelIdentity, what: str) -> None:
        """Raise IndexMismatchError unless `other` (the identity `what` was built with) has our weights."""
        if (self.weights_sha256, self.dim) != (other.weights_sha256, other.dim):
            raise IndexMismatchError(
                f"{what} was built with model {other.spec!r} (dim {other.dim}, weights {other.weights_sha256[:12]}) "
                f"but the model in use is {self.spec!r} (dim {self.dim}, weights {self.weights_sha256[:12]}); "
                "rebuild it with this model or start with the model it was built with"
            )
