"""Given split against subject split on the same model, scenario and seeds: median and a bootstrap 95% interval
of the median per metric, and the paired (by seed) difference. Reads two result folders.

    python benchmarks/split_comparison.py RESULTS_GIVEN RESULTS_SUBJECT
"""

from __future__ import annotations

import sys

import numpy as np

from mriaug.store import results

METRICS = ("test_ce", "accuracy", "balanced_accuracy")
RESAMPLES = 10_000


def by_seed(folder: str) -> dict[int, results.RunResult]:
    out = {}
    for _, r in results.scan(folder):
        if not isinstance(r, results.ResultError):
            out[r.seed] = r
    return out


def interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median (seeded)."""
    draws = rng.choice(values, (RESAMPLES, len(values)), replace=True)
    lo, hi = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def main(given_dir: str, subject_dir: str) -> None:
    given, subject = by_seed(given_dir), by_seed(subject_dir)
    seeds = sorted(set(given) & set(subject))
    rng = np.random.default_rng(0)
    print(f"seeds with both runs: {seeds}  (given: {sorted(given)}, subject: {sorted(subject)})")
    for name, runs in (("given", given), ("subject", subject)):
        if not runs:
            continue
        r = next(iter(runs.values()))
        c = r.counts
        print(f"{name:8s} split {r.data.split.get('fingerprint')}: train {sum(c.real.values())}, "
              f"val {sum((c.val or {}).values())}, test {sum((c.test or {}).values())}")
    print(f"{'metric':<18}{'split':<9}{'n':>3}{'median':>9}{'95% CI of median':>22}")
    for m in METRICS:
        for name, runs in (("given", given), ("subject", subject)):
            if not runs:
                continue
            v = np.array([runs[s].metrics.value(m) for s in sorted(runs)])
            lo, hi = interval(v, rng)
            print(f"{m:<18}{name:<9}{len(v):>3}{np.median(v):>9.3f}{f'[{lo:.3f}, {hi:.3f}]':>22}")
        if seeds:
            d = np.array([subject[s].metrics.value(m) - given[s].metrics.value(m) for s in seeds])
            lo, hi = interval(d, rng)
            print(f"{m:<18}{'diff':<9}{len(d):>3}{np.median(d):>9.3f}{f'[{lo:.3f}, {hi:.3f}]':>22}"
                  "   (subject - given, paired by seed)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
