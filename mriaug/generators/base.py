"""What every synthetic image generator provides, and the seeds they draw from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..data.pools import PoolWriter
from ..errors import SettingError

Todo = Iterable[tuple[int, int]]  # (train row, variation) pairs still to make


@runtime_checkable
class Generator(Protocol):
    """A generator: its settings are constructor keywords; it writes images through a `PoolWriter`.

    Optional: `estimate(todo, spent) -> dict` (the paid generator's dry-run cost) and
    `trained_on() -> dict` (a generator trained on this dataset says on which rows)."""

    name: str

    def params(self) -> dict[str, Any]:
        """The settings that shape the images, recorded with every image and in pool.json."""
        ...

    def run(self, writer: PoolWriter, todo: Todo, progress: Callable[[int], None]) -> dict[str, Any]:
        """Make the images of `todo`; return a summary with `generated` and `failed` ({row: error})."""
        ...


def seed_for(*parts: int) -> int:
    """A 63-bit seed for torch.Generator from non-negative ints, e.g. (seed, source, variation).
    SeedSequence hashes the whole tuple, so distinct tuples get unrelated seeds; an affine mix such as
    seed*1_000_003 + source*101 + variation collides once variation reaches 101."""
    if any(isinstance(p, bool) or int(p) != p or p < 0 for p in parts):
        raise SettingError(f"seeds must be whole numbers of at least 0, got {parts}")
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # torch.Generator.manual_seed takes up to 2**63 - 1


def run_locally(writer: PoolWriter, todo: Todo, progress: Callable[[int], None], name: str,
                params: dict[str, Any], make: Callable[[np.ndarray, int, int], np.ndarray],
                flush_every: int) -> dict[str, Any]:
    """The loop of a generator that makes each image here, one at a time (transform, copy): `make(source
    image, source row, variation)`, flushing the pool every `flush_every` images so a kill loses little."""
    n = 0
    for src, var in todo:
        writer.add(make(writer.dataset.train_x[src], src, var), src, var, name, {**params, "variation": var})
        n += 1
        progress(1)
        if n % flush_every == 0:
            writer.flush()
    writer.flush()
    return {"generated": n, "failed": {}}
