"""Known answers for the statistics behind the tables: numbers worked out by hand or by brute force."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from mriaug.analysis import statistics as st
from mriaug.engine.metrics import classification_metrics, expected_calibration_error
from mriaug.errors import SettingError


@pytest.fixture(autouse=True)
def _fresh_draws() -> None:
    # Drawn anew for each test: the cached bootstrap draws are tested, not only reused.
    st.clear_caches()


def test_holm_by_hand() -> None:
    # Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04, raised to the running 0.06.
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1 and monotone
    out = st.holm([math.nan, 0.01, 0.5])  # NaN is no comparison: m = 2
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.5])
    assert st.holm([]) == []


def test_iqm_by_hand() -> None:
    assert st.iqm(range(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert st.iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)  # an outlier is trimmed away
    assert st.iqm([1, 2, 3, 4, 5, 6, 7, 8, 9]) == pytest.approx(5.0)  # 2 trimmed each side: mean of 3..7
    assert math.isnan(st.iqm([]))


def test_cell_stats_known_values_and_interval() -> None:
    c = st.cell_stats([3.0, 1.0, 2.0, math.nan])  # NaN: a run without the metric, left out
    assert c["n"] == 3 and c["median"] == 2.0 and c["iqm"] == pytest.approx(2.0) and c["n_failed"] == 0
    # Three values: no interval reaches 95%, so the range, which covers the median with 1 - 2 / 2^3 = 0.75.
    assert (c["ci_low"], c["ci_high"]) == (1.0, 3.0) and c["ci_coverage"] == pytest.approx(0.75)
    # Two values: the range covers with 1 - 2 / 4 = 0.5.
    two = st.cell_stats([1.0, 2.0])
    assert (two["ci_low"], two["ci_high"]) == (1.0, 2.0) and two["ci_coverage"] == pytest.approx(0.5)
    same = st.cell_stats([5.0, 5.0, 5.0])
    assert (same["ci_low"], same["median"], same["ci_high"]) == (5.0, 5.0, 5.0)
    empty = st.cell_stats([])
    assert empty["n"] == 0 and math.isnan(empty["median"]) and math.isnan(empty["ci_low"])


def test_bootstrap_is_seeded_contains_the_median_and_shrinks_with_n() -> None:
    assert inspect.signature(st.bootstrap_median_ci).parameters["n_boot"].default >= 10_000
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.3, 0.05, 10), rng.normal(0.3, 0.05, 200)
    a, b = st.cell_stats(small), st.cell_stats(small)
    assert a == b
    boot = lambda seed: st.bootstrap_median_ci(large, seed=seed)  # noqa: E731
    assert boot(7) == boot(7) and boot(7) != boot(8)
    for c in (a, st.cell_stats(large)):
        assert c["ci_low"] <= c["median"] <= c["ci_high"]
    width = lambda c: c["ci_high"] - c["ci_low"]  # noqa: E731
    assert width(st.cell_stats(large)) < width(a) / 3  # ~ 1/sqrt(n): sqrt(20) ~ 4.5 times narrower


@pytest.mark.parametrize("n,lower,coverage", [
    # 1 - 2 P(B <= l - 1), B ~ Binomial(n, 1/2): n = 20, l = 6: 1 - 2 * 21700 / 2^20 = 0.958610...; l = 7 would
    # give 1 - 2 * 60460 / 2^20 = 0.8847, under 95%.
    (20, 6, 1 - 2 * 21700 / 2**20),
    # n = 10, l = 2: 1 - 2 * 11 / 1024 = 0.978515625; l = 3: 1 - 2 * 56 / 1024 = 0.890625.
    (10, 2, 1 - 2 * 11 / 1024),
    # n = 6, l = 1: 1 - 2 / 64 = 0.96875 (the smallest n with a 95% interval); n = 5: the range, 0.9375.
    (6, 1, 1 - 2 / 64), (5, 1, 1 - 2 / 32), (1, 1, 0.0),
])
def test_order_statistic_interval_ranks_by_hand(n: int, lower: int, coverage: float) -> None:
    lo, hi, cov = st.median_ci_ranks(n)
    assert (lo, hi) == (lower, n - lower + 1) and cov == pytest.approx(coverage, abs=1e-12)
    x = np.arange(100.0, 100.0 + n)[::-1]  # given in reverse: the interval is of the sorted values
    assert st.median_ci(x)[:2] == (100.0 + lower - 1, 100.0 + n - lower)


def test_order_statistic_interval_covers_at_least_95_percent_on_skewed_data() -> None:
    # The median of a lognormal(0, 1) is 1, of an exponential(1) ln 2. 4,000 simulations: standard error of a
    # 95% share about 0.0034; the interval's exact coverage is 0.9586 (n = 20) and 0.9785 (n = 10).
    rng = np.random.default_rng(7)
    sims = 4000
    for n in (10, 20):
        for draw, median in ((lambda k: rng.lognormal(0, 1, k), 1.0), (lambda k: rng.exponential(1, k), math.log(2))):
            x = draw((sims, n))
            lo, hi, _ = st.median_ci_ranks(n)
            xs = np.sort(x, axis=1)
            covered = float(np.mean((xs[:, lo - 1] <= median) & (median <= xs[:, hi - 1])))
            assert covered >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / sims), (n, covered)
            # and the same values through the function the tables use
            assert st.median_ci(x[0]) == (xs[0, lo - 1], xs[0, hi - 1], pytest.approx(st.median_ci_ranks(n)[2]))


def test_a_failed_run_is_the_worst_value_and_counts_in_medians_pairs_and_ranks() -> None:
    assert (st.worst("test_ce"), st.worst("ece"), st.worst("accuracy"), st.worst("recall:Mild_Demented")) == (
        math.inf, 1.0, 0.0, 0.0)
    # Scenario 3: seeds 0-2 diverged (their rows hold NaN: no metrics), seeds 3-5 finished lower than scenario 1.
    # Scenario 4: seed 0 diverged, the others 0.01-0.05 lower than scenario 1.
    base = [0.50, 0.60, 0.70, 0.80, 0.90, 1.00]
    other = [math.nan, math.nan, math.nan, 0.75, 0.85, 0.95]
    fourth = [math.nan, 0.59, 0.68, 0.77, 0.86, 0.95]
    runs = pd.DataFrame([{"model": "cnn", "augmentation": "none", "scenario": scen, "seed": seed, "test_ce": v,
                          "status": "diverged" if math.isnan(v) else "done"}
                         for scen, vals in (("1", base), ("3", other), ("4", fourth)) for seed, v in enumerate(vals)])
    t = st.stats_table(runs, "test_ce").set_index("scenario")
    three = t.loc["3"]
    # Sorted 0.75, 0.85, 0.95, inf, inf, inf: n = 6 with 3 failed, median (0.95 + inf) / 2 = inf; the
    # interval of n = 6 is the range, 0.75 to inf.
    assert three["n"] == 6 and three["n_failed"] == 3 and three["median"] == math.inf
    assert (three["ci_low"], three["ci_high"]) == (0.75, math.inf)
    # Differences: +inf for seeds 0-2, -0.05 for seeds 3-5: median (-0.05 + inf)/2 = inf; 3 of 6 better.
    assert three["diff_median"] == math.inf and three["prob_improvement"] == pytest.approx(0.5)
    four = t.loc["4"]
    # Differences +inf, -0.01, -0.02, -0.03, -0.04, -0.05: the failure is the largest (rank 6, positive), W+ = 6.
    # Subsets of ranks 1..6 summing to 6 or less: {}, 6 singletons, {1,2} {1,3} {1,4} {1,5} {2,3} {2,4}, {1,2,3}:
    # 14 of 64, two-sided p = 28/64 = 0.4375. Dropping the failure would leave five improvements: p = 2/32.
    assert four["n_failed"] == 1 and four["p_wilcoxon"] == pytest.approx(0.4375)
    assert four["prob_improvement"] == pytest.approx(5 / 6) and four["diff_median"] == pytest.approx(-0.025)
    assert t.loc["1", "n_failed"] == 0
    # Two failures of one seed tie.
    assert st.difference(math.inf, math.inf) == 0.0 and st.difference(math.inf, 1.0) == math.inf


def test_seeds_needed_under_holm_by_hand() -> None:
    # The smallest exact two-sided Wilcoxon p of n pairs is 2 / 2^n; Holm multiplies it by m.
    assert st.seeds_needed(1) == 6  # 2/64 = 0.031 < 0.05; 2/32 = 0.0625 is not
    assert st.seeds_needed(2) == 7  # 2 * 2/128 = 0.031; 2 * 2/64 = 0.0625
    assert st.seeds_needed(9) == 9  # 9 * 2/512 = 0.035; 9 * 2/256 = 0.070
    assert st.seeds_needed(27) == 11  # 27 * 2/2048 = 0.026; 27 * 2/1024 = 0.053


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_bootstrap_is_the_plain_percentile_bootstrap(n: int) -> None:
    # The definition, done the slow way: resample, take medians, read the 2.5% and 97.5% percentiles.
    x = np.random.default_rng(n).lognormal(0, 1, n)
    draws = np.random.default_rng(3).integers(0, n, size=(10_000, n))
    expected = np.percentile(np.median(x[draws], axis=1), [2.5, 97.5])
    assert st.bootstrap_median_ci(x, seed=3) == pytest.approx(tuple(expected))


def test_interval_coverage_is_near_95_percent() -> None:
    # The median of N(0, 1) is 0: count how often the interval from 20 draws covers it.
    rng = np.random.default_rng(2024)
    sims = 400
    covered = sum(lo <= 0.0 <= hi for lo, hi in
                  (st.bootstrap_median_ci(rng.normal(0, 1, 20), seed=i, n_boot=2000) for i in range(sims)))
    assert 0.90 <= covered / sims <= 0.99, covered / sims


def _exact_two_sided(d: list[float]) -> float:
    """Wilcoxon signed-rank p by brute force: every one of the 2^n sign patterns is equally likely under
    the null; p = share of patterns whose W+ lies at least as far from its mean as the observed one."""
    mags = [abs(x) for x in d]
    ranks = {m: r for r, m in enumerate(sorted(mags), start=1)}  # distinct magnitudes: no ties
    w_obs = sum(ranks[abs(x)] for x in d if x > 0)
    n = len(d)
    mean = n * (n + 1) / 4
    extreme = sum(abs(sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s) - mean) >= abs(w_obs - mean)
                  for signs in itertools.product([0, 1], repeat=n))
    return extreme / 2**n


def test_wilcoxon_known_answers() -> None:
    # Differences 1, -2, 3, 4, 5: W- = 2 (the rank of -2). Sign patterns with W- <= 2 are {}, {1}, {2}:
    # 3 of 32, two-sided p = 2 * 3/32 = 0.1875.
    base = {s: 10.0 for s in range(5)}
    other = {s: 10.0 + d for s, d in enumerate([1.0, -2.0, 3.0, 4.0, 5.0])}
    assert st.paired(base, other, higher_is_better=True)["p_wilcoxon"] == pytest.approx(0.1875)
    d = [0.31, -0.12, 0.45, 0.07, -0.52, 0.66, 0.29, 0.18, -0.03, 0.94]
    assert st.wilcoxon_p(d) == pytest.approx(_exact_two_sided(d))
    assert st.wilcoxon_p([0.0, 0.0, 0.0]) == 1.0  # no difference at all
    all_up = [float(x) for x in range(1, 11)]
    assert st.wilcoxon_p(all_up) == pytest.approx(2 / 2**10)  # only the all-positive pattern is as extreme


def test_paired_difference_probability_and_pairing() -> None:
    base = {s: 1.0 for s in range(6)}
    other = {s: 1.0 + d for s, d in enumerate([1.0, -2.0, 3.0, 4.0, 5.0, 0.0])}
    up = st.paired(base, other, higher_is_better=True)
    # 4 better, 1 worse, 1 tie (counts half): (4 + 0.5) / 6.
    assert up["n"] == 6 and up["prob_improvement"] == pytest.approx(0.75)
    assert up["diff_median"] == pytest.approx(2.0)  # median of -2, 0, 1, 3, 4, 5
    assert up["diff_ci_low"] <= up["diff_median"] <= up["diff_ci_high"]
    down = st.paired(base, other, higher_is_better=False)
    assert down["prob_improvement"] == pytest.approx(0.25) and down["p_wilcoxon"] == up["p_wilcoxon"]
    # Only seeds on both sides and with values count.
    part = st.paired({0: 1.0, 1: 2.0, 2: 3.0, 3: math.nan}, {1: 2.5, 2: 2.0, 3: 1.0, 9: 0.0}, higher_is_better=True)
    assert part["n"] == 2 and part["diff_median"] == pytest.approx(-0.25) and part["prob_improvement"] == 0.5
    none = st.paired({0: 1.0}, {1: 1.0}, higher_is_better=True)
    assert none["n"] == 0 and math.isnan(none["p_wilcoxon"])


def test_wilcoxon_null_rejects_about_five_percent() -> None:
    rng = np.random.default_rng(11)
    rate = np.mean([st.wilcoxon_p(rng.normal(0, 1, 20)) < 0.05 for _ in range(400)])
    assert 0.02 <= rate <= 0.09, rate


def test_holm_keeps_the_familywise_error_near_five_percent() -> None:
    # Tables of 6 null comparisons of 20 paired seeds: how often does any of them come out significant?
    rng = np.random.default_rng(3)
    raw = any_holm = 0
    for _ in range(200):
        p = [st.wilcoxon_p(rng.normal(0, 1, 20)) for _ in range(6)]
        raw += min(p) < 0.05
        any_holm += min(st.holm(p)) < 0.05
    assert any_holm / 200 <= 0.08 and raw / 200 > 0.15  # uncorrected: about 1 - 0.95^6 = 26%


def _runs(values: dict[str, np.ndarray], model: str = "cnn", aug: str = "none") -> list[dict]:
    return [{"model": model, "augmentation": aug, "pool": "" if scen in ("1", "2") else "gen", "scenario": scen,
             "seed": seed, "test_ce": float(v)} for scen, vals in values.items() for seed, v in enumerate(vals)]


def test_stats_table_real_shift_is_significant_after_holm_and_a_null_is_not() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0.40, 0.05, 20)  # seed-to-seed spread larger than the effect: pairing matters
    noise = rng.normal(0.0, 0.01, 10)
    values = {"1": base,
              # A null by construction: each difference has its mirror image, so W+ is exactly its mean and p = 1.
              "2": base + rng.permutation(np.concatenate([noise, -noise])),
              "3": base - 0.02 + rng.normal(0.0, 0.01, 20),  # a real improvement of 0.02 in test CE
              "4": base + rng.normal(0.0, 0.01, 20)}  # a drawn null
    df = pd.DataFrame(_runs(values) + _runs(values, aug="hflip"))
    t = st.stats_table(df, "test_ce")
    assert list(t.columns[: len(st.COLUMNS)]) == st.COLUMNS
    assert len(t) == 8 and set(t["table"]) == {"cnn"}
    row = t.set_index(["augmentation", "scenario"])
    for aug in ("none", "hflip"):
        one = row.loc[(aug, "1")]
        assert one["n"] == 20 and all(math.isnan(one[c]) for c in ("diff_median", "p_wilcoxon", "p_holm",
                                                                   "prob_improvement"))
        three = row.loc[(aug, "3")]
        assert three["p_holm"] < 0.05 and three["diff_median"] < 0 and three["diff_ci_high"] < 0
        assert three["prob_improvement"] > 0.9 and three["pool"] == "gen"
        for null in ("2", "4"):
            assert row.loc[(aug, null), "p_holm"] >= 0.05
            assert row.loc[(aug, null), "diff_ci_low"] < 0 < row.loc[(aug, null), "diff_ci_high"]
    assert row.loc[("none", "2"), "p_wilcoxon"] == 1.0
    # Holm over the table's 6 comparisons (3 scenarios x 2 augmentations).
    compared = t[t["scenario"] != "1"]
    assert compared["p_holm"].tolist() == pytest.approx(st.holm(compared["p_wilcoxon"].tolist()))
    assert (compared["p_holm"] >= compared["p_wilcoxon"]).all()


def test_stats_table_higher_is_better_metric_missing_values_and_tables() -> None:
    rows = []
    for table, shift in (("cnn_a", 0.05), ("cnn_b", 0.0)):
        for seed in range(8):
            for scen, acc in (("1", 0.80 + 0.01 * seed), ("2", 0.80 + 0.01 * seed + shift)):
                rows.append({"table": table, "model": "cnn", "augmentation": "none", "pool": "", "scenario": scen,
                             "seed": seed, "accuracy": acc, "ece": math.nan})
    t = st.stats_table(pd.DataFrame(rows), "accuracy")
    a = t[(t["table"] == "cnn_a") & (t["scenario"] == "2")].iloc[0]
    assert a["prob_improvement"] == 1.0 and a["diff_median"] == pytest.approx(0.05)
    b = t[(t["table"] == "cnn_b") & (t["scenario"] == "2")].iloc[0]
    assert b["p_wilcoxon"] == 1.0 and b["prob_improvement"] == 0.5  # ties count half
    # Holm within each table: one comparison each, so p_holm = p.
    assert a["p_holm"] == a["p_wilcoxon"]
    e = st.stats_table(pd.DataFrame(rows), "ece")
    assert (e["n"] == 0).all() and (e["n_missing"] == 8).all() and e["p_wilcoxon"].isna().all()
    dup = pd.DataFrame(rows + [rows[0]])
    with pytest.raises(SettingError, match="several runs for seed 0"):
        st.stats_table(dup, "accuracy")


def test_metric_names() -> None:
    assert st.metric_name("ece") == "ece" and not st.higher_is_better("ece") and not st.higher_is_better("test_ce")
    assert st.higher_is_better("balanced_accuracy")
    assert st.metric_name("recall:moderate") == "recall:Moderate_Demented"
    assert st.higher_is_better("recall:Moderate_Demented")
    with pytest.raises(SettingError, match="unknown metric"):
        st.metric_name("auc")
    with pytest.raises(SettingError, match="unknown class"):
        st.metric_name("recall:severe")


def test_ece_by_hand() -> None:
    probs = np.array([[0.90, 0.10, 0.00, 0.00],   # right, confidence 0.9 (bin 14 of 15)
                      [0.90, 0.10, 0.00, 0.00],   # wrong, same bin: accuracy 0.5 against confidence 0.9
                      [0.30, 0.35, 0.20, 0.15],   # right, confidence 0.35 (bin 6)
                      [0.62, 0.18, 0.10, 0.10]])  # wrong, confidence 0.62 (bin 10)
    y = np.array([0, 1, 1, 3])
    # 2/4 * |0.5 - 0.9| + 1/4 * |1 - 0.35| + 1/4 * |0 - 0.62| = 0.2 + 0.1625 + 0.155
    assert expected_calibration_error(probs, y) == pytest.approx(0.5175)
    calibrated = np.tile([0.7, 0.1, 0.1, 0.1], (10, 1))
    assert expected_calibration_error(calibrated, np.array([0] * 7 + [1] * 3)) == pytest.approx(0.0)
    # With one bin ECE is |accuracy - mean confidence|: 0.5 against (0.9 + 0.9 + 0.35 + 0.62) / 4.
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(abs(0.5 - 0.6925))
    logits = np.log(probs + 1e-12)
    m = classification_metrics(logits, y)
    assert m["ece"] == pytest.approx(0.5175, abs=1e-9)


def test_stats_table_cells_by_hand() -> None:
    # Runs as collect gives them, without `table` or `pool` columns and with integer scenarios.
    runs = pd.DataFrame({
        "model": ["cnn"] * 7,
        "augmentation": ["none"] * 7,
        "scenario": [1, 1, 1, 2, 2, 2, 3],
        "seed": [0, 1, 2, 0, 1, 2, 0],
        "test_ce": [0.5, 0.7, 0.6, 0.4, 0.5, math.nan, 0.9],
    })
    out = st.stats_table(runs, "test_ce")
    assert list(out.columns) == [*st.COLUMNS, "table", "n_missing", "n_pairs"]
    assert out[["table", "model", "pool", "scenario", "metric"]].values.tolist() == [
        ["cnn", "cnn", "", "1", "test_ce"], ["cnn", "cnn", "", "2", "test_ce"], ["cnn", "cnn", "", "3", "test_ce"]]
    assert out["n"].tolist() == [3, 2, 1] and out["n_missing"].tolist() == [0, 1, 0]
    assert out["median"].tolist() == pytest.approx([0.6, 0.45, 0.9])
    # Scenario 2 against 1, paired by seed (seed 2 has no value in scenario 2): 0.4 - 0.5, 0.5 - 0.7.
    assert out["n_pairs"].tolist()[1:] == [2, 1] and pd.isna(out["n_pairs"].iloc[0])
    assert out["diff_median"].iloc[1] == pytest.approx(-0.15)
    # Three values: the range (coverage 0.75); the differences -0.1, -0.2: their range (coverage 0.5).
    assert (out["ci_low"].iloc[0], out["ci_high"].iloc[0]) == (0.5, 0.7)
    assert out["ci_coverage"].tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert (out["diff_ci_low"].iloc[1], out["diff_ci_high"].iloc[1]) == pytest.approx((-0.2, -0.1))
    again = st.stats_table(runs, "test_ce")
    pd.testing.assert_frame_equal(out, again)
    # Runs without a pool (None from a result) are the pool "".
    assert st.stats_table(runs.assign(pool=None), "test_ce")["pool"].tolist() == ["", "", ""]
    # A metric the runs do not have: every value missing, no error.
    none = st.stats_table(runs, "accuracy")
    assert none["n"].tolist() == [0, 0, 0] and none["n_missing"].tolist() == [3, 3, 1]
    # Two runs of one seed in a cell are refused, naming the cell.
    twice = pd.concat([runs, runs.iloc[[0]]])
    with pytest.raises(SettingError, match=r"^cnn/cnn/none//1: several runs for seed 0; a cell holds one run per "
                                           r"seed \(collect with --grid to keep one grid's runs\)$"):
        st.stats_table(twice, "test_ce")


def test_paired_defaults_and_edges() -> None:
    base, other = {0: 0.5, 1: 0.7, 2: 0.6, 3: 0.2}, {0: 0.4, 1: 0.5, 2: 0.65, 3: 0.1}
    four = st.paired(base, other, higher_is_better=False)
    # Differences -0.1, -0.2, 0.05, -0.1: sorted -0.2, -0.1, -0.1, 0.05; n = 4 gives the range as interval.
    assert four["diff_median"] == pytest.approx(-0.1)
    assert (four["diff_ci_low"], four["diff_ci_high"]) == pytest.approx((-0.2, 0.05))
    one = st.paired({0: 0.5}, {0: 0.25}, higher_is_better=False)
    assert one["n"] == 1 and one["diff_median"] == pytest.approx(-0.25)
    empty = st.paired({0: 0.5}, {1: 0.25}, higher_is_better=False)
    assert empty["n"] == 0 and set(empty) == {"n", "diff_median", "diff_ci_low", "diff_ci_high", "p_wilcoxon",
                                              "prob_improvement", "diff_sd"}
    assert all(math.isnan(v) for k, v in empty.items() if k != "n")


def test_scenario_order_and_cell_stats_resamples() -> None:
    from mriaug.analysis import collect

    assert sorted(["x", "10", "2", "1.5"], key=st.scenario_key) == ["1.5", "2", "10", "x"]
    assert collect._scenario_order({"1", "10", "9", "x"}) == ["1", "2", "3", "4", "9", "10", "x"]
    values = [0.3, 0.1, 0.7, 0.4, 0.2, 0.9, 0.5]
    c = st.cell_stats(values)
    # n = 7: l = 1 (l = 2 covers 1 - 2 * 8/128 = 0.875), so the range 0.1 .. 0.9 with 1 - 2/128 = 0.984375
    assert (c["ci_low"], c["ci_high"], c["ci_coverage"]) == (0.1, 0.9, pytest.approx(0.984375))


def test_intervals_are_the_order_statistics_of_cells_and_differences() -> None:
    # Nine distinct values: n = 9 gives l = 2 (coverage 1 - 2 * 10/512 = 0.9609; l = 3: 0.8203), so the 2nd and
    # 8th smallest.
    base = {s: v for s, v in enumerate([0.61, 0.52, 0.73, 0.94, 0.35, 0.66, 0.57, 0.88, 0.49])}
    other = {s: v - 0.05 * (s % 4) for s, v in base.items()}
    values = list(base.values())
    c = st.cell_stats(values)
    assert (c["ci_low"], c["ci_high"]) == (0.49, 0.88) and c["ci_coverage"] == pytest.approx(1 - 20 / 512)
    p = st.paired(base, other, higher_is_better=False)
    # Differences -0.05 * (s mod 4): 0, -.05, -.1, -.15, 0, -.05, -.1, -.15, 0; sorted, the 2nd is -0.15 and the
    # 8th 0.
    assert (p["diff_ci_low"], p["diff_ci_high"]) == pytest.approx((-0.15, 0.0))
    runs = pd.DataFrame([{"model": "cnn", "augmentation": "none", "scenario": scen, "seed": s,
                          "test_ce": (base if scen == "1" else other)[s]} for scen in ("1", "2") for s in base])
    out = st.stats_table(runs, "test_ce")
    assert (out["ci_low"].iloc[0], out["ci_high"].iloc[0]) == (c["ci_low"], c["ci_high"])
    assert (out["diff_ci_low"].iloc[1], out["diff_ci_high"].iloc[1]) == (p["diff_ci_low"], p["diff_ci_high"])
    with pytest.raises(SettingError, match=r"^n_boot must be at least 1, got 0$"):
        st.bootstrap_median_ci(values, n_boot=0)
    assert st.bootstrap_median_ci([0.3, 0.5], n_boot=1)[0] in (0.3, 0.4, 0.5)


def test_stats_table_order_pools_and_pairs() -> None:
    rows = []
    for model in ("resnet18", "cnn"):
        for aug in ("zzz", "hflip", "none"):
            for scen, pool in (("10", ""), ("2", ""), ("1", ""), ("1", "b"), ("3", "b"), ("3", "a")):
                for s in range(3):
                    rows.append({"model": model, "augmentation": aug, "scenario": scen, "pool": pool, "seed": s,
                                 "test_ce": 0.1 * s + 0.01 * len(rows)})
    rows.append({"model": "cnn", "augmentation": "none", "scenario": "2", "pool": "", "seed": 7, "test_ce": 0.5})
    out = st.stats_table(pd.DataFrame(rows), "test_ce")
    # By table, then augmentation in the registry's order (unknown ones last), scenario number, pool.
    order = list(zip(out["table"], out["augmentation"], out["scenario"], out["pool"], strict=True))
    cells = [("1", ""), ("1", "b"), ("2", ""), ("3", "a"), ("3", "b"), ("10", "")]
    assert order == [(t, a, s, p) for t in ("cnn", "resnet18") for a in ("none", "hflip", "zzz") for s, p in cells]
    cnn_none = out[(out["table"] == "cnn") & (out["augmentation"] == "none")].set_index(["scenario", "pool"])
    # Scenario 2 has a seed scenario 1 lacks: 4 runs, 3 pairs. Pool b's scenario 3 pairs with pool b's
    # scenario 1; pool a has no scenario 1 of its own and pairs with the runs without a pool.
    assert cnn_none.loc[("2", ""), "n"] == 4 and cnn_none.loc[("2", ""), "n_pairs"] == 3
    first = {r["seed"]: r["test_ce"] for r in rows if (r["model"], r["augmentation"], r["scenario"], r["pool"])
             == ("cnn", "none", "1", "b")}
    third = {r["seed"]: r["test_ce"] for r in rows if (r["model"], r["augmentation"], r["scenario"], r["pool"])
             == ("cnn", "none", "3", "b")}
    expected = st.paired(first, third, higher_is_better=False)
    assert cnn_none.loc[("3", "b"), "diff_median"] == pytest.approx(expected["diff_median"])
    plain = {r["seed"]: r["test_ce"] for r in rows if (r["model"], r["augmentation"], r["scenario"], r["pool"])
             == ("cnn", "none", "1", "")}
    third_a = {r["seed"]: r["test_ce"] for r in rows if (r["model"], r["augmentation"], r["scenario"], r["pool"])
               == ("cnn", "none", "3", "a")}
    assert cnn_none.loc[("3", "a"), "diff_median"] == pytest.approx(
        st.paired(plain, third_a, higher_is_better=False)["diff_median"])


def test_metric_name_messages() -> None:
    with pytest.raises(SettingError, match=r"^--metric 'recall:': name the class, e.g. recall:Moderate_Demented$"):
        st.metric_name("recall:")
    with pytest.raises(SettingError, match=r"^--metric 'bogus': unknown metric; known: test_ce, accuracy, "):
        st.metric_name("bogus")
    with pytest.raises(SettingError, match=r"recall:CLASS \(CLASS one of Mild_Demented, Moderate_Demented, "
                                           r"Non_Demented, Very_Mild_Demented\)$"):
        st.metric_name("bogus")


def test_interval_ranks_at_their_edges() -> None:
    # At a level met exactly, that rank still counts (>=): n = 20, rank 6's own coverage gives rank 6.
    assert st.median_ci_ranks(20, level=st.order_coverage(20, 6))[:2] == (6, 15)
    # A level of 0 walks in to the middle and no further: the median itself (n odd), the middle pair (n even).
    assert st.median_ci_ranks(5, level=0.0) == (3, 3, pytest.approx(0.0))
    assert st.median_ci_ranks(6, level=0.0)[:2] == (3, 4)
    assert st.median_ci_ranks(7, level=0.0)[:2] == (4, 4)
    # median_ci uses the level it is given: at 50%, 9 values give the 3rd and 7th (rank 4 would cover
    # 1 - 2 * P(B <= 3) = 1 - 2 * 130/512 = 0.4922 < 0.5; rank 3 covers 1 - 2 * 46/512 = 0.8203).
    x = [float(v) for v in range(1, 10)]
    assert st.median_ci(x, level=0.5) == (3.0, 7.0, pytest.approx(1 - 2 * 46 / 512))
    with pytest.raises(SettingError, match=r"^an interval needs at least one value, got n = 0$"):
        st.median_ci_ranks(0)


def test_seeds_needed_at_its_edges() -> None:
    assert st.seeds_needed(1, alpha=1.5) == 1  # one pair's smallest p, 2 / 2 = 1, is already under 1.5
    assert st.seeds_needed(1, alpha=2 / 64) == 7  # 6 pairs give exactly 2/64: not below it
