"""Shared by the Slurm tests: start the local test cluster, write tiny grids, bounded waits with diagnostics."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "slurm" / "cluster.sh"


def cluster_up() -> bool:
    """slurmctld answers and the node can run jobs."""
    try:
        if subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode != 0:
            return False
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s in states for s in ("idle", "mixed", "allocated", "completing"))


def ensure_cluster() -> None:
    """Start the single-node cluster when it is not running (as root); never skip: fail with the reason."""
    if cluster_up():
        return
    if os.geteuid() != 0:
        pytest.fail("the local Slurm is not running and starting it needs root: run `sudo make slurm-up`")
    out = subprocess.run([str(CLUSTER), "up"], capture_output=True, text=True, timeout=600)
    if out.returncode != 0 or not cluster_up():
        pytest.fail(f"could not start the local Slurm ({CLUSTER} up):\n{out.stdout}\n{out.stderr}")


def squeue() -> str:
    return subprocess.run(["squeue", "-r", "-o", "%i %j %T %r"], capture_output=True, text=True).stdout


def diagnostics(results_dir: Path | None = None) -> str:
    """squeue and the tail of every Slurm log of a results folder, for failure messages."""
    parts = ["--- squeue", squeue()]
    logs = sorted((results_dir / ".slurm" / "logs").glob("*_log.*")) if results_dir else []
    for log in logs[-12:]:
        parts += [f"--- {log}", "\n".join(log.read_text(errors="replace").splitlines()[-15:])]
    return "\n".join(parts)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, results_dir: Path | None = None,
             interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnostics(results_dir)}")


def write_grid(path: Path, results: Path, *, scenarios: list[str] | None = None, augmentations: list[str] | None = None,
               seeds: int = 1, epochs: int = 1, n_train: int = 160, size: int = 32, pool: str | None = None,
               name: str | None = None) -> Path:
    """A tiny cnn grid on the phantom dataset (seconds per run on one CPU)."""
    lines = [
        f'name = "{name or path.stem}"',
        f'results = "{results}"',
        'models = ["cnn"]',
        f"scenarios = {scenarios or ['1']!r}".replace("'", '"'),
        f"augmentations = {augmentations or ['none']!r}".replace("'", '"'),
        f"seeds = {seeds}",
    ]
    if pool:
        lines.append(f'pool = "{pool}"')
    lines += ["", "[data]", 'source = "phantom"', f"n_train = {n_train}", f"n_test = {max(80, n_train // 4)}",
              f"size = {size}", "", "[model.cnn]", f"epochs = {epochs}", "batch_size = 32", f"resolution = {size}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def packing_profile(tmp_path: Path, extra: str) -> Path:
    """The local profile with `extra` under [resources.cnn] (runs_per_task for packed tasks)."""
    text = (ROOT / "slurm" / "local.toml").read_text() + f"\n[resources.cnn]\n{extra}\n"
    (tmp_path / "packed.toml").write_text(text)
    return tmp_path / "packed.toml"
