"""Where code runs: the device, determinism flags, the git commit and the environment a result records.

torch is imported inside the functions, so modules that only need `git_commit` stay light.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, envlock
from ..errors import DeviceError

if TYPE_CHECKING:
    import torch


def pick_device(requested: str | None = None) -> torch.device:
    """The device asked for ('cpu', 'cuda', 'cuda:1'), or CUDA when there is one; a bad choice is named."""
    import torch

    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except RuntimeError as e:
        raise DeviceError(f"device {requested!r}: not a device name (cpu, cuda, cuda:N)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {requested!r}: no CUDA device on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {requested!r}: mriaug runs on cpu or cuda")
    return dev


def deterministic(dev: torch.device, on: bool = True) -> None:
    """cuDNN and cuBLAS in their deterministic modes (CUBLAS_WORKSPACE_CONFIG is set on import of train), or
    (on=False, `MRIAUG_DETERMINISTIC=0`) cuDNN free to pick its fastest kernels."""
    import torch

    if dev.type == "cuda":
        torch.backends.cudnn.deterministic = on
        torch.backends.cudnn.benchmark = not on
        torch.use_deterministic_algorithms(on, warn_only=True)


def usable_cpus(cpu_max: str | None = None, affinity: set[int] | None = None) -> int:
    """The cores this process may use: its CPU affinity (Slurm's binding, taskset), capped by a cgroup v2 CPU
    quota (`cpu.max`, e.g. "200000 100000" = 2 cores: a container's --cpus), which affinity does not show."""
    cpus = len(affinity if affinity is not None else os.sched_getaffinity(0))
    if cpu_max is None:
        try:
            cpu_max = Path("/sys/fs/cgroup/cpu.max").read_text()
        except OSError:
            cpu_max = "max"
    quota, _, period = cpu_max.strip().partition(" ")
    if quota.isdigit() and period.isdigit() and int(period) > 0:
        cpus = min(cpus, -(-int(quota) // int(period)))  # a part of a core still needs a thread
    return max(1, cpus)


def cpu_threads(workers: int = 1, cpus: int | None = None) -> int:
    """Threads for one of `workers` processes training on this machine: an equal share of the usable cores,
    at least one (two workers each taking every core would make each slower than one alone)."""
    return max(1, (usable_cpus() if cpus is None else cpus) // max(1, workers))


def use_cpu_threads(workers: int = 1) -> int:
    """Set torch's CPU threads to this process's share (`cpu_threads`), unless OMP_NUM_THREADS is set: a user's
    or Slurm's choice (jobs export it from --cpus-per-task) wins. Returns the count in use."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(cpu_threads(workers))
    return torch.get_num_threads()


def git_commit() -> str | None:
    """The commit of the code that runs: MRIAUG_GIT_COMMIT (set by the launcher), else this checkout's."""
    if os.environ.get("MRIAUG_GIT_COMMIT"):
        return os.environ["MRIAUG_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_bf16_native(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags). Without them
    torch emulates bf16 autocast, about 4x slower than fp32 on this project's AMD machines."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def autocast_bf16(precision: str, device: torch.device, cpuinfo: str | None = None) -> bool:
    """Whether a run asking for `precision` trains under bf16 autocast on `device`: only where the device has
    native bf16 (CUDA from Ampere, compute capability 8; CPUs with AVX512-BF16 or AMX), else in fp32, which is
    then faster. The result records what ran (`training.precision`)."""
    if precision != "bf16":
        return False
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return cpu_bf16_native(cpuinfo)
    return True


# Apptainer's own record of an image's labels, at this path inside every image it runs.
IMAGE_LABELS = Path("/.singularity.d/labels.json")
# The label `make container` stamps (containers/install.sh): a digest of the recipe, the lock and the code.
IMAGE_ID_LABEL = "mriaug.image.id"


def container(environ: dict[str, str] | None = None, labels: Path = IMAGE_LABELS) -> dict[str, Any] | None:
    """The Apptainer image this process runs in (Apptainer sets APPTAINER_CONTAINER to its path): the path,
    its identity (the label `make container` stamps; None for an image built otherwise) and when it was built.
    None outside an image."""
    env = os.environ if environ is None else environ
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    if not image:
        return None
    try:
        found = json.loads(labels.read_text())
    except (OSError, ValueError):  # an image without labels: still the path
        found = {}
    if not isinstance(found, dict):
        found = {}
    return {"image": image, "id": found.get(IMAGE_ID_LABEL), "built": found.get("org.label-schema.build-date")}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device, threads, host, commit, lock hash, the container image and Slurm ids: the provenance
    part of a result."""
    import numpy as np
    import timm
    import torch

    return {
        "mriaug": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "timm": timm.__version__, "numpy": np.__version__, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(), "host": socket.gethostname(), "git_commit": git_commit(),
        # The lock the environment was installed from (`make venv`, the container); None: not from a lock.
        "lock": envlock.installed_hash(),
        "container": container(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
