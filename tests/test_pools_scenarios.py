from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mriaug import data, pools, scenarios, synth
from mriaug.classes import CLASSES
from mriaug.data import DataSpec
from mriaug.errors import MriaugError
from mriaug.pools import PoolError


@pytest.fixture
def ds(phantom_spec: DataSpec) -> data.Dataset:
    return data.load(phantom_spec)


@pytest.fixture
def pool_dir(ds: data.Dataset, tmp_path: Path) -> Path:
    out = tmp_path / "pool"
    synth.make_pool(ds, out, "transform", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False)
    return out


def test_transform_pool_is_valid_and_resumable(ds: data.Dataset, pool_dir: Path) -> None:
    p = pools.load(pool_dir, ds)
    n_mild_mod = ds.counts("train")["Mild_Demented"] + ds.counts("train")["Moderate_Demented"]
    assert len(p.labels) == n_mild_mod
    assert (ds.train_y[p.sources] == p.labels).all()
    assert p.images.shape[1:] == ds.train_x.shape[1:]
    # Variations differ from their sources but stay close.
    diff = np.abs(p.images.astype(int) - ds.train_x[p.sources].astype(int)).mean()
    assert 1 < diff < 60
    before = (pool_dir / pools.MANIFEST).read_bytes()
    summary = synth.make_pool(ds, pool_dir, "transform", classes=["Mild_Demented", "Moderate_Demented"],
                              progress_bar=False)
    assert summary["generated"] == 0
    assert (pool_dir / pools.MANIFEST).read_bytes() == before


def _rewrite(pool_dir: Path, edit) -> None:  # type: ignore[no-untyped-def]
    mf = pool_dir / pools.MANIFEST
    lines = [json.loads(line) for line in mf.read_text().splitlines()]
    edit(lines)
    mf.write_text("".join(json.dumps(e) + "\n" for e in lines))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[1].update(source_index=10**6), r"line 2: source_index 1000000 is not a row of the train split"),
        (lambda ls: ls[0].update({"class": "Severe"}), r"line 1: unknown class 'Severe'"),
        (lambda ls: ls[2].update(sha256="0" * 64), r"line 3: sha256 .* does not match"),
        (lambda ls: ls[0].update(file="images/nope.png"), r"line 1: image file .*nope.png is missing"),
        (lambda ls: ls[0].update(file="../../etc/passwd"), r"line 1: file '../../etc/passwd' must be a path inside"),
        (lambda ls: ls[0].update(file=None), r"line 1: file None must be a path inside the pool folder"),
        (lambda ls: ls[0].update(file="images"), r"line 1: image file .*images is missing"),
        (lambda ls: ls[0].update({"class": "Non_Demented"}),
         r"line 1: source train row \d+ is (Mild|Moderate)_Demented, but the image is labelled Non_Demented"),
    ],
)
def test_pool_validation_names_the_line(ds: data.Dataset, pool_dir: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    _rewrite(pool_dir, edit)
    with pytest.raises(PoolError, match=message):
        pools.load(pool_dir, ds)


def test_pool_cut_in_half_and_missing(ds: data.Dataset, pool_dir: Path, tmp_path: Path) -> None:
    mf = pool_dir / pools.MANIFEST
    mf.write_text(mf.read_text()[:-30])
    with pytest.raises(PoolError, match=r"manifest.jsonl, line \d+: not valid JSON"):
        pools.load(pool_dir, ds)
    with pytest.raises(PoolError, match="no such folder"):
        pools.load(tmp_path / "missing", ds)


def test_pool_from_other_dataset_is_refused(pool_dir: Path) -> None:
    other = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, "seed": 9}))
    with pytest.raises(PoolError, match="was made from dataset"):
        pools.load(pool_dir, other)


def test_presets() -> None:
    s4 = scenarios.SCENARIOS["4"]
    assert s4.real_fraction == (0.8,) * 4
    assert s4.synthetic_fraction == (0.2, 0.2, 0.0, 0.0)
    assert scenarios.SCENARIOS["6"].synthetic_fraction == (0.2,) * 4
    assert not scenarios.SCENARIOS["2"].needs_pool


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scenario4_counts_and_sources_are_kept_images(ds: data.Dataset, pool_dir: Path, seed: int) -> None:
    p = pools.load(pool_dir, ds)
    m = scenarios.mix(ds, scenarios.SCENARIOS["4"], seed, p)
    for c, name in enumerate(CLASSES):
        n = int((ds.train_y == c).sum())
        assert m.counts_real[name] == scenarios.round_half_up(0.8 * n)
        want_syn = scenarios.round_half_up(0.2 * n) if name in scenarios.MILD_MODERATE else 0
        assert m.counts_synthetic[name] == want_syn
    kept = set(m.real_index.tolist())
    for row in m.synthetic_index:
        assert int(p.sources[row]) in kept
        assert ds.train_y[p.sources[row]] == p.labels[row]
    x, y = scenarios.training_arrays(ds, m, p)
    assert len(x) == len(y) == len(m.real_index) + len(m.synthetic_index)


def test_seed_changes_the_subsample(ds: data.Dataset) -> None:
    a = scenarios.mix(ds, scenarios.SCENARIOS["2"], 0, None)
    b = scenarios.mix(ds, scenarios.SCENARIOS["2"], 1, None)
    assert not np.array_equal(a.real_index, b.real_index)
    np.testing.assert_array_equal(a.real_index, scenarios.mix(ds, scenarios.SCENARIOS["2"], 0, None).real_index)


def test_pool_too_small_or_missing_fails_with_counts(ds: data.Dataset, tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="no pool was given"):
        scenarios.mix(ds, scenarios.SCENARIOS["3"], 0, None)
    out = tmp_path / "small"
    synth.make_pool(ds, out, "transform", classes=["Mild_Demented"], max_sources=3, progress_bar=False)
    p = pools.load(out, ds)
    n = int((ds.train_y == 0).sum())
    need = scenarios.round_half_up(0.2 * n)
    with pytest.raises(PoolError, match=rf"needs {need} synthetic Mild_Demented .* has \d+ such"):
        scenarios.mix(ds, scenarios.SCENARIOS["3"], 0, p)


def test_variations_of_dropped_images_are_never_used(ds: data.Dataset, tmp_path: Path) -> None:
    # A pool with variations of every Mild image: in scenario 4 (80% kept) only kept sources may be drawn.
    out = tmp_path / "all"
    synth.make_pool(ds, out, "transform", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False)
    p = pools.load(out, ds)
    for seed in range(5):
        m = scenarios.mix(ds, scenarios.SCENARIOS["4"], seed, p)
        dropped = set(np.flatnonzero(np.isin(ds.train_y, [0, 1]))) - set(m.real_index.tolist())
        assert dropped, "scenario 4 drops images"
        assert not set(p.sources[m.synthetic_index].tolist()) & dropped


def test_real_fraction_above_one_is_refused() -> None:
    with pytest.raises(MriaugError, match="real_fraction for Mild_Demented is 1.2; must be between 0 and 1"):
        scenarios.custom("z", {"Mild_Demented": 1.2})


def test_custom_scenario_fractions() -> None:
    s = scenarios.custom("x", {"default": 0.5, "Moderate_Demented": 1.0}, {"Very Mild Demented": 0.3})
    assert s.real_fraction == (0.5, 1.0, 0.5, 0.5)
    assert s.synthetic_fraction == (0.0, 0.0, 0.0, 0.3)
    with pytest.raises(MriaugError, match="unknown class"):
        scenarios.custom("y", {"Severe": 0.5})


def test_extending_a_pool_with_another_generator_or_settings_is_refused(ds: data.Dataset, pool_dir: Path) -> None:
    before = (pool_dir / pools.MANIFEST).read_bytes()
    with pytest.raises(PoolError, match=r"already holds train row \d+ \(variation 0\) made by transform with "
                                        r"\{'seed': 0\}; this run asks for transform with \{'seed': 5"):
        synth.make_pool(ds, pool_dir, "transform", classes=["Mild_Demented"], options={"seed": 5},
                        progress_bar=False)
    with pytest.raises(PoolError, match=r"made by transform; this run asks for openai"):
        synth.make_pool(ds, pool_dir, "openai", classes=["Mild_Demented"], dry_run=True, progress_bar=False)
    assert (pool_dir / pools.MANIFEST).read_bytes() == before
    # The same settings extend it; other settings may add other sources.
    s = synth.make_pool(ds, pool_dir, "transform", classes=["Very_Mild_Demented"], max_sources=2, progress_bar=False)
    assert s["generated"] == 2
    s = synth.make_pool(ds, pool_dir, "transform", classes=["Non_Demented"], max_sources=2, options={"seed": 5},
                        progress_bar=False)
    assert s["generated"] == 2


def test_generator_settings_of_the_wrong_type_are_named(ds: data.Dataset, tmp_path: Path) -> None:
    with pytest.raises(MriaugError, match="generator transform: setting max_rotation_deg must be a number, got 'abc'"):
        synth.make_pool(ds, tmp_path / "p", "transform", options={"max_rotation_deg": "abc"}, progress_bar=False)
    assert not (tmp_path / "p" / pools.MANIFEST).exists()


def test_transform_variations_are_near_their_own_source_and_never_copies(ds: data.Dataset, pool_dir: Path) -> None:
    p = pools.load(pool_dir, ds)
    img = p.images.astype(float)
    src = ds.train_x[p.sources].astype(float)
    per_image = np.abs(img - src).mean(axis=(1, 2))
    assert (per_image > 1).all(), "a variation is a copy of its source"
    # Tied to its input: on average a variation is closer to its own source than to the other sources of its
    # class (a variation of the wrong row would be as far from "its" source as from any: ratio about 1). The
    # phantom's subjects are runs of similar slices, so neighbouring sources are close too: 0.9, not lower.
    own, others = [], []
    for c in np.unique(p.labels):
        rows = np.flatnonzero(p.labels == c)
        d = np.abs(img[rows][:, None] - src[rows][None]).mean(axis=(2, 3))
        own += np.diag(d).tolist()
        others += d[~np.eye(len(rows), dtype=bool)].tolist()
    assert np.mean(own) < 0.9 * np.mean(others), (np.mean(own), np.mean(others))
    # Seeded per (seed, source, variation): the same settings remake an image, another seed does not.
    from mriaug import generators

    row = int(p.sources[0])
    a = generators.get("transform").variation(ds.train_x[row], row, 0)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a, p.images[0])
    b = generators.get("transform", seed=1).variation(ds.train_x[row], row, 0)  # type: ignore[attr-defined]
    assert not np.array_equal(a, b)
