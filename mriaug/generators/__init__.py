"""Synthetic image generators by name (the `generator` of a pool manifest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name -> module path of a class with `name`, `params()`, and `run(writer, todo, progress)`.
GENERATORS: dict[str, str] = {
    "transform": "mriaug.generators.transform:TransformGenerator",
    "openai": "mriaug.generators.openai_api:OpenAIGenerator",
    "diffusion": "mriaug.generators.diffusion:DiffusionGenerator",
}


def seed_for(*parts: int) -> int:
    """A 63-bit seed for torch.Generator from non-negative ints, e.g. (seed, source, variation).
    SeedSequence hashes the whole tuple, so distinct tuples get unrelated seeds; an affine mix such as
    seed*1_000_003 + source*101 + variation collides once variation reaches 101."""
    import numpy as np

    if any(isinstance(p, bool) or int(p) != p or p < 0 for p in parts):
        raise ValueError(f"seeds must be whole numbers of at least 0, got {parts}")
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state) >> 1  # torch.Generator.manual_seed takes up to 2**63 - 1


def get(name: str, **options: Any) -> Any:
    import importlib

    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    mod, cls = GENERATORS[name].split(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(mod), cls)
    return factory(**options)
