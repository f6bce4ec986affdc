"""Run results: one JSON file per run id, written atomically, validated on read."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from . import atomic, locks
from .errors import ResultError

REQUIRED = {
    "run_id": str, "spec": dict, "metrics": dict, "history": list, "counts": dict, "data": dict,
    "env": dict, "timings": dict,
}
REQUIRED_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion")
NUMBER_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1")
OPTIONAL_METRICS = ("ece",)
# A finished run is "done"; one whose training loss became non-finite is "diverged" (metrics null).
STATUSES = ("done", "diverged")

# Version of the result file's layout; results written before it existed count as version 0.
SCHEMA = 1


def path_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def checkpoint_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / ".checkpoints" / f"{run_id}.pt"


def weights_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / "weights" / f"{run_id}.safetensors"


def lock_for(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / ".locks" / f"{run_id}.lock"


def run_lock(results_dir: str | Path, run_id: str, *, wait: bool = True,
             on_wait: Callable[[dict[str, Any]], None] | None = None) -> AbstractContextManager[locks.FileLock]:
    """The lock of one run (see `mriaug.locks`); whoever takes it removes the temporary files that a
    killed writer of this run left (checkpoint, weights, result)."""
    root = Path(results_dir)

    def cleanup() -> None:
        locks.remove_leftovers([(root / ".checkpoints", f".{run_id}.pt.*.tmp"),
                                (root / "weights", f".{run_id}.safetensors.*.tmp"), (root, f".{run_id}.json.*.tmp")])

    return locks.held(lock_for(root, run_id), wait=wait, cleanup=cleanup, on_wait=on_wait)


def finite(obj: Any) -> Any:
    """A copy with every non-finite float replaced by None: JSON has no NaN or Infinity."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def write(results_dir: str | Path, result: dict[str, Any]) -> Path:
    path = path_for(results_dir, result["run_id"])
    atomic.write_text(path, json.dumps(finite(result), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(), parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); cut short or corrupted?") from e
    except UnicodeDecodeError as e:
        raise ResultError(f"{path}: not a text file (binary?), not a result") from e
    except ValueError as e:  # NaN / Infinity literals
        raise ResultError(f"{path}: not valid JSON ({e})") from e
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
    status = obj.get("status", "done")
    if status not in STATUSES:
        raise ResultError(f"{path}: 'status' is {status!r}, not one of {', '.join(STATUSES)}")
    # `ece` is checked only where present: results written before it existed lack it.
    for key in (*NUMBER_METRICS, *OPTIONAL_METRICS):
        if key not in obj["metrics"]:
            continue
        v = obj["metrics"][key]
        if not (_is_number(v) and math.isfinite(v)) and not (status == "diverged" and v is None):
            raise ResultError(f"{path}: 'metrics.{key}' is not a number ({v!r})")
    if status == "diverged" and not (_is_number(obj.get("diverged_at_epoch")) and obj["diverged_at_epoch"] >= 1):
        raise ResultError(f"{path}: a diverged run without 'diverged_at_epoch'")
    spec = obj["spec"]
    spec_types: tuple[tuple[str, type], ...] = (("model", str), ("augmentation", str), ("seed", int),
                                                ("scenario", dict), ("hparams", dict))
    for key, spec_type in spec_types:
        if not isinstance(spec.get(key), spec_type):
            raise ResultError(f"{path}: missing or malformed key 'spec.{key}'")
    if "name" not in spec["scenario"]:
        raise ResultError(f"{path}: missing key 'spec.scenario.name'")
    for key in ("real", "synthetic"):
        counts = obj["counts"].get(key)
        if not isinstance(counts, dict):
            raise ResultError(f"{path}: missing or malformed key 'counts.{key}'")
        for name, n in counts.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ResultError(f"{path}: 'counts.{key}.{name}' is not a count ({n!r})")
    if not isinstance(spec["scenario"]["name"], str | int) or isinstance(spec["scenario"]["name"], bool):
        raise ResultError(f"{path}: 'spec.scenario.name' is not a name ({spec['scenario']['name']!r})")
    epochs = spec["hparams"].get("epochs")
    if epochs is not None and not _is_number(epochs):
        raise ResultError(f"{path}: 'spec.hparams.epochs' is not a number ({epochs!r})")
    for key in ("fingerprint", "pool_fingerprint"):
        if obj["data"].get(key) is not None and not isinstance(obj["data"][key], str):
            raise ResultError(f"{path}: 'data.{key}' is not a string")
    train_s = obj["timings"].get("train_s")
    if train_s is not None and not _is_number(train_s):
        raise ResultError(f"{path}: 'timings.train_s' is not a number ({train_s!r})")
    if path.stem != obj["run_id"]:
        raise ResultError(f"{path}: file name does not match its run_id {obj['run_id']}")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def is_diverged(result: dict[str, Any]) -> bool:
    return result.get("status") == "diverged"


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
