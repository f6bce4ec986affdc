"""Where the Slurm side keeps its files under a results folder (RESULTS/.slurm/)."""

from __future__ import annotations

from pathlib import Path


def slurm_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / ".slurm"


def failure_path(results_dir: str | Path, run_id: str) -> Path:
    """A failed task's readable error, so nobody has to unpickle submitit's result files."""
    return slurm_dir(results_dir) / "failed" / f"{run_id}.json"
