"""Run results: one JSON file per run id, written atomically, validated on read.

This module is the only writer and the only reader of result files. `RunResult` is a result with typed
parts, which the engine builds directly (`train.write_result`); `read` validates a file and upgrades older
layouts to today's in one place (`RunResult.from_dict`, for reading only), so the rest of mriaug reads fields
and never guesses at keys. History entries, validation, selection, env and timings stay JSON objects: their
readers (tables, tests) take them whole or by key, and the engine writes them as they are. The JSON keys are
the ones results have always had:

- schema 0 (no `schema` key): may lack `metrics.ece`, `data.split` (the dataset's given split),
  `data.pool_label` (older results wrote `data.pool_name`, or only the spec's pool table or the pool's
  folder told the name), `status` (done), `training` / `validation` / `selection`, `weights`.
- schema 1: every key written today.
- schema 2: the keys of schema 1, written from a `RunResult`: `data.split` is always there, and
  `data.pool_label` names the pool of every run that used one.

Any schema may hold `pretraining` (runs of a scenario with `pretrain`, since issue 37; absent otherwise): the pool
the run pretrained on (`pool`, `pool_path`, `pool_fingerprint`), `images`, `epochs`, `steps`, images per class
(`counts`), the pool lines drawn (`pool_rows`, `pool_sampling`) and one `history` entry per pretraining epoch.

Any schema may lack `env.container` (results written before it existed); where present it is null (the run was
not in a container) or the Apptainer image the run ran in: `image` (its path), `id` (the identity `make
container` stamps, null for an image built otherwise) and `built`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..checks import is_number
from ..errors import ResultError
from . import atomic, locks

REQUIRED = {
    "run_id": str, "spec": dict, "metrics": dict, "history": list, "counts": dict, "data": dict,
    "env": dict, "timings": dict,
}
REQUIRED_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion")
NUMBER_METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1")
# Absent from results written before they existed. Whole-scan scores (`metrics.scan_metrics`): test_scans counts.
OPTIONAL_METRICS = ("ece", "scan_accuracy", "scan_balanced_accuracy", "scan_ce", "test_scans")
# A finished run is "done"; one whose training loss became non-finite is "diverged" (metrics null).
STATUSES = ("done", "diverged")

# Version of the result file's layout (see the module docstring); results written before it existed count as 0.
SCHEMA = 2

_Part = TypeVar("_Part")


def _part(cls: type[_Part], obj: dict[str, Any]) -> _Part:
    """A part from its JSON object: the keys it names become fields, any other key is kept in `extra`."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
    make: Callable[..., _Part] = cls
    return make(**{k: v for k, v in obj.items() if k in names}, extra={k: v for k, v in obj.items() if k not in names})


def _dump(part: Any, omit_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A part's JSON object: its fields (those in `omit_none` only when set) and its extra keys."""
    out = {f.name: getattr(part, f.name) for f in dataclasses.fields(part)
           if f.name != "extra" and not (f.name in omit_none and getattr(part, f.name) is None)}
    return {**out, **part.extra}


@dataclass
class Metrics:
    """The test set's metrics (`metrics.classification_metrics`); every value is None for a diverged run."""

    test_ce: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, dict[str, Any]] | None = None
    confusion: list[list[int]] | None = None
    ece: float | None = None  # absent from results before ECE (and from diverged runs)
    confusion_labels: list[str] | None = None
    # Whole-scan scores (`metrics.scan_metrics`); absent from results before them (and from diverged runs).
    scan_accuracy: float | None = None
    scan_balanced_accuracy: float | None = None
    scan_ce: float | None = None
    test_scans: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """A metric by its name (`statistics.METRICS`); None where the result has none."""
        if name in _METRIC_NUMBERS:
            return getattr(self, name)
        return self.extra.get(name)

    def recall(self, cls: str) -> Any:
        """One class's recall; None where the result has none."""
        return ((self.per_class or {}).get(cls) or {}).get("recall")

    def to_dict(self) -> dict[str, Any]:
        return _dump(self, omit_none=("ece", "confusion_labels", "scan_accuracy", "scan_balanced_accuracy",
                                      "scan_ce", "test_scans"))


_METRIC_NUMBERS = (*NUMBER_METRICS, *OPTIONAL_METRICS)


@dataclass
class DataInfo:
    """Which data, split and pool a run used (collect keeps settings apart by it)."""

    fingerprint: str | None = None
    source: dict[str, Any] | None = None
    resolution: int | None = None
    pool_fingerprint: str | None = None
    pool_path: str | None = None
    pool_label: str | None = None  # the pool's name in tables; None for a run without a pool
    split: dict[str, Any] = field(default_factory=lambda: {"kind": "given"})
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A pool used without a name (`mriaug run --pool DIR`) is named by its folder, in tables and in the file.
        if self.pool_label is None and self.pool_path:
            self.pool_label = Path(self.pool_path).name

    @property
    def split_kind(self) -> str:
        return str(self.split.get("kind", "given"))

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


@dataclass
class Counts:
    """Images per class: the real and synthetic training images, the test and validation images."""

    real: dict[str, int] = field(default_factory=dict)
    synthetic: dict[str, int] = field(default_factory=dict)
    test: dict[str, int] | None = None
    val: dict[str, int] | None = None  # absent from diverged runs
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _dump(self, omit_none=("test", "val"))


@dataclass
class Training:
    """How a finished run was trained: budget, length, selection and optimizer as they ran."""

    budget: str = "epochs"  # the only budget before budgets were recorded
    epochs: int | None = None
    steps: int | None = None
    select: str = "last"
    selected_epoch: int | None = None  # whose weights were tested
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    precision: str | None = None  # what ran: "bf16" or "fp32"
    # class_weight = "balanced": each class's weight in the training loss (and in the validation loss selected on)
    class_weights: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _dump(self, omit_none=("class_weights",))


@dataclass
class Packed:
    """A run trained in one model with other seeds of its cell (same draws as its separate run)."""

    how: str | None = None
    pack: str | None = None  # the pack's id
    size: int | None = None
    seeds: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


@dataclass
class Pretraining:
    """How a run pretrained on synthetic images before its scenario's training (`[scenario.NAME] pretrain`)."""

    pool: str | None = None  # the pool's name in the grid
    pool_path: str | None = None
    pool_fingerprint: str | None = None
    images: int | None = None
    epochs: int | None = None
    steps: int | None = None  # optimizer steps of the pretraining (not counted in `training.steps`)
    counts: dict[str, int] = field(default_factory=dict)
    pool_rows: list[int] = field(default_factory=list)
    pool_sampling: dict[str, dict[str, int]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _dump(self)


@dataclass(eq=False)
class RunResult:
    """One run's result. `spec` is the run's spec as `RunSpec.to_dict` wrote it (its hash is the run id).
    `schema` is the layout the file was written in; `to_dict` writes today's, as the object is upgraded."""

    run_id: str
    spec: dict[str, Any]
    metrics: Metrics
    data: DataInfo
    counts: Counts
    history: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    status: str = "done"
    diverged_at_epoch: int | None = None
    training: Training | None = None  # None for diverged runs and results from before it was recorded
    validation: dict[str, Any] | None = None  # the selected epoch's history entry, where there was validation
    selection: dict[str, Any] | None = None  # the training rows and pool rows the run drew
    packed: Packed | None = None
    weights: str | None = None
    pretraining: Pretraining | None = None
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def model(self) -> str:
        return str(self.spec["model"])

    @property
    def seed(self) -> int:
        return int(self.spec["seed"])

    @property
    def augmentation(self) -> str:
        return str(self.spec["augmentation"])

    @property
    def scenario(self) -> str:
        """The scenario's name (a number in older results) as text."""
        return str(self.spec["scenario"]["name"])

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.spec["hparams"])

    @property
    def label(self) -> str:
        return f"{self.model}/s{self.scenario}/{self.augmentation}/seed{self.seed}"

    @property
    def data_spec(self) -> dict[str, Any]:
        """The spec's data part (`DataSpec.describe`: source and options); {} in results without one."""
        d = self.spec.get("data")
        return d if isinstance(d, dict) else {}

    @property
    def train_s(self) -> float | None:
        v = self.timings.get("train_s")
        return None if v is None else float(v)

    @classmethod
    def from_dict(cls, obj: Any, path: str | Path) -> RunResult:
        """A result from a file's JSON object (`read`), validated (errors name `path`) and upgraded to today's
        layout. The engine builds its results from their parts instead."""
        _validate(obj, Path(path))
        data = dict(obj["data"])
        pool_name = data.pop("pool_name", None)  # schema 0's name of pool_label
        named = obj["spec"].get("pool") if isinstance(obj["spec"].get("pool"), dict) else {}
        # The pool's name where the result records one, else the spec's pool table's (else DataInfo takes its
        # folder's).
        label = data.get("pool_label") or pool_name or named.get("name")
        data["pool_label"] = str(label) if label else None
        if not isinstance(data.get("split"), dict) or not data["split"]:
            data["split"] = {"kind": "given"}  # before splits were recorded every run used the given split
        if not isinstance(data.get("source"), dict):
            data["source"] = None
        metrics = dict(obj["metrics"])
        if not isinstance(metrics.get("per_class"), dict):
            metrics["per_class"] = None
        counts = dict(obj["counts"])
        for key in ("test", "val"):
            if not isinstance(counts.get(key), dict):
                counts[key] = None
        training, packed, pretraining = obj.get("training"), obj.get("packed"), obj.get("pretraining")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(
            run_id=obj["run_id"], spec=obj["spec"], metrics=_part(Metrics, metrics), data=_part(DataInfo, data),
            counts=_part(Counts, counts), history=obj["history"], env=obj["env"], timings=obj["timings"],
            status=obj.get("status", "done"), diverged_at_epoch=obj.get("diverged_at_epoch"),
            training=_part(Training, training) if isinstance(training, dict) else None,
            validation=obj.get("validation"), selection=obj.get("selection"),
            packed=_part(Packed, packed) if isinstance(packed, dict) else None,
            pretraining=_part(Pretraining, pretraining) if isinstance(pretraining, dict) else None,
            weights=obj.get("weights"), schema=obj.get("schema", 0),
            extra={k: v for k, v in obj.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file: the keys results have always had, in today's layout (`SCHEMA`)."""
        out: dict[str, Any] = {
            "schema": SCHEMA, "run_id": self.run_id, "spec": self.spec, "metrics": self.metrics.to_dict(),
            "history": self.history, "counts": self.counts.to_dict(), "data": self.data.to_dict(), "env": self.env,
            "timings": self.timings, "weights": self.weights,
        }
        # A done run's status is implied (results never wrote it); a diverged run records its epoch, and no
        # training or validation part (nothing was selected or tested).
        if self.status != "done":
            out["status"] = self.status
        if self.diverged_at_epoch is not None:
            out["diverged_at_epoch"] = self.diverged_at_epoch
        if self.training is not None:
            out["training"] = self.training.to_dict()
        if self.training is not None or self.validation is not None:
            out["validation"] = self.validation
        if self.selection is not None:
            out["selection"] = self.selection
        if self.packed is not None:
            out["packed"] = self.packed.to_dict()
        if self.pretraining is not None:
            out["pretraining"] = self.pretraining.to_dict()
        return {**out, **self.extra}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunResult):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self))


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
    """The lock of one run (see `mriaug.store.locks`); whoever takes it removes the temporary files that a
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


def write(results_dir: str | Path, result: RunResult) -> Path:
    """Write a result, checked as `read` checks it (so a result that could not be read back is never written)."""
    path = path_for(results_dir, result.run_id)
    obj = finite(result.to_dict())
    _validate(obj, path)  # NaN metrics of a done run become null, which read would refuse
    atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def read(path: str | Path) -> RunResult:
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
    return RunResult.from_dict(obj, path)


def _validate(obj: Any, path: Path) -> None:
    """Every check a result passes before it is used; each failure names the key at fault."""
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
        if not (is_number(v) and math.isfinite(v)) and not (status == "diverged" and v is None):
            raise ResultError(f"{path}: 'metrics.{key}' is not a number ({v!r})")
    if status == "diverged" and not (is_number(obj.get("diverged_at_epoch")) and obj["diverged_at_epoch"] >= 1):
        raise ResultError(f"{path}: a diverged run without 'diverged_at_epoch'")
    spec = obj["spec"]
    spec_types: tuple[tuple[str, type], ...] = (("model", str), ("augmentation", str), ("seed", int),
                                                ("scenario", dict), ("hparams", dict))
    for key, spec_type in spec_types:
        if not isinstance(spec.get(key), spec_type):
            raise ResultError(f"{path}: missing or malformed key 'spec.{key}'")
    if "name" not in spec["scenario"]:
        raise ResultError(f"{path}: missing key 'spec.scenario.name'")
    _validate_counts(obj["counts"], path)
    if not isinstance(spec["scenario"]["name"], str | int) or isinstance(spec["scenario"]["name"], bool):
        raise ResultError(f"{path}: 'spec.scenario.name' is not a name ({spec['scenario']['name']!r})")
    epochs = spec["hparams"].get("epochs")
    if epochs is not None and not is_number(epochs):
        raise ResultError(f"{path}: 'spec.hparams.epochs' is not a number ({epochs!r})")
    for key in ("fingerprint", "pool_fingerprint"):
        if obj["data"].get(key) is not None and not isinstance(obj["data"][key], str):
            raise ResultError(f"{path}: 'data.{key}' is not a string")
    _validate_container(obj["env"].get("container"), path)
    _validate_pretraining(obj, path)
    train_s = obj["timings"].get("train_s")
    if train_s is not None and not is_number(train_s):
        raise ResultError(f"{path}: 'timings.train_s' is not a number ({train_s!r})")
    if path.stem != obj["run_id"]:
        raise ResultError(f"{path}: file name does not match its run_id {obj['run_id']}")


def _validate_container(c: Any, path: Path) -> None:
    """`env.container`: null outside an image, else the image's path and its identity (a string or null)."""
    if c is None:
        return
    if not isinstance(c, dict) or not isinstance(c.get("image"), str) or not c["image"]:
        raise ResultError(f"{path}: 'env.container' is neither null nor an image ({c!r})")
    for key in ("id", "built"):
        if c.get(key) is not None and not isinstance(c[key], str):
            raise ResultError(f"{path}: 'env.container.{key}' is not a string ({c[key]!r})")


def _validate_pretraining(obj: dict[str, Any], path: Path) -> None:
    """A pretraining record names its pool's content and its positive sizes, and goes with a spec that asks for it."""
    pre, asked = obj.get("pretraining"), obj["spec"].get("pretrain")
    if pre is None and asked is None:
        return
    if pre is None or asked is None:
        which = "'spec.pretrain' without 'pretraining'" if pre is None else "'pretraining' without 'spec.pretrain'"
        raise ResultError(f"{path}: {which}")
    if not isinstance(pre, dict):
        raise ResultError(f"{path}: 'pretraining' is not an object")
    if not isinstance(pre.get("pool_fingerprint"), str):
        raise ResultError(f"{path}: 'pretraining.pool_fingerprint' is not a string ({pre.get('pool_fingerprint')!r})")
    for key in ("images", "epochs", "steps"):
        v = pre.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            raise ResultError(f"{path}: 'pretraining.{key}' is not a whole number above 0 ({v!r})")


def _validate_counts(counts: dict[str, Any], path: Path) -> None:
    """The real and synthetic training images per class: counts, each a whole number >= 0."""
    for key in ("real", "synthetic"):
        per_class = counts.get(key)
        if not isinstance(per_class, dict):
            raise ResultError(f"{path}: missing or malformed key 'counts.{key}'")
        for name, n in per_class.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ResultError(f"{path}: 'counts.{key}.{name}' is not a count ({n!r})")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def scan(results_dir: str | Path) -> Iterator[tuple[Path, RunResult | ResultError]]:
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
