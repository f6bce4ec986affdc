"""Synthetic image pools: a folder of images plus `manifest.jsonl` and `pool.json`.

`pool.json` (written last, atomically) says which dataset the source indices refer to:
    {"format": 1, "data_fingerprint": "...", "data_source": {...}, "generator": "...", "spend_usd": 0.0}
`manifest.jsonl` has one line per image:
    {"file": "images/Mild_Demented/000123_0.png", "class": "Mild_Demented", "label": 0,
     "source_index": 123, "generator": "transform", "params": {...}, "sha256": "..."}
`source_index` is the row of the source image in the train split; only train images may seed a
synthetic one, and a run uses only variations of the real images it keeps.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import atomic
from .classes import CLASSES, class_index
from .data import DataError, Dataset, decode_image

FORMAT = 1
MANIFEST = "manifest.jsonl"
META = "pool.json"


class PoolError(DataError):
    pass


@dataclass
class Pool:
    path: Path
    images: np.ndarray  # (M, H, W) uint8 at the dataset's resolution
    labels: np.ndarray  # (M,)
    sources: np.ndarray  # (M,) row in the train split
    entries: list[dict[str, Any]]
    meta: dict[str, Any]
    fingerprint: str

    def available(self, label: int, kept: np.ndarray) -> np.ndarray:
        """Pool rows of class `label` whose source is among the kept real train rows."""
        return np.flatnonzero((self.labels == label) & np.isin(self.sources, kept))


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
        missing = {"file", "class", "source_index", "generator", "sha256"} - set(e)
        if missing:
            raise PoolError(f"{mf}, line {n}: missing key(s) {sorted(missing)}")
        e["_line"] = n
        entries.append(e)
    return entries


def load(path: str | Path, dataset: Dataset, *, verify_hashes: bool = True) -> Pool:
    """Load and validate a pool against the dataset its sources come from."""
    path = Path(path)
    if not path.is_dir():
        raise PoolError(f"pool {path}: no such folder; create it with `mriaug synth --out {path}`")
    meta_file = path / META
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if meta.get("data_fingerprint") not in (None, dataset.fingerprint):
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
            label = class_index(e["class"])
        except ValueError as err:
            raise PoolError(f"{where}: {err}") from err
        src = e["source_index"]
        if not isinstance(src, int) or not 0 <= src < n_train:
            raise PoolError(f"{where}: source_index {src!r} is not a row of the train split (0..{n_train - 1})")
        if int(dataset.train_y[src]) != label:
            raise PoolError(
                f"{where}: source train row {src} is {CLASSES[int(dataset.train_y[src])]}, "
                f"but the image is labelled {CLASSES[label]}"
            )
        f = path / e["file"]
        if not f.exists():
            raise PoolError(f"{where}: image file {f} is missing")
        data = f.read_bytes()
        if verify_hashes and atomic.sha256_bytes(data) != e["sha256"]:
            raise PoolError(f"{where}: sha256 of {f} does not match the manifest (file changed or truncated)")
        images.append(decode_image(data, dataset.resolution, str(f)))
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


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class PoolWriter:
    """Adds images to a pool; each image is written atomically and the manifest is rewritten
    atomically on `flush`, so a crash leaves a valid (shorter) pool that a rerun resumes."""

    def __init__(self, path: str | Path, dataset: Dataset, generator: str, extra_meta: dict | None = None):
        self.path = Path(path)
        self.dataset = dataset
        self.entries = read_manifest(self.path) if (self.path / MANIFEST).exists() else []
        for e in self.entries:
            e.pop("_line", None)
        meta_file = self.path / META
        self.meta: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if self.meta.get("data_fingerprint") not in (None, dataset.fingerprint):
            raise PoolError(f"pool {self.path} belongs to another dataset ({self.meta['data_fingerprint']})")
        self.meta.update({"format": FORMAT, "data_fingerprint": dataset.fingerprint,
                          "data_source": dataset.source, "generator": generator,
                          "resolution": dataset.resolution})
        self.meta.update(extra_meta or {})
        self.meta.setdefault("spend_usd", 0.0)

    def done(self) -> set[tuple[int, int]]:
        """(source_index, variation) pairs already in the pool."""
        return {(e["source_index"], e.get("variation", 0)) for e in self.entries}

    def add(self, image: np.ndarray, source_index: int, variation: int, generator: str,
            params: dict[str, Any]) -> dict[str, Any]:
        label = int(self.dataset.train_y[source_index])
        name = CLASSES[label]
        rel = f"images/{name}/{source_index:06d}_{variation}.png"
        data = png_bytes(image)
        atomic.write_bytes(self.path / rel, data)
        entry = {"file": rel, "class": name, "label": label, "source_index": int(source_index),
                 "variation": variation, "generator": generator, "params": params,
                 "sha256": atomic.sha256_bytes(data)}
        self.entries.append(entry)
        return entry

    def flush(self) -> None:
        lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries)
        atomic.write_text(self.path / MANIFEST, lines)
        atomic.write_json(self.path / META, self.meta)
