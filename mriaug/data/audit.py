"""`mriaug data audit`: how independent the test set of a dataset (under its split) is of its training set.

It recovers the scan groups from the images (`mriaug.data.splits`), counts the groups that have images on both
sides of the split in use, and fits a 1-nearest-neighbour classifier on 32x32 downsampled pixels of the
train split to label the test split: near-perfect accuracy means the test images have near-copies
(neighbouring slices of the same scans) in training. Where the source knows its scans (a BIDS folder), it also
says how the recovered groups compare with them: a check of the recovery method itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import bids, splits
from .classes import CLASSES
from .sources import Dataset


def nearest_neighbour(train: np.ndarray, train_y: np.ndarray, test: np.ndarray,
                      test_y: np.ndarray) -> tuple[float, np.ndarray]:
    """Accuracy of 1-NN (Euclidean) from train rows to test rows, and each test row's distance to its match."""
    sq = (train**2).sum(1)
    pred = np.zeros(len(test), np.int64)
    dist = np.zeros(len(test), np.float32)
    for i in range(0, len(test), 1024):
        d2 = sq[None, :] - 2.0 * test[i : i + 1024] @ train.T
        j = d2.argmin(1)
        pred[i : i + 1024] = train_y[j]
        dist[i : i + 1024] = np.sqrt(np.maximum(d2[np.arange(len(j)), j] + (test[i : i + 1024] ** 2).sum(1), 0))
    return float((pred == test_y).mean()) if len(test_y) else float("nan"), dist


def pixel_leakage(ds: Dataset) -> tuple[float, np.ndarray, np.ndarray]:
    """The check of the audit (and the report's leakage section): plain 32x32 pixels of the train split label the
    test split by 1-NN; returns that accuracy, each test image's distance to its nearest training image and, for
    scale, each even training row's distance to its nearest odd one."""
    px = splits.features(np.concatenate([ds.train_x, ds.test_x]), normalize=False)
    n_tr = len(ds.train_y)
    acc, test_dist = nearest_neighbour(px[:n_tr], ds.train_y, px[n_tr:], ds.test_y)
    _, train_dist = nearest_neighbour(px[:n_tr][1::2], ds.train_y[1::2], px[:n_tr][::2], ds.train_y[::2])
    return acc, test_dist, train_dist


def compare_groups(recovered: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    """How a recovered grouping matches the known one (one id per image in each): known scans recovered exactly
    (one group holding all of the scan's images and nothing else), scans spread over several groups, groups joining
    several scans, and the adjusted Rand index (1 identical, about 0 for a grouping no better than chance)."""
    _, r = np.unique(recovered, return_inverse=True)
    _, k = np.unique(known, return_inverse=True)
    table = np.zeros((r.max() + 1, k.max() + 1), np.int64)
    np.add.at(table, (r, k), 1)
    nz = table > 0
    exact = int(((nz.sum(0) == 1) & (nz.sum(1) == 1)[nz.argmax(0)]).sum())  # in one group, which holds it alone

    def pairs(n: np.ndarray) -> float:
        return float((n * (n - 1) // 2).sum())

    both, a, b, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([len(r)]))
    expected = a * b / total if total else 0.0
    top = (a + b) / 2 - expected
    return {"scans": int(table.shape[1]), "recovered_groups": int(table.shape[0]), "recovered_exactly": exact,
            "scans_split": int((nz.sum(0) > 1).sum()), "groups_joining_scans": int((nz.sum(1) > 1).sum()),
            "adjusted_rand": (both - expected) / top if top else 1.0}


def audit(ds: Dataset, cache_dir: Path | None) -> dict[str, Any]:
    """The audit of one dataset under its split; the keys `mriaug data audit --json` prints."""
    x = np.concatenate([ds.train_x, ds.test_x])
    y = np.concatenate([ds.train_y, ds.test_y])
    groups, gfp = splits.cached_groups(x, y, ds.fingerprint, cache_dir)
    n_tr = len(ds.train_y)
    part = np.full(len(y), splits.TRAIN, np.int64)
    part[ds.val_rows] = splits.VAL
    part[n_tr:] = splits.TEST
    sizes = np.bincount(groups)
    glab = np.zeros(len(sizes), np.int64)
    glab[groups] = y

    def spanning(a: int, b: int) -> int:
        in_a = np.zeros(len(sizes), bool)
        in_b = np.zeros(len(sizes), bool)
        in_a[groups[part == a]] = True
        in_b[groups[part == b]] = True
        return int((in_a & in_b).sum())

    in_train_side = np.zeros(len(sizes), bool)
    in_train_side[groups[:n_tr]] = True
    in_test = np.zeros(len(sizes), bool)
    in_test[groups[n_tr:]] = True
    acc, test_dist, train_dist = pixel_leakage(ds)
    known = None  # the scans a BIDS source knows (its groups are its sessions, not recovered)
    if (ds.split.get("grouping") or {}).get("method") == bids.METHOD and ds.train_groups is not None \
            and ds.test_groups is not None:
        known = compare_groups(groups, np.concatenate([ds.train_groups, ds.test_groups]))
    per_class = {name: {"groups": int((glab == k).sum()),
                        "train": int(((part == splits.TRAIN) & (y == k)).sum()),
                        "val": int(((part == splits.VAL) & (y == k)).sum()),
                        "test": int(((part == splits.TEST) & (y == k)).sum())} for k, name in enumerate(CLASSES)}
    return {
        "source": ds.source,
        "split": ds.split,
        "method": splits.METHOD,
        # the split's own record of the grouping where it has one (the same partition, one name for it)
        "grouping_fingerprint": (ds.split.get("grouping") or {}).get("fingerprint", gfp),
        "images": {"train": int((part == splits.TRAIN).sum()), "val": int((part == splits.VAL).sum()),
                   "test": int((part == splits.TEST).sum())},
        "groups": int(len(sizes)),
        "group_sizes": {str(int(s)): int(c) for s, c in zip(*np.unique(sizes, return_counts=True), strict=True)},
        "groups_per_class": {name: v["groups"] for name, v in per_class.items()},
        "groups_in_both_splits": int((in_train_side & in_test).sum()),
        "groups_in_train_and_val": spanning(splits.TRAIN, splits.VAL),
        "groups_in_val_and_test": spanning(splits.VAL, splits.TEST),
        "per_class": per_class,
        "nn_accuracy": {"train_to_test": acc},
        # How close a test image lies to its nearest training image, against how close training images lie to
        # each other (half of the train split against the other half): equal medians mean near-copies.
        "nn_distance_median": {"test_to_train": float(np.median(test_dist)),
                               "train_to_train": float(np.median(train_dist))},
        **({"known_scans": known} if known is not None else {}),
    }


def format_text(r: dict[str, Any]) -> str:
    sp = r["split"]
    lines = [f"source: {r['source']['source']}  split: {sp['kind']}"
             + (f" (seed {sp['seed']}, fingerprint {sp['fingerprint']})" if sp.get("seed") is not None else ""),
             f"scan groups recovered from the images ({r['method']}): {r['groups']}; sizes "
             + ", ".join(f"{c} x {s}" for s, c in r["group_sizes"].items()),
             f"{'class':<22}{'groups':>8}{'train':>8}{'val':>8}{'test':>8}"]
    for name, v in r["per_class"].items():
        lines.append(f"{name:<22}{v['groups']:>8}{v['train']:>8}{v['val']:>8}{v['test']:>8}")
    im = r["images"]
    lines.append(f"{'total':<22}{r['groups']:>8}{im['train']:>8}{im['val']:>8}{im['test']:>8}")
    lines.append(f"groups with images in both train and test: {r['groups_in_both_splits']} of {r['groups']}"
                 f" (train and val: {r['groups_in_train_and_val']}, val and test: {r['groups_in_val_and_test']})")
    d = r["nn_distance_median"]
    lines.append(f"1-NN on 32x32 pixels, train -> test accuracy: {r['nn_accuracy']['train_to_test']:.3f}; "
                 f"median distance test -> nearest train {d['test_to_train']:.1f}, train -> nearest other train "
                 f"{d['train_to_train']:.1f}")
    if "known_scans" in r:
        k = r["known_scans"]
        lines.append(f"against the {k['scans']} scans the source knows: {k['recovered_groups']} groups recovered, "
                     f"{k['recovered_exactly']} scans exactly, {k['scans_split']} split over several groups, "
                     f"{k['groups_joining_scans']} groups joining several scans; adjusted Rand index "
                     f"{k['adjusted_rand']:.3f}")
    return "\n".join(lines)
