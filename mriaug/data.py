"""Data sources decoded once into uint8 arrays and cached on disk under a content fingerprint.

Sources: `phantom` (built in), a Hugging Face hub dataset (`hf:Falah/Alzheimer_MRI`, the default),
a local folder in the hub's parquet layout, or an image-folder tree (one folder per class).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import atomic, phantom
from .classes import CLASSES, class_index
from .errors import DataError, UnknownClassError

DEFAULT_SOURCE = "hf:Falah/Alzheimer_MRI"
CACHE_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
PHANTOM_DEFAULTS = {"n_train": 5120, "n_test": 1280, "size": 128, "seed": 0}
# The options each kind of source takes (`--data-option KEY=VALUE`, or keys beside `source` in a grid).
OPTIONS = {"phantom": set(PHANTOM_DEFAULTS), "hub": {"size", "revision"}, "parquet": {"size"},
           "imagefolder": {"size", "class_map", "test_fraction", "split_seed"}}


def cache_root() -> Path:
    return Path(os.environ.get("MRIAUG_CACHE", Path.home() / ".cache" / "mriaug"))


@dataclass(frozen=True)
class DataSpec:
    """What a run's data is: the source as the user wrote it plus its options (part of the run id)."""

    source: str = DEFAULT_SOURCE
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.source == "phantom":
            return "phantom"
        if self.source.startswith("hf:"):
            return "hub"
        path = Path(self.source)
        if not path.exists():
            raise DataError(f"data source {self.source!r}: no such folder (for a Hugging Face hub dataset write "
                            f"hf:OWNER/NAME, for the built-in one 'phantom')")
        if any(path.glob("*.parquet")) or any(path.glob("*/*.parquet")):
            return "parquet"
        return "imagefolder"

    def problems(self) -> list[tuple[str, str]]:
        """(option, problem) for every option this kind of source does not know or cannot use."""
        o = self.options
        known = OPTIONS[self.kind]
        bad = [(k, f"unknown option for a {self.kind} source; known: {', '.join(sorted(known))}")
               for k in o if k not in known]

        def count(key: str, lo: int) -> None:
            v = o.get(key)
            if key in o and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                bad.append((key, f"must be an integer >= {lo}, got {v!r}"))

        count("n_train", 8)  # every class gets at least 2 images
        count("n_test", 8)
        count("size", 16)
        count("seed", 0)
        count("split_seed", 0)
        tf = o.get("test_fraction")
        if "test_fraction" in o and (isinstance(tf, bool) or not isinstance(tf, int | float) or not 0 < tf < 1):
            bad.append(("test_fraction", f"must be a number between 0 and 1, got {tf!r}"))
        cm = o.get("class_map")
        if "class_map" in o and not (isinstance(cm, dict) and all(isinstance(v, str) for v in cm.values())):
            bad.append(("class_map", "must be a table of folder name = class name"))
        if "revision" in o and not isinstance(o["revision"], str):
            bad.append(("revision", "must be a branch, tag or commit string"))
        return bad

    def describe(self) -> dict[str, Any]:
        opts = dict(self.options)
        if self.source == "phantom":
            opts = {**PHANTOM_DEFAULTS, **opts}
        return {"source": self.source, "options": opts}


@dataclass
class Dataset:
    train_x: np.ndarray  # (N, H, W) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    source: dict[str, Any]
    fingerprint: str

    @property
    def resolution(self) -> int:
        return int(self.train_x.shape[-1])

    def counts(self, split: str) -> dict[str, int]:
        y = self.train_y if split == "train" else self.test_y
        return {name: int((y == k).sum()) for k, name in enumerate(CLASSES)}


def _content_fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _cache_key(spec: DataSpec) -> str:
    ident: dict[str, Any] = {"v": CACHE_VERSION, **spec.describe()}
    if spec.kind in ("parquet", "imagefolder"):
        root = Path(spec.source).resolve()
        ident["source"] = str(root)
        ident["files"] = sorted(
            (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()
        )
    return atomic.stable_hash(ident, 24)


# Datasets kept in this process while `kept_in_memory()` is active (packed tasks train many runs on one dataset).
_memory: dict[str, Dataset] | None = None


@contextlib.contextmanager
def kept_in_memory() -> Iterator[None]:
    """Within the block, `load` decodes or reads each source once and hands out the same arrays again (read
    only: nothing writes into a Dataset). Outside it every call reads the cache, as before."""
    global _memory
    outer = _memory
    _memory = {} if outer is None else outer
    try:
        yield
    finally:
        _memory = outer


def load(spec: DataSpec, *, use_cache: bool = True) -> Dataset:
    """The dataset of `spec`, from the on-disk cache when warm (well under a second)."""
    for key, problem in spec.problems():
        raise DataError(f"data source {spec.source!r}: option {key}: {problem}")
    key = _cache_key(spec)
    if _memory is not None and use_cache:
        if key not in _memory:
            _memory[key] = _load(spec, key, use_cache)
        return _memory[key]
    return _load(spec, key, use_cache)


def _load(spec: DataSpec, key: str, use_cache: bool) -> Dataset:
    path = cache_root() / "datasets" / f"{key}.npz"
    if use_cache and path.exists():
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                return Dataset(z["train_x"], z["train_y"], z["test_x"], z["test_y"], meta["source"],
                               meta["fingerprint"])
        except Exception as e:  # cut short or foreign: numpy and zipfile raise many types; a cache is rebuilt
            print(f"warning: data cache {path} is unreadable ({type(e).__name__}: {e}); decoding the source again",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
    decoders = {"phantom": _load_phantom, "hub": _load_hub, "parquet": _load_parquet,
                "imagefolder": _load_imagefolder}
    tx, ty, vx, vy = decoders[spec.kind](spec)
    for split, x in (("train", tx), ("test", vx)):
        if len(x) == 0:
            raise DataError(f"data source {spec.source!r}: the {split} split is empty")
    ds = Dataset(tx, ty, vx, vy, spec.describe(), _content_fingerprint(tx, ty, vx, vy))
    if use_cache:
        meta = json.dumps({"source": ds.source, "fingerprint": ds.fingerprint})
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, train_x=tx, train_y=ty, test_x=vx, test_y=vy, meta=np.array(meta))
    return ds


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _load_phantom(spec: DataSpec) -> Arrays:
    o = spec.describe()["options"]
    train_counts = phantom.class_counts(int(o["n_train"]))
    test_counts = phantom.class_counts(int(o["n_test"]), phantom.REAL_TEST_COUNTS)
    tx, ty = phantom.generate(train_counts, int(o["size"]), int(o["seed"]))
    vx, vy = phantom.generate(test_counts, int(o["size"]), int(o["seed"]) + 1_000_003)
    return tx, ty, vx, vy


def decode_image(data: bytes | Path, size: int | None, where: str) -> np.ndarray:
    """Decode one image to a grayscale uint8 array, resized to size x size when given."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as raw:
            im = raw.convert("L")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{where}: cannot decode image ({e})") from e


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{where}: images have different sizes {sorted(shapes)}; set the data option 'size'")
    return np.stack(images)


def _from_hf(dsd: Any, where: str, size: int | None) -> Arrays:
    from datasets import ClassLabel
    from datasets import Image as HFImage

    out: list[np.ndarray] = []
    for split in ("train", "test"):
        if split not in dsd:
            raise DataError(f"{where}: no '{split}' split (found {list(dsd)})")
        ds = dsd[split]
        feat = ds.features.get("label")
        names = feat.names if isinstance(feat, ClassLabel) else list(CLASSES)
        remap = np.array([class_index(n) for n in names])
        ds = ds.cast_column("image", HFImage(decode=False))
        images, labels = [], []
        for i, row in enumerate(ds):
            img = row["image"]
            data = img.get("bytes") or Path(img["path"]).read_bytes()
            images.append(decode_image(data, size, f"{where}, split {split}, row {i}"))
            lab = int(row["label"])
            if not 0 <= lab < len(remap):
                raise DataError(f"{where}, split {split}, row {i}: unknown label {lab}")
            labels.append(remap[lab])
        out += [_stack(images, f"{where}, split {split}"), np.asarray(labels, np.int64)]
    return out[0], out[1], out[2], out[3]


def _load_parquet(spec: DataSpec) -> Arrays:
    import datasets

    try:
        dsd = datasets.load_dataset(str(Path(spec.source).resolve()))
    except Exception as e:  # datasets raises many types for a malformed folder
        raise DataError(f"{spec.source}: cannot read as a parquet dataset folder ({e})") from e
    return _from_hf(dsd, spec.source, spec.options.get("size"))


def _load_hub(spec: DataSpec) -> Arrays:
    import datasets

    repo = spec.source.removeprefix("hf:")
    try:
        dsd = datasets.load_dataset(repo, revision=spec.options.get("revision"))
    except Exception as e:
        raise DataError(
            f"dataset {repo!r} is not in the local cache and cannot be downloaded here ({type(e).__name__}). "
            f"Run `mriaug prefetch --data {spec.source}` on a machine with internet (e.g. the login node) "
            "with the same MRIAUG_CACHE / HF_HOME as the jobs."
        ) from e
    return _from_hf(dsd, spec.source, spec.options.get("size"))


def _class_dirs(root: Path, class_map: dict[str, str] | None) -> list[tuple[int, Path]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            out.append((class_index(d.name, class_map), d))
        except UnknownClassError as e:
            raise DataError(f"{d}: {e}; pass a class map (data option 'class_map')") from e
    if not out:
        raise DataError(f"{root}: no class folders found")
    return out


def _read_folder(root: Path, class_map: dict[str, str] | None, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for k, d in _class_dirs(root, class_map):
        for f in sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            images.append(decode_image(f, size, str(f)))
            labels.append(k)
    return _stack(images, str(root)), np.asarray(labels, np.int64)


def _load_imagefolder(spec: DataSpec) -> Arrays:
    root = Path(spec.source)
    cmap, size = spec.options.get("class_map"), spec.options.get("size")
    if (root / "train").is_dir():
        tx, ty = _read_folder(root / "train", cmap, size)
        if (root / "test").is_dir():
            vx, vy = _read_folder(root / "test", cmap, size)
            return tx, ty, vx, vy
    else:
        tx, ty = _read_folder(root, cmap, size)
    # No test folder: a seeded split, stratified by class, of the stated fraction.
    frac = float(spec.options.get("test_fraction", 0.2))
    if not 0 < frac < 1:
        raise DataError(f"{root}: data option test_fraction={frac} must be between 0 and 1")
    rng = np.random.default_rng(int(spec.options.get("split_seed", 0)))
    test = np.zeros(len(ty), bool)
    for k in np.unique(ty):
        idx = np.flatnonzero(ty == k)
        test[rng.choice(idx, int(round(frac * len(idx))), replace=False)] = True
    return tx[~test], ty[~test], tx[test], ty[test]
