"""A grid turned into arrays: the runs without a result and not queued or running, grouped by model (each
model has its own resources) and split to respect the cluster's MaxArraySize. Pools are checked first: a task
that cannot find its synthetic images should not wait for a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, PoolError
from ..grid import Grid, check_pools
from ..spec import RunSpec
from .profile import Profile, Resources, check_profile_for
from .queue import cluster_max_array_size
from .status import grid_status


@dataclass
class Array:
    model: str
    runs: list[RunSpec]
    resources: Resources
    throttle: int | None
    job_id: str | None = None


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


def chunks(items: Sequence[RunSpec], size: int | None) -> list[list[RunSpec]]:
    if not size:
        return [list(items)]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


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
        runs = [s for s in todo if s.model == model]
        for part in chunks(runs, size):
            arrays.append(Array(model, part, profile.for_model(model), profile.array_parallelism))
    return Plan(grid, profile, results_dir, done=status.counts()["done"],
                active=status.counts()["queued"] + status.counts()["running"], arrays=arrays,
                max_array_size=size, max_array_source=source, warnings=warnings)
