"""`mriaug.slurm.profile`: cluster profiles read and checked with file, line and key. (Until issue 23 in
test_robustness.py and test_slurm.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from mriaug import slurm
from tests.slurm_helpers import ROOT

# The example GPU profile binds /scratch/$USER.
pytestmark = pytest.mark.usefixtures("user")


@pytest.mark.parametrize("line, match", [
    ('mem_gb = nan', "must be a finite number above 0, got nan"),
    ('mem_gb = inf', "must be a finite number above 0, got inf"),
    ('time = "1:99:99"', "not a valid time"),
    ('time = "2-25:00:00"', "not a valid time"),
    ('partition = "gpu a100"', "not a Slurm name"),
    ('account = "lab;rm"', "not a Slurm name"),
])
def test_profile_numbers_times_and_names_checked(tmp_path: Path, line: str, match: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(f'[resources.default]\n{line}\n')
    with pytest.raises(slurm.ProfileError, match=rf"p\.toml, line 2: resources\.default\.\w+: .*{match}"):
        slurm.load_profile(p)
    assert slurm.parse_time("1:59:59") == 120 and slurm.parse_time("1-23:00:00") == 47 * 60
    ok = tmp_path / "ok.toml"
    ok.write_text('[resources.default]\npartition = "gpu,gpu-long"\nmem_gb = 8.5\n')
    assert slurm.load_profile(ok).resources["default"].partition == "gpu,gpu-long"


@pytest.mark.parametrize("value,minutes", [(90, 90), ("90", 90), ("1:30:00", 90), ("30:00", 30),
                                           ("2-00:00:00", 2880), ("0:00:30", 1), ("1-12", 2160)])
def test_parse_time(value: object, minutes: int) -> None:
    assert slurm.parse_time(value) == minutes


@pytest.mark.parametrize("value", ["soon", 0, -5, "0:00:00", 1.5])
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        slurm.parse_time(value)


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


def test_unset_variables_in_a_profile_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USER", raising=False)
    with pytest.raises(slurm.ProfileError, match=r"example-gpu.toml, line \d+: container.binds: \$USER in "
                                                 r"'/scratch/\$USER/mriaug-cache:/cache' is not set"):
        slurm.load_profile(ROOT / "slurm" / "example-gpu.toml")
    monkeypatch.setenv("USER", "ada")
    assert "/scratch/ada/pools" in slurm.load_profile(ROOT / "slurm" / "example-gpu.toml").container.binds
