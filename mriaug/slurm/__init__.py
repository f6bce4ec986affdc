"""Everything that knows about Slurm, submitit and Apptainer; nothing below this package does.

- `profile`: cluster profiles (`slurm/*.toml`) as data, validated with file, line and key.
- `planning`: a grid's missing runs as arrays per model, packed into tasks, split to the cluster's
  MaxArraySize, pools checked.
- `submit`: the arrays and a collector job through submitit, recorded under RESULTS/.slurm/.
- `tasks`: what runs on the node (an array task's units, one run or `runs_per_task` packed, a one-off command,
  the collector).
- `status`: every run's state from the results folder, squeue and the records (no accounting needed).
- `queue`: squeue and `scontrol show config`, parsed by pure functions.

A task that is requeued (time-limit signal, preemption, `scontrol requeue`, node failure) starts again
and `train.run_unit` resumes from the checkpoint on disk, so the resume never depends on a signal.
"""

from ..errors import ProfileError, SlurmError
from .planning import Array, Plan, plan
from .profile import COMMAND_JOBS, Container, Profile, Resources, load_profile, parse_time
from .queue import STATES
from .status import GridStatus, RunState, grid_status, render_status, wait
from .submit import Submitted, executor, submit, submit_command
from .tasks import CommandTask, PackTask, RunTask, TrainTask, collect_task

__all__ = [
    "COMMAND_JOBS", "STATES", "Array", "CommandTask", "Container", "GridStatus", "PackTask", "Plan", "Profile",
    "ProfileError", "Resources", "RunState", "RunTask", "SlurmError", "Submitted", "TrainTask", "collect_task",
    "executor",
    "grid_status", "load_profile", "parse_time", "plan", "render_status", "submit", "submit_command", "wait",
]
