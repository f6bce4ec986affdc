"""Scan groups recovered from the images alone, and group-level splits built on them.

The images are axial slices and every scan contributes a run of consecutive slices. Neighbouring slices
of one scan differ by a little anatomy; slices of two scans differ by head position, size, contrast and
anatomy. So, per class (a scan has one diagnosis):

1. every image becomes a 32x32 box-downsampled, zero-mean, unit-norm vector (brightness and contrast
   drop out; what is left is shape);
2. the typical step between neighbouring slices is the median distance of an image to its nearest
   neighbour of the same class (every slice but a run's ends has two such neighbours: the slices above
   and below);
3. two images of one class are linked when their distance is under `LINK_FACTOR` (2) times that step;
4. a scan group is a connected component of the links (single linkage): a chain of slices, each within
   two typical steps of the next, while slices of different scans stay further apart than that.

On Falah/Alzheimer_MRI this gives 200 groups of exactly 32 slices (6,400 images); on the phantom it
recovers the generated subjects exactly (tests/test_splits.py). The functions here work on arrays only;
`mriaug.data.sources` applies them (and caches the grouping beside the decoded data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import checks
from ..errors import DataError
from ..store import atomic
from .classes import CLASSES

METHOD = "single-linkage-2x-median-nn"
METHOD_VERSION = 1
FEATURE_SIZE = 32
LINK_FACTOR = 2.0
SPLITS = ("given", "subject")
# Defaults of the split options; val_fraction's depends on the split (0 keeps the thesis's counts).
SUBJECT_DEFAULTS = {"test_fraction": 0.2, "val_fraction": 0.1, "split_seed": 0}
GIVEN_VAL_FRACTION = 0.0
TRAIN, VAL, TEST = 0, 1, 2


def features(x: np.ndarray, size: int = FEATURE_SIZE, normalize: bool = True) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size*size) float32 box-downsampled rows, zero-mean and unit-norm unless
    `normalize` is false (plain pixels, for the 1-NN check)."""
    n, h, w = x.shape
    if h == w and h % size == 0:
        k = h // size
        f = x.reshape(n, size, k, size, k).astype(np.float32).mean(axis=(2, 4))
    elif h == w and h < size:
        f = x.astype(np.float32)
    else:
        f = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BOX), np.float32)
                      for im in x])
    f = f.reshape(n, -1)
    if not normalize:
        return f
    f -= f.mean(axis=1, keepdims=True)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)
    return f


def _nearest(f: np.ndarray) -> np.ndarray:
    """Each row's distance to its nearest other row (Euclidean), in blocks."""
    out = np.full(len(f), np.inf, np.float32)
    for i in range(0, len(f), 2048):
        # Unit rows: squared distance = 2 - 2 cos.
        d2 = np.maximum(2.0 - 2.0 * (f[i : i + 2048] @ f.T), 0.0)
        d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = np.inf
        out[i : i + len(d2)] = np.sqrt(d2.min(axis=1))
    return out


def _close_pairs(f: np.ndarray, threshold: float) -> np.ndarray:
    """(a, b) with a < b for every pair of rows closer than `threshold`, in blocks."""
    pairs = []
    for i in range(0, len(f), 2048):
        d2 = 2.0 - 2.0 * (f[i : i + 2048] @ f.T)
        a, b = np.nonzero(d2 < threshold**2)
        a = a + i
        keep = a < b
        pairs.append(np.stack([a[keep], b[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def _components(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Connected components (union-find), numbered by their first member's position."""
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    _, first = np.unique(roots, return_index=True)
    number = {int(roots[f]): k for k, f in enumerate(np.sort(first))}
    return np.array([number[int(r)] for r in roots], np.int64)


def group_images(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A scan-group id per image (0..G-1, numbered by first appearance); groups never mix classes."""
    f = features(x)
    rows_of = [np.flatnonzero(y == k) for k in np.unique(y)]
    nearest = np.concatenate([_nearest(f[rows]) for rows in rows_of if len(rows) > 1] or [np.zeros(0)])
    threshold = LINK_FACTOR * float(np.median(nearest)) if len(nearest) else 0.0
    edges = [rows[_close_pairs(f[rows], threshold)] for rows in rows_of if len(rows) > 1]
    return _components(len(y), [(int(a), int(b)) for e in edges for a, b in e])


def cached_groups(x: np.ndarray, y: np.ndarray, data_fingerprint: str, cache_dir: Path | None) -> tuple[np.ndarray,
                                                                                                          str]:
    """`group_images` of the pooled images of one dataset, cached under its fingerprint and the method's
    version; returns the groups and their fingerprint (method + data + the grouping itself)."""
    ident = {"method": METHOD, "version": METHOD_VERSION, "feature_size": FEATURE_SIZE, "link_factor": LINK_FACTOR,
             "data": data_fingerprint, "n": len(y)}
    key = atomic.stable_hash(ident, 24)
    path = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            with np.load(path) as z:
                groups = z["groups"]
            if len(groups) == len(y):
                return groups, atomic.stable_hash({**ident, "groups": groups.tolist()})
        except Exception:  # a cut-short cache file: numpy and zipfile raise many types; recompute it
            path.unlink(missing_ok=True)
    groups = group_images(x, y)
    if path is not None:
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, groups=groups)
    return groups, atomic.stable_hash({**ident, "groups": groups.tolist()})


def options(opts: dict[str, Any]) -> dict[str, Any]:
    """The split options with their defaults: kind, test_fraction, val_fraction, split_seed, splits."""
    kind = opts.get("split", "given")
    if kind == "subject":
        return {"split": kind, **{k: opts.get(k, v) for k, v in SUBJECT_DEFAULTS.items()},
                "splits": opts.get("splits", 1)}
    return {"split": kind, "val_fraction": opts.get("val_fraction", GIVEN_VAL_FRACTION),
            "split_seed": opts.get("split_seed", 0), "splits": 1}


def first_split_seed(options_: dict[str, Any], seed: int) -> int:
    """The grid's `split_seed` (the first of its splits) back from a run's options and seed: with `splits = K`,
    run seed s uses split seed `split_seed + s mod K` (`mriaug.plan.grid`)."""
    o = options(options_)
    return int(o["split_seed"]) - seed % int(o["splits"])


def problems(opts: dict[str, Any]) -> list[tuple[str, str]]:
    bad = []
    if opts.get("split", "given") not in SPLITS:
        bad.append(("split", f"must be one of {', '.join(SPLITS)}, got {opts.get('split')!r}"))
    k = opts.get("splits", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        bad.append(("splits", f"must be a whole number >= 1, got {k!r}"))
    elif k > 1 and opts.get("split", "given") != "subject":
        bad.append(("splits", "repeats a subject split (split = 'subject'); the given split has one test set"))
    vf = opts.get("val_fraction")
    if "val_fraction" in opts and (isinstance(vf, bool) or not isinstance(vf, int | float) or not 0 <= vf < 1):
        bad.append(("val_fraction", f"must be a number in [0, 1), got {vf!r}"))
    return bad


def _rng(seed: int, label: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([checks.seed(seed, "split_seed"), 0x5B17, label, purpose])


def _group_labels(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The class of each group (its images all share one: groups are built within a class)."""
    lab = np.zeros(int(groups.max()) + 1 if len(groups) else 0, np.int64)
    lab[groups] = y
    return lab


def _take(ids: np.ndarray, fraction: float, rng: np.random.Generator, lo: int, hi: int) -> np.ndarray:
    k = int(np.floor(fraction * len(ids) + 0.5))
    k = max(lo, min(hi, k))
    return rng.choice(ids, k, replace=False) if k else np.zeros(0, np.int64)


def assign_subject(groups: np.ndarray, y: np.ndarray, test_fraction: float, val_fraction: float,
                   seed: int) -> np.ndarray:
    """TRAIN / VAL / TEST per image: whole groups, stratified by class. Test first (test_fraction of a class's
    groups, at least one, leaving at least one), then validation from the rest (val_fraction, leaving at least
    one for training), so the training part's union with validation does not depend on val_fraction."""
    part = np.full(len(y), TRAIN, np.int64)
    glab = _group_labels(groups, y)
    present = np.unique(groups)
    for k in np.unique(y):
        ids = present[glab[present] == k]
        if len(ids) < 2:
            raise DataError(f"split = 'subject': class {CLASSES[int(k)]} has {len(ids)} scan group (its "
                            f"{int((y == k).sum())} images are slices of one scan), so it cannot be in both train "
                            "and test; use split = 'given' or drop the class")
        test = _take(ids, test_fraction, _rng(seed, int(k), 0), 1, len(ids) - 1)
        rest = np.setdiff1d(ids, test)
        val = _take(rest, val_fraction, _rng(seed, int(k), 1), 0, len(rest) - 1)
        part[np.isin(groups, test)] = TEST
        part[np.isin(groups, val)] = VAL
    return part


def carve_val(groups: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Rows (of a training set with these groups and labels) held out for validation: whole groups,
    val_fraction of each class's groups, always leaving one for training."""
    if val_fraction <= 0 or not len(y):
        return np.zeros(0, np.int64)
    glab = _group_labels(groups, y)
    present = np.unique(groups)
    held = []
    for k in np.unique(y):
        ids = present[glab[present] == k]
        held.append(_take(ids, val_fraction, _rng(seed, int(k), 1), 0, len(ids) - 1))
    return np.flatnonzero(np.isin(groups, np.concatenate(held)))


def check_repeats(k: int, n_groups: int) -> None:
    """`splits = K` repeats the subject split K times: more splits than the data has scan groups would test the same
    patients over and over (each split tests test_fraction of the groups), so it is refused where the groups are
    known (when the data is split)."""
    if k > n_groups:
        raise DataError(f"[data] splits = {k}: more repeated subject splits than the data has scan groups "
                        f"({n_groups}); set splits to at most {n_groups}")


def record(kind: str, seed: int | None, fingerprint: str, **extra: Any) -> dict[str, Any]:
    """`data.split` of a result: what split a run used, with a fingerprint of its assignment. One of K repeated
    subject splits (`splits` in `extra`) is checked against the scan groups of its `grouping` (`check_repeats`)."""
    if int(extra.get("splits", 1)) > 1 and isinstance(extra.get("grouping"), dict):
        check_repeats(int(extra["splits"]), int(extra["grouping"]["groups"]))
    return {"kind": kind, "seed": seed, "fingerprint": fingerprint, **extra}
