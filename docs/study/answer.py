"""The numbers of docs/study/README.md, from the published files only (runs.csv, stats.csv, pools/*/report.json),
through the statistics `mriaug collect` uses: `python docs/study/answer.py` prints the block the README holds between
its `answer:start` / `answer:end` markers, and tests/test_study_published.py checks that the two agree."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mriaug.analysis import statistics as st

HERE = Path(__file__).resolve().parent
POOLS = ("diffusion", "copy", "transform")


def _f(v: float, digits: int = 3) -> str:
    return "∞" if v == math.inf else "—" if v != v else f"{v:.{digits}f}"


def _cell_rows(stats: pd.DataFrame) -> list[str]:
    out = ["| cell | n (failed) | median test CE [95% interval] | median balanced accuracy [95% interval] | "
           "median Moderate recall |", "|---|---|---|---|---|"]
    for _, r in stats[stats["metric"] == "test_ce"].iterrows():
        key = (stats["scenario"] == r["scenario"]) & (stats["pool"] == r["pool"])
        ba = stats[key & (stats["metric"] == "balanced_accuracy")].iloc[0]
        mod = stats[key & (stats["metric"] == "recall:Moderate_Demented")].iloc[0]
        name = f"scenario {r['scenario']}" + (f" · {r['pool']}" if r["pool"] == r["pool"] and r["pool"] else "")
        out.append(f"| {name} | {int(r['n'])} ({int(r['n_failed'])}) | {_f(r['median'])} [{_f(r['ci_low'])}, "
                   f"{_f(r['ci_high'])}] | {_f(ba['median'])} [{_f(ba['ci_low'])}, {_f(ba['ci_high'])}] | "
                   f"{_f(mod['median'])} |")
    return out


def _versus_scenario_1(stats: pd.DataFrame) -> list[str]:
    out = ["| scenario 3 pool | metric | median paired difference [95% interval] | p | p (Holm) | P(improvement) |",
           "|---|---|---|---|---|---|"]
    for metric in ("test_ce", "balanced_accuracy"):
        s = stats[(stats["metric"] == metric) & (stats["scenario"] != "1")]
        for _, r in s.iterrows():
            out.append(f"| {r['pool']} | {metric} | {_f(r['diff_median'])} [{_f(r['diff_ci_low'])}, "
                       f"{_f(r['diff_ci_high'])}] | {_f(r['p_wilcoxon'], 4)} | {_f(r['p_holm'], 4)} | "
                       f"{_f(r['prob_improvement'], 2)} |")
    return out


def _values(runs: pd.DataFrame, pool: str, metric: str) -> dict[int, float]:
    g = runs[(runs["scenario"].astype(str) == "3") & (runs["pool"] == pool)]
    v = g[metric].astype(float).where(g["status"] != "diverged", st.worst(metric))
    return dict(zip(g["seed"].astype(int), v, strict=True))


def diffusion_versus_controls(runs: pd.DataFrame) -> list[dict]:
    """Scenario 3 with the diffusion pool against the same seeds with each control pool (test CE), Holm over the
    two comparisons."""
    rows = [{"control": c, **st.paired(_values(runs, c, "test_ce"), _values(runs, "diffusion", "test_ce"),
                                       higher_is_better=False)} for c in ("copy", "transform")]
    for r, p in zip(rows, st.holm([r["p_wilcoxon"] for r in rows]), strict=True):
        r["p_holm"] = p
    return rows


def _pool_quality() -> list[str]:
    out = ["| pool | class | KID real vs synthetic (real-vs-real floor) | near-copy share | class fidelity "
           "(classifier's recall on real held-out images) |", "|---|---|---|---|---|"]
    for pool in POOLS:
        reports = [json.loads(p.read_text()) for p in sorted((HERE / "pools" / pool).glob("split-*/report.json"))]
        if not reports:
            continue
        for cls in ("Mild_Demented", "Moderate_Demented"):
            per = [r["per_class"][cls] for r in reports if cls in r["per_class"]]

            def med(key: str, per: list[dict] = per) -> float:
                v = [float(p[key]) for p in per if p.get(key) is not None]
                return float(np.median(v)) if v else math.nan

            out.append(f"| {pool} | {cls} | {_f(med('kid_real_vs_synthetic'), 2)} ({_f(med('kid_real_vs_real'), 2)}) | "
                       f"{_f(med('near_copy_share'), 2)} | {_f(med('class_fidelity'), 2)} "
                       f"({_f(med('held_out_recall'), 2)}) |")
    return out


def block() -> str:
    stats = pd.read_csv(HERE / "stats.csv", dtype={"scenario": str, "pool": str}, keep_default_na=False,
                        na_values=[""])
    stats["pool"] = stats["pool"].fillna("")
    runs = pd.read_csv(HERE / "runs.csv", dtype={"scenario": str, "pool": str}, keep_default_na=False,
                       na_values=[""])
    runs["pool"] = runs["pool"].fillna("")
    for col in ("median", "ci_low", "ci_high", "diff_median", "diff_ci_low", "diff_ci_high"):
        stats[col] = stats[col].replace({"inf": math.inf}).astype(float)
    lines = ["Cells (20 seeds each; seed s tested on subject split s mod 5):", "", *_cell_rows(stats), "",
             "Scenario 3 against scenario 1, paired by seed (negative test CE / positive balanced accuracy is "
             "better; Holm over the table's comparisons of that metric):", "", *_versus_scenario_1(stats), "",
             "Diffusion against each control, scenario 3, paired by seed (test CE, diffusion minus control; Holm over "
             "the two):", "", "| control | median paired difference [95% interval] | p | p (Holm) | "
             "P(diffusion better) |", "|---|---|---|---|---|"]
    for r in diffusion_versus_controls(runs):
        lines.append(f"| {r['control']} | {_f(r['diff_median'])} [{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}] | "
                     f"{_f(r['p_wilcoxon'], 4)} | {_f(r['p_holm'], 4)} | {_f(r['prob_improvement'], 2)} |")
    lines += ["", "Pool quality (median over the 5 splits; `mriaug synth report`):", "", *_pool_quality()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(block())
