"""The statistics behind every table: per cell n, failures, median, IQM and a distribution-free 95% interval of
the median; per scenario its difference from scenario 1, paired by seed (median paired difference with its
interval, Wilcoxon signed-rank p, Holm-corrected over the table, probability of improvement).

Conventions:
- A failed run (diverged: its loss stopped being finite) is the worst value of every metric (`WORST`: test CE
  +inf, ECE 1, accuracy, balanced accuracy, macro F1 and recall 0), so it enters medians, pairs and signed
  ranks: a scenario that often fails cannot look as good as its survivors.
- A missing value (NaN: a run without the metric, e.g. ECE in results written before it existed) is left
  out of its cell, and out of every pair it belongs to.
- Intervals of a median (of a cell, or of paired differences) are the order-statistic (binomial) interval:
  the l-th and (n-l+1)-th smallest values with l the largest rank whose coverage 1 - 2 P(B <= l-1),
  B ~ Binomial(n, 1/2), is at least 95% (n = 20: the 6th and 15th, 95.9%). It holds for any continuous
  distribution, where the percentile bootstrap of a median covers about 93% at n = 10-20. Below n = 6 no
  such interval reaches 95%: the cell gives the range and its actual coverage (`ci_coverage`).
- Differences are `other - baseline`, in the metric's own units: negative is better for test_ce and ece. A
  pair in which both runs failed is a tie (difference 0).
- Wilcoxon signed-rank, two-sided, scipy's exact distribution where it applies; zero differences are
  dropped (Wilcoxon's convention); all differences zero gives p = 1.
- Holm's step-down correction over every comparison of one table (one model's table: all its
  augmentations, pools and scenarios), for one metric.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.classes import CLASSES, class_index
from ..errors import SettingError, UnknownClassError
from ..plan import augmentations

# The metrics `mriaug collect --metric` takes; `recall:CLASS` besides (one class's recall).
METRICS = ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece", "scan_accuracy",
           "scan_balanced_accuracy", "scan_ce")
LOWER_IS_BETTER = frozenset({"test_ce", "ece", "scan_ce"})
RECALL = "recall:"
LABELS = {"test_ce": "test cross-entropy", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
          "macro_f1": "macro F1", "ece": "expected calibration error (15 bins)",
          "scan_accuracy": "accuracy per scan", "scan_balanced_accuracy": "balanced accuracy per scan",
          "scan_ce": "cross-entropy per scan"}
# Whole-scan metrics: a scan's prediction is the mean of its slices' probabilities
# (`mriaug.engine.metrics.scan_metrics`).
PER_SCAN = frozenset({"scan_accuracy", "scan_balanced_accuracy", "scan_ce"})
DEFAULT_BOOT = 10_000
CELL = ("model", "augmentation", "pool", "scenario")
COLUMNS = ["model", "augmentation", "pool", "scenario", "metric", "n", "n_failed", "median", "iqm", "ci_low",
           "ci_high", "ci_coverage", "diff_median", "diff_ci_low", "diff_ci_high", "p_wilcoxon", "p_holm",
           "prob_improvement", "mde"]
BASELINE = "1"
LEVEL = 0.95
# The worst value of each metric: what a failed (diverged) run scores. recall:CLASS is 0 as well.
WORST = {"test_ce": math.inf, "ece": 1.0, "accuracy": 0.0, "balanced_accuracy": 0.0, "macro_f1": 0.0,
         "scan_ce": math.inf, "scan_accuracy": 0.0, "scan_balanced_accuracy": 0.0}
ALPHA, POWER = 0.05, 0.80  # the minimum detectable effect's test level and power (`mde`)


def worst(metric: str) -> float:
    """The value a failed run takes for `metric` (the worst it can be)."""
    return WORST.get(metric_name(metric), 0.0)


def all_metrics(extra_classes: Iterable[str] = ()) -> list[str]:
    """Every metric a run records: those of METRICS and the recall of each class (the four, then any class a
    data option `merge` named anew, e.g. "Demented")."""
    return [*METRICS, *(RECALL + c for c in dict.fromkeys([*CLASSES, *extra_classes]))]


def metric_name(text: str, extra_classes: Iterable[str] = ()) -> str:
    """The canonical name of a metric as a user wrote it (`recall:moderate` -> `recall:Moderate_Demented`);
    `extra_classes`: class names runs took from a data option `merge`, beyond the four."""
    t = text.strip()
    if t in METRICS:
        return t
    if t.lower().startswith(RECALL):
        cls = t[len(RECALL):].strip()
        if not cls:
            raise SettingError(f"--metric {text!r}: name the class, e.g. recall:{CLASSES[1]}")
        try:
            return RECALL + CLASSES[class_index(cls)]
        except UnknownClassError:
            if cls in extra_classes:  # a class a data option `merge` named anew ("Demented"), as runs spell it
                return RECALL + cls
            raise
    raise SettingError(f"--metric {text!r}: unknown metric; known: {', '.join(METRICS)}, recall:CLASS "
                       f"(CLASS one of {', '.join(CLASSES)})")


def higher_is_better(metric: str) -> bool:
    return metric_name(metric) not in LOWER_IS_BETTER


def describe(metric: str) -> str:
    m = metric_name(metric)
    return LABELS.get(m) or f"recall of {m[len(RECALL):]}"


def _clean(values: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(values), dtype=np.float64)
    return a[~np.isnan(a)]


def iqm(values: Iterable[float]) -> float:
    """Interquartile mean: the mean of the middle half (a quarter trimmed from each end, as scipy's
    trim_mean counts it); robust like the median, less coarse with few seeds."""
    a = _clean(values)
    return float(stats.trim_mean(a, 0.25)) if len(a) else math.nan


def clear_caches() -> None:
    """Forget the shared bootstrap draws (tests draw them anew, so mutation testing reaches what draws them)."""
    _middle_ranks.cache_clear()


@functools.lru_cache(maxsize=16)
def _middle_ranks(seed: int, n: int, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """For `n_boot` resamples (with replacement) of n sorted values: the ranks of the two middle draws of
    each resample (the same one twice when n is odd). Because sorting commutes with picking from sorted
    values, the median of a resample of `x` is the mean of sorted(x) at these two ranks. The draws are
    shared by every cell of n values (each interval is a bootstrap on its own; sharing makes tables quick)."""
    draws = np.sort(np.random.default_rng(seed).integers(0, n, size=(n_boot, n)), axis=1)
    return draws[:, (n - 1) // 2].copy(), draws[:, n // 2].copy()


def bootstrap_median_ci(values: Iterable[float], *, seed: int = 0, n_boot: int = DEFAULT_BOOT,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median: resample the values with replacement `n_boot` times.
    Not what the tables print (it covers about 93% at n = 10-20, tests/test_statistics.py simulates it): kept as
    the reference the order-statistic interval (`median_ci`) is measured against."""
    a = _clean(values)
    if len(a) == 0:
        return math.nan, math.nan
    if n_boot < 1:
        raise SettingError(f"n_boot must be at least 1, got {n_boot}")
    lower, upper = _middle_ranks(seed, len(a), n_boot)
    x = np.sort(a)
    medians = (x[lower] + x[upper]) / 2
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(medians, [tail, 100 - tail])
    return float(lo), float(hi)


def order_coverage(n: int, rank: int) -> float:
    """The probability that the `rank`-th and (n - rank + 1)-th smallest of n values bracket the median of
    their (continuous) distribution: 1 - 2 P(B <= rank - 1), B ~ Binomial(n, 1/2)."""
    return float(1.0 - 2.0 * stats.binom.cdf(rank - 1, n, 0.5))


def median_ci_ranks(n: int, level: float = LEVEL) -> tuple[int, int, float]:
    """1-based ranks (lower, upper) of the distribution-free interval of the median of n values and its exact
    coverage: the narrowest of the symmetric order-statistic intervals whose coverage is at least `level`;
    the range (1, n) with its coverage (below `level`) when none reaches it."""
    if n < 1:
        raise SettingError(f"an interval needs at least one value, got n = {n}")
    rank = 1
    while rank + 1 <= (n + 1) // 2 and order_coverage(n, rank + 1) >= level:
        rank += 1
    return rank, n - rank + 1, order_coverage(n, rank)


def median_ci(values: Iterable[float], level: float = LEVEL) -> tuple[float, float, float]:
    """The order-statistic interval of the median (low, high, coverage); NaN for no values."""
    a = np.sort(_clean(values))
    if len(a) == 0:
        return math.nan, math.nan, math.nan
    lo, hi, cov = median_ci_ranks(len(a), level)
    return float(a[lo - 1]), float(a[hi - 1]), cov


def seeds_needed(comparisons: int, alpha: float = 0.05) -> int:
    """The fewest pairs with which the exact two-sided Wilcoxon test can reach Holm-adjusted p < alpha over
    `comparisons` comparisons: the smallest p of n pairs is 2 / 2^n, and Holm multiplies the smallest by m."""
    n = 1
    while comparisons * 2.0 / 2.0**n >= alpha:
        n += 1
    return n


def cell_stats(values: Iterable[float], failed: int = 0) -> dict[str, Any]:
    """n, failures, median, IQM and the order-statistic 95% interval of the median of one cell's values (one
    per seed; failed runs are among them, at their worst value)."""
    a = _clean(values)
    lo, hi, cov = median_ci(a)
    return {"n": len(a), "n_failed": failed, "median": float(np.median(a)) if len(a) else math.nan, "iqm": iqm(a),
            "ci_low": lo, "ci_high": hi, "ci_coverage": cov}


def wilcoxon_p(diffs: Iterable[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (zeros dropped; all zero -> 1)."""
    d = _clean(diffs)
    if len(d) == 0:
        return math.nan
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def difference(other: float, baseline: float) -> float:
    """other - baseline, where two failures (the same infinite worst value) tie at 0."""
    if math.isinf(other) and other == baseline:
        return 0.0
    return float(other) - float(baseline)


def paired(baseline: Mapping[Any, float], other: Mapping[Any, float], *, higher_is_better: bool) -> dict[str, Any]:
    """`other` against `baseline`, paired by seed (the keys): only seeds with a value on both sides count.

    diff = other - baseline, its median with the order-statistic interval (the sign-test interval of the
    median difference); prob_improvement is the share of pairs in which `other` is better (ties count half)."""
    seeds = sorted(k for k in set(baseline) & set(other)
                   if not (math.isnan(float(baseline[k])) or math.isnan(float(other[k]))))
    d = np.array([difference(float(other[k]), float(baseline[k])) for k in seeds], dtype=np.float64)
    if len(d) == 0:
        return {"n": 0, "diff_median": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
                "p_wilcoxon": math.nan, "prob_improvement": math.nan, "diff_sd": math.nan}
    lo, hi, _ = median_ci(d)
    better = d > 0 if higher_is_better else d < 0
    finite = d[np.isfinite(d)]  # a failed run's infinite difference says nothing of the spread
    return {"n": len(d), "diff_median": float(np.median(d)), "diff_ci_low": lo, "diff_ci_high": hi,
            "p_wilcoxon": wilcoxon_p(d), "prob_improvement": float((better.sum() + 0.5 * (d == 0).sum()) / len(d)),
            "diff_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order; NaN stays NaN and does not count."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


@functools.lru_cache(maxsize=64)
def signed_rank_cdf(n: int) -> np.ndarray:
    """P(W+ <= w), w = 0 .. n(n+1)/2: the exact null distribution of the Wilcoxon signed-rank statistic of n
    untied nonzero differences (each rank's sign a fair coin), by counting subsets of {1..n} per sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0**n


# scipy's `wilcoxon` (method "auto", what the tables call) is exact up to 50 pairs and uses the normal
# approximation beyond.
EXACT_PAIRS = 50


def signed_rank_p(d: np.ndarray) -> np.ndarray:
    """Two-sided signed-rank p of each row of d (rows of untied nonzero differences), as scipy's `wilcoxon`
    computes it: exact up to EXACT_PAIRS pairs, by the normal approximation (no continuity correction) beyond."""
    n = d.shape[1]
    ranks = np.argsort(np.argsort(np.abs(d), axis=1), axis=1) + 1
    w = (ranks * (d > 0)).sum(axis=1)
    if n > EXACT_PAIRS:
        z = (w - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        return np.minimum(1.0, 2.0 * stats.norm.sf(np.abs(z)))
    cdf = signed_rank_cdf(n)
    low = cdf[np.minimum(w, n * (n + 1) // 2 - w)]  # symmetric: P(W+ <= min(w, total - w))
    return np.minimum(1.0, 2.0 * low)


def power(effect: float, sd: float, n: int, comparisons: int, *, alpha: float = ALPHA, sims: int = 4000,
          seed: int = 0) -> float:
    """Probability that n paired differences drawn from Normal(effect, sd) give a two-sided signed-rank p at or
    under alpha / comparisons (Holm's first step: a lone true effect among null comparisons needs that)."""
    z = np.random.default_rng(seed).standard_normal((sims, n))  # common draws for every effect: power rises with it
    return float((signed_rank_p(effect + sd * z) <= alpha / comparisons).mean())


def mde(sd: float, n: int, comparisons: int, *, alpha: float = ALPHA, target: float = POWER,
        sims: int = 4000) -> float:
    """The minimum detectable effect of a paired comparison: the smallest median paired difference (in the
    metric's units, either sign) that the table's test (two-sided Wilcoxon signed-rank, Holm over `comparisons`
    at `alpha`) detects with probability `target`, for n pairs whose differences spread like the observed ones
    (a normal shift model with their standard deviation `sd`). inf where n pairs can never reach the level; 0
    where the observed differences do not vary. docs/statistics.md states the method; tests/test_mde.py checks it
    by simulating whole studies, and pins stats_table's `mde` column on a hand-made table."""
    if n < 1 or comparisons < 1 or math.isnan(sd):
        return math.nan
    if 2.0 / 2.0**n > alpha / comparisons:  # the smallest p n pairs can give
        return math.inf
    if sd == 0:
        return 0.0
    lo, hi = 0.0, sd
    while power(hi, sd, n, comparisons, alpha=alpha, sims=sims) < target:
        lo, hi = hi, 2 * hi
    for _ in range(16):  # bisection to a relative precision (1e-5) far below what the table prints
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(mid, sd, n, comparisons, alpha=alpha, sims=sims) >= target else (mid, hi)
    return hi


def scenario_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def stats_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per cell (model, augmentation, pool, scenario) with COLUMNS, plus `table` (the table the
    cell belongs to: runs of different data, split or hyper-parameters are in different tables; without a
    `table` column, the model), `n_missing` (runs of the cell without this metric) and `n_pairs` (seeds
    paired with scenario 1).

    `runs` is `Collected.runs` (a row per run; columns model, augmentation, pool, scenario, seed, the
    metric, and optionally table and status: a run whose status is "diverged" takes the metric's worst value,
    whatever its row holds, and counts in `n_failed`). Scenario 1 of the same table and augmentation is the
    baseline of every other scenario (of the same pool if scenario 1 has runs of that pool, else of the runs
    without one)."""
    m = metric_name(metric)
    hib = higher_is_better(m)
    df = runs.copy()
    if "table" not in df.columns:
        df["table"] = df["model"]
    if "pool" not in df.columns:
        df["pool"] = ""
    df["pool"] = df["pool"].fillna("").astype(str)
    df["scenario"] = df["scenario"].astype(str)
    values = df[m] if m in df.columns else pd.Series(math.nan, index=df.index)
    df["_v"] = pd.to_numeric(values, errors="coerce").astype(float)
    failed = (df["status"] == "diverged") if "status" in df.columns else pd.Series(False, index=df.index)
    df.loc[failed, "_v"] = worst(m)
    df["_failed"] = failed
    keys = ["table", *CELL]
    cells = {k: g for k, g in df.groupby(keys, sort=False)}

    def by_seed(g: pd.DataFrame) -> dict[Any, float]:
        dup = g["seed"][g["seed"].duplicated()]
        if len(dup):
            raise SettingError(f"{'/'.join(map(str, g.iloc[0][keys]))}: several runs for seed {dup.iloc[0]}; "
                               "a cell holds one run per seed (collect with --grid to keep one grid's runs)")
        return dict(zip(g["seed"], g["_v"], strict=True))

    rows = []
    for key, g in cells.items():
        table, model, aug, pool, scen = key
        row: dict[str, Any] = {"model": model, "augmentation": aug, "pool": pool, "scenario": scen, "metric": m,
                               **cell_stats(g["_v"], int(g["_failed"].sum()))}
        if scen != BASELINE:
            base = cells.get((table, model, aug, pool, BASELINE))
            if base is None:
                base = cells.get((table, model, aug, "", BASELINE))
            if base is not None:
                pr = paired(by_seed(base), by_seed(g), higher_is_better=hib)
                row.update({k: v for k, v in pr.items() if k not in ("n", "diff_sd")}, n_pairs=pr["n"],
                           _sd=pr["diff_sd"])
        else:
            by_seed(g)  # scenario 1 must hold one run per seed too
        row.update(table=table, n_missing=int(g["_v"].isna().sum()))
        rows.append(row)
    extra = ["table", "n_missing", "n_pairs"]
    out = pd.DataFrame(rows, columns=[*COLUMNS, *extra, "_sd"])
    if out.empty:
        return out.drop(columns="_sd")
    out["n_pairs"] = out["n_pairs"].astype("Int64")
    for col in ("diff_median", "diff_ci_low", "diff_ci_high", "p_wilcoxon", "prob_improvement", "p_holm"):
        out[col] = out[col].astype(float)
    for _, idx in out.groupby("table", sort=False).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_wilcoxon"].tolist())
        tested = int(out.loc[idx, "p_wilcoxon"].notna().sum())  # the comparisons Holm corrects over
        out.loc[idx, "mde"] = [mde(float(sd), int(k), tested) if pd.notna(k) else math.nan
                               for sd, k in zip(out.loc[idx, "_sd"], out.loc[idx, "n_pairs"], strict=True)]
    out = out.drop(columns="_sd")
    aug_order = {a: i for i, a in enumerate(augmentations.NAMES)}
    sort_keys = [(str(t), aug_order.get(str(a), 99), str(a), scenario_key(str(s)), str(p))
                 for t, a, s, p in zip(out["table"], out["augmentation"], out["scenario"], out["pool"], strict=True)]
    order = sorted(range(len(out)), key=sort_keys.__getitem__)
    return out.iloc[order].reset_index(drop=True)
