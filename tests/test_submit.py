"""`mriaug.slurm.submit`: the sbatch scripts a profile gives, and secrets kept out of them. (Until issue 23 in
test_robustness.py and test_slurm.py.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import slurm
from mriaug.cli import app
from mriaug.slurm.submit import setup_lines
from tests.conftest import FAKE_SBATCH
from tests.slurm_helpers import ROOT, write_grid

# The example GPU profile binds /scratch/$USER.
pytestmark = pytest.mark.usefixtures("user")


def test_pass_env_values_never_enter_the_job_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-secret-value-0000-never-on-disk"
    monkeypatch.setenv("MRIAUG_TEST_SECRET", secret)
    p = tmp_path / "p.toml"
    p.write_text('pass_env = ["MRIAUG_TEST_SECRET"]\n[container]\nimage = "/x.sif"\n[resources.default]\ncpus = 1\n')
    prof = slurm.load_profile(p)
    lines = setup_lines(prof, prof.resources["default"])
    assert not any(secret in ln for ln in lines)
    assert 'export APPTAINERENV_MRIAUG_TEST_SECRET="${MRIAUG_TEST_SECRET}"' in lines
    p.write_text('pass_env = ["MRIAUG_TEST_SECRET"]\n[sbatch]\nexport = "NONE"\n')
    with pytest.raises(slurm.ProfileError, match=r"sbatch\.export: 'NONE' would not pass MRIAUG_TEST_SECRET"):
        slurm.load_profile(p)
    assert os.environ["MRIAUG_TEST_SECRET"] == secret


# Submitting against fakes of sbatch, scontrol and squeue on PATH (real submissions: test_cli_submit.py).
# (Until issue 23 in test_slurm.py.)

runner = CliRunner()


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
