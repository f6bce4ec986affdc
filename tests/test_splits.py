"""Scan groups recovered from the images, the subject split and the audit, against the phantom's ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug import audit, data, phantom, splits
from mriaug.classes import CLASSES
from mriaug.cli import app
from mriaug.data import DataSpec
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
    assert len(plain.val_rows) == 0 and plain.split["kind"] == "given" and plain.train_groups is None
    carved = data.load(DataSpec("phantom", {**phantom_spec.options, "val_fraction": 0.3}))
    assert carved.fingerprint == plain.fingerprint and len(carved.val_rows) > 0
    assert carved.train_groups is not None
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
