"""The numbers of docs/study/README.md, from the published files only (runs.csv, stats.csv, tuning.csv,
pools/*/report.json), through the statistics `mriaug collect` uses: `python docs/study/answer.py` prints the block
the README holds between its `answer:start` / `answer:end` markers, and tests/test_study_published.py checks that
the two agree."""

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
# The published study's diffusion pools (2026-12-06) came from a model of Mild and Moderate images only; their
# reports are kept to say whether the class-conditional model's pools are nearer to real (issue 37).
TWO_CLASS = HERE / "pools-two-class" / "diffusion"
POOL_CLASSES = ("Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented")
# What the README reports per cell and per comparison: per image, then per whole scan.
COMPARED = ("test_ce", "balanced_accuracy", "scan_balanced_accuracy")


def _f(v: float, digits: int = 3) -> str:
    return "∞" if v == math.inf else "—" if v != v else f"{v:.{digits}f}"


def _name(scenario: str, pool: str) -> str:
    return f"scenario {scenario}" + (f" · {pool}" if pool else "")


def _interval(r: pd.Series) -> str:
    return f"{_f(r['median'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"


def _classes(stats: pd.DataFrame) -> list[str]:
    """The classes the runs were scored over (recall columns with values)."""
    rec = stats[stats["metric"].str.startswith(st.RECALL) & (stats["n"] > 0)]
    return [m.removeprefix(st.RECALL) for m in dict.fromkeys(rec["metric"])]


def _cell_rows(stats: pd.DataFrame) -> list[str]:
    classes = _classes(stats)
    out = ["| cell | n (failed) | median test CE [95% interval] | median balanced accuracy [95% interval] | "
           "median balanced accuracy per scan [95% interval] | " + " | ".join(f"median {c} recall" for c in classes)
           + " |", "|---|---|---|---|---|" + "---|" * len(classes)]
    for _, r in stats[stats["metric"] == "test_ce"].iterrows():
        key = (stats["scenario"] == r["scenario"]) & (stats["pool"] == r["pool"])

        def one(metric: str, key: pd.Series = key) -> pd.Series:
            return stats[key & (stats["metric"] == metric)].iloc[0]

        out.append(f"| {_name(r['scenario'], r['pool'])} | {int(r['n'])} ({int(r['n_failed'])}) | {_interval(r)} | "
                   f"{_interval(one('balanced_accuracy'))} | {_interval(one('scan_balanced_accuracy'))} | "
                   + " | ".join(_f(one(st.RECALL + c)["median"]) for c in classes) + " |")
    return out


def _versus_scenario_1(stats: pd.DataFrame) -> list[str]:
    out = ["| cell | metric | median paired difference [95% interval] | p | p (Holm) | P(improvement) | "
           "smallest detectable (80% power) |", "|---|---|---|---|---|---|---|"]
    for metric in COMPARED:
        s = stats[(stats["metric"] == metric) & (stats["scenario"] != st.BASELINE)]
        for _, r in s.iterrows():
            out.append(f"| {_name(r['scenario'], r['pool'])} | {metric} | {_f(r['diff_median'])} "
                       f"[{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}] | {_f(r['p_wilcoxon'], 4)} | "
                       f"{_f(r['p_holm'], 4)} | {_f(r['prob_improvement'], 2)} | {_f(r['mde'])} |")
    return out


def _values(runs: pd.DataFrame, scenario: str, pool: str, metric: str) -> dict[int, float]:
    g = runs[(runs["scenario"].astype(str) == scenario) & (runs["pool"] == pool)]
    v = g[metric].astype(float).where(g["status"] != "diverged", st.worst(metric))
    return dict(zip(g["seed"].astype(int), v, strict=True))


def diffusion_versus_controls(runs: pd.DataFrame, metric: str = "test_ce") -> list[dict]:
    """Scenario 3 with the diffusion pool against the same seeds with each control pool, Holm over the two
    comparisons, each with its minimum detectable effect under that Holm."""
    rows = [{"control": c, **st.paired(_values(runs, "3", c, metric), _values(runs, "3", "diffusion", metric),
                                       higher_is_better=st.higher_is_better(metric))} for c in ("copy", "transform")]
    for r, p in zip(rows, st.holm([r["p_wilcoxon"] for r in rows]), strict=True):
        r["p_holm"] = p
        r["mde"] = st.mde(r["diff_sd"], r["n"], len(rows))
    return rows


def pretraining_versus_control(runs: pd.DataFrame) -> list[dict]:
    """Pretraining on the diffusion pool against pretraining on the transform pool (the same counts), paired by
    seed, per metric of COMPARED; one comparison per metric, so no Holm correction."""
    rows = []
    for metric in COMPARED:
        r = st.paired(_values(runs, "pre-transform", "", metric), _values(runs, "pre-diffusion", "", metric),
                      higher_is_better=st.higher_is_better(metric))
        rows.append({"metric": metric, **r, "mde": st.mde(r["diff_sd"], r["n"], 1)})
    return rows


def _pool_quality() -> list[str]:
    out = ["| pool | class | KID real vs synthetic (real-vs-real floor) | near-copy share | class fidelity "
           "(classifier's recall on real held-out images) |", "|---|---|---|---|---|"]
    folders = [(f"{pool}", HERE / "pools" / pool) for pool in POOLS]
    folders.append(("diffusion, published two-class model", TWO_CLASS))
    for pool, folder in folders:
        reports = [json.loads(p.read_text()) for p in sorted(folder.glob("split-*/report.json"))]
        for cls in POOL_CLASSES:
            per = [r["per_class"][cls] for r in reports if cls in r["per_class"]]
            if not per:
                continue

            def med(key: str, per: list[dict] = per) -> float:
                v = [float(p[key]) for p in per if p.get(key) is not None]
                return float(np.median(v)) if v else math.nan

            out.append(f"| {pool} | {cls} | {_f(med('kid_real_vs_synthetic'), 2)} ({_f(med('kid_real_vs_real'), 2)}) | "
                       f"{_f(med('near_copy_share'), 2)} | {_f(med('class_fidelity'), 2)} "
                       f"({_f(med('held_out_recall'), 2)}) |")
    return out


def _tuning() -> list[str]:
    t = pd.read_csv(HERE / "tuning.csv")
    out = ["| configuration | runs | median validation balanced accuracy [95% interval] | median validation CE | "
           "median selected epoch | minutes per run | chosen |", "|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        out.append(f"| {r['config']} | {int(r['runs'])} | {_f(r['val_balanced_accuracy'])} "
                   f"[{_f(r['val_balanced_accuracy_ci_low'])}, {_f(r['val_balanced_accuracy_ci_high'])}] | "
                   f"{_f(r['val_ce'])} | {_f(r['selected_epoch_median'], 1)} | {_f(r['minutes_per_run'], 2)} | "
                   f"{'**yes**' if r['chosen'] else ''} |")
    return out


def _read(name: str) -> pd.DataFrame:
    df = pd.read_csv(HERE / name, dtype={"scenario": str, "pool": str}, keep_default_na=False, na_values=[""])
    df["pool"] = df["pool"].fillna("")
    return df


def block() -> str:
    stats, runs = _read("stats.csv"), _read("runs.csv")
    for col in ("median", "ci_low", "ci_high", "diff_median", "diff_ci_low", "diff_ci_high", "mde"):
        stats[col] = stats[col].replace({"inf": math.inf}).astype(float)
    k = len(_classes(stats))
    lines = ["The search (validation parts only; `tuning.csv`):", "", *_tuning(), "",
             f"Cells (20 seeds each; seed s tested on subject split s mod 5; {k} classes, so chance balanced "
             f"accuracy is {_f(1 / k)}, and so is a majority-class guess's):", "", *_cell_rows(stats), "",
             "Each cell against scenario 1, paired by seed (negative test CE / positive balanced accuracy is better; "
             "Holm over the table's comparisons of that metric; the last column is the minimum detectable effect, "
             "`mde` in stats.csv):", "", *_versus_scenario_1(stats), "",
             "Diffusion against each control, scenario 3, paired by seed (test CE, diffusion minus control; Holm over "
             "the two):", "", "| control | median paired difference [95% interval] | p | p (Holm) | "
             "P(diffusion better) | smallest detectable (80% power) |", "|---|---|---|---|---|---|"]
    for r in diffusion_versus_controls(runs):
        lines.append(f"| {r['control']} | {_f(r['diff_median'])} [{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}] | "
                     f"{_f(r['p_wilcoxon'], 4)} | {_f(r['p_holm'], 4)} | {_f(r['prob_improvement'], 2)} | "
                     f"{_f(r['mde'])} |")
    lines += ["", "Pretraining on the diffusion pool against pretraining on the transform pool (its control: the same "
              "counts), paired by seed (pre-diffusion minus pre-transform; one comparison per metric):", "",
              "| metric | median paired difference [95% interval] | p | P(diffusion better) | smallest detectable "
              "(80% power) |", "|---|---|---|---|---|"]
    for r in pretraining_versus_control(runs):
        lines.append(f"| {r['metric']} | {_f(r['diff_median'])} [{_f(r['diff_ci_low'])}, {_f(r['diff_ci_high'])}] | "
                     f"{_f(r['p_wilcoxon'], 4)} | {_f(r['prob_improvement'], 2)} | {_f(r['mde'])} |")
    lines += ["", "Pool quality (median over the 5 splits; `mriaug synth report`; the last rows are the published "
              "study's pools of 2026-12-06, from a model of Mild and Moderate images only):", "", *_pool_quality()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(block())
