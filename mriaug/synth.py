"""`mriaug synth`: make a pool of variations of training images, resumably (done sources are skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import generators
from .classes import CLASSES, class_index
from .data import Dataset
from .pools import PoolWriter


def plan(dataset: Dataset, classes: list[str] | None, per_source: int, max_sources: int | None,
         seed: int, done: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """(train row, variation) pairs still to make. Sources come from the train split only."""
    labels = [class_index(c) for c in classes] if classes else list(range(len(CLASSES)))
    todo = []
    rng = np.random.default_rng(seed)
    for k in labels:
        rows = np.flatnonzero(dataset.train_y == k)
        if max_sources is not None and max_sources < len(rows):
            rows = np.sort(rng.choice(rows, max_sources, replace=False))
        todo += [(int(r), v) for r in rows for v in range(per_source) if (int(r), v) not in done]
    return todo


def make_pool(dataset: Dataset, out: str | Path, generator: str, *, classes: list[str] | None = None,
              per_source: int = 1, max_sources: int | None = None, seed: int = 0,
              options: dict[str, Any] | None = None, progress_bar: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    gen = generators.get(generator, **(options or {}))
    writer = PoolWriter(out, dataset, generator, {"generator_params": gen.params()})
    todo = plan(dataset, classes, per_source, max_sources, seed, writer.done())
    with tqdm(total=len(todo), desc=f"synth {generator}", unit="img", disable=not progress_bar) as bar:
        summary = gen.run(writer, todo, bar.update)
    writer.flush()
    summary["pool_size"] = len(writer.entries)
    return summary
