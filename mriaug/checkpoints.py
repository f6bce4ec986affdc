"""When a run saves its resume checkpoint (`MRIAUG_CHECKPOINT`, read by `mriaug.speed`): every epoch, or
(`auto`, the default) after the first epoch and then once ten times the last save's duration has passed since
it ended, so checkpoints cost at most about a tenth of a run and a preemption loses little more than that."""

from __future__ import annotations

import time


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
