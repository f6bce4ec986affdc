"""Per-cell intervals and paired differences for the report: `mriaug.analysis.statistics.stats_table` where
that module is installed, else a small percentile-bootstrap stand-in with the same columns (said so in the
report), so the report always has its tables."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["model", "augmentation", "pool", "scenario", "metric", "n", "median", "iqm", "ci_low", "ci_high",
           "diff_median", "diff_ci_low", "diff_ci_high", "p_wilcoxon", "p_holm", "prob_improvement"]
# Metrics where lower is better (the rest: higher is better).
LOWER_IS_BETTER = {"test_ce"}


def stats_table(runs: pd.DataFrame, metric: str, *, seed: int = 0, n_boot: int = 2000) -> tuple[pd.DataFrame, str]:
    """(table, where it came from): the statistics module's table, or the stand-in's."""
    try:
        mod: Any = importlib.import_module("mriaug.analysis.statistics")
    except ModuleNotFoundError:
        return _fallback(runs, metric, seed=seed, n_boot=n_boot), "fallback"
    return mod.stats_table(runs, metric, seed=seed, n_boot=n_boot), "mriaug.analysis.statistics"


def _iqm(v: np.ndarray) -> float:
    lo, hi = np.percentile(v, [25, 75])
    mid = v[(v >= lo) & (v <= hi)]
    return float(mid.mean()) if len(mid) else float("nan")


def _boot_median(v: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float]:
    if len(v) < 2:
        return float("nan"), float("nan")
    meds = np.median(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)


def _holm(p: pd.Series) -> pd.Series:
    ok = p.dropna().sort_values()
    m = len(ok)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * ok.to_numpy())) if m else np.zeros(0)
    out = pd.Series(np.nan, index=p.index)
    out[ok.index] = adj
    return out


def _fallback(runs: pd.DataFrame, metric: str, *, seed: int, n_boot: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = runs.copy()
    df["pool"] = df["pool"] if "pool" in df else "—"
    df["pool"] = df["pool"].fillna("—").astype(str)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows: list[dict[str, Any]] = []
    for (model, aug), g in df.groupby(["model", "augmentation"], sort=True):
        base = g[g["scenario"] == "1"].groupby("seed")[metric].median()
        for (pool, scen), c in g.groupby(["pool", "scenario"], sort=True):
            v = c[metric].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            lo, hi = _boot_median(v, rng, n_boot)
            row: dict[str, Any] = {"model": model, "augmentation": aug, "pool": pool, "scenario": scen,
                                   "metric": metric, "n": len(v), "median": float(np.median(v)) if len(v) else np.nan,
                                   "iqm": _iqm(v) if len(v) else np.nan, "ci_low": lo, "ci_high": hi,
                                   "diff_median": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan,
                                   "p_wilcoxon": np.nan, "prob_improvement": np.nan}
            if scen != "1":
                mine = c.groupby("seed")[metric].median()
                both = mine.index.intersection(base.index)
                d = (mine[both] - base[both]).to_numpy(dtype=float)
                d = d[np.isfinite(d)]
                if len(d):
                    row["diff_median"] = float(np.median(d))
                    row["diff_ci_low"], row["diff_ci_high"] = _boot_median(d, rng, n_boot)
                    row["prob_improvement"] = float(np.mean(sign * d > 0) + 0.5 * np.mean(d == 0))
                if len(d) >= 2 and np.any(d != 0):
                    from scipy.stats import wilcoxon

                    row["p_wilcoxon"] = float(wilcoxon(d).pvalue)
            rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_holm"])
    out["p_holm"] = _holm(out["p_wilcoxon"]) if len(out) else pd.Series(dtype=float)
    return out[COLUMNS]
