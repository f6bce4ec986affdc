"""Data sources decoded once into uint8 arrays and cached on disk under a content fingerprint.

Sources: `phantom` (built in), a Hugging Face hub dataset (`hf:Falah/Alzheimer_MRI`, the default),
a local folder in the hub's parquet layout, an image-folder tree (one folder per class), or a BIDS folder of
NIfTI volumes (`mriaug.data.bids`, which decodes, caches and splits it by participant).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, UnknownClassError
from ..store import atomic
from . import phantom, splits
from .classes import CLASSES, class_index, merge_problem, merged_classes

DEFAULT_SOURCE = "hf:Falah/Alzheimer_MRI"
# Hub sources read at a fixed commit unless the data option `revision` says otherwise, so that a change on
# the hub (a pull request there proposes relabelling Falah/Alzheimer_MRI to 3 classes) cannot silently
# change results. daac24f: the head of main, "update" (README only) by the owner, with the card's four
# ClassLabel names and the parquet files of 5,120 / 1,280 rows; found on
# huggingface.co/datasets/Falah/Alzheimer_MRI/commit/daac24f9597236b45837d82f7eb9c9ad1f8c60c8 (2026-11-26).
HUB_REVISIONS = {"Falah/Alzheimer_MRI": "daac24f9597236b45837d82f7eb9c9ad1f8c60c8"}
CACHE_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
PHANTOM_DEFAULTS = {"n_train": 5120, "n_test": 1280, "size": 128, "seed": 0, "slices": 32}
# The split every source takes (see `mriaug.data.splits`): they shape train / validation / test, not the decoding.
SPLIT_OPTIONS = {"split", "test_fraction", "val_fraction", "split_seed", "splits"}
# Applied after decoding and splitting (`merge`: relabel classes, e.g. {Moderate_Demented = "Mild_Demented"}).
LABEL_OPTIONS = {"merge"}
# The options each kind of source takes (`--data-option KEY=VALUE`, or keys beside `source` in a grid).
OPTIONS = {"phantom": set(PHANTOM_DEFAULTS) | SPLIT_OPTIONS | LABEL_OPTIONS,
           "hub": {"size", "revision", "classes"} | SPLIT_OPTIONS | LABEL_OPTIONS,
           "parquet": {"size", "classes"} | SPLIT_OPTIONS | LABEL_OPTIONS,
           "imagefolder": {"size", "class_map", "classes"} | SPLIT_OPTIONS | LABEL_OPTIONS,
           "bids": {"size", "slices", "label_column", "skip_unlabelled", "classes"} | SPLIT_OPTIONS | LABEL_OPTIONS}


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
        if (path / "dataset_description.json").is_file():  # BIDS's mark (`mriaug.data.bids`)
            return "bids"
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
        count("slices", 2)
        bad += splits.problems(o)
        if self.kind == "bids":
            from . import bids

            bad += bids.problems(o)
        if "test_fraction" in o and o.get("split", "given") == "given" and self.kind != "imagefolder":
            bad.append(("test_fraction", "applies to split = 'subject' (or an image folder without a test "
                                         "folder); this source's own test split is used as it is"))
        tf = o.get("test_fraction")
        if "test_fraction" in o and (isinstance(tf, bool) or not isinstance(tf, int | float) or not 0 < tf < 1):
            bad.append(("test_fraction", f"must be a number between 0 and 1, got {tf!r}"))
        cm = o.get("class_map")
        if "class_map" in o and not (isinstance(cm, dict) and all(isinstance(v, str) for v in cm.values())):
            bad.append(("class_map", "must be a table of folder name = class name"))
        cl = o.get("classes")
        if "classes" in o:
            try:
                ok = (isinstance(cl, list) and bool(cl) and all(isinstance(c, str) for c in cl)
                      and len({class_index(c) for c in cl}) == len(cl))
            except UnknownClassError:
                ok = False
            if not ok:
                bad.append(("classes", f"must be a list of the distinct class names the source holds, got {cl!r}"))
        if "revision" in o and not isinstance(o["revision"], str):
            bad.append(("revision", "must be a branch, tag or commit string"))
        if "merge" in o and (why := merge_problem(o["merge"])) is not None:
            bad.append(("merge", why))
        return bad

    def describe(self) -> dict[str, Any]:
        opts = dict(self.options)
        if self.source == "phantom":
            opts = {**PHANTOM_DEFAULTS, **opts}
        if opts.get("split") == "subject":  # one spelling per split, so equal splits give equal run ids
            opts = {**splits.SUBJECT_DEFAULTS, **opts}
        if opts.get("splits") == 1:  # one split is the default: the run ids of grids without the key stay
            del opts["splits"]
        return {"source": self.source, "options": opts}

    def decoding(self) -> DataSpec:
        """The spec of the decoded source, without the split options (one cache entry serves every split).
        An image folder without a test folder splits itself by `test_fraction` and `split_seed`: kept."""
        keep = {"test_fraction", "split_seed"} if self.kind == "imagefolder" else set()
        return DataSpec(self.source, {k: v for k, v in self.options.items()
                                      if k not in SPLIT_OPTIONS | LABEL_OPTIONS or k in keep})

    def unmerged(self) -> DataSpec:
        """The same data and split with the source's own classes (where pools are made: see `apply_merge`)."""
        return DataSpec(self.source, {k: v for k, v in self.options.items() if k not in LABEL_OPTIONS})


@dataclass
class Dataset:
    train_x: np.ndarray  # (N, H, W) uint8
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    source: dict[str, Any]
    fingerprint: str
    # Rows of the train split held out for validation (never trained on, never a synthetic source).
    val_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # `data.split` of a result: kind, seed, fingerprint, ... (see `mriaug.data.splits.record`).
    split: dict[str, Any] = field(default_factory=lambda: {"kind": "given"})
    # Scan group of each train / test row, where the split computed them (None on the plain given split).
    train_groups: np.ndarray | None = None
    test_groups: np.ndarray | None = None
    # The classes labels index (after a data option `merge`, fewer than the source's four), the class each of the
    # source's classes became, and the fingerprint of the same data and split before the merge.
    classes: tuple[str, ...] = CLASSES
    class_map: tuple[int, ...] = tuple(range(len(CLASSES)))
    unmerged_fingerprint: str | None = None

    def label(self, name: str) -> int:
        """The label of a class given by name: one of `classes`, or one of the source's classes (any spelling),
        mapped through the merge (so a pool made for the four classes serves a merged task)."""
        if name in self.classes:
            return self.classes.index(name)
        return self.class_map[class_index(name)]

    @property
    def resolution(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def fit_mask(self) -> np.ndarray:
        """Train rows a run may train on (and draw synthetic sources from): all but validation."""
        mask = np.ones(len(self.train_y), bool)
        mask[self.val_rows] = False
        return mask

    def counts(self, split: str) -> dict[str, int]:
        y = self.train_y if split == "train" else self.test_y
        return {name: int((y == k).sum()) for k, name in enumerate(self.classes)}


def _content_fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _cache_key(spec: DataSpec) -> str:
    ident: dict[str, Any] = {"v": CACHE_VERSION, **spec.describe()}
    if spec.kind == "hub":  # the pinned revision is part of what is read
        ident["revision"] = hub_revision(spec)
    if spec.kind in ("parquet", "imagefolder"):
        root = Path(spec.source).resolve()
        ident["source"] = str(root)
        ident["files"] = sorted(
            (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()
        )
    return atomic.stable_hash(ident, 24)


# Datasets kept in this process while `cached_in_process()` is active (packed tasks train many runs on one dataset).
_memory: dict[str, Dataset] | None = None


@contextlib.contextmanager
def cached_in_process() -> Iterator[None]:
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
    """The dataset of `spec` under its split, from the on-disk cache when warm (well under a second)."""
    for key, problem in spec.problems():
        raise DataError(f"data source {spec.source!r}: option {key}: {problem}")
    if _memory is not None and use_cache:
        key = atomic.stable_hash(spec.describe())
        if key not in _memory:
            _memory[key] = _load_split(spec, use_cache)
        return _memory[key]
    return _load_split(spec, use_cache)


def _load_split(spec: DataSpec, use_cache: bool) -> Dataset:
    if spec.kind == "bids":  # split by its known participants, not by recovered scan groups
        from . import bids

        cache = cache_root() / "datasets" if use_cache else None
        return apply_merge(Dataset(**bids.load_split(spec.source, spec.options, spec.describe(), cache)),
                           spec.options.get("merge"))
    base = _load_decoded(spec.decoding(), use_cache)
    return apply_merge(apply_split(base, spec, cache_root() / "groups" if use_cache else None),
                       spec.options.get("merge"))


def apply_merge(ds: Dataset, merge: dict[str, str] | None) -> Dataset:
    """Relabel a split dataset's classes by a data option `merge`. The split (and scan grouping) is made on the
    source's own classes before it: a split stratified by the four diagnoses is stratified by any merge of them,
    keeps each source class on both sides, and is the same split with and without the merge, so the pools and
    generators made for one serve the other. The fingerprint chains: split -> merge."""
    if not merge:
        return ds
    names, to_new = merged_classes(merge)
    relabel = np.asarray(to_new, np.int64)
    fp = atomic.stable_hash({"data": ds.fingerprint, "classes": names, "map": to_new})
    return dataclasses.replace(ds, train_y=relabel[ds.train_y], test_y=relabel[ds.test_y], fingerprint=fp,
                               classes=names, class_map=to_new, unmerged_fingerprint=ds.fingerprint,
                               split={**ds.split, "merge": {CLASSES[k]: names[n] for k, n in enumerate(to_new)}})


def apply_split(base: Dataset, spec: DataSpec, cache_dir: Path | None) -> Dataset:
    """The source's own split (with validation carved from its training part by scan group when
    val_fraction > 0), or a subject split: every image pooled, regrouped by scan, whole groups to train /
    val / test, stratified by class. The fingerprint chains: source -> split (validation excluded, so a
    pool made from a split's training part serves every val_fraction; the guard at mixing time refuses
    sources in validation)."""
    opt = splits.options(spec.options)
    # The source as written, plus what decoding found out about it (a hub source's commit actually read).
    source = {**spec.describe(), **({"revision": base.source["revision"]} if "revision" in base.source else {})}
    kind, vf, seed = opt["split"], float(opt["val_fraction"]), int(opt["split_seed"])
    if kind == "given" and vf == 0:
        fp = atomic.stable_hash({"kind": kind, "data": base.fingerprint})
        base.split = splits.record(kind, None, fp, val_fraction=0.0)
        base.source = source
        # Scan groups for the whole-scan scores only (the given split shares scans between train and test).
        groups, _ = splits.cached_groups(np.concatenate([base.train_x, base.test_x]),
                                         np.concatenate([base.train_y, base.test_y]), base.fingerprint, cache_dir)
        base.train_groups, base.test_groups = groups[: len(base.train_y)], groups[len(base.train_y):]
        return base
    x = np.concatenate([base.train_x, base.test_x])
    y = np.concatenate([base.train_y, base.test_y])
    groups, gfp = splits.cached_groups(x, y, base.fingerprint, cache_dir)
    n_tr = len(base.train_y)
    grouping = {"method": splits.METHOD, "groups": int(groups.max()) + 1, "fingerprint": gfp}
    if kind == "given":
        val = splits.carve_val(groups[:n_tr], base.train_y, vf, seed)
        fp = atomic.stable_hash({"kind": kind, "data": base.fingerprint, "grouping": gfp, "val": val.tolist()})
        return Dataset(base.train_x, base.train_y, base.test_x, base.test_y, source, base.fingerprint,
                       val, splits.record(kind, seed, fp, val_fraction=vf, grouping=grouping),
                       groups[:n_tr], groups[n_tr:])
    tf = float(opt["test_fraction"])
    part = splits.assign_subject(groups, y, tf, vf, seed)
    train = np.flatnonzero(part != splits.TEST)  # train and validation, in the source's order
    test = np.flatnonzero(part == splits.TEST)
    val = np.flatnonzero(part[train] == splits.VAL)
    data_fp = atomic.stable_hash({"kind": kind, "data": base.fingerprint, "grouping": gfp, "test_fraction": tf,
                                  "seed": seed})
    fp = atomic.stable_hash({"split": data_fp, "val": val.tolist()})
    n_groups = {name: len(np.unique(groups[rows])) for name, rows in
                (("train", train[part[train] == splits.TRAIN]), ("val", train[val]), ("test", test))}
    rec = splits.record(kind, seed, fp, test_fraction=tf, val_fraction=vf, grouping=grouping,
                        source_fingerprint=base.fingerprint, groups_per_part=n_groups,
                        # one of K repeated splits: collect puts the K splits' runs in one table
                        **({"splits": int(opt["splits"])} if int(opt["splits"]) > 1 else {}))
    return Dataset(x[train], y[train], x[test], y[test], source, data_fp, val, rec, groups[train],
                   groups[test])


def _load_decoded(spec: DataSpec, use_cache: bool) -> Dataset:
    path = cache_root() / "datasets" / f"{_cache_key(spec)}.npz"
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
    decoders = {"phantom": _load_phantom, "parquet": _load_parquet, "imagefolder": _load_imagefolder}
    source = spec.describe()
    if spec.kind == "hub":  # with the commit actually read, recorded with every result and pool made from it
        tx, ty, vx, vy, source["revision"] = _load_hub(spec)
    else:
        tx, ty, vx, vy = decoders[spec.kind](spec)
    for split, x in (("train", tx), ("test", vx)):
        if len(x) == 0:
            raise DataError(f"data source {spec.source!r}: the {split} split is empty")
    ds = Dataset(tx, ty, vx, vy, source, _content_fingerprint(tx, ty, vx, vy))
    if use_cache:
        meta = json.dumps({"source": ds.source, "fingerprint": ds.fingerprint})
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, train_x=tx, train_y=ty, test_x=vx, test_y=vy, meta=np.array(meta))
    return ds


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def phantom_subjects(spec: DataSpec) -> tuple[Arrays, np.ndarray, np.ndarray]:
    """The phantom's arrays and the ground-truth subject of every train and test row."""
    o = spec.describe()["options"]
    train_counts = phantom.class_counts(int(o["n_train"]))
    test_counts = phantom.class_counts(int(o["n_test"]), phantom.REAL_TEST_COUNTS)
    s = phantom.generate_subjects(train_counts, test_counts, int(o["size"]), int(o["seed"]), int(o["slices"]))
    return (s.train_x, s.train_y, s.test_x, s.test_y), s.train_subject, s.test_subject


def _load_phantom(spec: DataSpec) -> Arrays:
    return phantom_subjects(spec)[0]


def decode_image(data: bytes | Path, size: int | None, where: str) -> np.ndarray:
    """Decode one image to a grayscale uint8 array, resized to size x size when given."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as raw:
            if raw.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                # 16-bit grayscale: scale the full range to 8 bits (convert("L") would clip at 255).
                wide = np.asarray(raw).astype(np.float64)
                im = Image.fromarray(np.clip(np.round(wide * 255.0 / 65535.0), 0, 255).astype(np.uint8))
            else:
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


def check_classes(y: np.ndarray, where: str, classes: list[str] | None) -> None:
    """Every class has images (else balanced accuracy is silently over fewer classes), or exactly those
    named by the `classes` option do."""
    want = sorted({class_index(c) for c in classes}) if classes else list(range(len(CLASSES)))
    missing = [CLASSES[k] for k in want if not (y == k).any()]
    if missing:
        raise DataError(f"{where}: no images of class(es) {', '.join(missing)}; add them, or name the classes the "
                        "source holds with the data option 'classes' (e.g. -o 'classes=[\"Mild_Demented\", ...]')")
    extra = sorted({CLASSES[int(k)] for k in np.unique(y)} - {CLASSES[k] for k in want})
    if extra:
        raise DataError(f"{where}: images of class(es) {', '.join(extra)}, which the data option 'classes' leaves out")


def _row_files(where: str, split: str) -> list[tuple[Path, int]]:
    """(parquet file, rows) of a local parquet folder's split, in the order `datasets` reads them."""
    root = Path(where)
    if not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*.parquet") if p.name.startswith(f"{split}-") or p.parent.name == split)
    try:
        import pyarrow.parquet as pq

        return [(f, pq.ParquetFile(f).metadata.num_rows) for f in files]
    except Exception:  # unreadable metadata: rows are then named by their place in the split only
        return []


def _locate(files: list[tuple[Path, int]], where: str, split: str, i: int) -> str:
    start = 0
    for f, n in files:
        if i < start + n:
            return f"{f}, row {i - start}"
        start += n
    return f"{where}, split {split}, row {i}"


def _from_hf(dsd: Any, where: str, size: int | None, classes: list[str] | None = None) -> Arrays:
    from datasets import ClassLabel
    from datasets import Image as HFImage

    out: list[np.ndarray] = []
    for split in ("train", "test"):
        if split not in dsd:
            raise DataError(f"{where}: no '{split}' split (found {list(dsd)})")
        ds = dsd[split]
        files = _row_files(where, split)
        for column in ("image", "label"):
            if column not in ds.column_names:
                at = ", ".join(str(f) for f, _ in files) or f"{where}, split {split}"
                raise DataError(f"{at}: no column '{column}' (columns: {', '.join(ds.column_names)}); the source "
                                "needs an 'image' column and an integer or class-name 'label' column")
        feat = ds.features.get("label")
        names = feat.names if isinstance(feat, ClassLabel) else list(CLASSES)
        try:
            remap = np.array([class_index(n) for n in names])
        except UnknownClassError as e:
            raise DataError(f"{where}, split {split}: labels {names} are not the four classes "
                            f"{list(CLASSES)} ({e}); read a revision with them (data option revision)") from e
        if sorted(remap.tolist()) != list(range(len(CLASSES))):
            raise DataError(f"{where}, split {split}: labels {names} are not the four classes {list(CLASSES)}; "
                            "read a revision with them (data option revision)")
        ds = ds.cast_column("image", HFImage(decode=False))
        images, labels = [], []
        for i, row in enumerate(ds):
            img, lab = row["image"], row["label"]
            if img is None or not (img.get("bytes") or img.get("path")):
                raise DataError(f"{_locate(files, where, split, i)}, column image: no image (null)")
            data = img.get("bytes") or Path(img["path"]).read_bytes()
            images.append(decode_image(data, size, f"{_locate(files, where, split, i)}, column image"))
            if isinstance(lab, str):  # class names, mapped like folder names
                try:
                    labels.append(class_index(lab))
                except UnknownClassError as e:
                    raise DataError(f"{_locate(files, where, split, i)}, column label: {e}") from e
                continue
            if lab is None or isinstance(lab, bool) or not isinstance(lab, int) or not 0 <= lab < len(remap):
                raise DataError(f"{_locate(files, where, split, i)}, column label: unknown label {lab!r} "
                                f"(expected 0..{len(remap) - 1} or a class name)")
            labels.append(remap[lab])
        y = np.asarray(labels, np.int64)
        check_classes(y, f"{where}, split {split}", classes)
        out += [_stack(images, f"{where}, split {split}"), y]
    return out[0], out[1], out[2], out[3]


class _NoCardWarning(logging.Filter):
    """Drops huggingface_hub's warning that a dataset's README has no metadata block: `datasets` reads the card of
    every folder it loads, a local parquet folder's README is plain text, and the warning came on every command."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Repo card metadata block was not found")


@contextlib.contextmanager
def _no_card_warning() -> Iterator[None]:
    """Within the block, that one warning is dropped (at its own logger: every other message passes)."""
    card, drop = logging.getLogger("huggingface_hub.repocard"), _NoCardWarning()
    card.addFilter(drop)
    try:
        yield
    finally:
        card.removeFilter(drop)


def _load_parquet(spec: DataSpec) -> Arrays:
    import datasets

    try:
        with _no_card_warning():
            dsd = datasets.load_dataset(str(Path(spec.source).resolve()))
    except Exception as e:  # datasets raises many types for a malformed folder
        raise DataError(f"{spec.source}: cannot read as a parquet dataset folder ({e})") from e
    return _from_hf(dsd, spec.source, spec.options.get("size"), spec.options.get("classes"))


def _load_hub(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    import datasets

    repo = spec.source.removeprefix("hf:")
    asked = hub_revision(spec)
    try:
        with _no_card_warning():
            builder = datasets.load_dataset_builder(repo, revision=asked)
            builder.download_and_prepare()
            dsd = builder.as_dataset()
    except Exception as e:
        raise DataError(
            f"dataset {repo!r} (revision {asked or 'main'}) is not in the local cache and cannot be downloaded "
            f"here ({type(e).__name__}). Run `mriaug prefetch --data {spec.source}` on a machine with internet "
            "(e.g. the login node) with the same MRIAUG_CACHE / HF_HOME as the jobs."
        ) from e
    # The commit the files came from: offline, `datasets` falls back to whatever revision it cached.
    read = builder.hash
    if asked and re.fullmatch(r"[0-9a-f]{40}", asked) and read != asked:
        raise DataError(f"dataset {repo!r}: asked for revision {asked}, but the cache holds {read}; run "
                        f"`mriaug prefetch --data {spec.source}` where the hub can be reached")
    tx, ty, vx, vy = _from_hf(dsd, spec.source, spec.options.get("size"), spec.options.get("classes"))
    return tx, ty, vx, vy, read


def hub_revision(spec: DataSpec) -> str | None:
    """The revision a hub source is read at: its `revision` option, else the pinned one (`HUB_REVISIONS`)."""
    return spec.options.get("revision") or HUB_REVISIONS.get(spec.source.removeprefix("hf:"))


def _class_dirs(root: Path, class_map: dict[str, str] | None,
                classes: list[str] | None = None) -> list[tuple[int, Path]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            out.append((class_index(d.name, class_map), d))
        except UnknownClassError as e:
            raise DataError(f"{d}: {e}; pass a class map (data option 'class_map')") from e
    if not out:
        raise DataError(f"{root}: no class folders found")
    found = {k for k, _ in out}
    want = [class_index(c) for c in classes] if classes else list(range(len(CLASSES)))
    missing = [CLASSES[k] for k in want if k not in found]
    if missing:
        raise DataError(f"{root}: no folder for class(es) {', '.join(missing)}; add them, or name the classes the "
                        "source holds with the data option 'classes'")
    return out


def _read_folder(root: Path, class_map: dict[str, str] | None, size: int | None,
                 classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for k, d in _class_dirs(root, class_map, classes):
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{d}: class folder without images ({', '.join(sorted(IMAGE_SUFFIXES))}); add images "
                            "or remove the folder and name the classes the source holds with the data option 'classes'")
        for f in files:
            images.append(decode_image(f, size, str(f)))
            labels.append(k)
    y = np.asarray(labels, np.int64)
    check_classes(y, str(root), classes)
    return _stack(images, str(root)), y


def _load_imagefolder(spec: DataSpec) -> Arrays:
    root = Path(spec.source)
    cmap, size, classes = spec.options.get("class_map"), spec.options.get("size"), spec.options.get("classes")
    if (root / "train").is_dir():
        tx, ty = _read_folder(root / "train", cmap, size, classes)
        if (root / "test").is_dir():
            vx, vy = _read_folder(root / "test", cmap, size, classes)
            return tx, ty, vx, vy
    else:
        tx, ty = _read_folder(root, cmap, size, classes)
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
