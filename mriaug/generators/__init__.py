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


def get(name: str, **options: Any) -> Any:
    import importlib

    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    mod, cls = GENERATORS[name].split(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(mod), cls)
    return factory(**options)
