"""Synthetic image pools: a folder of images plus `manifest.jsonl` and `pool.json`.

`pool.json` (written atomically, before the manifest; see `PoolWriter.flush`) says which dataset the
source indices refer to and how the images were made:
    {"format": 1, "data_fingerprint": "...", "data_source": {...}, "resolution": 128, "spend_usd": 0.0,
     "runs": [{"generator": "transform", "generator_params": {...}, "kept_for": null, "trained_on": null,
               "images": 120, "started": "...", "finished": "..."}, ...],
     "generator": "...", "generator_params": {...},   # those of the latest run that added images
     "kept_for": {"scenario": "4", "seed": 0} | null,
     "trained_on": [{"kept_for": ["4", 0] | null, "classes": [...] | null, "n_rows": ..., "rows_sha256": ...,
                     "data_fingerprint": ...}]}
`runs` has one record per `mriaug synth` run that added images. The pool-level keys are derived from it:
- `kept_for`: the (scenario, seed) whose kept real rows every source was drawn from, when every run
  was restricted to that same kept set; null when any run drew from all train rows, or runs were made
  for different kept sets (the pool then holds variations of images some of those runs drop).
- `trained_on`: the distinct training sets of generators trained on this dataset (the diffusion
  model) whose images are in the pool; [] when none was (transform, openai). A `kept_for` of null there
  means the model saw every train row of its classes, including the ones a scenario drops.
`manifest.jsonl` has one line per image:
    {"file": "images/Mild_Demented/000123_0.png", "class": "Mild_Demented", "label": 0,
     "source_index": 123, "source_sha256": "...", "generator": "transform", "params": {...}, "sha256": "..."}
`source_index` is the row of the source image in the train split; only train images may seed a
synthetic one, and a run uses only variations of the real images it keeps. `source_sha256` is the
hash of that row's pixels, so a pool used with a re-split dataset is caught line by line.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import PoolError, UnknownClassError
from ..store import atomic, locks
from . import sources as data_mod
from .kept_for import KeptFor
from .sources import Dataset, decode_image

FORMAT = 1
MANIFEST = "manifest.jsonl"
META = "pool.json"
LOCK = ".mriaug.lock"
# Keys that describe one run; the pool-level copies are derived from `runs` on every flush.
RUN_KEYS = ("generator_params", "kept_for", "trained_on")
REMAKE = "re-make it with `mriaug synth --out {path} ...`"


@dataclass
class Pool:
    path: Path
    images: np.ndarray  # (M, H, W) uint8 at the dataset's resolution
    labels: np.ndarray  # (M,)
    sources: np.ndarray  # (M,) row in the train split
    entries: list[dict[str, Any]]
    meta: dict[str, Any]  # pool.json as read; see the module docstring and `training_conflicts`
    fingerprint: str

    def available(self, label: int, kept: np.ndarray) -> np.ndarray:
        """Pool rows of class `label` whose source is among the kept real train rows."""
        return np.flatnonzero((self.labels == label) & np.isin(self.sources, kept))


def read_meta(path: str | Path) -> dict[str, Any]:
    """pool.json of the pool folder `path` (or the file itself); {} when there is none yet.
    A file that is not a JSON object is a PoolError naming it."""
    path = Path(path)
    f = path if path.name == META and not path.is_dir() else path / META
    if not f.exists():
        return {}
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as err:
        raise PoolError(f"{f}: not valid JSON ({err.msg}, line {err.lineno}); "
                        f"{REMAKE.format(path=f.parent)} or restore the file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise PoolError(f"{f}: cannot be read ({err})") from err
    if not isinstance(meta, dict):
        raise PoolError(f"{f}: expected a JSON object, got {type(meta).__name__}")
    return meta


def source_sha256(dataset: Dataset, row: int) -> str:
    """Hash of the pixels of train row `row`: ties a manifest line to the very image it was made from."""
    return atomic.sha256_bytes(np.ascontiguousarray(dataset.train_x[row]).tobytes())


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Manifest lines, each checked for the required keys; a bad line is named by number."""
    entries = []
    mf = path / MANIFEST
    if not mf.exists():
        raise PoolError(f"{path}: not a pool (no {MANIFEST}); create one with `mriaug synth`")
    for n, line in enumerate(mf.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as err:
            raise PoolError(f"{mf}, line {n}: not valid JSON ({err.msg})") from err
        if not isinstance(e, dict):
            raise PoolError(f"{mf}, line {n}: expected a JSON object")
        missing = {"file", "class", "source_index", "generator", "sha256"} - set(e)
        if missing:
            raise PoolError(f"{mf}, line {n}: missing key(s) {sorted(missing)}")
        e["_line"] = n
        entries.append(e)
    return entries


# Pools kept in this process while `cached_in_process()` is active, by folder, manifest and dataset.
_memory: dict[tuple[str, str | None, str, bool], Pool] | None = None


@contextlib.contextmanager
def cached_in_process() -> Iterator[None]:
    """Within the block, datasets (`data.cached_in_process`) and pools are read and checked once per process;
    a pool whose manifest changes is read again. Packed Slurm tasks train many runs inside one."""
    global _memory
    outer = _memory
    _memory = {} if outer is None else outer
    try:
        with data_mod.cached_in_process():
            yield
    finally:
        _memory = outer


def load(path: str | Path, dataset: Dataset, *, verify_hashes: bool = True) -> Pool:
    """Load and validate a pool against the dataset its sources come from."""
    if _memory is None or not Path(path).is_dir():
        return _load(Path(path), dataset, verify_hashes)
    key = (str(Path(path).resolve()), manifest_fingerprint(path), dataset.fingerprint, verify_hashes)
    if key not in _memory:
        _memory[key] = _load(Path(path), dataset, verify_hashes)
    return _memory[key]


def synth_command(path: str | Path, dataset: Dataset) -> str:
    """The `mriaug synth` command that makes a pool at `path` from exactly `dataset`'s training part: its source
    and every data option (a pool's sources are rows of one split; a merge of classes is left out, as pools are
    made for the source's own classes)."""
    import shlex

    src = dataset.source or {}
    words = ["mriaug", "synth", "--out", str(path), "--data", str(src.get("source", data_mod.DEFAULT_SOURCE))]
    for key, value in sorted((src.get("options") or {}).items()):
        if key in data_mod.LABEL_OPTIONS:
            continue
        text = (json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict)
                else str(value).lower() if isinstance(value, bool) else str(value))
        words += ["-o", f"{key}={text}"]
    return " ".join(shlex.quote(w) for w in words)


def _load(path: Path, dataset: Dataset, verify_hashes: bool) -> Pool:
    if not path.is_dir():
        raise PoolError(f"pool {path}: no such folder; create it from this data with `{synth_command(path, dataset)}` "
                        "(or, for a grid's pools, `mriaug synth --grid GRID`)")
    meta = read_meta(path)
    meta_file = path / META
    # Without the fingerprint the source rows could refer to another split: refuse rather than guess.
    if not meta_file.exists():
        raise PoolError(f"{meta_file}: missing, so the dataset its source rows refer to is unknown; "
                        f"{REMAKE.format(path=path)}")
    if not meta.get("data_fingerprint"):
        raise PoolError(f"{meta_file}: no data_fingerprint, so the dataset its source rows refer to is unknown; "
                        f"{REMAKE.format(path=path)}")
    # A pool made for the source's classes serves a task that merges them (same images and split; labels mapped).
    if meta["data_fingerprint"] not in (dataset.fingerprint, dataset.unmerged_fingerprint):
        raise PoolError(
            f"pool {path} was made from dataset {meta['data_fingerprint']} ({meta.get('data_source')}), "
            f"but this run's data is {dataset.fingerprint} ({dataset.source}); its source indices do not apply"
        )
    entries = read_manifest(path)
    n_train = len(dataset.train_y)
    images, labels, sources = [], [], []
    for e in entries:
        where = f"{path / MANIFEST}, line {e['_line']}"
        try:
            label = dataset.label(e["class"])
        except UnknownClassError as err:
            raise PoolError(f"{where}: {err}") from err
        src = e["source_index"]
        if not isinstance(src, int) or isinstance(src, bool) or not 0 <= src < n_train:
            raise PoolError(f"{where}: source_index {src!r} is not a row of the train split (0..{n_train - 1})")
        if int(dataset.train_y[src]) != label:
            raise PoolError(
                f"{where}: source train row {src} is {dataset.classes[int(dataset.train_y[src])]}, "
                f"but the image is labelled {dataset.classes[label]}"
            )
        if "source_sha256" in e and e["source_sha256"] != source_sha256(dataset, src):
            raise PoolError(f"{where}: source train row {src} is not the image this variation was made from "
                            f"(the dataset was re-split or changed); {REMAKE.format(path=path)}")
        rel = e["file"]
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise PoolError(f"{where}: file {rel!r} must be a path inside the pool folder")
        f = path / rel
        if not f.is_file():
            raise PoolError(f"{where}: image file {f} is missing")
        data = f.read_bytes()
        if verify_hashes and atomic.sha256_bytes(data) != e["sha256"]:
            raise PoolError(f"{where}: sha256 of {f} does not match the manifest (file changed or truncated)")
        image = decode_image(data, None, str(f))
        if image.shape != (dataset.resolution, dataset.resolution):
            raise PoolError(f"{where}: image {f} is {image.shape[1]}x{image.shape[0]}, but the dataset's images are "
                            f"{dataset.resolution}x{dataset.resolution}; {REMAKE.format(path=path)}")
        images.append(image)
        labels.append(label)
        sources.append(src)
    shape = (0, dataset.resolution, dataset.resolution)
    return Pool(
        path=path,
        images=np.stack(images) if images else np.zeros(shape, np.uint8),
        labels=np.asarray(labels, np.int64),
        sources=np.asarray(sources, np.int64),
        entries=entries,
        meta=meta,
        fingerprint=atomic.sha256_file(path / MANIFEST)[:16],
    )


def trained_on(pool: Pool) -> list[dict[str, Any]]:
    """The distinct training sets of the models trained on this dataset whose images are in the pool
    (`pool.json`'s `trained_on`). A pool.json from before that key was kept gets them from the manifest:
    diffusion entries always named the model's kept set in `params.kept_for`."""
    if "trained_on" in pool.meta and "runs" in pool.meta:
        return list(pool.meta["trained_on"] or [])
    out: list[dict[str, Any]] = []
    for e in pool.entries:
        if e["generator"] == "diffusion":
            t = {"kept_for": (e.get("params") or {}).get("kept_for")}
            if t not in out:
                out.append(t)
    return out


def training_conflicts(pool: Pool, run: KeptFor) -> list[dict[str, Any]]:
    """The training sets of `trained_on(pool)` that are not the kept set of `run`: a model trained on
    one of them may have seen real images that run drops (`kept_for` null: all train rows)."""
    want = run.pair()
    return [t for t in trained_on(pool) if t.get("kept_for") != want]


def saw_validation(pool: Pool) -> list[dict[str, Any]]:
    """The training sets of `trained_on(pool)` that may include validation images: every model not recorded
    as trained on the training part only (`trained_part` = "fit"; models made before it was recorded)."""
    return [t for t in trained_on(pool) if t.get("trained_part") != "fit"]


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _kept_for_record(value: Any) -> dict[str, Any] | None:
    kept = KeptFor.from_any(value)
    return kept.record() if kept else None


@functools.lru_cache(maxsize=256)
def _manifest_hash(path: str, mtime_ns: int, size: int) -> str:
    return atomic.sha256_file(path)[:16]


def manifest_fingerprint(pool: str | os.PathLike[str] | None) -> str | None:
    """What a pool holds: the hash of its manifest (as `load` computes it); None when it has none yet.
    Cached by the file's mtime and size, so planning a grid of many runs reads each manifest once."""
    if pool is None:
        return None
    manifest = Path(pool) / MANIFEST
    try:
        st = os.stat(manifest)
    except OSError:
        return None
    return _manifest_hash(str(manifest), st.st_mtime_ns, st.st_size)


def locked(path: str | Path, on_wait: Any = None) -> Any:
    """The pool's lock (see `mriaug.store.locks`): extension, manifest and pool.json updates happen under it.
    Whoever takes it removes the temporary files of writers that died mid-write."""
    path = Path(path)

    def cleanup() -> None:
        locks.remove_leftovers([(path, f".{MANIFEST}.*.tmp"), (path, f".{META}.*.tmp"),
                                *((d, ".*.png.*.tmp") for d in sorted(path.glob("images/*")))])

    return locks.held(path / LOCK, cleanup=cleanup, on_wait=on_wait)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class PoolWriter:
    """Adds images to a pool; each image is written atomically and the manifest is rewritten
    atomically on `flush`, so a crash leaves a valid (shorter) pool that a rerun resumes.

    Per-run settings (`generator_params`, `kept_for`, `trained_on`) go into this run's record in
    `pool.json`'s `runs` (they may be passed in `extra_meta` or as keywords); the pool-level keys are
    derived from all runs, so a rerun without `--kept-for` cannot leave a stale `kept_for` behind."""

    def __init__(self, path: str | Path, dataset: Dataset, generator: str, extra_meta: dict | None = None, *,
                 generator_params: dict[str, Any] | None = None, kept_for: KeptFor | None = None,
                 trained_on: dict[str, Any] | None = None):
        self.path = Path(path)
        self.dataset = dataset
        meta_file = self.path / META
        self.meta: dict[str, Any] = read_meta(self.path)
        has_manifest = (self.path / MANIFEST).exists()
        self.entries = read_manifest(self.path) if has_manifest else []
        if self.meta.get("data_fingerprint") not in (None, dataset.fingerprint):
            raise PoolError(f"pool {self.path} belongs to another dataset ({self.meta['data_fingerprint']}), "
                            f"this one is {dataset.fingerprint}; use another --out")
        if self.entries and not self.meta.get("data_fingerprint"):
            raise PoolError(f"{meta_file}: missing or without data_fingerprint, so the dataset of the "
                            f"{len(self.entries)} image(s) in {self.path / MANIFEST} is unknown; use another --out")
        for e in self.entries:
            line = e.pop("_line", None)
            src = e["source_index"]
            if "source_sha256" in e and (not isinstance(src, int) or not 0 <= src < len(dataset.train_y)
                                         or e["source_sha256"] != source_sha256(dataset, src)):
                raise PoolError(f"{self.path / MANIFEST}, line {line}: source train row {src} is not the image "
                                f"this variation was made from; use another --out")
        extra = dict(extra_meta or {})
        run = {k: extra.pop(k) for k in RUN_KEYS if k in extra}
        if generator_params is not None:
            run["generator_params"] = generator_params
        if kept_for is not None:
            run["kept_for"] = kept_for
        if trained_on is not None:
            run["trained_on"] = trained_on
        self.run: dict[str, Any] = {"generator": generator, "generator_params": run.get("generator_params"),
                                    "kept_for": _kept_for_record(run.get("kept_for")),
                                    "trained_on": run.get("trained_on"), "images": 0, "started": _now()}
        if "runs" not in self.meta:
            self.meta["runs"] = self._legacy_runs()
        self.meta.update({"format": FORMAT, "data_fingerprint": dataset.fingerprint,
                          "data_source": dataset.source, "resolution": dataset.resolution})
        self.meta.update(extra)
        self.meta.setdefault("spend_usd", 0.0)
        self._run_spend: dict[str, Any] = {}  # this run's spend so far (`set_run_spend`)
        self._spend_recorded: dict[str, Any] = {}  # the part of it already added to pool.json
        self._derive()

    def _legacy_runs(self) -> list[dict[str, Any]]:
        """Runs of a pool written before `runs` was kept: one record per generator, from the manifest.
        Its old top-level `kept_for` may be stale (it survived later runs), so it is not trusted."""
        runs: dict[tuple[str, str], dict[str, Any]] = {}
        for e in self.entries:
            params = e.get("params") or {}
            trained = None
            if e["generator"] == "diffusion":  # its params always named the model's kept set
                trained = {"kept_for": params.get("kept_for"), "classes": None,
                           "n_rows": params.get("trained_rows"), "rows_sha256": params.get("rows_sha256")}
            key = (e["generator"], json.dumps(trained, sort_keys=True))
            r = runs.setdefault(key, {"generator": e["generator"], "generator_params": None, "kept_for": None,
                                      "trained_on": trained, "images": 0, "legacy": True})
            r["images"] += 1
        return list(runs.values())

    def _derive(self) -> None:
        """Pool-level keys from the runs (and the current one once it has added images)."""
        runs = self.meta["runs"]
        if runs:
            latest = runs[-1]
            self.meta["generator"] = latest["generator"]
            self.meta["generator_params"] = latest.get("generator_params")
            kept = [r.get("kept_for") for r in runs]
            self.meta["kept_for"] = kept[0] if kept[0] is not None and all(k == kept[0] for k in kept) else None
        else:  # nothing made yet: the pool is what this run is about to make
            self.meta["generator"] = self.run["generator"]
            self.meta["generator_params"] = self.run["generator_params"]
            self.meta["kept_for"] = self.run["kept_for"]
        trained: list[dict[str, Any]] = []
        for r in runs:
            if r.get("trained_on") is not None and r["trained_on"] not in trained:
                trained.append(r["trained_on"])
        self.meta["trained_on"] = trained

    def done(self) -> set[tuple[int, int]]:
        """(source_index, variation) pairs already in the pool."""
        return {(e["source_index"], e.get("variation", 0)) for e in self.entries}

    def add(self, image: np.ndarray, source_index: int, variation: int, generator: str,
            params: dict[str, Any]) -> dict[str, Any]:
        label = int(self.dataset.train_y[source_index])
        name = self.dataset.classes[label]
        rel = f"images/{name}/{source_index:06d}_{variation}.png"
        data = png_bytes(image)
        atomic.write_bytes(self.path / rel, data)
        entry = {"file": rel, "class": name, "label": label, "source_index": int(source_index),
                 "source_sha256": source_sha256(self.dataset, int(source_index)),
                 "variation": variation, "generator": generator, "params": params,
                 "sha256": atomic.sha256_bytes(data)}
        self.entries.append(entry)
        self.run["images"] += 1
        return entry

    def set_run_spend(self, run: float | dict[str, Any]) -> None:
        """What this run has spent so far (a paid generator): USD, or the additive spend keys of pool.json
        (`spend_usd`, `spend_estimate_usd`, and counters such as `tokens`, `requests`). `flush` adds the part
        not yet recorded to the pool's figures as they are on disk, so concurrent or successive runs sum,
        never overwrite."""
        self._run_spend = {"spend_usd": float(run)} if isinstance(run, int | float) else copy.deepcopy(run)

    def _add_spend(self, disk: dict[str, Any]) -> None:
        for key, value in self._run_spend.items():
            done = self._spend_recorded.get(key)
            if isinstance(value, dict):
                base = dict(disk.get(key) or {})
                for k, v in value.items():
                    base[k] = base.get(k, 0) + v - (done or {}).get(k, 0)
                self.meta[key] = dict(sorted(base.items()))
            else:
                # A pool from before the usage-based figure recorded the estimate as `spend_usd`.
                on_disk = disk.get(key, disk.get("spend_usd", 0.0) if key == "spend_estimate_usd" else 0.0)
                self.meta[key] = round(float(on_disk or 0.0) + float(value) - float(done or 0.0), 6)
        self._spend_recorded = copy.deepcopy(self._run_spend)

    def _merge_disk(self) -> None:
        """Read-modify-write: what another process recorded since this writer read the pool is kept
        (should the lock have been taken over from under this run), and spend is added as a delta."""
        disk = read_meta(self.path)
        self.meta["spend_usd"] = float(disk.get("spend_usd", self.meta.get("spend_usd", 0.0)) or 0.0)
        self._add_spend(disk)
        if (self.path / MANIFEST).exists():
            mine = {e["file"] for e in self.entries}
            theirs = [e for e in read_manifest(self.path) if e["file"] not in mine]
            for e in theirs:
                e.pop("_line", None)
            self.entries[:0] = theirs

    def flush(self) -> None:
        self._merge_disk()
        if self.run["images"]:
            if not self.meta["runs"] or self.meta["runs"][-1] is not self.run:
                self.meta["runs"].append(self.run)
            self.run["finished"] = _now()
        self._derive()
        # pool.json first: after a crash between the two writes it may name a run whose images are not
        # in the manifest yet (harmless), never hold images whose provenance it does not record.
        atomic.write_json(self.path / META, self.meta)
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries)
        atomic.write_text(self.path / MANIFEST, lines)
