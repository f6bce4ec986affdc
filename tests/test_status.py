"""`mriaug.slurm.status` (`mriaug status`): runs unsubmitted, queued, running and failed, per run of a packed
task. (Until issue 23 in test_slurm.py.)"""

from __future__ import annotations

import json
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


def test_status_without_submissions(tmp_path: Path) -> None:
    grid = grid_mod.load(write_grid(tmp_path / "g.toml", tmp_path / "results", seeds=3))
    st = slurm.grid_status(grid)
    assert st.counts() == {"done": 0, "queued": 0, "running": 0, "failed": 0, "unsubmitted": 3}
    assert "3 runs not submitted yet" in slurm.render_status(st)


def test_status_of_a_packed_task_is_per_run(fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "g.toml", res, seeds=4)
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(packing_profile(tmp_path, "runs_per_task = 3"))])
    assert out.exit_code == 0 and "submitted array 4241: cnn, 4 runs" in out.output, out.output
    g = grid_mod.load(grid)
    record = json.loads(next((res / ".slurm" / "submissions").glob("*.json")).read_text())
    # Two tasks (3 + 1 runs); a task's runs share its job id.
    assert [record["tasks"][r.run_id]["job_id"] for r in g.runs] == ["4241_0"] * 3 + ["4241_1"]
    assert record["arrays"][0]["runs"] == 4 and record["arrays"][0]["tasks"] == 2
    first, second, third = g.runs[:3]
    # The first run failed (the task went on), the second trains, the third waits in the task.
    from mriaug.slurm.paths import failure_path
    from mriaug.store import atomic

    atomic.write_json(failure_path(res, first.run_id), {"run_id": first.run_id, "job_id": "4241_0",
                                                        "error": "PoolError: its own error", "stderr": "x.err"})
    (fake_slurm / "fakebin" / "squeue").write_text("#!/bin/bash\nprintf '4241_0|RUNNING\\n4241_1|PENDING\\n'\n")
    st = {r.spec.run_id: r for r in slurm.grid_status(g).runs}
    assert [st[r.run_id].state for r in g.runs] == ["failed", "running", "queued", "queued"]
    assert st[first.run_id].error == "PoolError: its own error"
    # The task ended: the run it was training and the one after it failed, each with its own reason.
    (fake_slurm / "fakebin" / "squeue").write_text("#!/bin/bash\nexit 0\n")
    st = {r.spec.run_id: r for r in slurm.grid_status(g).runs}
    assert [st[r.run_id].state for r in g.runs] == ["failed"] * 4
    assert st[first.run_id].error == "PoolError: its own error"
    assert st[third.run_id].error == ("not started: its packed task ended without a result while training "
                                      f"{second.label}")
    assert st[second.run_id].error != st[third.run_id].error
