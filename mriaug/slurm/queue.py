"""What the cluster says: squeue states of our jobs and the controller's MaxArraySize (no accounting needed)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence

QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                 "SUSPENDED", "RESIZING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# What `mriaug status` counts per run (ours, not Slurm's).
STATES = ("done", "queued", "running", "failed", "unsubmitted")


def run_command(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def parse_max_array_size(config_text: str) -> int | None:
    m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(m.group(1)) if m else None


def cluster_max_array_size() -> int | None:
    """MaxArraySize from `scontrol show config`; None when scontrol cannot tell."""
    out = run_command(["scontrol", "show", "config"])
    return parse_max_array_size(out.stdout) if out and out.returncode == 0 else None


def parse_squeue(text: str) -> dict[str, str]:
    """Lines 'JOBID|STATE' (squeue -r -o '%i|%T') -> {"123_4": "RUNNING"}; compact ranges are expanded."""
    states = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job, state = (s.strip() for s in line.split("|", 1))
        m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job)
        if not m:
            states[job] = state
            continue
        for part in m.group(2).split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                states[f"{m.group(1)}_{i}"] = state
    return states


def squeue_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """Slurm state of every task of these jobs still known to squeue; None when squeue cannot answer."""
    ids = sorted({j.split("_")[0] for j in job_ids})
    if not ids:
        return {}
    out = run_command(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)])
    if out is None:
        return None
    if out.returncode != 0:
        # Every id already purged from the controller's memory: nothing of ours is in the queue.
        return {} if "Invalid job id" in out.stderr else None
    return parse_squeue(out.stdout)
