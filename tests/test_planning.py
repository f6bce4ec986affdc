"""`mriaug.slurm.planning`: runs packed into tasks (`runs_per_task`, seed packs never split), shown by a dry
run. (Until issue 23 in test_slurm.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import slurm
from mriaug.cli import app
from mriaug.plan import grid as grid_mod
from tests.slurm_helpers import packing_profile, write_grid

runner = CliRunner()

# The example GPU profile binds /scratch/$USER.
pytestmark = pytest.mark.usefixtures("user")


def test_runs_per_task_packs_tasks_and_dry_run_shows_it(fake_slurm: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path / "g.toml", tmp_path / "results", scenarios=["1", "2"], seeds=7)
    profile = packing_profile(tmp_path, "runs_per_task = 3")
    assert slurm.load_profile(profile).for_model("cnn").runs_per_task == 3
    assert slurm.load_profile(profile).for_model("synth").runs_per_task == 1
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile), "--dry-run"])
    assert out.exit_code == 0, out.output
    # 14 runs, 3 to a task: 5 tasks, one array (MaxArraySize 5 counts tasks).
    assert re.search(r"cnn\s+14\s+5\s+5\s+%2\s+partition=debug .* runs_per_task=3", out.output), out.output
    assert "cnn: 14 runs in 5 tasks (runs_per_task = 3)" in out.output
    p = slurm.plan(grid_mod.load(grid), slurm.load_profile(profile), dry_run=True)
    assert [sum(map(len, t)) for a in p.arrays for t in a.tasks] == [3, 3, 3, 3, 2]
    # Seed packs are never split: packs of 4 seeds per cell (4 + 3 per scenario) into tasks of at most 8 runs.
    grid.write_text(grid.read_text() + "pack_seeds = 4\n")
    profile = packing_profile(tmp_path, "runs_per_task = 8")
    p = slurm.plan(grid_mod.load(grid), slurm.load_profile(profile), dry_run=True)
    assert [[len(u) for u in t] for a in p.arrays for t in a.tasks] == [[4, 3], [4, 3]]
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile), "--dry-run"])
    assert "cnn: 14 runs in 2 tasks (runs_per_task = 8), trained as 4 seed packs of up to 4" in out.output
    for text, match in (('[collector]\nruns_per_task = 2\n', r"line 2: collector\.runs_per_task: only a model's"),
                        ('[resources.synth]\nruns_per_task = 2\n', r"resources\.synth\.runs_per_task: only a model"),
                        ('[resources.cnn]\nruns_per_task = 0\n', r"resources\.cnn\.runs_per_task: must be a positive")):
        (tmp_path / "p.toml").write_text(text)
        with pytest.raises(slurm.ProfileError, match=match):
            slurm.load_profile(tmp_path / "p.toml")
