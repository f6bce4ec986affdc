"""Run results: one JSON file per run id, written atomically, validated on read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import atomic
from .errors import ResultError

REQUIRED = {
    "run_id": str, "spec": dict, "metrics": dict, "history": list, "counts": dict, "data": dict,
    "env": dict, "timings": dict,
}
REQUIRED_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion")

# Version of the result file's layout; results written before it existed count as version 0.
SCHEMA = 1


def path_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def checkpoint_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / ".checkpoints" / f"{run_id}.pt"


def weights_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / "weights" / f"{run_id}.safetensors"


def write(results_dir: str | Path, result: dict[str, Any]) -> Path:
    path = path_for(results_dir, result["run_id"])
    atomic.write_json(path, result)
    return path


def read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); cut short or corrupted?") from e
    except OSError as e:
        raise ResultError(f"{path}: cannot read ({e})") from e
    if not isinstance(obj, dict):
        raise ResultError(f"{path}: expected a JSON object")
    for key, typ in REQUIRED.items():
        if not isinstance(obj.get(key), typ):
            raise ResultError(f"{path}: missing or malformed key '{key}'")
    for key in REQUIRED_METRICS:
        if key not in obj["metrics"]:
            raise ResultError(f"{path}: missing key 'metrics.{key}'")
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1"):
        v = obj["metrics"][key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ResultError(f"{path}: 'metrics.{key}' is not a number ({v!r})")
    spec = obj["spec"]
    spec_types: tuple[tuple[str, type], ...] = (("model", str), ("augmentation", str), ("seed", int),
                                                ("scenario", dict), ("hparams", dict))
    for key, spec_type in spec_types:
        if not isinstance(spec.get(key), spec_type):
            raise ResultError(f"{path}: missing or malformed key 'spec.{key}'")
    if "name" not in spec["scenario"]:
        raise ResultError(f"{path}: missing key 'spec.scenario.name'")
    for key in ("real", "synthetic"):
        if not isinstance(obj["counts"].get(key), dict):
            raise ResultError(f"{path}: missing or malformed key 'counts.{key}'")
    if path.stem != obj["run_id"]:
        raise ResultError(f"{path}: file name does not match its run_id {obj['run_id']}")
    return obj


def scan(results_dir: str | Path) -> Iterator[tuple[Path, dict[str, Any] | ResultError]]:
    """Every result file in a folder: its content, or the error that makes it unusable."""
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            yield path, read(path)
        except ResultError as e:
            yield path, e


def done_ids(results_dir: str | Path) -> set[str]:
    return {p.stem for p, r in scan(results_dir) if not isinstance(r, ResultError)}


def done_ids_of(results_dir: str | Path, run_ids: list[str]) -> set[str]:
    """Those of `run_ids` with a readable result (reads only their files, not the whole folder)."""
    out = set()
    for rid in run_ids:
        try:
            read(path_for(results_dir, rid))
        except ResultError:
            continue
        out.add(rid)
    return out
