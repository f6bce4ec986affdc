"""Scan groups recovered from the images, the subject split and the audit, against the phantom's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import audit, phantom, splits
from mriaug.data import sources as data
from mriaug.data.classes import CLASSES
from mriaug.data.sources import DataSpec
from mriaug.errors import DataError
from tests.conftest import REAL_DATA

runner = CliRunner()
AUDIT_KEYS = {"groups", "group_sizes", "groups_per_class", "groups_in_both_splits", "nn_accuracy"}


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("opts", [{"n_train": 240, "n_test": 80, "size": 32},
                                  {"n_train": 480, "n_test": 160, "size": 32, "seed": 3},
                                  {"n_train": 600, "n_test": 200, "size": 64, "slices": 12}])
def test_groups_recover_the_phantom_subjects_exactly(opts: dict) -> None:
    (tx, ty, vx, vy), ts, vs = data.phantom_subjects(DataSpec("phantom", opts))
    truth = np.concatenate([ts, vs])
    groups = splits.group_images(np.concatenate([tx, vx]), np.concatenate([ty, vy]))
    assert _same_partition(groups, truth)
    # Subjects have slices on both sides of the given (slice-level) split, as in the real data (a two-slice
    # subject of a small class may by chance have both on one side).
    assert len(set(ts.tolist()) & set(vs.tolist())) >= 0.8 * len(set(truth.tolist()))


def test_phantom_subjects_are_runs_of_smoothly_varying_slices() -> None:
    s = phantom.generate_subjects([40, 40, 40, 40], [8, 8, 8, 8], 32, seed=1, slices=16)
    f = splits.features(np.concatenate([s.train_x, s.test_x]))
    subj = np.concatenate([s.train_subject, s.test_subject])
    d = np.sqrt(np.maximum(2 - 2 * f @ f.T, 0))
    np.fill_diagonal(d, np.inf)
    same = subj[:, None] == subj[None]
    # An image's nearest image is a slice of its own subject, and every other subject lies further away.
    assert same[np.arange(len(subj)), d.argmin(1)].all()
    assert np.where(same, d, np.inf).min(1).max() < np.where(~same, d, np.inf).min()


def _truth_of(spec: DataSpec, ds: data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth subject of every train and test row of a (re-split) phantom dataset, matched by pixels."""
    (tx, _, vx, _), ts, vs = data.phantom_subjects(DataSpec("phantom", spec.decoding().options))
    by_pixels = {im.tobytes(): int(s) for im, s in zip(np.concatenate([tx, vx]), np.concatenate([ts, vs]),
                                                       strict=True)}
    assert len(by_pixels) == len(tx) + len(vx)  # every slice is distinct, so the match is exact
    return (np.array([by_pixels[im.tobytes()] for im in ds.train_x]),
            np.array([by_pixels[im.tobytes()] for im in ds.test_x]))


@pytest.mark.parametrize("seed", [0, 1])
def test_subject_split_shares_no_subject_between_train_val_and_test(seed: int) -> None:
    spec = DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "split": "subject", "val_fraction": 0.25,
                                "split_seed": seed})
    ds = data.load(spec)
    train_s, test_s = _truth_of(spec, ds)
    val_s = train_s[ds.val_rows]
    fit_s = train_s[ds.fit_mask]
    assert len(val_s) and len(fit_s) and len(test_s)
    assert not set(fit_s) & set(test_s) and not set(fit_s) & set(val_s) and not set(val_s) & set(test_s)
    assert len(ds.train_y) + len(ds.test_y) == 640  # every image is used once
    # Stratified: every class has a subject in training and in test.
    for k in range(len(CLASSES)):
        assert (ds.train_y[ds.fit_mask] == k).any() and (ds.test_y == k).any()
    sp = ds.split
    assert sp["kind"] == "subject" and sp["seed"] == seed and sp["test_fraction"] == 0.2
    assert sp["fingerprint"] and sp["grouping"]["groups"] == 22
    # The grouping is cached beside the data, keyed by the data's fingerprint and the method's version.
    assert list((data.cache_root() / "groups").glob("*.npz"))
    other = data.load(DataSpec("phantom", {**spec.options, "split_seed": seed + 7}))
    assert other.split["fingerprint"] != sp["fingerprint"]


def test_val_fraction_does_not_move_the_training_part_or_the_fingerprint() -> None:
    base = {"n_train": 480, "n_test": 160, "size": 32, "split": "subject"}
    a = data.load(DataSpec("phantom", {**base, "val_fraction": 0.0}))
    b = data.load(DataSpec("phantom", {**base, "val_fraction": 0.3}))
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert a.fingerprint == b.fingerprint and a.split["fingerprint"] != b.split["fingerprint"]
    assert len(a.val_rows) == 0 < len(b.val_rows)


def test_given_split_keeps_the_thesis_counts_and_can_carve_validation_by_group(phantom_spec: DataSpec) -> None:
    plain = data.load(phantom_spec)
    assert len(plain.val_rows) == 0 and plain.split["kind"] == "given"
    carved = data.load(DataSpec("phantom", {**phantom_spec.options, "val_fraction": 0.3}))
    assert carved.fingerprint == plain.fingerprint and len(carved.val_rows) > 0
    assert carved.train_groups is not None and carved.test_groups is not None
    # The plain given split knows the same scan groups (for the whole-scan scores), without holding any out.
    assert plain.train_groups is not None and plain.test_groups is not None
    np.testing.assert_array_equal(plain.train_groups, carved.train_groups)
    np.testing.assert_array_equal(plain.test_groups, carved.test_groups)
    val_groups = set(carved.train_groups[carved.val_rows].tolist())
    assert not val_groups & set(carved.train_groups[carved.fit_mask].tolist())


def test_a_class_with_one_group_is_a_clear_error() -> None:
    groups = np.array([0, 0, 1, 1, 2, 2, 2])
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    with pytest.raises(DataError, match="Moderate_Demented has 1 scan group"):
        splits.assign_subject(groups, y, 0.2, 0.1, 0)
    # Two groups: one to train, one to test, whatever the fractions say.
    part = splits.assign_subject(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]), 0.01, 0.5, 0)
    assert sorted(set(part.tolist())) == [splits.TRAIN, splits.TEST]


@pytest.mark.parametrize(("opts", "message"), [({"split": "patient"}, "split: must be one of given, subject"),
                                               ({"val_fraction": 1.0}, "val_fraction: must be a number in"),
                                               ({"test_fraction": 0.3}, "applies to split = 'subject'")])
def test_split_options_are_checked(opts: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, **opts}))


def test_audit_on_the_phantom_given_and_subject(phantom_spec: DataSpec) -> None:
    ds = data.load(phantom_spec)
    r = audit.audit(ds, None)
    _, ts, vs = data.phantom_subjects(phantom_spec)
    subjects = len(set(ts.tolist()) | set(vs.tolist()))
    assert r["groups"] == subjects and r["groups_in_both_splits"] == len(set(ts.tolist()) & set(vs.tolist()))
    assert r["nn_accuracy"]["train_to_test"] > 0.95  # neighbouring slices on both sides: near-copies
    sub = audit.audit(data.load(DataSpec("phantom", {**phantom_spec.options, "split": "subject"})), None)
    assert sub["groups"] == subjects and sub["groups_in_both_splits"] == 0
    assert sub["nn_accuracy"]["train_to_test"] < r["nn_accuracy"]["train_to_test"]


@pytest.mark.parametrize("split", [[], ["-o", "split=subject"]])
def test_cli_audit_json_keys(split: list[str]) -> None:
    res = runner.invoke(app, ["data", "audit", "--data", "phantom", "-o", "n_train=240", "-o", "n_test=80",
                              "-o", "size=32", *split, "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert AUDIT_KEYS <= set(r) and set(r["nn_accuracy"]) == {"train_to_test"}
    assert sum(r["groups_per_class"].values()) == r["groups"]
    assert sum(int(s) * c for s, c in r["group_sizes"].items()) == 320
    assert (r["groups_in_both_splits"] == 0) == bool(split)
    text = runner.invoke(app, ["data", "audit", "--data", "phantom", "-o", "n_train=240", "-o", "n_test=80",
                               "-o", "size=32", *split])
    assert text.exit_code == 0 and "groups with images in both train and test" in text.output


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real dataset not present")
def test_real_data_audit_finds_200_scans_of_32_slices() -> None:
    res = runner.invoke(app, ["data", "audit", "--data", str(REAL_DATA), "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output[res.output.index("{"):])
    assert r["groups"] == 200 and r["group_sizes"] == {"32": 200}
    assert r["groups_in_both_splits"] == 200 and r["nn_accuracy"]["train_to_test"] > 0.95
    sub = json.loads((out := runner.invoke(app, ["data", "audit", "--data", str(REAL_DATA), "-o", "split=subject",
                                                 "--json"]).output)[out.index("{"):])
    assert sub["groups_in_both_splits"] == 0 and sub["groups"] == 200


# --- known answers, worked out by hand ---------------------------------------------------------------------------


def test_features_box_downsample_and_normalise_by_hand() -> None:
    # 4x4 -> 2x2 (blocks of 2x2): means 2, 6, 10, 20.
    x = np.array([[[0, 2, 4, 6], [2, 4, 6, 8], [10, 10, 20, 20], [10, 10, 20, 20]]], np.uint8)
    assert splits.features(x, 2, normalize=False).tolist() == [[2.0, 6.0, 10.0, 20.0]]
    # Zero-mean (mean 9.5) and unit-norm: (-7.5, -3.5, 0.5, 10.5) / sqrt(179).
    want = np.array([-7.5, -3.5, 0.5, 10.5]) / np.sqrt(179.0)
    np.testing.assert_allclose(splits.features(x, 2)[0], want, rtol=1e-6)
    # Smaller than the feature side: the pixels as they are.
    small = np.array([[[1, 2], [3, 4]]], np.uint8)
    assert splits.features(small, 4, normalize=False).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    # 3x3 -> 2x2 by Pillow's box filter, which gives each input pixel wholly to the output pixel its centre falls
    # in (centres 0.5 and 1.5 * 2/3 = 1.0 -> output 0; 2.5 * 2/3 = 1.67 -> output 1): columns 0, 30, 60 give
    # (0 + 30) / 2 = 15 and 60.
    cols = np.tile(np.array([0, 30, 60], np.uint8), (1, 3, 1))
    assert splits.features(cols, 2, normalize=False).tolist() == [[15.0, 60.0, 15.0, 60.0]]
    # Not square (2x4 -> 2x2): pairs of columns averaged, whatever the side divides.
    oblong = np.array([[[0, 10, 20, 40], [100, 100, 0, 0]]], np.uint8)
    assert splits.features(oblong, 2, normalize=False).tolist() == [[5.0, 30.0, 100.0, 0.0]]
    # A constant image has no shape left: zeros, not NaN.
    assert splits.features(np.full((1, 4, 4), 7, np.uint8), 2).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    # Several images: one row each, each normalised on its own.
    two = np.concatenate([x, 255 - x])
    f = splits.features(two, 2)
    assert f.shape == (2, 4) and f.dtype == np.float32
    np.testing.assert_allclose(f[1], -want, rtol=1e-6)


def _pairs_of_rows(n_pairs: int) -> np.ndarray:
    """Unit rows in 2 * n_pairs dimensions: row 2j = e_2j, row 2j+1 = 0.8 e_2j + 0.6 e_2j+1. Within a pair the
    distance is sqrt(0.2^2 + 0.6^2) = sqrt(0.4); between pairs the rows are orthogonal: sqrt(2)."""
    f = np.zeros((2 * n_pairs, 2 * n_pairs), np.float32)
    j = np.arange(n_pairs)
    f[2 * j, 2 * j] = 1.0
    f[2 * j + 1, 2 * j] = 0.8
    f[2 * j + 1, 2 * j + 1] = 0.6
    return f


def test_nearest_and_close_pairs_by_hand_across_blocks() -> None:
    # 2,100 rows: more than one block of 2,048, so the second block's offset counts.
    f = _pairs_of_rows(1050)
    np.testing.assert_allclose(splits._nearest(f), np.sqrt(0.4), rtol=1e-5)
    pairs = splits._close_pairs(f, 1.0)  # between sqrt(0.4) and sqrt(2): exactly the 1,050 pairs
    assert pairs.tolist() == [[2 * j, 2 * j + 1] for j in range(1050)]
    assert splits._close_pairs(f, 0.5).shape == (0, 2)  # under sqrt(0.4) = 0.632: none
    assert len(splits._close_pairs(f, 1.5)) == 2100 * 2099 // 2  # over sqrt(2): every pair once, a < b
    # The threshold is strict: a pair at exactly the threshold is not close.
    unit = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert splits._close_pairs(unit, 2.0**0.5).shape == (0, 2) and len(splits._close_pairs(unit, 1.5)) == 1
    # Three rows in a plane: (1, 0), (0, 1), (0.6, 0.8): nearest sqrt(0.8), sqrt(0.4), sqrt(0.4); a copy: 0.
    tri = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    np.testing.assert_allclose(splits._nearest(tri), [np.sqrt(0.8), np.sqrt(0.4), np.sqrt(0.4)], rtol=1e-5)
    assert splits._nearest(np.array([[0.6, 0.8], [0.6, 0.8], [1.0, 0.0]], np.float32))[:2].tolist() == [0.0, 0.0]


def test_components_by_hand() -> None:
    # {0, 1, 3}, {2}, {4, 5}, numbered by their first member: 0, 1, 2.
    assert splits._components(6, [(4, 5), (1, 3), (3, 0)]).tolist() == [0, 0, 1, 0, 2, 2]
    assert splits._components(4, []).tolist() == [0, 1, 2, 3]
    # A chain joined from its far end (deep trees before path halving): one component.
    chain = [(k, k + 1) for k in range(8, -1, -1)]
    assert splits._components(10, chain).tolist() == [0] * 10
    # Two chains that meet at the end: 0-2-4-6 and 1-3-5-7, then 6-7.
    edges = [(6, 4), (4, 2), (2, 0), (7, 5), (5, 3), (3, 1)]
    assert splits._components(8, edges).tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert splits._components(8, [*edges, (7, 6)]).tolist() == [0] * 8
    assert splits._components(5, [(3, 4), (1, 2), (2, 4)]).tolist() == [0, 1, 1, 1, 1]


def _walsh(k: int) -> np.ndarray:
    """A +-1 Walsh pattern of 32x32 pixels: zero-mean, and orthogonal to every other k."""
    i = np.arange(1024)
    bits = np.array([bin(v).count("1") for v in i & k])
    return np.where(bits % 2, -1, 1).reshape(32, 32)


def _slice(plane: int, angle: float) -> np.ndarray:
    """A slice whose shape is the point at `angle` on the unit circle of Walsh patterns 2*plane+1, 2*plane+2
    (brightness 128 drops out): slices of one plane at 0.1 rad steps are 0.1 apart, planes sqrt(2) apart."""
    a, b = round(60 * np.cos(angle)), round(60 * np.sin(angle))
    return (128 + a * _walsh(2 * plane + 1) + b * _walsh(2 * plane + 2)).astype(np.uint8)


def test_group_images_by_hand() -> None:
    # Class 0: scan A (4 slices, plane 0) and scan B (3 slices, plane 1); class 1: scan C, the pixels of A's first
    # three slices (the same images in another class are another scan); class 2: scan D of 2 slices (plane 2);
    # class 3: two one-slice scans (planes 3 and 4). Nearest same-class distances: 0.1 for the 12 slices of A-D,
    # sqrt(2) for the two lone ones: median 0.1, links under 0.2, so each scan is one group.
    scans = {"A": (0, 0, 4), "B": (1, 0, 3), "C": (0, 1, 3), "D": (2, 2, 2), "E": (3, 3, 1), "F": (4, 3, 1)}
    order = ["B", "A", "C", "E", "A", "D", "B", "C", "F", "A", "D", "B", "C", "A"]
    seen: dict[str, int] = {}
    x, y = [], []
    for s in order:
        plane, label, _ = scans[s]
        x.append(_slice(plane, 0.1 * seen.get(s, 0)))
        y.append(label)
        seen[s] = seen.get(s, 0) + 1
    assert seen == {k: v[2] for k, v in scans.items()}
    groups = splits.group_images(np.stack(x), np.array(y))
    # Numbered by first appearance: B 0, A 1, C 2, E 3, D 4, F 5.
    number = {"B": 0, "A": 1, "C": 2, "E": 3, "D": 4, "F": 5}
    assert groups.tolist() == [number[s] for s in order]


def test_cached_groups_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.store import atomic

    x = np.stack([_slice(0, 0.0), _slice(0, 0.1), _slice(1, 0.0), _slice(1, 0.1)])
    y = np.array([0, 0, 0, 0])
    ident = {"method": "single-linkage-2x-median-nn", "version": 1, "feature_size": 32, "link_factor": 2.0,
             "data": "data-fp", "n": 4}
    want_fp = atomic.stable_hash({**ident, "groups": [0, 0, 1, 1]})
    groups, fp = splits.cached_groups(x, y, "data-fp", tmp_path)
    assert groups.tolist() == [0, 0, 1, 1] and fp == want_fp
    path = tmp_path / f"{atomic.stable_hash(ident, 24)}.npz"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with np.load(path) as z:
        assert z["groups"].tolist() == [0, 0, 1, 1]
    # Read back without grouping again, with the same fingerprint.
    monkeypatch.setattr(splits, "group_images", lambda *_: np.array([0, 1, 2, 3]))
    again, fp2 = splits.cached_groups(x, y, "data-fp", tmp_path)
    assert again.tolist() == [0, 0, 1, 1] and fp2 == want_fp
    # Another dataset's fingerprint: another file, grouped again.
    other, fp3 = splits.cached_groups(x, y, "other-fp", tmp_path)
    assert other.tolist() == [0, 1, 2, 3] and fp3 != want_fp and len(list(tmp_path.iterdir())) == 2
    # A cache of another length, or a cut-short file: grouped again (and the cut-short file replaced).
    np.savez(path, groups=np.array([0, 0, 1]))
    assert splits.cached_groups(x, y, "data-fp", tmp_path)[0].tolist() == [0, 1, 2, 3]
    path.write_bytes(b"PK\x03\x04cut")
    regrouped, fp4 = splits.cached_groups(x, y, "data-fp", tmp_path)
    assert regrouped.tolist() == [0, 1, 2, 3] and fp4 == atomic.stable_hash({**ident, "groups": [0, 1, 2, 3]})
    with np.load(path) as z:
        assert z["groups"].tolist() == [0, 1, 2, 3]
    # No cache folder: grouped, nothing written.
    monkeypatch.undo()
    files = sorted(tmp_path.iterdir())
    plain, fp5 = splits.cached_groups(x, y, "data-fp", None)
    assert plain.tolist() == [0, 0, 1, 1] and fp5 == want_fp and sorted(tmp_path.iterdir()) == files


def test_split_options_by_hand() -> None:
    assert splits.options({}) == {"split": "given", "val_fraction": 0.0, "split_seed": 0, "splits": 1}
    assert splits.options({"val_fraction": 0.2, "split_seed": 4, "splits": 3}) == {
        "split": "given", "val_fraction": 0.2, "split_seed": 4, "splits": 1}
    assert splits.options({"split": "subject"}) == {"split": "subject", "test_fraction": 0.2, "val_fraction": 0.1,
                                                    "split_seed": 0, "splits": 1}
    assert splits.options({"split": "subject", "test_fraction": 0.3, "val_fraction": 0.0, "split_seed": 5,
                           "splits": 4}) == {"split": "subject", "test_fraction": 0.3, "val_fraction": 0.0,
                                             "split_seed": 5, "splits": 4}
    # Run seed s of a grid with K splits used split seed split_seed0 + s mod K: back to split_seed0.
    assert splits.first_split_seed({"split": "subject", "split_seed": 6, "splits": 3}, 7) == 5  # 6 - 7 mod 3
    assert splits.first_split_seed({"split": "subject", "split_seed": 9, "splits": 4}, 3) == 6
    assert splits.first_split_seed({"split_seed": 2}, 5) == 2  # the given split: one split
    assert splits.record("subject", 3, "fp", test_fraction=0.2) == {"kind": "subject", "seed": 3,
                                                                    "fingerprint": "fp", "test_fraction": 0.2}


def test_split_problems_by_hand() -> None:
    assert splits.problems({}) == [] and splits.problems({"split": "subject", "splits": 3, "val_fraction": 0}) == []
    assert splits.problems({"split": "patient"}) == [("split", "must be one of given, subject, got 'patient'")]
    for k in (0, 1.5, True, "2"):
        assert splits.problems({"split": "subject", "splits": k}) == [
            ("splits", f"must be a whole number >= 1, got {k!r}")]
    assert splits.problems({"splits": 2}) == [
        ("splits", "repeats a subject split (split = 'subject'); the given split has one test set")]
    assert splits.problems({"splits": 1, "split": "given"}) == []
    for vf in (1, 1.0, -0.1, True, "0.1", None):
        assert splits.problems({"val_fraction": vf}) == [("val_fraction", f"must be a number in [0, 1), got {vf!r}")]
    assert splits.problems({"val_fraction": 0}) == [] and splits.problems({"val_fraction": 0.99}) == []


def _hand_groups() -> tuple[np.ndarray, np.ndarray]:
    """Class 0: 10 groups of 2 images (ids 0-9); class 1: 3 groups of 1 (10-12); class 2: 2 groups of 3 (13, 14);
    rows in an interleaved order, so a group's rows are not consecutive."""
    groups = [g for g in range(10) for _ in range(2)] + [10, 11, 12] + [13, 14] * 3
    labels = {**{g: 0 for g in range(10)}, 10: 1, 11: 1, 12: 1, 13: 2, 14: 2}
    order = np.random.default_rng(0).permutation(len(groups))
    g = np.array(groups)[order]
    return g, np.array([labels[int(v)] for v in g])


def _parts_of_groups(groups: np.ndarray, part: np.ndarray) -> dict[int, int]:
    out: dict[int, int] = {}
    for g, p in zip(groups.tolist(), part.tolist(), strict=True):
        assert out.setdefault(g, p) == p, f"group {g} split across parts"  # whole groups
    return out


def test_subject_split_counts_by_hand() -> None:
    groups, y = _hand_groups()
    part = splits.assign_subject(groups, y, 0.2, 0.1, 0)
    by_group = _parts_of_groups(groups, part)
    count = {(k, p): 0 for k in range(3) for p in (splits.TRAIN, splits.VAL, splits.TEST)}
    for g, p in by_group.items():
        count[(0 if g < 10 else 1 if g < 13 else 2, p)] += 1
    # Class 0: test round(0.2 * 10) = 2; validation round(0.1 * 8) = 1 of the 8 left; 7 train.
    # Class 1: test round(0.6) = 1; validation round(0.2) = 0; 2 train.
    # Class 2: test round(0.4) = 0, raised to 1; validation at most 1 - 1 = 0; 1 train.
    assert count == {(0, 0): 7, (0, 1): 1, (0, 2): 2, (1, 0): 2, (1, 1): 0, (1, 2): 1, (2, 0): 1, (2, 1): 0,
                     (2, 2): 1}
    # Halves round up: 0.25 * 10 = 2.5 -> 3 test groups; 0.15 * 7 = 1.05 -> 1 and 0.5 * 7 = 3.5 -> 4 validation.
    for tf, vf, want in ((0.25, 0.15, (3, 1)), (0.25, 0.5, (3, 4)), (0.35, 0.0, (4, 0)), (0.99, 0.5, (9, 0)),
                         (0.0, 0.99, (1, 8))):
        by_group = _parts_of_groups(groups, splits.assign_subject(groups, y, tf, vf, 0))
        got = tuple(sum(1 for g, p in by_group.items() if g < 10 and p == q) for q in (splits.TEST, splits.VAL))
        assert got == want, (tf, vf)


def test_subject_split_changes_with_its_seed_and_only_with_it() -> None:
    groups, y = _hand_groups()
    tests = set()
    for seed in range(8):
        part = splits.assign_subject(groups, y, 0.2, 0.1, seed)
        np.testing.assert_array_equal(part, splits.assign_subject(groups, y, 0.2, 0.1, seed))
        # Validation does not move the test part: test groups are drawn before validation, with their own draw.
        np.testing.assert_array_equal(part == splits.TEST, splits.assign_subject(groups, y, 0.2, 0.4, seed)
                                      == splits.TEST)
        tests.add(tuple(sorted({int(g) for g in groups[part == splits.TEST]})))
    assert len(tests) >= 6  # C(10, 2) * 3 * 2 choices: the seed draws them
    # The draw is the documented one (a published split must not change): per class, test groups from
    # default_rng([seed, 0x5B17, class, 0]), then validation groups from default_rng([seed, 0x5B17, class, 1]).
    part = splits.assign_subject(groups, y, 0.2, 0.1, 3)
    ids0 = np.arange(10)
    test0 = np.random.default_rng([3, 0x5B17, 0, 0]).choice(ids0, 2, replace=False)
    val0 = np.random.default_rng([3, 0x5B17, 0, 1]).choice(np.setdiff1d(ids0, test0), 1, replace=False)
    test1 = np.random.default_rng([3, 0x5B17, 1, 0]).choice(np.arange(10, 13), 1, replace=False)
    by_group = _parts_of_groups(groups, part)
    assert sorted(g for g, p in by_group.items() if p == splits.TEST and g < 13) == sorted([*test0, *test1])
    assert [g for g, p in by_group.items() if p == splits.VAL] == list(val0)


def test_carve_val_by_hand() -> None:
    groups, y = _hand_groups()
    assert splits.carve_val(groups, y, 0.0, 0).tolist() == [] and splits.carve_val(groups[:0], y[:0], 0.3, 0).size == 0
    rows = splits.carve_val(groups, y, 0.3, 2)
    assert rows.tolist() == sorted(rows.tolist())  # row indices, in order
    held = set(groups[rows].tolist())
    assert np.isin(groups, list(held)).sum() == len(rows)  # whole groups
    # round(0.3 * 10) = 3 groups of class 0; round(0.9) = 1 of class 1; round(0.6) = 1 of class 2, capped at 1 left
    # in training.
    assert (len({g for g in held if g < 10}), len({g for g in held if 10 <= g < 13}),
            len({g for g in held if g >= 13})) == (3, 1, 1)
    assert len(rows) == 3 * 2 + 1 + 3
    # 0.99: every group of a class but one.
    rows = splits.carve_val(groups, y, 0.99, 2)
    assert len(set(groups[rows].tolist())) == 9 + 2 + 1
    # The draw: default_rng([seed, 0x5B17, class, 1]) over the class's groups.
    want0 = np.random.default_rng([2, 0x5B17, 0, 1]).choice(np.arange(10), 3, replace=False)
    assert {g for g in set(groups[splits.carve_val(groups, y, 0.3, 2)].tolist()) if g < 10} == set(want0.tolist())
    assert len({tuple(splits.carve_val(groups, y, 0.3, s)) for s in range(6)}) > 1


def test_split_edges_by_hand() -> None:
    from mriaug.errors import SettingError

    # The message of a class with one scan group, in full.
    with pytest.raises(DataError) as e:
        splits.assign_subject(np.array([0, 0, 0, 1, 2]), np.array([1, 1, 1, 0, 0]), 0.2, 0.1, 0)
    assert str(e.value) == ("split = 'subject': class Moderate_Demented has 1 scan group (its 3 images are slices of "
                            "one scan), so it cannot be in both train and test; use split = 'given' or drop the class")
    # A split seed outside 0..2^32-1 is named as the split seed.
    with pytest.raises(SettingError, match="^split_seed must be a whole number"):
        splits.assign_subject(np.array([0, 1]), np.array([0, 0]), 0.2, 0.1, -1)
    # Nothing to split: nothing assigned; no rows: no pairs (two columns of row indices).
    assert splits.assign_subject(np.zeros(0, np.int64), np.zeros(0, np.int64), 0.2, 0.1, 0).tolist() == []
    empty = splits._close_pairs(np.zeros((0, 4), np.float32), 1.0)
    assert empty.shape == (0, 2) and empty.dtype == np.int64
    # Validation of 4% rounds to 0 groups of every class here (0.4, 0.12, 0.08): none held out, as row indices.
    groups, y = _hand_groups()
    for vf in (0.0, 0.04):
        rows = splits.carve_val(groups, y, vf, 0)
        assert rows.size == 0 and rows.dtype == np.int64, vf


def test_features_round_nothing_and_normalise_faint_images_by_hand() -> None:
    # Block means of a quarter (0.75, 0.25) are kept as they are, not rounded to pixels.
    x = np.array([[[0, 1, 0, 1], [1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]]], np.uint8)
    assert splits.features(x, 2, normalize=False).tolist() == [[0.75, 0.75, 0.25, 0.25]]
    # An image with a centred norm under 1 (pixels 0, 0, 0, 1: sqrt(0.75)) still comes out unit-norm.
    faint = splits.features(np.array([[[0, 0], [0, 1]]], np.uint8), 2)
    np.testing.assert_allclose(faint[0], np.array([-0.25, -0.25, -0.25, 0.75]) / np.sqrt(0.75), rtol=1e-7)


def test_link_threshold_is_twice_the_median_over_classes_with_two_images_by_hand() -> None:
    # Step 0.1 rad: neighbours 2 sin(0.05) = 0.0999 apart; step 0.5 rad: 2 sin(0.25) = 0.495.
    # Class 0: three slices 0.1 rad apart (nearest 0.0999 x 3); class 1: two slices 0.5 rad apart (0.495 x 2); class
    # 2: one image (no neighbour of its class: not counted). Median 0.0999: links under 0.2, so class 1 is two
    # groups (counting the lone image's infinite distance would move the median to 0.297 and join them).
    x = np.stack([_slice(0, 0.0), _slice(0, 0.1), _slice(0, 0.2), _slice(1, 0.0), _slice(1, 0.5), _slice(2, 0.0)])
    assert splits.group_images(x, np.array([0, 0, 0, 1, 1, 2])).tolist() == [0, 0, 0, 1, 2, 3]
    # With a second class of two such slices the median is 0.495 (four of seven): links under 0.99 join each pair.
    x2 = np.concatenate([x[:5], np.stack([_slice(2, 0.0), _slice(2, 0.5)])])
    assert splits.group_images(x2, np.array([0, 0, 0, 1, 1, 2, 2])).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_more_repeated_splits_than_scan_groups_are_refused_naming_the_setting(tmp_path: Path) -> None:
    # This phantom has 13 scan groups: splits = 13 is taken, splits = 14 (like 500 splits of 200 scans) refused.
    opts = {"n_train": 240, "n_test": 80, "size": 32, "split": "subject", "split_seed": 1}
    assert data.load(DataSpec("phantom", {**opts, "splits": 13})).split["grouping"]["groups"] == 13
    message = ("[data] splits = 14: more repeated subject splits than the data has scan groups (13); set splits to "
               "at most 13")
    with pytest.raises(DataError) as e:
        data.load(DataSpec("phantom", {**opts, "splits": 14}))
    assert str(e.value) == message
    with pytest.raises(DataError, match=r"splits = 500: .* \(200\); set splits to at most 200"):
        splits.check_repeats(500, 200)
    splits.check_repeats(200, 200)
    # A grid of 14 splits stops at its first run with that message, before training anything.
    g = tmp_path / "g.toml"
    g.write_text(f'name = "k"\nresults = "{tmp_path / "res"}"\nmodels = ["cnn"]\nscenarios = ["1"]\n'
                 'augmentations = ["none"]\nseeds = 1\n\n[data]\nsource = "phantom"\nn_train = 240\nn_test = 80\n'
                 'size = 32\nsplit = "subject"\nsplits = 14\nsplit_seed = 1\n\n[model.cnn]\nepochs = 1\n'
                 'resolution = 32\n')
    r = CliRunner().invoke(app, ["grid", str(g)])
    assert r.exit_code != 0 and "splits = 14: more repeated subject splits" in " ".join(r.output.split()), r.output
    assert not list((tmp_path / "res").glob("*.json"))
