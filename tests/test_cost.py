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
