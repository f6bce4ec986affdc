"""`mriaug submit` end to end against the real single-node Slurm (started by slurm/cluster.sh when it is not
running; never skipped): submit a tiny grid, follow it with `mriaug status`, collect, resubmit only what is
missing, a failing task, a task requeued with `scontrol requeue` mid-training that resumes from its checkpoint,
packed tasks, `mriaug synth --profile` as a job, and a `pass_env` secret that reaches the job but no file. The
sbatch scripts themselves, against fakes: test_submit.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import slurm
from mriaug.cli import app
from mriaug.plan import grid as grid_mod
from mriaug.store import results
from tests.slurm_helpers import ROOT, diagnostics, ensure_cluster, squeue, wait_for, write_grid

pytestmark = pytest.mark.slurm
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    ensure_cluster()


def _status(grid: Path, *args: str) -> tuple[int, str]:
    out = runner.invoke(app, ["status", str(grid), *args])
    return out.exit_code, out.output


def _submit(grid: Path, profile: Path = ROOT / "slurm" / "local.toml") -> str:
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile)])
    assert out.exit_code == 0, out.output
    return out.output


def _wait(grid: Path, results_dir: Path, expect: int = 0) -> str:
    code, output = _status(grid, "--wait", "--interval", "1", "--timeout", "150")
    assert code == expect, f"{output}\n{diagnostics(results_dir)}"
    return output


@pytest.mark.timeout(300)
def test_grid_submit_status_collect_resubmit(tmp_path: Path) -> None:
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "tiny.toml", res, scenarios=["1", "2"], augmentations=["none", "hflip"], seeds=2)
    # The documented command, against the real cluster.
    make = subprocess.run(["make", "-s", "-C", str(ROOT), "submit-grid", f"GRID={grid}",
                           "PROFILE=slurm/local.toml"], capture_output=True, text=True, timeout=120)
    assert make.returncode == 0, make.stdout + make.stderr
    array_ids = re.findall(r"submitted array (\d+): cnn, 8 runs", make.stdout)
    assert len(array_ids) == 1, make.stdout
    assert re.search(rf"^{array_ids[0]}_\d+ mriaug-tiny-cnn", squeue(), re.MULTILINE), squeue()

    # While it runs, every snapshot accounts for all 8 runs; tasks are seen queued and running.
    seen: set[str] = set()
    g = grid_mod.load(grid)

    def snapshot() -> bool:
        c = slurm.grid_status(g).counts()
        assert sum(c.values()) == 8 and c["failed"] == c["unsubmitted"] == 0, c
        seen.update(s for s, n in c.items() if n)
        return c["done"] == 8

    wait_for(snapshot, 150, "the grid to finish", res, interval=0.3)
    assert {"queued", "running", "done"} <= seen, seen
    output = _wait(grid, res)
    assert re.search(r"^total\s+8\s+0\s+0\s+0\s+0$", output, re.MULTILINE), output
    assert not (res / ".checkpoints").exists() or not list((res / ".checkpoints").iterdir())

    # The collector ran after the arrays and wrote what `mriaug collect` writes and prints.
    tables = res / "tables"
    assert (tables / "cnn.csv").is_file() and "collector: job" in output
    out = runner.invoke(app, ["collect", str(res), "--out", str(tmp_path / "by-hand")])
    assert out.exit_code == 0, out.output
    assert sorted(f.name for f in tables.iterdir()) == sorted(f.name for f in (tmp_path / "by-hand").iterdir())
    for f in sorted(tables.iterdir()):
        if f.suffix != ".png":  # figures may embed render details; the numbers are in the text tables
            assert f.read_bytes() == (tmp_path / "by-hand" / f.name).read_bytes(), f.name
    collector_log = next(p for p in (res / ".slurm" / "logs").glob("*_log.out") if "cnn — median" in p.read_text())
    assert out.output.split("tables written to")[0].rsplit("\n", 2)[0] in collector_log.read_text()

    # Again: nothing new. Then two results deleted: exactly those two are submitted.
    records = res / ".slurm" / "submissions"
    assert "nothing to submit (all runs done)" in _submit(grid)
    assert len(list(records.glob("*.json"))) == 1
    gone = sorted(res.glob("*.json"))[:2]
    for f in gone:
        f.unlink()
    output = _submit(grid)
    assert "6 done, 0 queued or running, 2 to submit" in output and "cnn, 2 runs" in output
    latest = json.loads(sorted(records.glob("*.json"))[-1].read_text())
    assert set(latest["tasks"]) == {f.stem for f in gone}
    _wait(grid, res)
    assert results.done_ids(res) == {r.run_id for r in g.runs}


@pytest.mark.timeout(240)
def test_failed_task_is_reported_with_its_log(tmp_path: Path) -> None:
    res = tmp_path / "results"
    # The resnet18 run names a weights file that is not there (on a cluster it would be a path inside the
    # container, so submit cannot check it): that task fails, the cnn run succeeds.
    grid = write_grid(tmp_path / "broken.toml", res)
    text = grid.read_text().replace('models = ["cnn"]', 'models = ["cnn", "resnet18"]')
    weights = tmp_path / "no-such-weights.safetensors"
    grid.write_text(text + f'\n[model.resnet18]\narch = "resnet18"\nweights = "{weights}"\n'
                    "epochs = 1\nbatch_size = 32\nresolution = 32\n")
    _submit(grid)
    output = _wait(grid, res, expect=1)
    assert re.search(r"^total\s+1\s+0\s+0\s+1\s+0$", output, re.MULTILINE), output
    failed = next(r for r in grid_mod.load(grid).runs if r.model == "resnet18")
    assert f"{failed.label} [{failed.run_id}] job" in output
    assert "no-such-weights" in output.split("failed runs")[1], output
    log = Path(re.search(r"log: (\S+)", output).group(1))
    assert log.is_file() and "no-such-weights" in log.read_text()
    code, again = _status(grid)  # without --wait: a report, exit 0
    assert code == 0 and "failed runs (1)" in again


@pytest.mark.timeout(300)
def test_interrupted_tasks_resume_from_checkpoint(tmp_path: Path) -> None:
    # The same run three times, into three results folders: one requeued with `scontrol requeue` (no warning,
    # like a node failure), one sent the USR2 warning signal (preemption / time limit: submitit requeues it),
    # one left alone. Both interrupted runs must end with the uninterrupted run's metrics.
    kw = dict(augmentations=["autoaugment"], epochs=30, n_train=1200, size=48)
    names = ("requeued", "signalled", "straight")
    grids = {n: write_grid(tmp_path / f"{n}.toml", tmp_path / n, name=n, **kw) for n in names}
    spec = grid_mod.load(grids["straight"]).runs[0]
    assert {grid_mod.load(g).runs[0].run_id for g in grids.values()} == {spec.run_id}
    for n in names:  # the interrupted ones first: they take the node's two CPUs
        _submit(grids[n])
    tasks = {}
    for n in ("requeued", "signalled"):
        wait_for(results.checkpoint_for(tmp_path / n, spec.run_id).exists, 120, f"the first checkpoint of {n}",
                 tmp_path / n, interval=0.2)
        assert not results.path_for(tmp_path / n, spec.run_id).exists(), "too fast to interrupt: add epochs"
        record = json.loads(next((tmp_path / n / ".slurm" / "submissions").glob("*.json")).read_text())
        tasks[n] = record["tasks"][spec.run_id]
        cmd = ["scontrol", "requeue"] if n == "requeued" else ["scancel", "--signal=USR2"]
        subprocess.run([*cmd, tasks[n]["job_id"]], check=True, timeout=30)
    for n in names:
        _wait(grids[n], tmp_path / n)

    straight = results.read(results.path_for(tmp_path / "straight", spec.run_id))
    assert straight.timings["resumed_from_epoch"] == 0
    for n in ("requeued", "signalled"):
        log = Path(tasks[n]["stderr"]).read_text()
        m = re.search(r"resumed from checkpoint at epoch (\d+)/30", log)
        assert m and int(m.group(1)) >= 1 and "attempt 2" in log, f"{n}:\n{log}"
        r = results.read(results.path_for(tmp_path / n, spec.run_id))
        assert r.timings["resumed_from_epoch"] >= 1, n
        assert r.metrics == straight.metrics, n
        assert [h["train_loss"] for h in r.history] == [h["train_loss"] for h in straight.history], n
        assert not results.checkpoint_for(tmp_path / n, spec.run_id).exists(), n


@pytest.mark.timeout(300)
def test_pool_generation_and_diffusion_training_as_slurm_jobs(tmp_path: Path) -> None:
    """`mriaug synth ... --profile` and `mriaug synth train-diffusion ... --profile` each become one job
    that runs the same command (less --profile) and leaves the same files a local run would."""
    import os
    import sys

    mriaug = str(Path(sys.executable).with_name("mriaug"))
    data = ["--data", "phantom", "-o", "n_train=160", "-o", "n_test=64", "-o", "size=32"]
    profile = ["--profile", str(ROOT / "slurm" / "local.toml")]
    env = dict(os.environ)
    pool, model = tmp_path / "pool", tmp_path / "dm"
    jobs = []
    for argv, out in (
        (["synth", *data, "--out", str(pool), "--classes", "Moderate_Demented", *profile], pool),
        (["synth", "train-diffusion", *data, "--out", str(model), "--steps", "2", "--batch-size", "4",
          "--channels", "8,16", "--layers-per-block", "1", "--no-attention", "--precision", "fp32", *profile], model),
    ):
        r = subprocess.run([mriaug, *argv], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr
        job = re.search(r"submitted job (\d+)", r.stdout)
        assert job, r.stdout
        assert "--profile" not in r.stdout
        jobs.append((job.group(1), out))
    for job_id, out in jobs:
        wait_for(lambda j=job_id: not re.search(rf"^{j}\b", squeue(), re.MULTILINE), 240, f"job {job_id}", out)
        log = (out / ".slurm" / "logs" / f"{job_id}_0_log.err").read_text()
        assert "mriaug job: mriaug synth" in log and "attempt 1" in log, log
    from mriaug.data import pools
    from mriaug.data import sources as data_mod

    ds = data_mod.load(data_mod.DataSpec("phantom", {"n_train": 160, "n_test": 64, "size": 32}))
    p = pools.load(pool, ds)
    assert len(p.labels) == ds.counts("train")["Moderate_Demented"]
    assert (model / "checkpoint.pt").is_file(), f"no diffusion checkpoint in {model}\n{diagnostics(model)}"


@pytest.mark.timeout(420)
def test_packed_tasks_give_every_result_and_resume_skipping_finished_runs(tmp_path: Path) -> None:
    """runs_per_task = 3: a grid of 6 runs goes in as 2 array tasks; task 0 is requeued with `scontrol requeue`
    while training its second run: on restart it skips the finished first run, resumes the second from its
    checkpoint and trains the third; all 6 results arrive."""
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "packed.toml", res, scenarios=["1", "2"], augmentations=["hflip"], seeds=3,
                      epochs=120, n_train=600, size=32)  # a run outlasts the 7-s grace srun gives a requeued step
    profile = tmp_path / "packed-local.toml"
    # A checkpoint every epoch (MRIAUG_CHECKPOINT=epoch): with the default pacing the tiny second run can finish
    # between its first checkpoint and the requeue taking effect, and there is nothing left to resume.
    profile.write_text((ROOT / "slurm" / "local.toml").read_text() + "\n[resources.cnn]\nruns_per_task = 3\n"
                       '\n[env]\nMRIAUG_CHECKPOINT = "epoch"\n')
    dry = runner.invoke(app, ["submit", str(grid), "--profile", str(profile), "--dry-run"])
    assert "cnn: 6 runs in 2 tasks (runs_per_task = 3)" in dry.output, dry.output
    output = _submit(grid, profile)
    assert re.search(r"submitted array (\d+): cnn, 6 runs", output), output
    g = grid_mod.load(grid)
    first, second = g.runs[0], g.runs[1]
    record = json.loads(next((res / ".slurm" / "submissions").glob("*.json")).read_text())
    task0 = record["tasks"][first.run_id]
    assert [record["tasks"][r.run_id]["job_id"] for r in g.runs[:3]] == [task0["job_id"]] * 3
    assert len({record["tasks"][r.run_id]["job_id"] for r in g.runs}) == 2

    # Mid-pack: the first run is done and the second has checkpointed at least one epoch.
    wait_for(results.checkpoint_for(res, second.run_id).exists, 240, "the second run's first checkpoint", res,
             interval=0.2)
    assert results.path_for(res, first.run_id).exists()
    assert not results.path_for(res, second.run_id).exists(), "too fast to interrupt: add epochs"
    first_bytes = results.path_for(res, first.run_id).read_bytes()
    subprocess.run(["scontrol", "requeue", task0["job_id"]], check=True, timeout=30)
    output = _wait(grid, res)
    assert re.search(r"^total\s+6\s+0\s+0\s+0\s+0$", output, re.MULTILINE), output
    assert results.done_ids(res) == {r.run_id for r in g.runs}
    log = Path(task0["stderr"]).read_text()
    assert "attempt 2" in log, log
    assert f"[{first.run_id}] {first.label}: already done, skipped" in log.split("attempt 2")[1], log
    assert re.search(rf"\[{second.run_id}\] {re.escape(second.label)}: resumed from checkpoint at epoch \d+/120", log)
    assert results.path_for(res, first.run_id).read_bytes() == first_bytes  # not trained again
    assert results.read(results.path_for(res, second.run_id)).timings["resumed_from_epoch"] >= 1
    assert not list(res.glob(".slurm/failed/*.json"))


# A profile's pass_env: the secret reaches the job through sbatch's exported environment and is written to
# no file under the results folder (issue 8, item 9). (Until issue 23 in test_slurm_secrets.py.)

SECRET = "sk-proj-ThisIsASecretThatMustNeverBeOnDisk-4242"


@pytest.mark.timeout(300)
def test_pass_env_secret_reaches_the_job_but_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_cluster()
    monkeypatch.setenv("MRIAUG_TEST_SECRET", SECRET)
    profile = tmp_path / "secret.toml"
    # The job proves it saw the variable (by its length, never its value) in its log.
    profile.write_text((ROOT / "slurm" / "local.toml").read_text().replace(
        'pass_env = ["MRIAUG_CACHE"', 'setup = [\'echo "secret length ${#MRIAUG_TEST_SECRET}" >&2\']\n'
        'pass_env = ["MRIAUG_TEST_SECRET", "MRIAUG_CACHE"'))
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "secret.toml.grid", res, n_train=80, name="secret")
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile)])
    assert out.exit_code == 0, out.output
    st = runner.invoke(app, ["status", str(grid), "--wait", "--interval", "1", "--timeout", "200"])
    assert st.exit_code == 0, f"{st.output}\n{diagnostics(res)}"
    assert results.done_ids(res) == {r.run_id for r in grid_mod.load(grid).runs}
    logs = "".join(p.read_text(errors="replace") for p in (res / ".slurm" / "logs").glob("*_log.err"))
    assert f"secret length {len(SECRET)}" in logs, diagnostics(res)
    files = [f for f in res.rglob("*") if f.is_file()]
    assert any(f.name.endswith("_submission.sh") for f in files)
    leaked = [str(f) for f in files if SECRET.encode() in f.read_bytes()]
    assert not leaked, f"the secret is written in {leaked}"
