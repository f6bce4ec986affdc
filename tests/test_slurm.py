"""Slurm logic that needs no running cluster: profiles, parsing, array splitting, and the sbatch scripts
a GPU profile produces. Apptainer and GPUs do not exist on these machines, so `sbatch`, `scontrol` and
`squeue` are replaced by fakes on PATH that record the scripts submitit writes (real submissions are
in test_slurm_cluster.py)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import grid as grid_mod
from mriaug import slurm
from mriaug.cli import app
from mriaug.slurm import planning, queue
from tests.slurm_helpers import ROOT, write_grid

runner = CliRunner()


@pytest.mark.parametrize("value,minutes", [(90, 90), ("90", 90), ("1:30:00", 90), ("30:00", 30),
                                           ("2-00:00:00", 2880), ("0:00:30", 1), ("1-12", 2160)])
def test_parse_time(value: object, minutes: int) -> None:
    assert slurm.parse_time(value) == minutes


@pytest.mark.parametrize("value", ["soon", 0, -5, "0:00:00", 1.5])
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        slurm.parse_time(value)


@pytest.fixture(autouse=True)
def _user(monkeypatch: pytest.MonkeyPatch) -> None:
    # The example profile binds /scratch/$USER; a login shell always has USER, CI's environment may not.
    monkeypatch.setenv("USER", os.environ.get("USER") or "tester")


def test_shipped_profiles_load() -> None:
    local = slurm.load_profile(ROOT / "slurm" / "local.toml")
    assert local.container is None and local.for_model("vit").cpus == 1
    assert "MRIAUG_CACHE" in local.pass_env
    gpu = slurm.load_profile(ROOT / "slurm" / "example-gpu.toml")
    assert gpu.container is not None and gpu.container.nv
    assert gpu.for_model("cnn").time_min == 30 and gpu.for_model("cnn").gpus == 1  # inherits the default
    assert gpu.for_model("vit").mem_gb == 48 and gpu.collector.gpus == 0


@pytest.mark.parametrize("text,match", [
    ('[resources.default]\ncpus = 1\ngpu = 1\n', r"p\.toml, line 3: resources\.default\.gpu: unknown key"),
    ('[resources.transformer]\ncpus = 1\n', r"line 1: resources\.transformer: unknown model"),
    ('[resources.cnn]\ntime = "soon"\n', r"line 2: resources\.cnn\.time: must be minutes"),
    ('array_parallelism = 0\n', r"line 1: array_parallelism: must be a positive integer"),
    ('partition = "gpu"\n', r"line 1: partition: unknown key"),
    ('[container]\nbinds = ["/a"]\n', r"container\.image: must name the Apptainer image"),
    ('[container]\nimage = "x.sif"\nbinds = ["relative:/x"]\n', r"line 3: container\.binds: .* absolute"),
])
def test_profile_errors_name_file_line_key(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(slurm.ProfileError, match=match):
        slurm.load_profile(tmp_path / "p.toml")


def test_missing_profile_and_model_without_resources(tmp_path: Path) -> None:
    with pytest.raises(slurm.ProfileError, match="does not exist"):
        slurm.load_profile(tmp_path / "nope.toml")
    (tmp_path / "p.toml").write_text("[resources.vit]\ngpus = 1\n")
    with pytest.raises(slurm.ProfileError, match=r"no \[resources\.cnn\] and no \[resources\.default\]"):
        slurm.load_profile(tmp_path / "p.toml").for_model("cnn")


def test_parsers() -> None:
    assert queue.parse_max_array_size("MaxArraySize            = 1001\nMaxJobCount = 10000\n") == 1001
    assert queue.parse_max_array_size("nothing here") is None
    text = "12_3|RUNNING\n12_[4-6,9%2]|PENDING\n15|PENDING\ngarbage\n"
    assert queue.parse_squeue(text) == {"12_3": "RUNNING", "12_4": "PENDING", "12_5": "PENDING",
                                        "12_6": "PENDING", "12_9": "PENDING", "15": "PENDING"}
    assert [len(c) for c in planning.chunks(list(range(7)), 3)] == [3, 3, 1]
    assert [len(c) for c in planning.chunks(list(range(7)), None)] == [7]


FAKE_SBATCH = """#!/bin/bash
# Records the script it is given and answers like sbatch.
n=$(( $(cat "$FAKE_DIR/count" 2>/dev/null || echo 4240) + 1 ))
echo $n > "$FAKE_DIR/count"
cp "$1" "$FAKE_DIR/job_$n.sh"
echo "Submitted batch job $n"
"""


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch/scontrol/squeue fakes on PATH: MaxArraySize 5, an empty queue, scripts saved to the folder."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": FAKE_SBATCH,
        "scontrol": "#!/bin/bash\necho 'MaxArraySize            = 5'\n",
        "squeue": "#!/bin/bash\nexit 0\n",
        "srun": "#!/bin/bash\nexit 0\n",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    return tmp_path


def _gpu_profile(tmp_path: Path) -> Path:
    """The shipped example GPU profile with its image pointing at a (fake) file that exists."""
    image = tmp_path / "mriaug.sif"
    image.write_bytes(b"not really an image")
    text = (ROOT / "slurm" / "example-gpu.toml").read_text()
    text = re.sub(r'^image = ".*?"', f'image = "{image}"', text, flags=re.MULTILINE)
    (tmp_path / "gpu.toml").write_text(text)
    return tmp_path / "gpu.toml"


def test_gpu_profile_scripts_run_tasks_in_apptainer(fake_slurm: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    grid = write_grid(tmp_path / "g.toml", results, augmentations=["none", "hflip", "autoaugment"], seeds=4)
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(_gpu_profile(tmp_path))])
    assert out.exit_code == 0, out.output
    # 12 runs, MaxArraySize 5 from (fake) scontrol -> arrays of 5 + 5 + 2, then the collector.
    assert "max array size 5 (scontrol show config)" in out.output
    jobs = sorted(fake_slurm.glob("job_*.sh"))
    assert len(jobs) == 4
    arrays, collector = [j.read_text() for j in jobs[:3]], jobs[3].read_text()
    assert [re.search(r"--array=(\S+)", a).group(1) for a in arrays] == ["0-4%5", "0-4%5", "0-1%2"]
    for text in [*arrays, collector]:
        assert "apptainer exec --nv" in text
        assert "--bind=/scratch/" in text and ":/cache" in text  # the profile's binds, $USER expanded
        assert f"--bind={results}" in text
        assert "export HF_HUB_OFFLINE=1" in text and "export APPTAINERENV_HF_HUB_OFFLINE=1" in text
        assert "export MRIAUG_CACHE=/cache/mriaug" in text
        assert str(tmp_path / "mriaug.sif") in text and "#SBATCH --requeue" in text
        assert "module load apptainer" in text and "#SBATCH --mail-type=FAIL" in text
    a = arrays[0]
    for flag in ("--partition=gpu", "--account=my-lab", "--qos=normal", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--mem=16GB", "--time=30", "--signal=USR2@180"):
        assert f"#SBATCH {flag}" in a, flag
    assert "srun --unbuffered" in a and "--cpus-per-task=4 apptainer exec" in a
    assert "#SBATCH --dependency=afterany:4241:4242:4243" in collector
    assert "--gpus-per-node" not in collector and "#SBATCH --partition=cpu" in collector
    record = next((results / ".slurm" / "submissions").glob("*.json"))
    collector_record = json.loads(record.read_text())["collector"]
    assert collector_record["job_id"] == "4244" and "4241:4242:4243" in collector_record["dependency"]
    assert collector_record["tables"] == str(results / "tables")


def test_dry_run_and_missing_image(fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path / "g.toml", tmp_path / "results", scenarios=["1", "2"], seeds=4)
    profile = ROOT / "slurm" / "example-gpu.toml"  # its image does not exist here
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "8 to submit" in out.output and "dry run: nothing submitted" in out.output
    assert re.search(r"cnn\s+8\s+8\s+5 \+ 3\s+%40\s+partition=gpu account=my-lab qos=normal gpus=1 cpus=4", out.output)
    assert "container.image" in out.output  # a warning on a dry run
    assert not list(fake_slurm.glob("job_*.sh"))
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(profile)])
    assert out.exit_code == 2 and "example-gpu.toml: container.image:" in out.output
    assert "make container" in out.output and not list(fake_slurm.glob("job_*.sh"))


def test_status_without_submissions(tmp_path: Path) -> None:
    grid = grid_mod.load(write_grid(tmp_path / "g.toml", tmp_path / "results", seeds=3))
    st = slurm.grid_status(grid)
    assert st.counts() == {"done": 0, "queued": 0, "running": 0, "failed": 0, "unsubmitted": 3}
    assert "3 runs not submitted yet" in slurm.render_status(st)


def test_container_recipe_installs_like_ci() -> None:
    recipe = (ROOT / "containers" / "mriaug.def").read_text()
    install = (ROOT / "containers" / "install.sh").read_text()
    makefile = (ROOT / "Makefile").read_text()
    # `make venv` (and so CI) installs the hashed lock, then mriaug without resolving anything
    assert "$(BIN)/pip install -q --require-hashes --no-deps $(TORCH_INDEX) -r $(LOCK)" in makefile
    assert "$(BIN)/pip install -q --no-deps --no-build-isolation -e ." in makefile
    # the image runs containers/install.sh: the runtime part of the same lock (no dev tools), hashes required
    assert re.search(r"^\s*sh /opt/mriaug/containers/install.sh /opt/mriaug$", recipe, re.MULTILINE)
    assert 'LOCK="$SRC/requirements/runtime.txt"' in install
    assert '/opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r "$LOCK"' in install
    assert re.search(r"^From: debian:bookworm-slim$", recipe, re.MULTILINE)  # Python 3.11, the lock's
    assert "HF_HUB_OFFLINE=1" in recipe
    assert "apptainer build containers/mriaug.sif containers/mriaug.def" in makefile


def test_submit_that_fails_partway_records_what_went_in(fake_slurm: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # The second sbatch call is refused (e.g. a partition the account may not use).
    sbatch = next(p for p in os.environ["PATH"].split(os.pathsep) if p.endswith("fakebin"))
    text = FAKE_SBATCH.replace('echo "Submitted batch job $n"',
                               'if [ $n -ge 4242 ]; then echo "sbatch: error: invalid partition" >&2; exit 1; fi\n'
                               'echo "Submitted batch job $n"')
    Path(sbatch, "sbatch").write_text(text)
    results = tmp_path / "results"
    grid = write_grid(tmp_path / "g.toml", results, augmentations=["none", "hflip", "autoaugment"], seeds=4)
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(_gpu_profile(tmp_path))])
    assert out.exit_code == 2, out.output
    assert "submitting the cnn array (5 runs" in out.output
    assert "arrays already submitted: cnn (job 4241)" in out.output
    record = json.loads(next((results / ".slurm" / "submissions").glob("*.json")).read_text())
    assert [a["job_id"] for a in record["arrays"]] == ["4241"] and len(record["tasks"]) == 5
    assert record["collector"] is None


def test_submit_checks_the_pool_first(fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path / "g.toml", tmp_path / "results", scenarios=["1", "3"], pool=str(tmp_path / "nope"))
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(ROOT / "slurm" / "local.toml"), "--dry-run"])
    assert out.exit_code == 2 and "nope: no such folder" in out.output, out.output
    assert not list(fake_slurm.glob("job_*.sh"))


def test_unset_variables_in_a_profile_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USER", raising=False)
    with pytest.raises(slurm.ProfileError, match=r"example-gpu.toml, line \d+: container.binds: \$USER in "
                                                 r"'/scratch/\$USER/mriaug-cache:/cache' is not set"):
        slurm.load_profile(ROOT / "slurm" / "example-gpu.toml")
    monkeypatch.setenv("USER", "ada")
    assert "/scratch/ada/pools" in slurm.load_profile(ROOT / "slurm" / "example-gpu.toml").container.binds


def _packing_profile(tmp_path: Path, extra: str) -> Path:
    text = (ROOT / "slurm" / "local.toml").read_text() + f"\n[resources.cnn]\n{extra}\n"
    (tmp_path / "packed.toml").write_text(text)
    return tmp_path / "packed.toml"


def test_runs_per_task_packs_tasks_and_dry_run_shows_it(fake_slurm: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path / "g.toml", tmp_path / "results", scenarios=["1", "2"], seeds=7)
    profile = _packing_profile(tmp_path, "runs_per_task = 3")
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
    profile = _packing_profile(tmp_path, "runs_per_task = 8")
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


def test_status_of_a_packed_task_is_per_run(fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "results"
    grid = write_grid(tmp_path / "g.toml", res, seeds=4)
    out = runner.invoke(app, ["submit", str(grid), "--profile", str(_packing_profile(tmp_path, "runs_per_task = 3"))])
    assert out.exit_code == 0 and "submitted array 4241: cnn, 4 runs" in out.output, out.output
    g = grid_mod.load(grid)
    record = json.loads(next((res / ".slurm" / "submissions").glob("*.json")).read_text())
    # Two tasks (3 + 1 runs); a task's runs share its job id.
    assert [record["tasks"][r.run_id]["job_id"] for r in g.runs] == ["4241_0"] * 3 + ["4241_1"]
    assert record["arrays"][0]["runs"] == 4 and record["arrays"][0]["tasks"] == 2
    first, second, third = g.runs[:3]
    # The first run failed (the task went on), the second trains, the third waits in the task.
    from mriaug import atomic
    from mriaug.slurm.paths import failure_path

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
