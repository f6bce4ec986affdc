"""`mriaug.slurm.cost` (issue 35): a planned grid's runs, array tasks and hours, worked out by hand on a hand-made
pilot (tests/test_power.py's: 10 s per run of scenario 1, a mean of 35 s per run of scenario 3) and a profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.analysis import power as pw
from mriaug.cli import app
from mriaug.data import sources as data
from mriaug.plan import grid as grid_mod
from mriaug.slurm.cost import cost, makespan
from mriaug.slurm.profile import load_profile
from tests.slurm_helpers import ROOT
from tests.test_power import hand_grid, hand_pilot

H200_CNN = 13854  # images/s, the cnn card's measured GPU throughput at 128 px (used as is at the grid's 32 px)


def _profile(tmp_path: Path, extra: str) -> Path:
    """The local profile (2 tasks of an array at once, no GPU) with 3 runs per task of cnn; `extra` on top."""
    p = tmp_path / "p.toml"
    p.write_text(extra + (ROOT / "slurm" / "local.toml").read_text() + "\n[resources.cnn]\nruns_per_task = 3\n")
    return p


def test_makespan_starts_tasks_in_order_on_the_first_free_slot() -> None:
    tasks = [30.0, 30.0, 55.0, 105.0, 105.0, 35.0]
    # slot A: 30, then 55 (to 85), then 105 (to 190); slot B: 30, then 105 (to 135), then 35 (to 170)
    assert makespan(tasks, 2) == 190.0
    assert makespan(tasks, None) == 105.0 and makespan(tasks, 10) == 105.0
    assert makespan(tasks, 1) == sum(tasks) and makespan([], 3) == 0.0


def test_the_cost_of_a_plan_worked_out_by_hand(tmp_path: Path) -> None:
    g = grid_mod.load(hand_grid(tmp_path))
    pilot = pw.read_pilot(hand_pilot(tmp_path / "p.csv", hand_grid(tmp_path)))
    planned = pw.with_seeds(g, 8)  # scenario 1 seeds 0-7, then scenario 3 seeds 0-7
    splits = pw.load_splits(planned)
    secs = pw.run_seconds(planned.runs, pilot, splits)
    # 3 runs per task: [1:0-2] 30 s, [1:3-5] 30 s, [1:6-7, 3:0] 10 + 10 + 35, [3:1-3] 105, [3:4-6] 105, [3:7] 35
    c = cost(planned, load_profile(_profile(tmp_path, "")), secs.cpu_s, secs.gpu_s, pw.GPU_TASK_STARTUP_S)
    assert (c.runs, c.tasks, c.arrays, c.runs_per_task) == (16, 6, 1, {"cnn": 3})
    assert c.cpu_hours == pytest.approx(8 * (10 + 35) / 3600)
    assert c.wall_hours == pytest.approx(190 / 3600) and c.wall_basis == {"cnn": "measured seconds"}
    # GPU: each run's training images over the card's images/s (2 epochs of the phantom's 160 training images;
    # scenario 3 adds round(0.2 * 22) Mild and round(0.2 * 2) Moderate ones), plus 8.6 s of start-up per task.
    assert data.load(g.data).counts("train") == {"Mild_Demented": 22, "Moderate_Demented": 2, "Non_Demented": 80,
                                                 "Very_Mild_Demented": 56}
    images = 8 * 2 * 160 + 8 * 2 * (160 + 4 + 0)
    assert c.gpu_hours == pytest.approx((images / H200_CNN + 6 * 8.6) / 3600)
    # Arrays cut at max_array_size run at once, each at its throttle: [30, 30, 55, 105] on 2 slots ends at 135.
    c = cost(planned, load_profile(_profile(tmp_path, "max_array_size = 4\n")), secs.cpu_s, secs.gpu_s, 8.6)
    assert (c.tasks, c.arrays, c.wall_hours) == (6, 2, pytest.approx(135 / 3600))
    # Without a profile: a task per run, no wall time.
    c = cost(planned, None, secs.cpu_s, secs.gpu_s, 8.6)
    assert (c.tasks, c.wall_hours) == (16, None)
    assert c.gpu_hours == pytest.approx((images / H200_CNN + 16 * 8.6) / 3600)


def test_mriaug_plan_prints_the_cost_of_its_seeds(tmp_path: Path) -> None:
    g = hand_grid(tmp_path)
    r = CliRunner().invoke(app, ["plan", str(g), "--pilot", str(hand_pilot(tmp_path / "p.csv", g)), "--detect", "0.05",
                                 "--profile", str(_profile(tmp_path, "")), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    n = out["seeds"]
    assert out["cost"]["runs"] == 2 * n and out["cost"]["tasks"] == -(-2 * n // 3)
    assert out["cost"]["cpu_hours"] == pytest.approx(n * (10 + 35) / 3600)
    assert out["cost"]["profile"] == str(tmp_path / "p.toml") and out["cost"]["throttle"] == 2


def _pretrain_grid(tmp_path: Path, pretrain: str = 'pretrain = {pool = "gen", images = 100, epochs = 3}') -> Path:
    """The hand grid's phantom data and cnn, scenario 1 against P (all real, pretrained on the pool gen first)."""
    tmp_path.mkdir(exist_ok=True)
    g = tmp_path / "pre.toml"
    g.write_text(f'name = "pre"\nresults = "{tmp_path / "res"}"\nmodels = ["cnn"]\nscenarios = ["1", "P"]\n'
                 f'augmentations = ["none"]\nseeds = 6\n\n[pool]\ngen = "{tmp_path / "pool"}"\n\n'
                 f'[scenario.P]\nreal_fraction = 1.0\n{pretrain}\n\n[data]\nsource = "phantom"\nn_train = 160\n'
                 'n_test = 80\nsize = 32\n\n[model.cnn]\nepochs = 2\nbatch_size = 32\nresolution = 32\n')
    return g


def _pilot_of_p(tmp_path: Path) -> Path:
    """The hand pilot with its scenario 3 runs as P's: P measured at a mean of 35 s a run, scenario 1 at 10 s."""
    p = hand_pilot(tmp_path / "p.csv", hand_grid(tmp_path / "hand"))
    p.write_text(p.read_text().replace(",cnn,3,", ",cnn,P,"))
    return p


def test_a_run_that_pretrains_counts_its_pretraining_steps(tmp_path: Path) -> None:
    g = grid_mod.load(_pretrain_grid(tmp_path))
    bare = grid_mod.load(_pretrain_grid(tmp_path, ""))
    plain, pre = g.runs[0], g.runs[6]
    assert (plain.scenario.name, pre.scenario.name) == ("1", "P")
    ds = pw.load_splits(g)
    # 3 passes of ceil(100 / 32) = 4 steps, on top of the run's own 2 epochs of ceil(160 / 32) = 5 steps
    assert (pw.pretrain_steps(pre), pw.own_steps(ds[repr(pre.data)], pre), pw.pretrain_steps(plain)) == (12, 10, 0)
    secs = pw.run_seconds(g.runs, None, ds)
    assert secs.gpu_s(plain) == pytest.approx(2 * 160 / H200_CNN)
    assert secs.gpu_s(pre) == pytest.approx((2 * 160 + 12 * 32) / H200_CNN)  # each step a full batch of 32
    assert list(secs.pretraining) == ["P"]
    with_pre = cost(g, None, secs.cpu_s, secs.gpu_s, 8.6)
    without = pw.run_seconds(bare.runs, None, pw.load_splits(bare))
    assert with_pre.gpu_hours == pytest.approx(cost(bare, None, without.cpu_s, without.gpu_s, 8.6).gpu_hours
                                               + 6 * 12 * 32 / H200_CNN / 3600)
    # Measured: a pilot's runs of the cell trained both phases (a result's train_s), so its mean is taken as is.
    pilot = pw.read_pilot(_pilot_of_p(tmp_path))
    secs = pw.run_seconds(g.runs, pilot, ds)
    assert (secs.cpu_s(plain), secs.cpu_s(pre)) == (10.0, pytest.approx(35.0))
    # A pilot without the cell: the model's mean (22.5 s over 12 runs) stands in; they did not pretrain, so the
    # run's 12 pretraining steps are added at their seconds per step (10 own steps): 22.5 * (1 + 12 / 10).
    secs = pw.run_seconds(g.runs, pw.read_pilot(hand_pilot(tmp_path / "h.csv", hand_grid(tmp_path / "h"))), ds)
    assert secs.cpu_s(pre) == pytest.approx(22.5 * 2.2) and secs.cpu_s(plain) == 10.0
    secs = pw.run_seconds(g.runs, pw.read_pilot(tmp_path / "h.csv"), "no data here")
    assert secs.cpu_s(pre) is None and any("pretraining steps are not counted" in n for n in secs.notes)


def test_mriaug_plan_counts_the_pretraining_and_says_so(tmp_path: Path) -> None:
    pilot = str(_pilot_of_p(tmp_path))
    outs = []
    for g in (_pretrain_grid(tmp_path), _pretrain_grid(tmp_path / "bare", "")):
        r = CliRunner().invoke(app, ["plan", str(g), "--pilot", pilot, "--detect", "0.05", "--format", "json"])
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout))
    (pre, bare), n = outs, outs[0]["seeds"]
    assert bare["seeds"] == n and bare["cost"]["pretraining"] == []
    assert pre["cost"]["pretraining"] == ["scenario P: 3 x ceil(100 / 32) = 12 pretraining steps of cnn per run, on "
                                          "top of its own 10"]
    assert pre["cost"]["gpu_hours"] == pytest.approx(bare["cost"]["gpu_hours"] + n * 12 * 32 / H200_CNN / 3600)
    r = CliRunner().invoke(app, ["plan", str(_pretrain_grid(tmp_path)), "--pilot", pilot, "--detect", "0.05"])
    assert r.exit_code == 0, r.output
    assert "  pretraining counted: scenario P: 3 x ceil(100 / 32) = 12 pretraining steps" in r.stdout
    # Without a pilot: the pilot grid keeps the pool P pretrains on, and its cost counts the pretraining.
    r = CliRunner().invoke(app, ["plan", str(_pretrain_grid(tmp_path)), "--write", str(tmp_path / "pilot.toml")])
    assert r.exit_code == 0, r.output
    pilot_grid = grid_mod.load(tmp_path / "pilot.toml")
    assert pilot_grid.pools == {"gen": str(tmp_path / "pool")}
    assert {r.scenario.name for r in pilot_grid.runs} == {"1", "P"} and "pretraining counted" in r.stdout
