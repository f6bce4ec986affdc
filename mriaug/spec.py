"""The full definition of one run; its hash is the run id, so the same run is never trained twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import atomic
from .data import DataSpec
from .scenarios import Scenario

# Hyper-parameters every model entry has; grid files override them per model.
DEFAULT_HPARAMS: dict[str, Any] = {
    "epochs": 8, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0,
    "precision": "bf16", "pretrained": False, "weights": None,
}
HPARAM_KEYS = set(DEFAULT_HPARAMS) | {"arch", "resolution"}


@dataclass(frozen=True)
class RunSpec:
    model: str
    scenario: Scenario
    augmentation: str
    seed: int
    hparams: dict[str, Any]
    data: DataSpec = field(default_factory=DataSpec)
    pool: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scenario": self.scenario.to_dict(),
            "augmentation": self.augmentation,
            "seed": self.seed,
            "hparams": dict(sorted(self.hparams.items())),
            "data": self.data.describe(),
            # A pool only matters to runs that draw from it.
            "pool": self.pool if self.scenario.needs_pool else None,
        }

    @property
    def run_id(self) -> str:
        return atomic.stable_hash(self.to_dict())

    @property
    def label(self) -> str:
        return f"{self.model}/s{self.scenario.name}/{self.augmentation}/seed{self.seed}"
