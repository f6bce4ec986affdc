"""docs/study/ holds what `make study` published; CI does not rerun the study (an hour of CPU), but checks that
what is published is consistent: every statistic recomputed from its runs.csv, the README's numbers from its
files, and the study's shape (pools, seeds, splits) as the README states it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mriaug.analysis import statistics as st

STUDY = Path(__file__).resolve().parents[1] / "docs" / "study"
NUMERIC = ["n", "n_failed", "median", "iqm", "ci_low", "ci_high", "ci_coverage", "diff_median", "diff_ci_low",
           "diff_ci_high", "p_wilcoxon", "p_holm", "prob_improvement", "mde"]


def _read(name: str) -> pd.DataFrame:
    df = pd.read_csv(STUDY / name, dtype={"scenario": str, "pool": str}, keep_default_na=False, na_values=[""])
    df["pool"] = df["pool"].fillna("")
    return df


def test_published_stats_are_the_statistics_of_the_published_runs() -> None:
    runs, stats = _read("runs.csv"), _read("stats.csv")
    for metric in sorted(set(stats["metric"])):
        again = st.stats_table(runs, metric)
        mine = stats[stats["metric"] == metric].reset_index(drop=True)
        assert len(again) == len(mine), metric
        for col in NUMERIC:
            a = pd.to_numeric(again[col], errors="coerce").astype(float).to_numpy()
            b = pd.to_numeric(mine[col], errors="coerce").astype(float).to_numpy()
            assert np.allclose(a, b, rtol=0, atol=1e-9, equal_nan=True), (metric, col)


def test_the_study_covers_what_the_issue_asks() -> None:
    runs = _read("runs.csv")
    assert set(runs["pool"]) == {"", "diffusion", "copy", "transform"}
    assert set(runs["split"]) == {"subject"}
    assert runs["data_fingerprint"].nunique() >= 5  # at least 5 distinct subject splits
    cells = runs.groupby(["model", "scenario", "pool", "augmentation"])["seed"].nunique()
    assert (cells >= 20).all(), cells
    stats = _read("stats.csv")
    assert set(stats.loc[stats["scenario"] == "3", "pool"]) == {"diffusion", "copy", "transform"}
    # a larger synthetic share than the thesis's 20% (scenario 7: +50% Mild and Moderate)
    assert set(stats.loc[stats["scenario"] == "7", "pool"]) == {"diffusion"}
    # per-scan scores in every run, and a minimum detectable effect for every paired comparison
    for col in ("scan_accuracy", "scan_balanced_accuracy", "scan_ce"):
        assert runs[col].notna().all(), col
    compared = stats[stats["scenario"] != "1"]
    assert len(compared) and compared["mde"].notna().all()


def test_the_pretraining_arm_is_published_against_scenario_1() -> None:
    # issue 37: pretraining on synthetic images of every class, and its transform control, 20 seeds over the 5
    # splits, each paired with scenario 1 and given its minimum detectable effect
    runs, stats = _read("runs.csv"), _read("stats.csv")
    pre = runs[runs["pretrain"].fillna("") != ""]
    assert dict(pre.groupby("scenario")["pretrain"].first()) == {"pre-diffusion": "diffusion",
                                                                 "pre-transform": "transform"}
    for scenario in ("pre-diffusion", "pre-transform"):
        cell = pre[pre["scenario"] == scenario]
        assert cell["seed"].nunique() >= 20 and cell["split_index"].nunique() == 5, scenario
        row = stats[(stats["scenario"] == scenario) & (stats["metric"] == "test_ce")]
        assert len(row) == 1 and int(row["n_pairs"].iloc[0]) >= 20 and row["mde"].notna().all(), scenario
    assert set(runs.loc[runs["pretrain"].fillna("") == "", "scenario"]) >= {"1"}


@pytest.mark.parametrize("pool", ["diffusion", "copy", "transform"])
def test_pools_hold_every_class_per_split(pool: str) -> None:
    import json

    reports = sorted((STUDY / "pools" / pool).glob("split-*/report.json"))
    assert len(reports) == 5
    for r in reports:
        per = json.loads(r.read_text())["per_class"]
        assert {"Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"} <= set(per), r


def test_grad_cam_is_published_for_a_mild_and_a_non_demented_source() -> None:
    import json

    cams = sorted((STUDY / "cam").glob("*/cam.json"))
    assert len(cams) >= 2, cams
    for path in cams:
        rep = json.loads(path.read_text())
        text = json.dumps(rep)
        assert "Mild_Demented" in text and "Non_Demented" in text, path
    report = (STUDY / "report" / "report.html").read_text()
    assert "Grad-CAM" in report and "no run kept its weights" not in report


def test_the_search_chose_on_validation_and_the_study_is_its_choice(tmp_path: Path) -> None:
    import subprocess
    import sys

    tuning = pd.read_csv(STUDY / "tuning.csv")
    assert len(tuning) >= 4 and int(tuning["chosen"].sum()) == 1
    assert not [c for c in tuning.columns if c.startswith("test")]  # no test number in the search
    assert {"val_balanced_accuracy", "val_ce", "minutes_per_run", "seeds", "splits"} <= set(tuning.columns)
    assert (tuning["resolution"] == 128).any() and (tuning["class_weight"] == "balanced").any()
    assert (tuning["classes"] == 3).any()  # Moderate merged into Mild
    # docs/study/grid.toml is what jobs/study_grid.py writes from the chosen row
    root = STUDY.parents[1]
    out = tmp_path / "study-cpu.toml"
    subprocess.run([sys.executable, str(root / "jobs" / "study_grid.py"), str(STUDY / "tuning.csv"), str(out)],
                   cwd=root, check=True, capture_output=True)
    assert out.read_text() == (STUDY / "grid.toml").read_text()
    assert (tmp_path / "study-cpu-50.toml").read_text() == (STUDY / "study-cpu-50.toml").read_text()
    assert (tmp_path / "study-cpu-pretrain.toml").read_text() == (STUDY / "study-cpu-pretrain.toml").read_text()


def test_the_readme_numbers_are_the_published_ones() -> None:
    spec = importlib.util.spec_from_file_location("study_answer", STUDY / "answer.py")
    assert spec is not None and spec.loader is not None
    answer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(answer)
    readme = (STUDY / "README.md").read_text()
    start, end = "<!-- answer:start -->\n", "<!-- answer:end -->"
    assert start in readme and end in readme
    assert readme.split(start, 1)[1].split(end, 1)[0] == answer.block()


@pytest.mark.parametrize("pool", ["diffusion", "copy", "transform"])
def test_pool_quality_is_published_per_split(pool: str) -> None:
    reports = sorted((STUDY / "pools" / pool).glob("split-*/report.json"))
    assert len(reports) >= 5
    import json

    shares = [json.loads(r.read_text())["per_class"]["Mild_Demented"]["near_copy_share"] for r in reports]
    if pool == "copy":
        assert all(s == 1.0 for s in shares)  # duplicates of training images: every one a near-copy
    else:
        assert all(0.0 <= s < 1.0 for s in shares) and not math.isnan(sum(shares))


def test_the_search_table_says_what_each_configuration_changes() -> None:
    # tuning.csv's `what` is each grid file's own description (after the search's shared first sentence), so the
    # configurations' rows read differently; tuning.py is what wrote it.
    spec = importlib.util.spec_from_file_location("study_tuning", STUDY / "tuning.py")
    assert spec is not None and spec.loader is not None
    tuning_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tuning_py)
    table = pd.read_csv(STUDY / "tuning.csv")
    grids = STUDY.parents[1] / "jobs" / "study-tune"
    for config, what in zip(table["config"], table["what"], strict=True):
        assert what == tuning_py.what((grids / f"{config.split('+')[0]}.toml").read_text()), config
    firsts = {str(w).split()[0] for w in table.drop_duplicates("what")["what"]}
    assert table["what"].nunique() == len({c.split("+")[0] for c in table["config"]}) == len(firsts)
