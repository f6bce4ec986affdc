"""The local scheduler: a grid's units trained by the workers on this machine (`mriaug grid`), the local twin of
`mriaug.slurm`'s array tasks.

Several workers (the command started twice, or beside Slurm tasks) split the units of one results folder: a
unit whose run lock another live process holds is skipped and visited again once the others are done. Each
worker is known by a lock in the results folder's `.workers`, and the workers on this machine split its cores.
A unit is one run, or a pack of seeds trained together (`[model.NAME] pack_seeds`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .engine import runtime
from .plan.spec import RunSpec
from .store import locks

if TYPE_CHECKING:
    from .store.results import RunResult

Log = Callable[[str], None]
Unit = list[RunSpec]

# How long a worker whose every remaining unit is held by other workers waits before visiting them again.
POLL_S = 2.0


def train_unit(unit: Unit, results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
               log: Log | None = None, wait: bool = True) -> list[RunResult]:
    """Train a unit under its run locks and return its runs' results in order (read back where they exist).
    A run another live process holds is waited for, or with wait=False raises `locks.Busy`. The one call
    the local scheduler and the Slurm tasks make into the engine (torch is imported here, not before)."""
    from .engine import train

    return train.run_unit(unit, results_dir, device=device, save_weights=save_weights, log=log or train.log_to_stderr,
                          wait=wait)


def describe(unit: Unit) -> str:
    """A unit in one line of a progress display: its first run, and how many seeds train with it."""
    more = len(unit) - 1
    return unit[0].label + (f" +{more} seeds" if more else "")


class Progress(Protocol):
    """What a worker tells whoever shows its progress (the CLI's bar); every call only prints."""

    def starting(self, unit: Unit) -> None: ...

    def trained(self, unit: Unit) -> None: ...

    def waiting(self, busy: int) -> None:
        """Once per worker: `busy` units are held by other workers, which this one now waits for."""


class Quiet:
    """A `Progress` that shows nothing."""

    def starting(self, unit: Unit) -> None:
        pass

    def trained(self, unit: Unit) -> None:
        pass

    def waiting(self, busy: int) -> None:
        pass


@dataclass
class Worker:
    """One worker of a results folder on this machine."""

    results_dir: Path
    device: str | None = None
    save_weights: bool = False
    log: Log | None = None
    progress: Progress = field(default_factory=Quiet)
    poll_s: float = POLL_S

    @property
    def workers(self) -> Path:
        return Path(self.results_dir) / ".workers"

    def run(self, units: list[Unit]) -> None:
        """Train every unit that no other worker trains, then wait for those the others hold (their results
        are then read back, or trained here if a worker died with them)."""
        from .data import pools

        me = self.workers / f"{socket.gethostname()}-{os.getpid()}.lock"
        pending, told = list(units), False
        with pools.cached_in_process(), locks.held(me, wait=False):
            while pending:
                busy = self._visit(pending)
                if busy and not told:
                    self.progress.waiting(len(busy))
                    told = True
                if len(busy) == len(pending):  # nothing trained this round: let the others get on
                    time.sleep(self.poll_s)
                pending = busy

    def _visit(self, pending: list[Unit]) -> list[Unit]:
        """Train each pending unit that is free; return those another worker holds."""
        busy = []
        for unit in pending:
            runtime.use_cpu_threads(len(locks.live_holders(self.workers, socket.gethostname())))
            self.progress.starting(unit)
            try:
                train_unit(unit, self.results_dir, device=self.device, save_weights=self.save_weights, log=self.log,
                           wait=False)
            except locks.Busy:
                busy.append(unit)
                continue
            except Exception as e:
                e.add_note(f"while training {', '.join(s.label for s in unit)} [{unit[0].run_id}]")
                raise
            self.progress.trained(unit)
        return busy
