"""Synthetic image generators by name (the `generator` of a pool manifest); one lookup, `get`.

Each is imported only when asked for: the openai one needs no torch, the diffusion one needs diffusers.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import SettingError
from .base import Generator, seed_for

# name -> "module:class" of a class that satisfies `Generator`.
GENERATORS: dict[str, str] = {
    "transform": "mriaug.generators.transform:TransformGenerator",
    "copy": "mriaug.generators.copy:CopyGenerator",
    "openai": "mriaug.generators.openai_api:OpenAIGenerator",
    "diffusion": "mriaug.generators.diffusion:DiffusionGenerator",
}

__all__ = ["GENERATORS", "Generator", "get", "seed_for", "settings_of"]


def _factory(name: str) -> Any:
    if name not in GENERATORS:
        raise SettingError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    mod, cls = GENERATORS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def settings_of(name: str) -> dict[str, Any]:
    """The settings a generator takes (`-s KEY=VALUE`) with their defaults."""
    sig = inspect.signature(_factory(name))
    return {p: v.default for p, v in sig.parameters.items() if p != "self"}


def get(name: str, **options: Any) -> Generator:
    """The generator with its settings; an unknown setting, or a word where a number belongs, is named."""
    known = settings_of(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SettingError(f"generator {name}: unknown setting(s) {unknown}; known: {', '.join(known)}")
    missing = [k for k, v in known.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        hints = {"checkpoint": "DIR (made by `mriaug synth train-diffusion --out DIR`)"}
        raise SettingError(f"generator {name}: setting {missing[0]} is required: -s {missing[0]}="
                           + hints.get(missing[0], "VALUE"))
    for key, value in options.items():
        default = known[key]
        # Settings whose default is a number must be numbers (`-s contrast=abc` would fail deep inside).
        if isinstance(default, int | float) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise SettingError(f"generator {name}: setting {key} must be a number, got {value!r}")
    gen = _factory(name)(**options)
    assert isinstance(gen, Generator), f"{name} does not implement the Generator protocol"
    return gen
