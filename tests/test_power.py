"""`mriaug plan`'s seeds (issue 35), checked by simulating whole studies with scipy's `wilcoxon` and a Holm step
written here: the planned seeds detect the effect in 80% +- 5% of them, more seeds for a smaller effect, the seeds
and `mde` one answer read two ways; the published study's plan against an independent simulation; the pilot grid;
a pilot that cannot be planned from is refused in one line."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from mriaug.analysis import power as pw
from mriaug.analysis import statistics as st
from mriaug.cli import app
from mriaug.data import sources as data
from mriaug.errors import EXIT_USER
from mriaug.plan import grid as grid_mod
from tests.conftest import require_real_data
from tests.slurm_helpers import ROOT, write_grid

runner = CliRunner()
STUDY = ROOT / "docs" / "study"


def detected(n: int, delta: float, sd: float, m: int, studies: int, seed: int) -> float:
    """The share of simulated studies in which the table detects `delta`: n paired differences per comparison, one
    comparison with the effect and m - 1 without, scipy's two-sided Wilcoxon, Holm's step-down at 0.05."""
    rng = np.random.default_rng(seed)
    d = sd * rng.standard_normal((studies, m, n))
    d[:, 0] += delta
    p = stats.wilcoxon(d.reshape(studies * m, n), axis=1).pvalue.reshape(studies, m)
    order = np.argsort(p, axis=1)
    steps = np.take_along_axis(p, order, axis=1) * (m - np.arange(m)) <= 0.05
    rejected = np.cumprod(steps, axis=1).astype(bool)  # Holm stops at its first p above its level
    return float(rejected[np.arange(studies), np.argmax(order == 0, axis=1)].mean())


@pytest.mark.parametrize(("delta", "sd", "m"), [(0.01, 0.03, 3), (0.02, 0.03, 4), (0.5, 1.0, 1)])
def test_the_planned_seeds_detect_the_effect_in_80_percent_of_simulated_studies(delta: float, sd: float,
                                                                               m: int) -> None:
    n = pw.seeds_for(delta, sd, m)
    assert n is not None
    assert detected(n, delta, sd, m, 800, seed=n) == pytest.approx(st.POWER, abs=0.05)


def test_more_seeds_for_a_smaller_effect_more_comparisons_or_more_spread() -> None:
    n = pw.seeds_for(0.01, 0.03, 3)
    assert n is not None
    half = pw.seeds_for(0.005, 0.03, 3)
    assert half is not None and 3.5 * n < half < 4.5 * n  # seeds grow as 1 / delta^2
    assert (pw.seeds_for(0.01, 0.03, 6) or 0) > n and (pw.seeds_for(0.01, 0.045, 3) or 0) > n
    assert (pw.seeds_for(0.01, 0.03, 3, target=0.9) or 0) > n
    assert pw.seeds_for(0.01, 0.0, 3) == st.seeds_needed(3)  # no spread: as few as can reach the level
    assert pw.seeds_for(0.0001, 0.03, 3) is None  # beyond MAX_SEEDS
    with pytest.raises(st.SettingError, match="positive"):
        pw.seeds_for(0.0, 0.03, 3)


@pytest.mark.parametrize(("delta", "sd", "m"), [(0.01, 0.03, 3), (0.03, 0.05, 9)])
def test_seeds_needed_and_mde_are_one_answer(delta: float, sd: float, m: int) -> None:
    n = pw.seeds_for(delta, sd, m)
    assert n is not None
    assert st.mde(sd, n, m) <= delta < st.mde(sd, n - 1, m)


def test_seeds_are_spread_evenly_over_the_splits() -> None:
    assert [pw.per_split(n, 5) for n in (1, 5, 6, 119, 120)] == [5, 5, 10, 120, 120]
    assert pw.per_split(7, 1) == 7
    assert pw.pilot_seeds(5) == 25 and pw.pilot_seeds(1) == pw.PILOT_PAIRS == 24


def test_signed_rank_p_is_scipys_beyond_50_pairs() -> None:
    d = 0.2 + np.random.default_rng(3).standard_normal((5, 120))
    for n in (50, 51, 120):  # exact up to 50, the normal approximation beyond, as scipy's wilcoxon
        np.testing.assert_allclose(st.signed_rank_p(d[:, :n]), [stats.wilcoxon(x).pvalue for x in d[:, :n]],
                                   rtol=1e-12)


def _plan(*args: str) -> dict:
    r = runner.invoke(app, ["plan", *args, "--format", "json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_the_published_study_plan_agrees_with_an_independent_simulation() -> None:
    require_real_data()
    out = _plan(str(STUDY / "grid.toml"), "--pilot", str(STUDY / "runs.csv"), "--metric", "balanced_accuracy",
                "--detect", "0.01")
    comps = {(c["cell"], c["against"]): c for c in out["comparisons"]}
    assert set(comps) == {("cnn/none/3/diffusion", "cnn/none/1"), ("cnn/none/3/copy", "cnn/none/1"),
                          ("cnn/none/3/transform", "cnn/none/1"), ("cnn/none/3/diffusion", "cnn/none/3/copy"),
                          ("cnn/none/3/diffusion", "cnn/none/3/transform")}
    c = comps["cnn/none/3/diffusion", "cnn/none/1"]
    assert c["holm_over"] == 3 and c["pairs"] == 20 and c["seeds_needed"] % 5 == 0
    # The spread is the one stats.csv's mde was made from (its table Holm-corrects over all its comparisons of
    # the metric: 6 since the pretraining arm joined the table, 4 before).
    published = pd.read_csv(STUDY / "stats.csv", dtype={"scenario": str}, keep_default_na=False, na_values=[""])
    ba = published[published["metric"] == "balanced_accuracy"]
    tested = int(ba["p_wilcoxon"].notna().sum())
    assert tested == 6
    row = ba[(ba["pool"] == "diffusion") & (ba["scenario"] == "3")].iloc[0]
    assert st.mde(c["sd"], 20, tested) == pytest.approx(row["mde"], rel=1e-12)
    assert c["mde_now"] == pytest.approx(st.mde(c["sd"], 20, 3), rel=1e-12)
    # Independent: scipy's wilcoxon and Holm over the 3 comparisons reach 80% between 0.8 and 1.2 times the seeds.
    n = c["seeds_min"]
    assert detected(round(0.8 * n), 0.01, c["sd"], 3, 500, seed=1) < st.POWER
    assert detected(round(1.2 * n), 0.01, c["sd"], 3, 500, seed=2) > st.POWER
    assert out["seeds"] == max(x["seeds_needed"] for x in out["comparisons"])
    cost = out["cost"]
    assert cost["runs"] == 4 * out["seeds"] and cost["tasks"] == cost["runs"]
    runs = pd.read_csv(STUDY / "runs.csv", dtype={"scenario": str, "pool": str}, keep_default_na=False)
    mean_s = runs.groupby(["scenario", "pool"])["train_s"].mean()
    cells = [("1", ""), ("3", "diffusion"), ("3", "copy"), ("3", "transform")]
    assert cost["cpu_hours"] == pytest.approx(out["seeds"] * sum(mean_s[k] for k in cells) / 3600, rel=1e-12)
    assert cost["gpu_hours"] > 0 and "NVIDIA H200" in cost["gpu_source"][0]


def hand_grid(tmp_path: Path, data_lines: str = "") -> Path:
    """The phantom grid of two cells (scenario 1, scenario 3 with one pool), 6 seeds, 2 epochs."""
    tmp_path.mkdir(exist_ok=True)
    g = write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["1", "3"], seeds=6, epochs=2,
                   pool=str(tmp_path / "pool"))
    if data_lines:
        g.write_text(g.read_text().replace('source = "phantom"\n', f'source = "phantom"\n{data_lines}\n'))
    return g


def hand_pilot(path: Path, grid: Path, seeds: range = range(6), *, fingerprint: str | None = None,
               classes: tuple[str, ...] = st.CLASSES, drop: str = "") -> Path:
    """A runs.csv written out: test CE 0.5 + 0.01 seed in scenario 1, +0.05 / -0.03 (odd / even seeds) in scenario 3;
    training 10 s per run of scenario 1, 30 s of scenario 3 (60 s for seed 0)."""
    fp = fingerprint or data.load(grid_mod.load(grid).data).fingerprint
    rows = []
    for scen in ("1", "3"):
        for s in seeds:
            v = 0.5 + 0.01 * s + (0 if scen == "1" else 0.05 if s % 2 else -0.03)
            rows.append({"run_id": f"r{scen}{s}", "table": "cnn", "model": "cnn", "scenario": scen,
                         "augmentation": "none", "pool": "", "seed": s, "test_ce": v,
                         **{st.RECALL + c: 0.5 for c in classes}, "data_fingerprint": fp, "status": "done",
                         "train_s": 10.0 if scen == "1" else 60.0 if s == 0 else 30.0})
    pd.DataFrame(rows).drop(columns=[drop] if drop else []).to_csv(path, index=False)
    return path


def _one_error_line(args: list[str], needle: str) -> None:
    r = runner.invoke(app, ["plan", *args])
    assert r.exit_code == EXIT_USER, (args, r.output)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, r.output)


def test_a_pilot_that_cannot_be_planned_from_is_refused_in_one_line(tmp_path: Path) -> None:
    g = hand_grid(tmp_path)
    ok = hand_pilot(tmp_path / "ok.csv", g)
    plan = [str(g), "--detect", "0.05", "--pilot"]
    _one_error_line([*plan, str(hand_pilot(tmp_path / "two.csv", g, range(2)))],
                    f"pilot {tmp_path / 'two.csv'}: cnn/none/3 has 2 seed(s) paired with cnn/none/1 (0, 1); a spread "
                    "needs at least 3")
    _one_error_line([*plan, str(ok), "--metric", "ece"], f"pilot {ok}: its runs have no ece (they have: test_ce, "
                    "recall:")
    merged = hand_grid(tmp_path / "merged", 'merge = {Moderate_Demented = "Mild_Demented"}')
    _one_error_line([str(merged), "--detect", "0.05", "--pilot", str(ok)],
                    "its runs are scored over Mild_Demented, Moderate_Demented, Non_Demented, Very_Mild_Demented; the "
                    f"grid {merged} over Mild_Demented, Non_Demented, Very_Mild_Demented: a pilot of another task")
    other = hand_pilot(tmp_path / "other.csv", g, fingerprint="0123456789abcdef")
    _one_error_line([*plan, str(other)], "run r10 (seed 0) was trained on data 0123456789abcdef, which none of the "
                    "grid's 1 split(s) of phantom is")
    _one_error_line([*plan, str(hand_pilot(tmp_path / "noseed.csv", g, drop="seed"))], "no column 'seed'")
    _one_error_line([*plan, str(tmp_path / "nowhere.csv")], "does not exist")
    _one_error_line([str(g), "--pilot", str(ok)], "--detect DELTA is needed with --pilot")
    _one_error_line([*plan, str(ok), "--power", "1"], "--power must be a probability between 0 and 1")
    # and the pilot that fits plans: the seeds a hand-computed spread needs
    out = _plan(*plan, str(ok))
    (c,) = out["comparisons"]
    sd = float(np.std([0.05 if s % 2 else -0.03 for s in range(6)], ddof=1))
    assert c["sd"] == pytest.approx(sd) and c["seeds_needed"] == pw.seeds_for(0.05, sd, 1) == out["seeds"]


def test_write_gives_the_grid_with_the_planned_seeds(tmp_path: Path) -> None:
    g = hand_grid(tmp_path)
    written = tmp_path / "planned.toml"
    out = _plan(str(g), "--pilot", str(hand_pilot(tmp_path / "p.csv", g)), "--detect", "0.05", "--write",
                str(written))
    assert out["written"] == str(written)
    planned, original = grid_mod.load(written), grid_mod.load(g)
    assert len(planned.runs) == 2 * out["seeds"] == out["cost"]["runs"]
    assert planned.results == original.results  # the pilot grid's runs count: same ids, same folder
    assert {r.run_id for r in original.runs} <= {r.run_id for r in planned.runs}
    assert tomllib.loads(written.read_text()) == {**tomllib.loads(g.read_text()), "seeds": out["seeds"]}


def test_without_a_pilot_the_pilot_grid_and_its_cost(tmp_path: Path) -> None:
    g = tmp_path / "g.toml"
    g.write_text(f'name = "three"\nresults = "{tmp_path / "res"}"\nmodels = ["cnn"]\nscenarios = ["1", "3"]\n'
                 'augmentations = ["none", "hflip"]\nseeds = 4\n\n[pool]\ncopy = "p/copy"\ngen = "p/gen"\n\n'
                 '[data]\nsource = "phantom"\nn_train = 160\nn_test = 80\nsize = 32\nsplit = "subject"\n'
                 'splits = 2\n\n[model.cnn]\nepochs = 1\nresolution = 32\n')
    written = tmp_path / "pilot.toml"
    out = _plan(str(g), "--write", str(written))
    assert out["pilot_grid"]["cells"] == ["cnn/none/1", "cnn/none/3/gen"]  # the pool under study, not the control
    pilot = grid_mod.load(written)
    assert out["pilot_grid"]["seeds"] == 24 and len(pilot.runs) == 48 == out["cost"]["runs"]
    assert {(r.augmentation, r.scenario.name, r.pool_label) for r in pilot.runs} == {("none", "1", None),
                                                                                    ("none", "3", "gen")}
    assert str(pilot.results) == str(tmp_path / "res") and out["pilot_grid"]["reused"]
    assert out["cost"]["cpu_hours"] is None and out["cost"]["gpu_hours"] > 0
    # One split: the lone pool would lose its name in the tables, so the pilot keeps its runs apart.
    g.write_text(g.read_text().replace("splits = 2\n", ""))
    out = _plan(str(g))
    assert out["pilot_grid"]["results"] == f"{tmp_path / 'res'}-pilot" and not out["pilot_grid"]["reused"]


def test_a_results_folder_is_a_pilot(tmp_path: Path) -> None:
    """Result files written out (as tests/test_collect.py's): the pilot of hand_grid with 4 seeds."""
    g = hand_grid(tmp_path)
    fp = data.load(grid_mod.load(g).data).fingerprint
    res = tmp_path / "res"
    res.mkdir()
    for scen in ("1", "3"):
        for seed in range(4):
            run_id = f"{scen}{seed:015d}"
            per = {c: {"recall": 0.5, "precision": 0.5, "f1": 0.5, "support": 10} for c in st.CLASSES}
            ce = 0.5 + 0.01 * seed + (0 if scen == "1" else 0.05 if seed % 2 else -0.03)
            (res / f"{run_id}.json").write_text(json.dumps({
                "schema": 2, "run_id": run_id,
                "spec": {"model": "cnn", "scenario": {"name": scen}, "augmentation": "none", "seed": seed,
                         "hparams": {"epochs": 2}},
                "metrics": {"test_ce": ce, "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5,
                            "per_class": per, "confusion": [[0] * 4] * 4},
                "history": [], "counts": {"real": {"Mild_Demented": 150, "Non_Demented": 10}, "synthetic": {}},
                "data": {"fingerprint": fp}, "env": {}, "timings": {"train_s": 10.0 if scen == "1" else 30.0}}))
    out = _plan(str(g), "--pilot", str(res), "--detect", "0.05")
    (c,) = out["comparisons"]
    sd = float(np.std([0.05 if s % 2 else -0.03 for s in range(4)], ddof=1))
    assert (c["cell"], c["against"], c["pairs"], c["sd"]) == ("cnn/none/3", "cnn/none/1", 4, pytest.approx(sd))
    assert out["pilot_runs"] == 8 and out["cost"]["cpu_hours"] == pytest.approx(out["seeds"] * 40 / 3600)
