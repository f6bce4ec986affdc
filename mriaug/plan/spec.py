"""The full definition of one run; its hash is the run id, so the same run is never trained twice.

A `RunSpec` holds values only and reads no file: the planner (`mriaug.plan.grid.make_spec`) resolves the
pool's fingerprint once, when the run is planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.sources import DataSpec
from ..store import ids
from .hparams import HParams
from .scenarios import Scenario

# How long every run trains: the model's epochs ("epochs", the thesis), or the optimizer steps scenario 1
# takes in those epochs ("steps": every scenario gets the same number of updates).
BUDGETS = ("epochs", "steps")
# Which weights are tested: the last epoch's (the thesis), or those of the epoch with the lowest validation loss.
SELECTS = ("last", "best_val")


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
    # not change their ids (train.prepare refuses a pool that changed since).
    pool_fingerprint: str | None = None
    budget: str = "epochs"
    select: str = "last"
    # The name of the pool in a grid's tables (a grid may name several); not part of the run id.
    pool_label: str | None = None
    # The folder of the pool a scenario with `pretrain` pretrains on (this split's) and its content when planned.
    pretrain_pool: str | None = None
    pretrain_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
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
        # Written only when they differ from the thesis's procedure, so the thesis's run ids stay as they were.
        if self.budget != "epochs":
            d["budget"] = self.budget
        if self.select != "last":
            d["select"] = self.select
        if self.hparams.weight_decay > 0:  # decoupled decay (AdamW) since issue 9: not the runs made with Adam
            d["optimizer"] = "adamw"
        if self.scenario.pretrain is not None:  # like `pool`: by the pretraining pool's content, not its place
            d["pretrain"] = {**self.scenario.pretrain.to_dict(), "pool": {"fingerprint": self.pretrain_fingerprint}}
        return d

    @property
    def run_id(self) -> str:
        return ids.run_id(self.to_dict())

    @property
    def cell(self) -> dict[str, Any]:
        """The description of the run without its seed: what the runs of one cell (one setting, several seeds)
        share, so those runs can train together as a seed pack."""
        d = self.to_dict()
        d.pop("seed")
        return d

    @property
    def label(self) -> str:
        pool = f"/{self.pool_label}" if self.pool_label and self.scenario.needs_pool else ""
        return f"{self.model}/s{self.scenario.name}{pool}/{self.augmentation}/seed{self.seed}"
