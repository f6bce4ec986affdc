"""`mriaug data audit` by hand (issue 18): on a hand-made dataset whose scan groups are given, every count of
the audit and the 1-nearest-neighbour numbers are worked out here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mriaug.data import audit
from mriaug.data.sources import Dataset

# 1x2-pixel images: the pixels are the features. Train rows 1 and 4 are validation.
TRAIN_X = np.array([[[0, 0]], [[0, 3]], [[10, 0]], [[10, 4]], [[20, 0]], [[30, 0]]], np.uint8)
TRAIN_Y = np.array([0, 0, 1, 1, 2, 3])
TEST_X = np.array([[[1, 0]], [[10, 3]], [[21, 0]]], np.uint8)
TEST_Y = np.array([0, 1, 3])
# Scan groups of the 9 images (train rows, then test rows): g0 = train 0, 1 and test 0; g1 = train 2;
# g2 = train 3 and test 1; g3 = train 4 (validation); g4 = train 5; g5 = test 2.
GROUPS = np.array([0, 0, 1, 2, 3, 4, 0, 2, 5])


@pytest.fixture
def hand(monkeypatch: pytest.MonkeyPatch) -> Dataset:
    seen: dict = {}

    def groups(x: np.ndarray, y: np.ndarray, fp: str, cache: Path | None) -> tuple[np.ndarray, str]:
        seen.update(x=x, y=y, fp=fp, cache=cache)
        return GROUPS, "gfp"

    monkeypatch.setattr(audit.splits, "cached_groups", groups)
    # Plain pixels as features; normalised ones would be far off (the audit asks for plain pixels).
    monkeypatch.setattr(audit.splits, "features", lambda x, normalize=True: x.reshape(len(x), -1).astype(
        np.float32) + (0 if not normalize else 1e6))
    ds = Dataset(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y, {"source": "hand"}, "fp1", val_rows=np.array([1, 4]))
    ds.split = {"kind": "given", "seed": 3, "fingerprint": "sfp"}
    ds.seen = seen  # type: ignore[attr-defined]
    return ds


def test_audit_counts_by_hand(hand: Dataset) -> None:
    r = audit.audit(hand, Path("cache"))
    seen = hand.seen  # type: ignore[attr-defined]
    assert seen["x"].shape == (9, 1, 2) and seen["y"].tolist() == [0, 0, 1, 1, 2, 3, 0, 1, 3]
    assert seen["fp"] == "fp1" and seen["cache"] == Path("cache")
    assert r["source"] == {"source": "hand"} and r["split"]["seed"] == 3 and r["grouping_fingerprint"] == "gfp"
    assert r["method"] == audit.splits.METHOD
    assert r["images"] == {"train": 4, "val": 2, "test": 3}
    assert r["groups"] == 6
    assert r["group_sizes"] == {"1": 4, "2": 1, "3": 1}  # g0 has 3 images, g2 2, the others 1
    assert r["groups_per_class"] == {"Mild_Demented": 1, "Moderate_Demented": 2, "Non_Demented": 1,
                                     "Very_Mild_Demented": 2}
    # Train side (train + validation rows) holds g0-g4, test g0, g2, g5: g0 and g2 span the split.
    assert r["groups_in_both_splits"] == 2
    assert r["groups_in_train_and_val"] == 1 and r["groups_in_val_and_test"] == 1  # g0 both times
    assert r["per_class"] == {
        "Mild_Demented": {"groups": 1, "train": 1, "val": 1, "test": 1},
        "Moderate_Demented": {"groups": 2, "train": 2, "val": 0, "test": 1},
        "Non_Demented": {"groups": 1, "train": 0, "val": 1, "test": 0},
        "Very_Mild_Demented": {"groups": 2, "train": 1, "val": 0, "test": 1},
    }
    # 1-NN on plain pixels: test (1,0) -> train (0,0) class 0, right; (10,3) -> (10,4) class 1, right;
    # (21,0) -> (20,0) class 2, wrong (class 3). Each at distance 1.
    assert r["nn_accuracy"] == {"train_to_test": pytest.approx(2 / 3)}
    # Even train rows (0,0), (10,0), (20,0) against odd ones (0,3), (10,4), (30,0): distances 3, 4, 10.
    assert r["nn_distance_median"] == {"test_to_train": pytest.approx(1.0), "train_to_train": pytest.approx(4.0)}


def test_audit_text(hand: Dataset) -> None:
    text = audit.format_text(audit.audit(hand, None))
    lines = text.splitlines()
    assert lines[0] == "source: hand  split: given (seed 3, fingerprint sfp)"
    assert lines[2] == f"{'class':<22}{'groups':>8}{'train':>8}{'val':>8}{'test':>8}"
    assert lines[1] == f"scan groups recovered from the images ({audit.splits.METHOD}): 6; sizes 4 x 1, 1 x 2, 1 x 3"
    assert lines[3] == f"{'Mild_Demented':<22}{1:>8}{1:>8}{1:>8}{1:>8}"
    assert lines[7] == f"{'total':<22}{6:>8}{4:>8}{2:>8}{3:>8}"
    assert lines[8] == "groups with images in both train and test: 2 of 6 (train and val: 1, val and test: 1)"
    assert lines[9] == ("1-NN on 32x32 pixels, train -> test accuracy: 0.667; median distance test -> nearest "
                        "train 1.0, train -> nearest other train 4.0")


def test_nearest_neighbour_by_hand_and_in_chunks() -> None:
    train = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], np.float32)
    ty = np.array([2, 1, 0])
    test = np.array([[3.0, 5.0], [9.0, 0.0], [0.0, -2.0]], np.float32)
    acc, dist = audit.nearest_neighbour(train, ty, test, np.array([1, 0, 0]))
    assert acc == pytest.approx(2 / 3) and dist.tolist() == pytest.approx([1.0, 1.0, 2.0])
    assert dist.dtype == np.float32
    # 2,500 queries, past the chunk of 1,024: each a copy of train row i mod 3 shifted by (0, 0.5).
    many = train[np.arange(2500) % 3] + np.array([0.0, 0.5], np.float32)
    acc, dist = audit.nearest_neighbour(train, ty, many, ty[np.arange(2500) % 3])
    assert acc == 1.0 and np.allclose(dist, 0.5)
    acc, dist = audit.nearest_neighbour(train, ty, np.zeros((0, 2), np.float32), np.zeros(0, np.int64))
    assert np.isnan(acc) and dist.shape == (0,)


def test_the_splits_own_grouping_fingerprint_and_a_split_without_seed(hand: Dataset) -> None:
    # A split that grouped the images names its grouping: the audit reports that one (not the cache's).
    hand.split = {"kind": "subject", "seed": 1, "fingerprint": "s", "grouping": {"fingerprint": "from-split"}}
    assert audit.audit(hand, None)["grouping_fingerprint"] == "from-split"
    hand.split = {"kind": "given"}
    r = audit.audit(hand, None)
    assert r["grouping_fingerprint"] == "gfp"
    assert audit.format_text(r).splitlines()[0] == "source: hand  split: given"
