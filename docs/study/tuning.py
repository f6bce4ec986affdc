"""docs/study/tuning.csv: the classifier search of docs/study/tuning.md, from VALIDATION numbers only.

`python docs/study/tuning.py GRIDS_DIR RESULTS_DIR OUT.csv` (run by `jobs/tune.sh`): two rows per trained
configuration (a grid file in GRIDS_DIR, its runs in RESULTS_DIR/<grid name>), one per choice of `select`: the
weights of the epoch with the lowest validation loss ("best_val", as the runs were trained), and the last epoch's
("last": training does not depend on `select`, so the last epoch's validation entry of the same runs is what a
select = "last" run scores). Per row: the settings, seeds and splits, the median over runs of the validation
balanced accuracy and validation cross-entropy at the epoch that would be tested (with the order-statistic 95%
interval `mriaug collect` prints), minutes per run, and `chosen`.

It reads only the settings, the validation entry, the selected epoch and the timings of each result: never a key
under `metrics` (the test set), so nothing here can choose by a test number.

The rule (the second: the first, a limit on minutes per run, and when it was rewritten are in docs/study/tuning.md):
1. eligible: every run of the configuration finished, at 64 px: the study's generator and pools are made at 64 px
   on these 2 CPU cores, and its 100 runs at 128 px (about 4x a 64 px run) do not fit a session; the 128 px
   configuration is searched to say what resolution buys on validation;
2. chosen: the eligible configuration with the highest median validation balanced accuracy; a tie within 0.005
   goes to the lower median validation cross-entropy.
Minutes per run are wall-clock medians; other jobs shared the 2 cores for part of the search (tuning.md).
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mriaug.analysis import statistics as st

STUDY_RESOLUTION = 64
TIE = 0.005


def _runs(folder: Path, select: str) -> list[dict[str, Any]]:
    """The validation side of every finished run in `folder` under `select` (a result's `metrics` are not read):
    the entry of the epoch the run tested ("best_val", as trained) or its last epoch's ("last")."""
    out = []
    for f in sorted(folder.glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("status", "done") != "done" or not r.get("validation"):
            continue
        entry = r["history"][-1] if select == "last" else r["validation"]
        split = r["data"]["split"]
        out.append({"seed": r["spec"]["seed"], "split_seed": split.get("seed"),
                    "val_balanced_accuracy": entry["val_balanced_accuracy"], "val_ce": entry["val_ce"],
                    "selected_epoch": entry["epoch"], "minutes": r["timings"]["total_s"] / 60})
    return out


def _interval(values: list[float]) -> tuple[float, float, float]:
    lo, hi, _ = st.median_ci(values)
    return float(np.median(values)), lo, hi


def what(grid_text: str) -> str:
    """What a configuration changes, from its grid file's opening comment: every file's first sentence is the
    search's shared header ("A configuration of the study's classifier search ... split only."), the rest is
    the configuration's own."""
    lines = []
    for line in grid_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    header, _, own = " ".join(lines).partition(". ")
    return own.strip() or header.strip()


def row(grid_file: Path, results: Path, select: str) -> dict[str, Any]:
    g = tomllib.loads(grid_file.read_text())
    model, data = g["model"]["cnn"], g["data"]
    runs = _runs(results / grid_file.stem, select)
    ba, ce = (_interval([r[k] for r in runs]) if runs else (np.nan,) * 3
              for k in ("val_balanced_accuracy", "val_ce"))
    return {
        "config": grid_file.stem + ("" if select == g.get("select", "last") else f"+{select}"),
        "what": what(grid_file.read_text()), "resolution": model["resolution"], "epochs": model["epochs"],
        "lr": model["lr"], "weight_decay": model.get("weight_decay", 0.0),
        "augmentation": "+".join(g["augmentations"]), "class_weight": model.get("class_weight", "none"),
        "classes": 3 if data.get("merge") else 4,
        "merge": ";".join(f"{k}->{v}" for k, v in (data.get("merge") or {}).items()),
        "select": select, "seeds": g["seeds"], "splits": data.get("splits", 1), "runs": len(runs),
        "val_balanced_accuracy": ba[0], "val_balanced_accuracy_ci_low": ba[1], "val_balanced_accuracy_ci_high": ba[2],
        "val_ce": ce[0], "val_ce_ci_low": ce[1], "val_ce_ci_high": ce[2],
        "selected_epoch_median": float(np.median([r["selected_epoch"] for r in runs])) if runs else np.nan,
        "minutes_per_run": float(np.median([r["minutes"] for r in runs])) if runs else np.nan,
    }


def choose(table: pd.DataFrame) -> pd.Series:
    """The rule of the module docstring: True for exactly one row."""
    ok = (table["resolution"] == STUDY_RESOLUTION) & (table["runs"] == table["seeds"])
    best = table.loc[ok, "val_balanced_accuracy"].max()
    near = table[ok & (table["val_balanced_accuracy"] >= best - TIE)]
    pick = near["val_ce"].idxmin()
    return pd.Series(table.index == pick, index=table.index)


def main(grids: str, results: str, out: str) -> None:
    table = pd.DataFrame([row(f, Path(results), select) for f in sorted(Path(grids).glob("*.toml"))
                          for select in ("best_val", "last")])
    table["chosen"] = choose(table)
    table.to_csv(out, index=False, float_format="%.4f")
    print(table[["config", "runs", "val_balanced_accuracy", "val_balanced_accuracy_ci_low",
                 "val_balanced_accuracy_ci_high", "val_ce", "selected_epoch_median", "minutes_per_run",
                 "chosen"]].to_string(index=False))


if __name__ == "__main__":
    main(*sys.argv[1:4])
