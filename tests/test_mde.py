"""The minimum detectable effect (issue 28), checked by simulating whole studies: data drawn with the stated
effect is detected (Wilcoxon signed-rank, Holm over the table's comparisons, alpha 0.05) in 80% +- 5% of them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mriaug.analysis import statistics as st


@pytest.mark.parametrize(("n", "comparisons", "sd"), [(20, 3, 0.02), (20, 6, 0.015), (12, 1, 1.0)])
def test_the_stated_effect_is_detected_in_80_percent_of_simulated_studies(n: int, comparisons: int,
                                                                          sd: float) -> None:
    effect = st.mde(sd, n, comparisons)
    rng = np.random.default_rng(12345)
    studies, detected = 600, 0
    for _ in range(studies):
        # One comparison carries the effect, the table's others none; Holm over all of them, as collect does.
        diffs = [effect + sd * rng.standard_normal(n)] + [sd * rng.standard_normal(n)
                                                          for _ in range(comparisons - 1)]
        p = [float(stats.wilcoxon(d).pvalue) for d in diffs]
        detected += st.holm(p)[0] <= st.ALPHA
    assert detected / studies == pytest.approx(st.POWER, abs=0.05)
    # and half the effect is detected clearly less often
    assert st.power(effect / 2, sd, n, comparisons) < 0.5


def test_exactsigned_rank_p_matches_scipy() -> None:
    d = np.random.default_rng(1).standard_normal((6, 11))
    np.testing.assert_allclose(st.signed_rank_p(d), [stats.wilcoxon(x).pvalue for x in d])
    assert st.signed_rank_cdf(3).tolist() == [1 / 8, 2 / 8, 3 / 8, 5 / 8, 6 / 8, 7 / 8, 1.0]


def test_mde_edges() -> None:
    assert st.mde(0.02, 2, 9) == math.inf  # 2 pairs can never reach 0.05 / 9
    assert st.mde(0.0, 20, 3) == 0.0
    assert math.isnan(st.mde(float("nan"), 20, 3))
    # more comparisons, a stricter level: a larger detectable effect; more spread: proportionally larger
    assert st.mde(0.02, 20, 6) > st.mde(0.02, 20, 3)
    assert st.mde(0.04, 20, 3) == pytest.approx(2 * st.mde(0.02, 20, 3), rel=1e-3)


def test_the_mde_column_of_a_hand_made_table() -> None:
    """stats_table's `mde` on runs whose paired differences are written out: 20 seeds, scenario 3 at baseline
    +0.0625 / +0.1875 alternately (sample standard deviation, ddof 1: 0.0625 * sqrt(20/19)), scenario 4 at
    -0.25 / 0 (twice the spread). Table "a" also holds two untested rows (scenario 1 of two augmentations,
    `hflip` with nothing to compare): Holm counts its 2 comparisons, not its 4 rows; table "b" has 1."""
    seeds = np.arange(20)
    base = 0.5 + 0.125 * (seeds % 4)  # exact in binary, so each difference is exactly the one written
    d = np.where(seeds % 2 == 0, 0.0625, 0.1875)
    e = np.where(seeds % 2 == 0, -0.25, 0.0)
    rows = [("a", "none", "1", base), ("a", "none", "3", base + d), ("a", "none", "4", base + e),
            ("a", "hflip", "1", base), ("b", "none", "1", base), ("b", "none", "3", base + d)]
    runs = pd.DataFrame([{"table": t, "model": "cnn", "augmentation": aug, "pool": "", "scenario": scen,
                          "seed": int(s), "test_ce": float(v)} for t, aug, scen, vals in rows
                         for s, v in zip(seeds, vals, strict=True)])
    out = st.stats_table(runs, "test_ce").set_index(["table", "augmentation", "scenario"])["mde"]
    sd = 0.0625 * math.sqrt(20 / 19)
    assert out[("a", "none", "3")] == pytest.approx(st.mde(sd, 20, 2), rel=1e-9)
    assert out[("a", "none", "4")] == pytest.approx(st.mde(2 * sd, 20, 2), rel=1e-9)
    assert out[("b", "none", "3")] == pytest.approx(st.mde(sd, 20, 1), rel=1e-9)
    assert math.isnan(out[("a", "none", "1")]) and math.isnan(out[("a", "hflip", "1")])
    # The numbers themselves (4000 simulated studies per step, seed 0): with m = 4 (every row) or the
    # standard deviation with ddof 0 they would be 0.0541 or 0.0477.
    assert out[("a", "none", "3")] == pytest.approx(0.0489, abs=1e-4)
    assert out[("a", "none", "4")] == pytest.approx(0.0978, abs=1e-4)
