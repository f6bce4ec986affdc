"""A unit's resume checkpoint: when it is saved (`Schedule`) and the store that saves, loads and sets aside
the one file (`Store`).

Timing (`MRIAUG_CHECKPOINT`, read by `mriaug.engine.speed`): every epoch, or (`auto`, the default) after the first
epoch and then once ten times the last save's duration has passed since it ended, so checkpoints cost at most
about a tenth of a run and a preemption loses little more than that. A unit told to stop (`stop_after`) always
saves first.

A checkpoint is resumed only if it is readable and was made from the same identity (layout, runs, data, pool,
training rows): anything else is set aside as `NAME.pt.bad` and the unit starts afresh. torch is imported only
when a checkpoint is read or written, so importing this module (`mriaug.engine.speed` does) stays cheap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store import atomic

if TYPE_CHECKING:
    import torch

Log = Callable[[str], None]


class Interrupted(RuntimeError):
    """Raised after the checkpoint of the epoch `stop_after` names (tests and benchmarks simulate a preemption)."""


class Schedule:
    """Says when the next resume checkpoint is due; told when each save started (`saved`)."""

    OVERHEAD = 0.1  # the share of a run's time that saving checkpoints may take

    def __init__(self, policy: str = "auto") -> None:
        self.every_epoch = policy == "epoch"
        self.cost: float | None = None
        self.last = time.perf_counter()

    def due(self) -> bool:
        return self.every_epoch or self.cost is None or time.perf_counter() - self.last >= self.cost / self.OVERHEAD

    def saved(self, started: float) -> None:
        self.last = time.perf_counter()
        self.cost = self.last - started


def set_aside(path: Path, why: str, log: Log, what: str = "run") -> None:  # pragma: no mutate (log word)
    """Keep an unusable file (checkpoint or result) for inspection, out of the way of the one that replaces it."""
    aside = path.with_name(path.name + ".bad")
    os.replace(path, aside)
    log(f"{path}: {why}; moved to {aside.name}, starting this {what} afresh")


@dataclass
class Store:
    """The checkpoint file of one unit: `identity` is what it must have been made from to be resumed (saved
    with it); `what` names the unit in log lines ("run" or "pack")."""

    path: Path
    identity: dict[str, Any]
    what: str = "run"
    schedule: Schedule = field(default_factory=Schedule)

    def load(self, dev: torch.device, log: Log) -> dict[str, Any] | None:
        """The checkpoint if it is usable; an unusable one is set aside. On the CPU the thread count the unit
        started with is restored (float sums depend on it)."""
        import torch

        if not self.path.exists():
            return None
        try:
            ckpt = torch.load(self.path, map_location=dev, weights_only=True)
        except Exception as e:  # a truncated or foreign file: torch raises several types
            set_aside(self.path, f"unreadable checkpoint ({type(e).__name__}: {e})", log, self.what)
            return None
        for key, value in self.identity.items():
            if ckpt.get(key) != value:
                set_aside(self.path, f"checkpoint made with another {key} ({ckpt.get(key)} != {value})", log,
                          self.what)
                return None
        if dev.type == "cpu" and ckpt.get("threads") not in (None, torch.get_num_threads()):
            log(f"resuming with {ckpt['threads']} threads as the {self.what} started (not {torch.get_num_threads()})")
            torch.set_num_threads(int(ckpt["threads"]))
        return dict(ckpt)

    def after_epoch(self, done: int, epochs: int, stop_after: int | None, state: Callable[[], dict[str, Any]]
                    ) -> None:
        """After epoch `done` of `epochs`: save `state()` (with the identity) atomically when the schedule says
        it is due or the unit is to stop here (`stop_after`, which then raises `Interrupted`). Nothing after
        the last epoch: the unit is finished then."""
        import torch

        if done >= epochs:
            return
        stopping = stop_after is not None and done >= stop_after
        if stopping or self.schedule.due():
            started = time.perf_counter()
            with atomic.atomic_path(self.path) as tmp:
                torch.save({**state(), **self.identity}, tmp)
            self.schedule.saved(started)
        if stopping:
            raise Interrupted(f"stopped after epoch {done} as asked")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
