"""Shared fixtures: every test session gets its own data cache, and small data made here."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mriaug.data import sources as data
from mriaug.data.sources import DataSpec
from mriaug.generators import synth
from mriaug.plan.hparams import resolve as model_hparams
from tests.slurm_helpers import ROOT

# The real dataset beside the checkout (../shared/data); MRIAUG_REAL_DATA points elsewhere (the test of the
# CI rule below uses it to name a folder that is not there).
REAL_DATA = Path(os.environ.get("MRIAUG_REAL_DATA")
                 or Path(__file__).resolve().parents[2] / "shared" / "data" / "alzheimer_mri")


def in_ci() -> bool:
    """CI sets CI=true: there a test that needs the real data fails when it is missing instead of skipping."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_real_data() -> None:
    """Skip without the real dataset on a developer's machine; fail loudly in CI, where it must be."""
    if REAL_DATA.is_dir():
        return
    if in_ci():
        pytest.fail(f"CI is set but the real dataset is not at {REAL_DATA}; lay out ../shared/data (or set "
                    "MRIAUG_REAL_DATA) so these tests run", pytrace=False)
    pytest.skip(f"real dataset not present at {REAL_DATA}")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Never touch the user's cache; Slurm jobs submitted by tests inherit this variable.
    cache = tmp_path_factory.mktemp("mriaug-cache")
    os.environ["MRIAUG_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return cache


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One CPU thread, so a tolerance between a pack and its separate runs measures which seed's numbers are
    used, not two summation orders (tests/test_pack_vs_single.py)."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def phantom_spec() -> DataSpec:
    return DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})


@pytest.fixture
def ds(phantom_spec: DataSpec) -> data.Dataset:
    """The phantom dataset of `phantom_spec`, loaded."""
    return data.load(phantom_spec)


def tiny_hparams(model: str = "cnn", **over: object) -> dict:
    base = {"epochs": 2, "batch_size": 32, "resolution": 32, "lr": 2e-3}
    if model == "vit":
        base.update(arch="vit_tiny_patch16_224", pretrained=False)
    if model == "resnet18":
        base.update(arch="resnet18", pretrained=False)
    base.update(over)
    return model_hparams(model, base)


@pytest.fixture
def pool_dir(ds: data.Dataset, tmp_path: Path) -> Path:
    """A transform pool of `ds`'s Mild and Moderate training images."""
    out = tmp_path / "pool"
    synth.make_pool(ds, out, "transform", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False)
    return out


def strict_json(path: Path) -> dict:
    """A JSON file read with NaN and Infinity refused: what a result file must be."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch) -> None:
    """USER set: the example GPU profile binds /scratch/$USER."""
    # A login shell always has USER, CI's environment may not.
    monkeypatch.setenv("USER", os.environ.get("USER") or "tester")


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


def mriaug_env(**extra: str) -> dict[str, str]:
    """This environment for an `mriaug` process started from the checkout (no OpenAI server of the caller's)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def mriaug_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`mriaug ARGS` started as its own process, as a second user or worker would."""
    return subprocess.Popen([sys.executable, "-c", "from mriaug.cli import main; main()", *args], cwd=ROOT,
                            env=env or mriaug_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str, str]]:
    """Each process's exit code, stdout and stderr, waited for in turn."""
    out = []
    for p in procs:
        so, se = p.communicate(timeout=timeout)
        out.append((p.returncode, so, se))
    return out
