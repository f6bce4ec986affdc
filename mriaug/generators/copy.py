"""`copy`: exact copies of the source images. The control beside every generator pool: scenario 3 with a
copy pool adds more Mild/Moderate images and nothing new, so a generator's pool has to beat it to show
that its images (not their number) help. `transform` stays the cheap-augmentation control."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import checks
from ..data.pools import PoolWriter
from .base import run_locally


class CopyGenerator:
    name = "copy"

    def __init__(self, flush_every: int = 500):
        checks.positive_int(flush_every, "copy generator: flush_every")
        self.flush_every = flush_every

    def params(self) -> dict[str, Any]:
        return {}

    def run(self, writer: PoolWriter, todo: Iterable[tuple[int, int]],
            progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        return run_locally(writer, todo, progress, self.name, self.params(), lambda img, src, var: img.copy(),
                           self.flush_every)
