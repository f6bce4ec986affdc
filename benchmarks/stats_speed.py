"""How long the statistics of `mriaug collect` take on a thesis-sized folder: 3 models x 3 augmentations x
scenarios 1-6 (3-6 with two pools) x 20 seeds = 1,800 runs, every metric stats.csv holds. Against the
textbook bootstrap (np.median over a matrix of resamples) for the same cells.

    python benchmarks/stats_speed.py [--seeds 20] [--boot 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mriaug.analysis import statistics as st


def thesis_sized(seeds: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("cnn", "resnet18", "vit"):
        for aug in ("none", "hflip", "autoaugment"):
            for scen in "123456":
                for pool in ([""] if scen in "12" else ["gen", "copy"]):
                    for seed in range(seeds):
                        rows.append({"model": model, "augmentation": aug, "pool": pool, "scenario": scen, "seed": seed,
                                     **{m: float(rng.random()) for m in st.all_metrics()}})
    return pd.DataFrame(rows)


def textbook(runs: pd.DataFrame, metric: str, n_boot: int) -> None:
    """Per cell and per comparison: resample, np.median over the resamples, percentiles."""
    rng = np.random.default_rng(0)
    for _, g in runs.groupby(["model", "augmentation", "pool", "scenario"]):
        v = g[metric].to_numpy()
        np.percentile(np.median(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1), [2.5, 97.5])
        if g["scenario"].iloc[0] != "1":  # the paired difference's interval as well
            np.percentile(np.median(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1), [2.5, 97.5])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--boot", type=int, default=st.DEFAULT_BOOT)
    a = ap.parse_args()
    runs = thesis_sized(a.seeds)
    metrics = st.all_metrics()
    t0 = time.perf_counter()
    cells = sum(len(st.stats_table(runs, m, n_boot=a.boot)) for m in metrics)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in metrics:
        textbook(runs, m, a.boot)
    ref = time.perf_counter() - t0
    print(f"{len(runs)} runs, {len(metrics)} metrics, {cells} cell rows, {a.boot} resamples")
    print(f"stats_table (bootstrap + Wilcoxon + Holm + IQM): {ours:.1f} s")
    print(f"textbook bootstrap intervals alone:              {ref:.1f} s   ratio {ref / ours:.1f}")


if __name__ == "__main__":
    main()
