"""`mriaug.plan.scenarios`: known answers for the mixing policies on a hand-made dataset of 27 training images
(then on the phantom with copy and transform pools, and on the real dataset).

Class counts 5 / 3 / 12 / 7 (Mild, Moderate, Non, Very mild). Every expected count below is written
out by hand from the rule: keep round_half_up(real_fraction * n_c), add round_half_up(synthetic_fraction * n_c).
Each training image's pixels are its row number, each pool image's pixels 200 + its source row, so what
`training_arrays` returns can be traced back to rows.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data.classes import CLASSES
from mriaug.data.kept_for import KeptFor
from mriaug.data.pools import Pool
from mriaug.data.sources import Dataset, DataSpec
from mriaug.errors import MriaugError, PoolError, SettingError
from mriaug.generators import synth
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from tests.conftest import REAL_DATA, require_real_data, tiny_hparams
from tests.engine_helpers import train_one as execute

N = {"Mild_Demented": 5, "Moderate_Demented": 3, "Non_Demented": 12, "Very_Mild_Demented": 7}
LABELS = np.repeat(np.arange(4), [5, 3, 12, 7])  # rows 0-4 Mild, 5-7 Moderate, 8-19 Non, 20-26 Very mild


def _dataset() -> Dataset:
    x = np.broadcast_to(np.arange(27, dtype=np.uint8)[:, None, None], (27, 4, 4)).copy()
    return Dataset(train_x=x, train_y=LABELS.copy(), test_x=x[:4].copy(), test_y=np.arange(4),
                   source={"kind": "test"}, fingerprint="handmade")


def _pool(sources: np.ndarray, trained_on: list | None = None) -> Pool:
    sources = np.asarray(sources, dtype=np.int64)
    images = np.broadcast_to((200 + sources).astype(np.uint8)[:, None, None], (len(sources), 4, 4)).copy()
    meta = {"runs": [], "trained_on": trained_on or []}
    return Pool(path=Path("handmade-pool"), images=images, labels=LABELS[sources].copy(), sources=sources,
                entries=[], meta=meta, fingerprint="p0")


def _counts(*values: int) -> dict[str, int]:
    return dict(zip(CLASSES, values, strict=True))


@pytest.mark.parametrize(("x", "want"), [(0.0, 0), (0.4, 0), (0.5, 1), (1.0, 1), (1.5, 2), (2.4000000000000004, 2),
                                         (2.5, 3), (3.5, 4), (9.6, 10), (10.49, 10), (10.5, 11)])
def test_round_half_up(x: float, want: int) -> None:
    assert scenarios.round_half_up(x) == want


@pytest.mark.parametrize(("name", "real", "synthetic"), [
    ("1", (5, 3, 12, 7), (0, 0, 0, 0)),
    ("2", (4, 2, 10, 6), (0, 0, 0, 0)),   # 0.8 * n: 4, 2.4, 9.6, 5.6
    ("3", (5, 3, 12, 7), (1, 1, 0, 0)),   # 0.2 * n: 1.0, 0.6 for Mild and Moderate only
    ("4", (4, 2, 10, 6), (1, 1, 0, 0)),
    ("5", (5, 3, 12, 7), (1, 1, 2, 1)),   # 0.2 * n: 1.0, 0.6, 2.4, 1.4
    ("6", (4, 2, 10, 6), (1, 1, 2, 1)),
])
def test_preset_counts_on_a_small_dataset(name: str, real: tuple[int, ...], synthetic: tuple[int, ...]) -> None:
    ds = _dataset()
    m = scenarios.mix(ds, scenarios.SCENARIOS[name], 0, _pool(np.arange(27)))
    assert m.counts_real == _counts(*real)
    assert m.counts_synthetic == _counts(*synthetic)
    assert len(m.real_index) == sum(real) and len(m.synthetic_index) == sum(synthetic)
    # Per class, the kept rows are distinct rows of that class.
    for c, k in enumerate(real):
        rows = m.real_index[LABELS[m.real_index] == c]
        assert len(rows) == len(set(rows.tolist())) == k


def test_halves_round_up_not_down_nor_to_even() -> None:
    # 0.5 * (5, 3, 12, 7) = 2.5, 1.5, 6, 3.5: half-up 3, 2, 6, 4 (floor: 2, 1, 6, 3; round-half-even: 2, 2, 6, 4).
    s = scenarios.custom("half", 0.5, 0.5)
    m = scenarios.mix(_dataset(), s, 0, _pool(np.arange(27)))
    assert m.counts_real == _counts(3, 2, 6, 4)
    assert m.counts_synthetic == _counts(3, 2, 6, 4)


def test_scenario_1_keeps_every_row_and_training_arrays_trace_back() -> None:
    ds = _dataset()
    m = scenarios.mix(ds, scenarios.SCENARIOS["1"], 7, None)
    np.testing.assert_array_equal(np.sort(m.real_index), np.arange(27))
    assert len(m.synthetic_index) == 0
    x, y = scenarios.training_arrays(ds, m, None)
    np.testing.assert_array_equal(x[:, 0, 0], m.real_index)
    np.testing.assert_array_equal(y, LABELS[m.real_index])


def test_synthetic_images_are_variations_of_kept_rows_and_land_in_the_training_set() -> None:
    ds = _dataset()
    pool = _pool(np.arange(27))
    for seed in range(6):
        m = scenarios.mix(ds, scenarios.SCENARIOS["6"], seed, pool)
        kept = set(m.real_index.tolist())
        assert set(pool.sources[m.synthetic_index].tolist()) <= kept
        x, y = scenarios.training_arrays(ds, m, pool)
        assert len(x) == 22 + 5 and len(y) == 27
        np.testing.assert_array_equal(x[:22, 0, 0], m.real_index)
        np.testing.assert_array_equal(x[22:, 0, 0], 200 + pool.sources[m.synthetic_index])
        np.testing.assert_array_equal(y, np.concatenate([LABELS[m.real_index], pool.labels[m.synthetic_index]]))


def test_dropped_rows_differ_by_seed_and_are_never_sources() -> None:
    ds = _dataset()
    kept = [scenarios.kept_real(ds, scenarios.SCENARIOS["4"], seed) for seed in range(4)]
    assert len({tuple(k.tolist()) for k in kept}) > 1
    assert all(len(k) == 22 and (np.diff(k) > 0).all() for k in kept)  # sorted, distinct
    # A pool whose only Mild variation is of a row seed 0 drops: scenario 4 cannot use it.
    dropped_mild = sorted(set(range(5)) - set(kept[0].tolist()))
    assert len(dropped_mild) == 1
    with pytest.raises(PoolError, match=r"needs 1 synthetic Mild_Demented images whose sources are among the 4 "
                                        r"kept real ones; pool handmade-pool has 0 such "
                                        r"\(1 Mild_Demented images in all\)$"):
        scenarios.mix(ds, scenarios.SCENARIOS["4"], 0, _pool(np.array(dropped_mild + [5, 6, 7])))


def test_kept_rows_do_not_depend_on_the_pool() -> None:
    ds = _dataset()
    a = scenarios.mix(ds, scenarios.SCENARIOS["2"], 3, None)
    b = scenarios.mix(ds, scenarios.SCENARIOS["4"], 3, _pool(np.arange(27)))
    np.testing.assert_array_equal(a.real_index, b.real_index)
    np.testing.assert_array_equal(np.sort(a.real_index), scenarios.kept_real(ds, scenarios.SCENARIOS["2"], 3))


def test_kept_for_rows_are_the_preset_runs_kept_rows() -> None:
    ds = _dataset()
    np.testing.assert_array_equal(scenarios.kept_for_rows(ds, KeptFor("4", 2)),
                                  scenarios.kept_real(ds, scenarios.SCENARIOS["4"], 2))
    with pytest.raises(SettingError) as err:
        scenarios.kept_for_rows(ds, KeptFor("mine", 0))
    assert str(err.value) == ("--kept-for mine:0: only the preset scenarios can be named (1, 2, 3, 4, 5, 6), not "
                              "'mine'; a grid's own [scenario.*] tables are not available here")


def test_a_pool_from_a_model_that_saw_dropped_rows_is_refused_only_when_rows_are_dropped() -> None:
    ds = _dataset()
    pool = _pool(np.arange(27), trained_on=[{"kept_for": None}])
    with pytest.raises(PoolError, match=r"scenario 4, seed 1: pool handmade-pool has images from a model trained "
                                        r"on all train rows.*--kept-for 4:1"):
        scenarios.mix(ds, scenarios.SCENARIOS["4"], 1, pool)
    other = _pool(np.arange(27), trained_on=[{"kept_for": ["4", 0]}])
    with pytest.raises(PoolError, match=r"trained on the kept set of \['4', 0\]"):
        scenarios.mix(ds, scenarios.SCENARIOS["4"], 1, other)
    # Its own kept set is fine, and so is a run that keeps every real row.
    scenarios.mix(ds, scenarios.SCENARIOS["4"], 0, other)
    assert scenarios.mix(ds, scenarios.SCENARIOS["3"], 1, pool).counts_synthetic == _counts(1, 1, 0, 0)


class _AvailableInverted(Pool):
    """A pool whose `available` has the slip mix's last guard is there for: it offers the sources NOT kept."""

    def available(self, label: int, kept: np.ndarray) -> np.ndarray:
        return np.flatnonzero((self.labels == label) & ~np.isin(self.sources, kept))


def test_a_synthetic_image_of_a_dropped_source_is_refused_by_mix_itself() -> None:
    # One variation of each Mild and Moderate row; scenario 4 (seed 0) keeps Mild rows 0, 1, 2, 4 and adds 1
    # synthetic Mild image, which this pool can only offer from the dropped row 3. The Mild variations are stored
    # in reverse, so row 3's sits at pool row 1, a kept row number: a guard that looked at pool rows instead of
    # their sources would let it through.
    ds = _dataset()
    good = _pool(np.array([4, 3, 2, 1, 0, 5, 6, 7]))
    bad = _AvailableInverted(**{f.name: getattr(good, f.name) for f in dataclasses.fields(good)})
    kept = scenarios.kept_class_rows(ds, scenarios.SCENARIOS["4"], 0, 0)
    assert kept.tolist() == [0, 1, 2, 4] and bad.available(0, kept).tolist() == [1]
    with pytest.raises(PoolError, match=r"internal: synthetic image of a dropped or held-out source selected "
                                        r"\(Mild_Demented\)"):
        scenarios.mix(ds, scenarios.SCENARIOS["4"], 0, bad)
    m = scenarios.mix(ds, scenarios.SCENARIOS["4"], 0, good)  # the same pool, read right: a kept source
    assert np.isin(good.sources[m.synthetic_index], m.real_index).all()


def test_needs_pool_and_to_dict() -> None:
    assert [s.needs_pool for s in scenarios.SCENARIOS.values()] == [False, False, True, True, True, True]
    assert not scenarios.custom("x", 0.5, 0).needs_pool
    assert scenarios.custom("x", 1.0, {"Non_Demented": 0.01}).needs_pool
    assert scenarios.SCENARIOS["4"].to_dict() == {
        "name": "4",
        "real_fraction": dict.fromkeys(CLASSES, 0.8),
        "synthetic_fraction": _counts(0.2, 0.2, 0.0, 0.0),  # type: ignore[arg-type]
    }


def test_presets_are_built_from_their_fractions() -> None:
    s = scenarios._preset("x", 0.8, 0.2, scenarios.MILD_MODERATE, "80/20 for two")
    assert s == scenarios.Scenario("x", (0.8, 0.8, 0.8, 0.8), (0.2, 0.2, 0.0, 0.0), "80/20 for two")
    assert scenarios._preset("y", 1.0, 0.3, ("Non_Demented",), "").synthetic_fraction == (0.0, 0.0, 0.3, 0.0)
    assert scenarios.SCENARIOS["3"].description == "100% real + 20% synthetic for Mild and Moderate"


def test_a_scenario_needs_a_fraction_for_every_class() -> None:
    with pytest.raises(ValueError):
        scenarios.Scenario("short", (1.0, 1.0, 1.0), (0.0,) * 4).to_dict()
    with pytest.raises(ValueError):
        scenarios.Scenario("short", (1.0,) * 4, (0.0,) * 5).to_dict()


def test_fraction_tables() -> None:
    s = scenarios.custom("t", {"default": 0.25, "Non_Demented": 1}, {"default": 0.5, "Mild": 2.0})
    assert s.real_fraction == (0.25, 0.25, 1.0, 0.25) and all(type(v) is float for v in s.real_fraction)
    assert s.synthetic_fraction == (2.0, 0.5, 0.5, 0.5)
    assert scenarios.custom("u", {"Mild_Demented": 0.5}).real_fraction == (0.5, 0.0, 0.0, 0.0)
    assert scenarios.custom("v", 1, 10).synthetic_fraction == (10.0,) * 4  # the upper bounds are allowed
    assert scenarios.custom("w", 0, 0).real_fraction == (0.0,) * 4


@pytest.mark.parametrize(("real", "synthetic", "message"), [
    ("half", 0.0, "real_fraction must be a number or a table of class = number"),
    ({"Mild_Demented": True}, 0.0, "real_fraction for Mild_Demented must be a number, got True"),
    ({"Mild_Demented": "0.5"}, 0.0, "real_fraction for Mild_Demented must be a number, got '0.5'"),
    (1.0, {"default": None}, "synthetic_fraction for default must be a number, got None"),
    ({"Moderate_Demented": 1.01}, 0.0, "real_fraction for Moderate_Demented is 1.01; must be between 0 and 1"),
    ({"Non_Demented": -0.1}, 0.0, "real_fraction for Non_Demented is -0.1; must be between 0 and 1"),
    (1.0, 10.5, "synthetic_fraction for Mild_Demented is 10.5; must be between 0 and 10"),
    (1.0, -1, "synthetic_fraction for Mild_Demented is -1.0; must be between 0 and 10"),
])
def test_bad_fractions_are_named(real: object, synthetic: object, message: str) -> None:
    with pytest.raises(SettingError) as err:
        scenarios.custom("bad", real, synthetic)
    assert str(err.value) == message


def test_the_draws_of_a_seed_are_pinned() -> None:
    # The seed fixes which real rows a run keeps and which pool images it adds; a change to the sampling
    # (streams, seeding) silently changes every run's training set, so it must be a deliberate one.
    ds = _dataset()
    assert scenarios.kept_real(ds, scenarios.SCENARIOS["4"], 0).tolist() == [
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26]
    assert scenarios.mix(ds, scenarios.SCENARIOS["6"], 0, _pool(np.arange(27))).synthetic_index.tolist() == [
        1, 5, 9, 16, 24]  # sources first, one variation each (issue 9), then the seed draws


def test_synthetic_images_are_drawn_without_replacement() -> None:
    # As many Mild images wanted as the pool has: each exactly once.
    m = scenarios.mix(_dataset(), scenarios.custom("all", 1.0, {"Mild_Demented": 1.0}), 4, _pool(np.arange(27)))
    assert m.synthetic_index.tolist() == [0, 1, 2, 3, 4]


def test_indices_are_integers_even_when_nothing_synthetic_is_drawn() -> None:
    ds = _dataset()
    for name, pool in (("1", None), ("2", _pool(np.arange(27))), ("4", _pool(np.arange(27)))):
        m = scenarios.mix(ds, scenarios.SCENARIOS[name], 0, pool)
        assert m.real_index.dtype.kind == "i" and m.synthetic_index.dtype.kind == "i", name


def test_a_scenario_with_synthetic_images_and_no_pool_is_named() -> None:
    with pytest.raises(PoolError) as err:
        scenarios.mix(_dataset(), scenarios.SCENARIOS["3"], 0, None)
    assert str(err.value) == "scenario 3 needs 1 synthetic Mild_Demented images but no pool was given"
    # A run without synthetic images ignores a pool, even one from a model that saw rows it drops.
    m = scenarios.mix(_dataset(), scenarios.SCENARIOS["2"], 0, _pool(np.arange(27), [{"kept_for": None}]))
    assert m.counts_synthetic == _counts(0, 0, 0, 0)


def test_custom_defaults_name_and_description() -> None:
    s = scenarios.custom("mine")
    assert s == scenarios.Scenario("mine", (1.0,) * 4, (0.0,) * 4, "")
    assert scenarios.custom("n", 0.5, 0.1, "why").description == "why"


def test_sources_first_takes_every_source_once_before_any_twice() -> None:
    rows = np.array([10, 11, 12, 13, 14, 15])
    sources = np.array([0, 0, 0, 1, 1, 2])  # source 0 gave three variations, source 1 two, source 2 one
    for seed in range(20):
        chosen, reused = scenarios.sources_first(rows, sources, 3, np.random.default_rng(seed))
        assert reused == 0 and sorted(sources[np.searchsorted(rows, chosen)].tolist()) == [0, 1, 2]
        chosen, reused = scenarios.sources_first(rows, sources, 5, np.random.default_rng(seed))
        assert reused == 2 and sorted(sources[np.searchsorted(rows, chosen)].tolist()) == [0, 0, 1, 1, 2]
    # Which variation of a source comes first is drawn: over seeds each of source 0's three is taken.
    firsts = {int(scenarios.sources_first(rows, sources, 3, np.random.default_rng(s))[0][0]) for s in range(30)}
    assert firsts == {10, 11, 12}


def _grouped(kind: str, val_rows: list[int], train_groups: list[int] | None, test_groups: list[int] | None) -> Dataset:
    x = np.zeros((6, 8, 8), np.uint8)
    return Dataset(x, np.zeros(6, np.int64), x[:3], np.zeros(3, np.int64), {"source": "hand"}, "fp",
                   np.array(val_rows, np.int64), {"kind": kind},
                   None if train_groups is None else np.array(train_groups, np.int64),
                   None if test_groups is None else np.array(test_groups, np.int64))


def test_held_out_groups_and_refused_sources_by_hand() -> None:
    from types import SimpleNamespace

    groups = [0, 0, 1, 2, 2, 3]  # train rows 0..5 in scan groups; validation is row 4 (group 2)
    given = _grouped("given", [4], groups, [1, 5])
    subject = _grouped("subject", [4], groups, [1, 5])
    # Given split: only validation groups are held (its test groups share scans with training by design).
    assert scenarios.held_out_groups(given).tolist() == [2]
    # Subject split: validation and test groups.
    assert scenarios.held_out_groups(subject).tolist() == [1, 2, 5]
    none = scenarios.held_out_groups(_grouped("subject", [], None, None))
    assert none.dtype == np.int64 and len(none) == 0
    pool = SimpleNamespace(sources=np.array([0, 1, 2, 3, 4, 5]))
    # Given: rows 3 and 4 (group 2, the validation group). Subject: also row 2 (group 1, a test group).
    assert scenarios.refused_sources(given, pool).tolist() == [False, False, False, True, True, False]
    assert scenarios.refused_sources(subject, pool).tolist() == [False, False, True, True, True, False]
    # Without scan groups a validation row is still refused as a source, by itself.
    ungrouped = _grouped("given", [1], None, None)
    assert scenarios.refused_sources(ungrouped, pool).tolist() == [False, True, False, False, False, False]


def test_a_class_left_without_training_images_is_refused_when_mixing() -> None:
    none_mild = scenarios.custom("none-mild", {"Mild_Demented": 0.0, "Moderate_Demented": 1.0, "Non_Demented": 1.0,
                                               "Very_Mild_Demented": 1.0})
    with pytest.raises(SettingError, match=r"^scenario none-mild, seed 3: no training images of class "
                                           r"Mild_Demented \(real fraction 0 and synthetic fraction 0 of its 5\); "
                                           r"raise one of them$"):
        scenarios.mix(_dataset(), none_mild, 3, None)


# On phantom pools made by the copy generator. (Until issue 23 in test_controls.py.)

def test_pool_sampling_takes_sources_first_and_records_reuse(ds: data.Dataset, tmp_path: Path) -> None:
    synth.make_pool(ds, tmp_path / "p", "copy", classes=["Mild_Demented", "Moderate_Demented"], per_source=3,
                    progress_bar=False)
    p = pools.load(tmp_path / "p", ds)
    for seed in range(4):
        m = scenarios.mix(ds, scenarios.SCENARIOS["3"], seed, p)
        for c, name in ((0, "Mild_Demented"), (1, "Moderate_Demented")):
            rows = m.synthetic_index[p.labels[m.synthetic_index] == c]
            n_sources = len(np.unique(p.sources[rows]))
            assert n_sources == len(rows)  # one variation per source while sources last
            if len(rows):
                assert m.pool_sampling[name]["reused"] == 0 and m.pool_sampling[name]["sources"] == len(rows)
        assert m.pool_sampling["Mild_Demented"]["images"] > 0
    n_mod = ds.counts("train")["Moderate_Demented"]
    more = scenarios.custom("more", 1.0, {"Moderate_Demented": 2.0})
    m = scenarios.mix(ds, more, 0, p)
    rows = m.synthetic_index
    assert len(rows) == 2 * n_mod and len(np.unique(p.sources[rows])) == n_mod
    assert np.bincount(p.sources[rows]).max() == 2  # reuse spread evenly: every source twice, none three times
    assert m.pool_sampling["Moderate_Demented"] == {"images": 2 * n_mod, "sources": n_mod,
                                                    "sources_available": n_mod, "reused": n_mod}


def test_group_leakage_guard(phantom_spec: DataSpec, tmp_path: Path) -> None:
    plain = data.load(phantom_spec)
    # A pool made before validation was carved has variations of every train image.
    synth.make_pool(plain, tmp_path / "p", "copy", classes=["Mild_Demented"], progress_bar=False)
    carved = data.load(DataSpec("phantom", {**phantom_spec.options, "val_fraction": 0.3}))
    assert carved.train_groups is not None
    p = pools.load(tmp_path / "p", carved)
    refused = scenarios.refused_sources(carved, p)
    assert refused.any() and np.isin(p.sources[refused], carved.val_rows).all()
    all_mild = scenarios.custom("all", 1.0, {"Mild_Demented": 1.0})
    m = scenarios.mix(carved, all_mild, 0, p)
    assert not np.isin(p.sources[m.synthetic_index], carved.val_rows).any()
    # A training row that shares a scan group with a validation image is refused too.
    fit_mild = np.flatnonzero(carved.fit_mask & (carved.train_y == 0))
    groups = carved.train_groups.copy()
    groups[fit_mild[0]] = groups[carved.val_rows[0]]
    leaky = dataclasses.replace(carved, train_groups=groups)
    assert scenarios.refused_sources(leaky, p)[p.sources == fit_mild[0]].all()
    with pytest.raises(PoolError, match="shares a scan group with a validation or test image"):
        scenarios.mix(leaky, all_mild, 0, p)
    # On the subject split a pool is made from the training part only: no validation or test source.
    sub = data.load(DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "split": "subject"}))
    synth.make_pool(sub, tmp_path / "s", "copy", progress_bar=False)
    ps = pools.load(tmp_path / "s", sub)
    assert len(ps.sources) == int(sub.fit_mask.sum()) and not scenarios.refused_sources(sub, ps).any()


# On phantom data and transform pools. (Until issue 23 in test_pools_scenarios.py.)

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


# On the real dataset: skipped where ../shared/data is not laid out, fails under CI (test_conftest.py).
# (Until issue 23 in test_real_data.py.)

def test_scenario4_on_real_data_with_transform_pool(tmp_path: Path) -> None:
    require_real_data()
    spec = DataSpec(str(REAL_DATA))
    ds = data.load(spec)
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    run = make_spec("cnn", scenarios.SCENARIOS["4"], "none", 0, tiny_hparams("cnn", epochs=1), spec,
                  str(tmp_path / "pool"))
    r = execute(run, tmp_path / "res", log=lambda m: None)
    n = {"Mild_Demented": 724, "Moderate_Demented": 49, "Non_Demented": 2566, "Very_Mild_Demented": 1781}
    assert r.counts.real == {c: round(0.8 * v) for c, v in n.items()}
    assert r.counts.synthetic == {"Mild_Demented": 145, "Moderate_Demented": 10, "Non_Demented": 0,
                                  "Very_Mild_Demented": 0}
    # One epoch already learns: test CE well below ln 4 (a uniform guess), accuracy above the majority class.
    assert r.metrics.test_ce is not None and r.metrics.test_ce < math.log(4) - 0.3
    assert r.metrics.accuracy is not None and r.metrics.accuracy > 634 / 1280  # measured: CE 0.946, acc 0.541 (32 px)
    p = pools.load(tmp_path / "pool", ds)
    assert r.selection is not None
    kept = set(r.selection["real_train_rows"])
    for row in r.selection["pool_rows"]:
        assert int(p.sources[row]) in kept and ds.train_y[p.sources[row]] == p.labels[row]
