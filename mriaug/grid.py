"""Grid files (`jobs/*.toml`): models with their hyper-parameters, scenarios, augmentations, seeds,
data source and pool, expanded into run specs. Errors name the file, the key and its line."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import augment, models, scenarios
from .data import DataSpec
from .spec import DEFAULT_HPARAMS, HPARAM_KEYS, RunSpec

TOP_KEYS = {"name", "results", "seeds", "models", "scenarios", "augmentations", "pool", "save_weights",
            "data", "model", "scenario"}
JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"


class GridError(ValueError):
    pass


def _line_of(text: str, table: str, key: str | None) -> int | None:
    """Line number of `key` inside `[table]` (or of the table header when key is None)."""
    current = ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", s)
        if header:
            current = header.group(1).replace('"', "")
            if key is None and current == table:
                return n
            continue
        if key is not None and current == table and re.match(rf"^\"?{re.escape(key)}\"?\s*=", s):
            return n
    return None


@dataclass
class Grid:
    path: Path
    name: str
    results: Path
    data: DataSpec
    pool: str | None
    save_weights: bool
    hparams: dict[str, dict[str, Any]]
    runs: list[RunSpec]


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text()
        try:
            self.doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            raise GridError(f"{path}: not valid TOML: {e}") from e

    def fail(self, table: str, key: str | None, msg: str) -> GridError:
        line = _line_of(self.text, table, key)
        where = f"{self.path}" + (f", line {line}" if line else "")
        name = ".".join(p for p in (table, key) if p)
        return GridError(f"{where}: {name}: {msg}")


def model_hparams(name: str, table: dict[str, Any] | None = None) -> dict[str, Any]:
    e = models.entry(name)
    hp = {**DEFAULT_HPARAMS, "arch": e.default_arch, "resolution": e.default_resolution,
          "pretrained": e.pretrained_by_default}
    hp.update(table or {})
    return hp


def _seeds(value: Any) -> list[int]:
    if isinstance(value, int) and value > 0:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return list(value)
    if isinstance(value, dict) and set(value) == {"start", "count"}:
        return list(range(int(value["start"]), int(value["start"]) + int(value["count"])))
    raise ValueError("must be a count (20), a list of seeds ([0, 1]) or {start = 0, count = 20}")


def load(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    r = _Reader(path)
    doc = r.doc
    for key in doc:
        if key not in TOP_KEYS:
            raise r.fail("", key, f"unknown key; known: {', '.join(sorted(TOP_KEYS))}")

    def get_list(key: str, default: list[Any]) -> list[str]:
        v = doc.get(key, default)
        if not isinstance(v, list) or not v:
            raise r.fail("", key, "must be a non-empty list")
        return [str(x) for x in v]

    # Data source: a string, or a table with `source` and the source's options.
    data_doc = doc.get("data", {})
    if isinstance(data_doc, str):
        data = DataSpec(data_doc)
    elif isinstance(data_doc, dict):
        opts = {k: v for k, v in data_doc.items() if k != "source"}
        data = DataSpec(str(data_doc.get("source", DataSpec().source)), opts)
    else:
        raise r.fail("", "data", "must be a string or a table")

    custom: dict[str, scenarios.Scenario] = {}
    for name, table in doc.get("scenario", {}).items():
        if not isinstance(table, dict):
            raise r.fail("scenario", name, "must be a table")
        bad = set(table) - {"real_fraction", "synthetic_fraction", "description"}
        if bad:
            raise r.fail(f"scenario.{name}", sorted(bad)[0], "unknown key; known: real_fraction, synthetic_fraction")
        try:
            custom[name] = scenarios.custom(name, **table)
        except (ValueError, TypeError) as e:
            raise r.fail(f"scenario.{name}", None, str(e)) from e
    scen_names = get_list("scenarios", ["1", "2", "3", "4"])
    scens = []
    for s in scen_names:
        if s in custom:
            scens.append(custom[s])
        elif s in scenarios.SCENARIOS:
            scens.append(scenarios.SCENARIOS[s])
        else:
            raise r.fail("", "scenarios", f"unknown scenario {s!r}; presets {', '.join(scenarios.SCENARIOS)} "
                         "or one defined under [scenario.NAME]")

    model_names = get_list("models", list(models.MODELS))
    hparams: dict[str, dict[str, Any]] = {}
    model_tables = doc.get("model", {})
    for name in model_tables:
        if name not in models.MODELS:
            raise r.fail(f"model.{name}", None, f"unknown model; known: {', '.join(models.MODELS)}")
    for name in model_names:
        if name not in models.MODELS:
            raise r.fail("", "models", f"unknown model {name!r}; known: {', '.join(models.MODELS)}")
        table = model_tables.get(name, {})
        for key in table:
            if key not in HPARAM_KEYS:
                raise r.fail(f"model.{name}", key, f"unknown hyper-parameter; known: {', '.join(sorted(HPARAM_KEYS))}")
        hp = model_hparams(name, table)
        for key in ("epochs", "batch_size", "resolution"):
            if not isinstance(hp[key], int) or hp[key] <= 0:
                raise r.fail(f"model.{name}", key, f"must be a positive integer, got {hp[key]!r}")
        if not isinstance(hp["lr"], int | float) or hp["lr"] <= 0:
            raise r.fail(f"model.{name}", "lr", f"must be a positive number, got {hp['lr']!r}")
        if hp["precision"] not in ("bf16", "fp32"):
            raise r.fail(f"model.{name}", "precision", "must be 'bf16' or 'fp32'")
        hparams[name] = hp

    augs = get_list("augmentations", list(augment.AUGMENTATIONS))
    for a in augs:
        if a not in augment.AUGMENTATIONS:
            raise r.fail("", "augmentations", f"unknown augmentation {a!r}; known: {', '.join(augment.AUGMENTATIONS)}")
    try:
        seeds = _seeds(doc.get("seeds", 20))
    except ValueError as e:
        raise r.fail("", "seeds", str(e)) from e
    pool = doc.get("pool")
    if pool is not None and not isinstance(pool, str):
        raise r.fail("", "pool", "must be a path string")
    if pool is None and any(s.needs_pool for s in scens):
        need = [s.name for s in scens if s.needs_pool]
        raise r.fail("", "scenarios", f"scenario(s) {', '.join(need)} add synthetic images but the grid sets no pool")

    runs = [
        RunSpec(m, s, a, seed, hparams[m], data, pool)
        for m in model_names for s in scens for a in augs for seed in seeds
    ]
    return Grid(path=path, name=str(doc.get("name", path.stem)),
                results=Path(str(doc.get("results", f"results/{path.stem}"))), data=data, pool=pool,
                save_weights=bool(doc.get("save_weights", False)), hparams=hparams, runs=runs)


def thesis_hparams(model: str) -> dict[str, Any]:
    """A model's hyper-parameters as `jobs/thesis.toml` sets them (the defaults of `mriaug run`)."""
    path = JOBS_DIR / "thesis.toml"
    table = tomllib.loads(path.read_text()).get("model", {}).get(model, {}) if path.exists() else {}
    return model_hparams(model, table)
