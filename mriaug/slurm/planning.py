"""A grid turned into arrays: the runs without a result and not queued or running, grouped by model (each
model has its own resources), packed `runs_per_task` to a task (seed packs kept whole) and split to respect
the cluster's MaxArraySize. Pools are checked first: a task
that cannot find its synthetic images should not wait for a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import DataError, PoolError
from ..plan.grid import Grid, check_pools
from ..plan.spec import RunSpec
from .profile import Profile, Resources, check_profile_for
from .queue import cluster_max_array_size
from .status import grid_status

T = TypeVar("T")


# What one array task trains: units run one after another, each a run or a pack of seeds trained together.
Task = list[list[RunSpec]]


@dataclass
class Array:
    model: str
    tasks: list[Task]
    resources: Resources
    throttle: int | None
    job_id: str | None = None

    @property
    def runs(self) -> list[RunSpec]:
        return [r for task in self.tasks for unit in task for r in unit]

    @property
    def packed(self) -> bool:
        """Whether any task holds more than one run (the submission then records each task's units)."""
        return any(sum(map(len, task)) > 1 for task in self.tasks)


@dataclass
class Plan:
    grid: Grid
    profile: Profile
    results_dir: Path
    done: int
    active: int  # runs queued or running from an earlier submission: not submitted again
    arrays: list[Array]
    max_array_size: int | None
    max_array_source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def to_submit(self) -> int:
        return sum(len(a.runs) for a in self.arrays)

    @property
    def tasks(self) -> int:
        return sum(len(a.tasks) for a in self.arrays)


def chunks(items: Sequence[T], size: int | None) -> list[list[T]]:
    if not size:
        return [list(items)]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def pack_tasks(units: list[list[RunSpec]], runs_per_task: int) -> list[Task]:
    """Consecutive units into tasks of at most `runs_per_task` runs; a seed pack is never split, so a task
    holds at least one unit."""
    tasks: list[Task] = []
    current: Task = []
    for unit in units:
        if current and sum(map(len, current)) + len(unit) > runs_per_task:
            tasks.append(current)
            current = []
        current.append(unit)
    if current:
        tasks.append(current)
    return tasks


def plan(grid: Grid, profile: Profile, *, dry_run: bool = False) -> Plan:
    """What a submission would send: missing runs per model, split into arrays."""
    warnings = check_profile_for(profile, grid, need_image=not dry_run)
    results_dir = grid.results.resolve()
    status = grid_status(grid)
    todo = [r.spec for r in status.runs if r.state in ("failed", "unsubmitted")]
    try:
        check_pools(todo)
    except PoolError as e:
        raise PoolError(f"{grid.path}: {e}") from e
    except DataError as e:
        warnings.append(f"could not check the pool here (the data does not load on this machine: {e})")
    cluster_max = cluster_max_array_size()
    sizes = [(profile.max_array_size, "profile"), (cluster_max, "scontrol show config")]
    size, source = min(((s, src) for s, src in sizes if s), default=(None, "unknown"))
    if cluster_max is None:
        warnings.append("could not read MaxArraySize from `scontrol show config`"
                        + (f"; using the profile's {profile.max_array_size}" if profile.max_array_size else ""))
    arrays = []
    for model in dict.fromkeys(s.model for s in todo):
        resources = profile.for_model(model)
        tasks = pack_tasks(grid.units([s for s in todo if s.model == model]), resources.runs_per_task)
        for part in chunks(tasks, size):  # MaxArraySize counts tasks, not runs
            arrays.append(Array(model, part, resources, profile.array_parallelism))
    return Plan(grid, profile, results_dir, done=status.counts()["done"],
                active=status.counts()["queued"] + status.counts()["running"], arrays=arrays,
                max_array_size=size, max_array_source=source, warnings=warnings)
