"""The full definition of one run; its hash is the run id, so the same run is never trained twice.

A `RunSpec` holds values only and reads no file: the planner (`mriaug.grid.plan_run`) resolves the
pool's fingerprint once, when the run is planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import atomic
from .data import DataSpec
from .hparams import HParams
from .scenarios import Scenario


@dataclass(frozen=True)
class RunSpec:
    model: str
    scenario: Scenario
    augmentation: str
    seed: int
    hparams: HParams
    data: DataSpec = field(default_factory=DataSpec)
    pool: str | None = None
    # The pool's content when the run was planned, so a pool extended while runs wait in a queue does
    # not change their ids (train.execute refuses a pool that changed since).
    pool_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scenario": self.scenario.to_dict(),
            "augmentation": self.augmentation,
            "seed": self.seed,
            "hparams": self.hparams.to_dict(),
            "data": self.data.describe(),
            # A pool only matters to runs that draw from it, and then by what it holds, not where it lies:
            # extending or re-making a pool gives new runs; moving it does not.
            "pool": {"fingerprint": self.pool_fingerprint} if self.scenario.needs_pool else None,
        }

    @property
    def run_id(self) -> str:
        return atomic.stable_hash(self.to_dict())

    @property
    def label(self) -> str:
        return f"{self.model}/s{self.scenario.name}/{self.augmentation}/seed{self.seed}"
