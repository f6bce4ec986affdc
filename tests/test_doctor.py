"""`mriaug doctor`: what it reads from Slurm's output (by hand), and against the real single-node Slurm a good
profile passes while a wrong partition, a cold cache and an unwritable results folder each fail with their
own line; the node checks run through the profile's container command (a stand-in for Apptainer, which
cannot be installed here). `mriaug status` points at the doctor when runs failed and none finished."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.plan import grid as grid_mod
from mriaug.slurm import Resources, doctor, load_profile
from mriaug.slurm.status import GridStatus, RunState, doctor_hint, render_status
from tests.slurm_helpers import ROOT, ensure_cluster, write_grid

runner = CliRunner()
LOCAL = ROOT / "slurm" / "local.toml"


# ---------------------------------------------------------------- by hand, no cluster

def test_partitions_from_sinfo() -> None:
    text = "debug*|up\ngpu|down\ngpu|down\nlong|up\n"
    assert doctor.parse_partitions(text) == {"debug": "up", "gpu": "down", "long": "up"}
    assert doctor.default_partition(text) == "debug"
    assert doctor.default_partition("gpu|up\n") is None


def test_sbatch_test_only_arguments_match_the_resources() -> None:
    res = Resources(partition="gpu", account="lab", qos="normal", gpus=2, cpus=8, mem_gb=31.5, time_min=90,
                    constraint="a100")
    assert doctor.test_only_args(res) == [
        "--cpus-per-task=8", "--time=90", "--nodes=1", "--ntasks=1", "--partition=gpu", "--account=lab",
        "--qos=normal", "--constraint=a100", "--gpus-per-node=2", "--mem=32256M"]  # 31.5 * 1024
    assert doctor.test_only_args(Resources()) == ["--cpus-per-task=1", "--time=60", "--nodes=1", "--ntasks=1"]


def test_slurm_error_keeps_the_reason() -> None:
    out = "sbatch: warning: something\nsbatch: error: Batch job submission failed: Invalid qos specification\n"
    assert doctor.slurm_error(out) == "Batch job submission failed: Invalid qos specification"
    assert doctor.slurm_error("just this\n") == "just this"
    assert doctor.slurm_error("") == "no output"


def test_clock_against_a_tenth_of_the_lock_timeout() -> None:
    c = doctor.clock_check(0.5, -1.0, 300, "n1")
    assert c.ok and "login +0.50 s, node n1 -1.00 s" in c.detail and "(login - node +1.50 s)" in c.detail
    # 25 s against the filesystem on the node, -10 s on the login node: 35 s apart, over 300 / 10.
    bad = doctor.clock_check(-10.0, 25.0, 300, "n1")
    assert not bad.ok and "(login - node -35.00 s)" in bad.detail
    assert "raise MRIAUG_LOCK_TIMEOUT above 350 s" in bad.fix
    assert doctor.clock_check(0.0, 29.9, 300, "n1").ok and not doctor.clock_check(0.0, 30.1, 300, "n1").ok


def test_array_sizes_against_max_array_size(tmp_path: Path) -> None:
    g = grid_mod.load(write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["1", "2"],
                                 augmentations=["none", "hflip"], seeds=5))  # 20 cnn runs
    prof = load_profile(LOCAL)
    # MaxArraySize 16: indices 0..15, so 16 tasks per array at most: 20 tasks in 2 arrays.
    assert doctor.array_check(prof, g, 16).detail == "MaxArraySize 16 (arrays of up to 16 tasks): cnn 20 tasks " \
                                                     "in 2 arrays"
    assert doctor.array_check(prof, g, 20).detail == "MaxArraySize 20 (arrays of up to 20 tasks): cnn 20 tasks"
    prof.max_array_size = 7  # the profile's own cap: 3 arrays
    assert doctor.array_check(prof, g, 20).detail.endswith("(arrays of up to 7 tasks): cnn 20 tasks in 3 arrays")
    assert not doctor.array_check(prof, g, None).ok


def test_array_task_count_rounds_a_remainder_up(tmp_path: Path) -> None:
    from dataclasses import replace

    # 7 cnn runs at 3 runs per task: tasks of 3, 3 and 1, so 3 tasks (7 // 3 = 2 would leave a run out).
    g = grid_mod.load(write_grid(tmp_path / "g.toml", tmp_path / "res", seeds=7))
    prof = load_profile(LOCAL)
    prof.resources["cnn"] = replace(prof.for_model("cnn"), runs_per_task=3)
    assert doctor.array_check(prof, g, 100).detail == "MaxArraySize 100 (arrays of up to 100 tasks): cnn 3 tasks"
    # ... and 3 tasks in arrays of at most 2: 2 arrays.
    assert doctor.array_check(prof, g, 2).detail == "MaxArraySize 2 (arrays of up to 2 tasks): cnn 3 tasks in 2 arrays"
    prof.resources["cnn"] = replace(prof.for_model("cnn"), runs_per_task=7)  # no remainder: one task
    assert doctor.array_check(prof, g, 100).detail.endswith("cnn 1 tasks")


def test_a_failing_doctor_leaves_no_folders_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No Slurm answers (scontrol not found): the login checks still create and probe the grid's results and pool
    # folders, and the doctor removes them again; a folder that was there before is left alone.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor, "run_command", lambda *a, **k: None)
    (tmp_path / "kept").mkdir()
    grid = write_grid(tmp_path / "g.toml", tmp_path / "results" / "g", pool=str(tmp_path / "kept" / "pools" / "p"))
    r = runner.invoke(app, ["doctor", "--profile", str(LOCAL), "--grid", str(grid)])
    assert r.exit_code == 1, r.output
    assert "PROBLEM slurm: the controller does not answer (scontrol not found)" in r.output
    assert f"ok      results (login): {tmp_path / 'results' / 'g'} writable" in r.output
    assert f"ok      pool (login): {tmp_path / 'kept' / 'pools' / 'p'} writable" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.toml", "kept"]
    assert not list((tmp_path / "kept").iterdir())
    # A results folder with something in it is kept (a run may have written there meanwhile).
    made = doctor.missing_folders(tmp_path / "a" / "b")
    assert made == [tmp_path / "a", tmp_path / "a" / "b"]
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.json").write_text("{}")
    doctor.remove_made(made)
    assert (tmp_path / "a" / "x.json").exists() and not (tmp_path / "a" / "b").exists()


def test_check_lines() -> None:
    assert doctor.Check("gpus", True, "2 visible").line() == "ok      gpus: 2 visible"
    assert doctor.Check("clock", False, "off", "fix NTP").line() == "PROBLEM clock: off\n        -> fix NTP"


def test_gpu_probe_counts_names_and_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU line's logic on a stand-in torch.cuda (no GPU on these machines; on a cluster the job runs it)."""
    import torch

    probe = doctor.NodeProbe.gpus
    assert probe(0, "n1").ok and probe(0, "n1").detail == "none asked for (gpus = 0); n1 trains on its CPUs"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    none = probe(1, "n1")
    assert not none.ok and none.detail.startswith("1 asked for, but torch (CUDA ") and "--nv (nv = true)" in none.fix

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: ["NVIDIA H200", "Tesla K80"][i])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: [(9, 0), (3, 7)][i])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_80", "sm_90", "sm_100"])
    monkeypatch.setattr(doctor, "run_command", lambda *a, **k: subprocess.CompletedProcess(a, 0, "580.65.06\n", ""))
    mixed = probe(2, "n1")
    assert not mixed.ok
    assert mixed.detail == (f"2 visible on n1: NVIDIA H200 (sm_90), Tesla K80 (sm_37); driver 580.65.06, torch "
                            f"CUDA runtime {torch.version.cuda}; Tesla K80 is sm_37, torch has kernels for sm_80 sm_90 "
                            "sm_100")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert probe(1, "n1").ok
    short = probe(4, "n1")
    assert not short.ok and short.detail.endswith("; 4 asked for")


def test_status_points_at_the_doctor_when_nothing_finished(tmp_path: Path) -> None:
    g = grid_mod.load(write_grid(tmp_path / "g.toml", tmp_path / "res", seeds=2))
    failed = [RunState(s, "failed", "7_0", "log", "boom") for s in g.runs]
    st = GridStatus(g, failed, True, None, profile="/x/slurm/site.toml")
    hint = f"2 runs failed and none has finished: check the cluster with `mriaug doctor --profile /x/slurm/site.toml " \
           f"--grid {g.path}` before resubmitting"
    assert doctor_hint(st) == hint and hint in render_status(st)
    one_done = GridStatus(g, [RunState(g.runs[0], "done"), failed[1]], True, None)
    assert doctor_hint(one_done) is None and "mriaug doctor" not in render_status(one_done)
    assert doctor_hint(GridStatus(g, [RunState(s, "queued") for s in g.runs], True, None)) is None


# ---------------------------------------------------------------- against the local Slurm

@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ensure_cluster()
    monkeypatch.chdir(tmp_path)  # the doctor writes its job's folder where it runs, as submit does
    return tmp_path


def _doctor(*args: str) -> tuple[int, list[str], str]:
    out = runner.invoke(app, ["doctor", *args, "--timeout", "240"])
    return out.exit_code, [ln for ln in out.output.splitlines() if ln.startswith(("ok ", "PROBLEM "))], out.output


def _profile(tmp_path: Path, old: str, new: str, extra: str = "") -> Path:
    text = LOCAL.read_text()
    assert old in text
    path = tmp_path / "profile.toml"
    path.write_text(text.replace(old, new) + extra)
    return path


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_the_local_profile_passes(cluster: Path) -> None:
    code, lines, output = _doctor("--profile", str(LOCAL))
    assert code == 0, output
    names = [re.match(r"ok\s+([^:]+):", ln).group(1) for ln in lines]  # type: ignore[union-attr]
    assert names == ["slurm", "partition", "resources default", "resources collector", "array size", "container",
                     "lock", "results (login)", "free space (login)", "image", "gpus", "cache", "results (node)",
                     "free space (node)", "clock"], output
    assert output.rstrip().endswith(f"all {len(lines)} checks ok")
    assert not (cluster / ".mriaug-doctor").exists() or not any((cluster / ".mriaug-doctor").iterdir())


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_a_good_profile_and_grid_pass(cluster: Path) -> None:
    pool = cluster / "pool"
    grid = write_grid(cluster / "g.toml", cluster / "results", pool=str(pool))
    code, lines, output = _doctor("--profile", str(LOCAL), "--grid", str(grid))
    assert code == 0, output
    assert f"ok      results (node): {cluster / 'results'} writable from " in output
    assert f"ok      pool (node): {pool} writable from " in output
    assert "ok      cache: data: phantom data is generated on " in output
    assert "ok      cache: weights cnn: trained from scratch" in output
    assert "array size: MaxArraySize" in output and "cnn 1 tasks" in output


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_a_partition_that_does_not_exist_fails_on_its_own_line(cluster: Path) -> None:
    prof = _profile(cluster, '[resources.default]\npartition = "debug"',
                    '[resources.default]\npartition = "nosuchpart"')
    code, lines, output = _doctor("--profile", str(prof))
    assert code == 1, output
    naming = [ln for ln in output.splitlines() if "nosuchpart" in ln]
    assert naming == [f"PROBLEM partition: partition 'nosuchpart' named in {prof} (resources: default) does not "
                      "exist on this cluster"], output
    assert "-> use one of: debug" in output
    assert "PROBLEM job: not submitted: Slurm would refuse it" in output
    assert "ok      partition: debug is up (resources: collector)" in output  # the collector's is fine


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_a_cold_cache_fails_on_its_own_lines(cluster: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty caches, passed to the job (the profile's pass_env): the hub dataset and ResNet-18's pretrained
    # weights are not there, and the job is offline.
    for var in ("MRIAUG_CACHE", "HF_HOME"):
        (cluster / var).mkdir()
        monkeypatch.setenv(var, str(cluster / var))
    grid = write_grid(cluster / "g.toml", cluster / "results")
    text = grid.read_text()
    text = re.sub(r"\[data\]\n(.*\n)*?\n", '[data]\nsource = "hf:Falah/Alzheimer_MRI"\nsize = 32\n\n', text)
    text = text.replace('models = ["cnn"]', 'models = ["cnn", "resnet18"]')
    grid.write_text(text + '\n[model.resnet18]\narch = "resnet18"\npretrained = true\nepochs = 1\nbatch_size = 32\n'
                    "resolution = 32\n")
    code, lines, output = _doctor("--profile", str(LOCAL), "--grid", str(grid))
    assert code == 1, output
    problems = [ln for ln in lines if ln.startswith("PROBLEM")]
    assert [re.match(r"PROBLEM ([^:]+: [^:]+):", ln).group(1) for ln in problems] == [  # type: ignore[union-attr]
        "cache: data", "cache: weights resnet18"], output
    assert "hf:Falah/Alzheimer_MRI does not load on" in problems[0] and "HF_HUB_OFFLINE=1" in problems[0]
    assert f"-> run `mriaug prefetch --grid {grid}` on a machine with internet" in output
    assert "ok      cache: weights cnn: trained from scratch" in output


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody can write, root included (the tests run as root, which file modes do not stop)."""
    ro = tmp_path / "readonly"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_an_unwritable_results_folder_fails_on_its_own_lines(cluster: Path, read_only: Path) -> None:
    results = read_only / "results"
    grid = write_grid(cluster / "g.toml", results)
    code, lines, output = _doctor("--profile", str(LOCAL), "--grid", str(grid))
    assert code == 1, output
    problems = [ln for ln in lines if ln.startswith("PROBLEM")]
    assert [ln.split(":")[0] for ln in problems] == ["PROBLEM results (login)", "PROBLEM results (node)",
                                                     "PROBLEM clock"], output
    assert problems[1].startswith(f"PROBLEM results (node): {results} is not writable from ")
    assert "Read-only file system" in problems[1]
    assert "-> make the results folder writable from the compute nodes" in output


def _container_profile(folder: Path, python: str) -> tuple[Path, Path, Path]:
    """A profile with [container] whose `apptainer` is a stand-in (Apptainer cannot be installed here): it
    records its arguments and runs the command after the image without a container."""
    calls = folder / "apptainer.calls"
    stand_in = folder / "apptainer"
    stand_in.write_text(f"""#!/bin/sh
echo "$@" >> {calls}
shift  # exec
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; *) shift; break ;; esac; done  # options, then the image
exec "$@"
""")
    stand_in.chmod(0o755)
    image = folder / "mriaug.sif"
    image.write_bytes(b"stand-in image")
    prof = _profile(folder, "pass_env", "pass_env", f'\n[container]\nimage = "{image}"\napptainer = "{stand_in}"\n'
                    f'python = "{python}"\nbinds = ["{os.environ["MRIAUG_CACHE"]}"]\n')
    return prof, image, calls


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_the_node_checks_run_through_the_container_command(cluster: Path) -> None:
    """With [container], the job runs `APPTAINER exec --nv --bind=... IMAGE PYTHON ...`."""
    prof, image, calls = _container_profile(cluster, sys.executable)
    code, lines, output = _doctor("--profile", str(prof))
    assert code == 0, output
    assert f"ok      container: image {image}" in output
    call = calls.read_text()
    assert call.startswith(f"exec --nv --bind={os.environ['MRIAUG_CACHE']} --bind={cluster} ")
    assert f" {image} {sys.executable} -u -m submitit.core._submit " in call


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_an_image_without_mriaug_fails_on_the_job_line(cluster: Path) -> None:
    # The image's python without its site-packages: what an image that lacks the packages looks like.
    python = cluster / "image-python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    prof, _, _ = _container_profile(cluster, str(python))
    code, lines, output = _doctor("--profile", str(prof))
    assert code == 1, output
    problems = [ln for ln in lines if ln.startswith("PROBLEM")]
    assert len(problems) == 1 and problems[0].startswith("PROBLEM job: job "), output
    assert "ended on the node without running its checks:" in problems[0] and "No module named" in problems[0]
    assert "-> the image or environment does not start mriaug there" in output
    assert list((cluster / ".mriaug-doctor").glob("*/*_log.err")), "the job's log is kept when it failed"


@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_status_and_submit_suggest_the_doctor_when_the_first_tasks_fail(cluster: Path) -> None:
    # Every run names a weights file that is not there: every task fails, none finishes.
    res = cluster / "results"
    grid = write_grid(cluster / "broken.toml", res)
    grid.write_text(grid.read_text().replace('models = ["cnn"]', 'models = ["resnet18"]')
                    + f'\n[model.resnet18]\narch = "resnet18"\nweights = "{cluster / "nope.safetensors"}"\n'
                    "epochs = 1\nbatch_size = 32\nresolution = 32\n")
    hint = f"1 run failed and none has finished: check the cluster with `mriaug doctor --profile {LOCAL} --grid {grid}`"
    first = runner.invoke(app, ["submit", str(grid), "--profile", str(LOCAL)])
    assert first.exit_code == 0 and "mriaug doctor" not in first.output, first.output
    waited = runner.invoke(app, ["status", str(grid), "--wait", "--interval", "1", "--timeout", "150"])
    assert waited.exit_code == 1 and hint in waited.output, waited.output
    again = runner.invoke(app, ["submit", str(grid), "--profile", str(LOCAL), "--dry-run"])
    assert again.exit_code == 0 and f"warning: {hint}" in again.output, again.output


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_gpus_the_partition_does_not_have_fail_on_the_resources_line(cluster: Path) -> None:
    # The local node has no GPUs (no GRES): Slurm refuses the request, so does the doctor, on that line.
    prof = _profile(cluster, 'partition = "debug"\ncpus = 1\ntime = "00:20:00"',
                    'partition = "debug"\ncpus = 1\ntime = "00:20:00"\ngpus = 1')
    code, lines, output = _doctor("--profile", str(prof))
    assert code == 1, output
    problems = [ln for ln in lines if ln.startswith("PROBLEM")]
    assert len(problems) == 2, output
    assert problems[0].startswith("PROBLEM resources default: Slurm refuses partition=debug gpus=1 cpus=1 "), output
    assert problems[1].startswith("PROBLEM job: not submitted"), output
    assert "ok      resources collector: Slurm accepts partition=debug gpus=0" in output


def test_an_openai_pools_model_with_a_shutdown_date_is_warned_about(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime
    import json

    from tests.fake_openai_server import FakeImageAPI

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    grid = write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["1", "3"])
    made, fresh = tmp_path / "pools" / "made", tmp_path / "pools" / "fresh"
    grid.write_text(grid.read_text() + f'\n[pool]\nopenai = "{fresh}"\nold = "{made}"\n')
    made.mkdir(parents=True)
    (made / "pool.json").write_text(json.dumps({"generator": "openai", "generator_params": {"model": "gpt-image-1.5"}}))
    g = grid_mod.load(grid)
    day = datetime.date(2026, 11, 26)
    # Without a key: the dates OpenAI's deprecations page announced. The made pool's model (pool.json) shuts down
    # in 5 days: ok, with the warning; the pool named openai, not made yet, gets the default model (no date).
    checks = doctor.openai_checks(g, today=day)
    assert [c.line() for c in checks] == [
        "ok      openai model: gpt-image-1.5 (pool old): warning: OpenAI model 'gpt-image-1.5' shuts down on "
        "2026-12-01 (5 days from now): requests to it fail from then on, and a pool cannot be extended with it; "
        "choose a current model with -s model=NAME (GET /v1/models lists them)",
        "ok      openai model: gpt-image-2 (pool openai) has no shutdown date"]
    # After the date: a problem.
    late = doctor.openai_checks(g, today=datetime.date(2026, 12, 6))[0]
    assert not late.ok and "gpt-image-1.5 (pool old): OpenAI model 'gpt-image-1.5' shut down on 2026-12-01" in \
        late.detail and "remake the pool with a current model" in late.fix
    # With a key, the server's shutdown_date (GET /v1/models/{model}) decides.
    with FakeImageAPI("sk-doctor-0000000000", shutdown={"gpt-image-2": "2027-01-15"}) as api:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-doctor-0000000000")
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        lines = [c.line() for c in doctor.openai_checks(g, today=day)]
        assert "ok      openai model: gpt-image-2 (pool openai): warning: OpenAI model 'gpt-image-2' shuts down on " \
               "2027-01-15 (50 days from now)" in lines[1]
    # A grid without an openai pool has no such line; the doctor prints it among its login checks.
    assert doctor.openai_checks(grid_mod.load(write_grid(tmp_path / "h.toml", tmp_path / "res2")), today=day) == []
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(doctor, "run_command", lambda *a, **k: None)
    r = runner.invoke(app, ["doctor", "--profile", str(LOCAL), "--grid", str(grid)])
    assert "openai model: gpt-image-1.5 (pool old)" in r.output
    assert "openai model: gpt-image-2 (pool openai)" in r.output
