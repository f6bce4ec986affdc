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
    assert '"collector"' in record.read_text()


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
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -e '.[dev]'" in makefile  # how `make venv` (and CI) install the package
    assert re.search(r"^\s*/opt/venv/bin/pip install --no-cache-dir -e '\.\[dev\]'$", recipe, re.MULTILINE)
    assert re.search(r"^From: nvidia/cuda:\S+", recipe, re.MULTILINE)
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
