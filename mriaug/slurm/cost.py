"""What a planned grid costs on a cluster (`mriaug plan`): its runs in array tasks as `mriaug submit` packs them
(a task per run, or the profile's `runs_per_task`, seed packs whole, arrays cut at the profile's max_array_size),
hours summed from each run's seconds, and with a profile the wall time at its array throttle."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from ..plan.grid import Grid
from ..plan.spec import RunSpec
from .planning import Array, Task, chunks, pack_tasks
from .profile import Profile, Resources

Seconds = Callable[[RunSpec], float | None]  # a run's seconds, None where there is no figure


@dataclass(frozen=True)
class Cost:
    runs: int
    tasks: int
    arrays: int
    runs_per_task: dict[str, int]  # per model
    cpu_hours: float | None  # the runs' measured seconds, one run after another (no start-up counted)
    gpu_hours: float | None  # the runs' estimated GPU seconds plus a start-up per task
    wall_hours: float | None = None  # with a profile: every array at once, each at its throttle
    wall_basis: dict[str, str] = field(default_factory=dict)  # model -> which seconds its tasks take there
    throttle: int | None = None


def arrays_of(g: Grid, profile: Profile | None) -> list[Array]:
    """Every run of the grid in arrays per model, as `planning.plan` makes them for runs none of which is done."""
    out = []
    for model in dict.fromkeys(r.model for r in g.runs):
        res = profile.for_model(model) if profile else Resources()
        tasks = pack_tasks(g.units([r for r in g.runs if r.model == model]), res.runs_per_task)
        for part in chunks(tasks, profile.max_array_size if profile else None):
            out.append(Array(model, part, res, profile.array_parallelism if profile else None))
    return out


def makespan(durations: list[float], slots: int | None) -> float:
    """When the last of the tasks ends, each started in order on the first of `slots` to be free (Slurm's "%N"
    throttle); every one at once without a throttle."""
    if not durations:
        return 0.0
    if not slots:
        return max(durations)
    free = [0.0] * min(slots, len(durations))
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def _task_seconds(task: Task, seconds: Seconds, startup_s: float) -> float | None:
    values = [seconds(r) for unit in task for r in unit]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None) + startup_s


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None) / 3600


def cost(g: Grid, profile: Profile | None, cpu: Seconds, gpu: Seconds, gpu_task_startup_s: float) -> Cost:
    """Runs, tasks and hours of every run of `g`: CPU-hours from `cpu` (a run's measured seconds), GPU-hours from
    `gpu` (estimated) plus `gpu_task_startup_s` per task; with a profile, the wall time of its arrays, a model's
    tasks taking GPU seconds where its resources ask for a GPU and `cpu` seconds where they do not."""
    arrays = arrays_of(g, profile)
    tasks = [t for a in arrays for t in a.tasks]
    cpu_hours = _total([cpu(r) for r in g.runs])
    gpu_hours = _total([_task_seconds(t, gpu, gpu_task_startup_s) for t in tasks])
    wall: float | None = None
    basis: dict[str, str] = {}
    if profile is not None:
        spans: list[float | None] = []
        for a in arrays:
            on_gpu = a.resources.gpus > 0
            basis[a.model] = "GPU estimate" if on_gpu else "measured seconds"
            durations = [_task_seconds(t, gpu if on_gpu else cpu, gpu_task_startup_s if on_gpu else 0.0)
                         for t in a.tasks]
            spans.append(None if any(d is None for d in durations)
                         else makespan([d for d in durations if d is not None], a.throttle))
        wall = None if any(s is None for s in spans) else max(s for s in spans if s is not None) / 3600
    return Cost(runs=len(g.runs), tasks=len(tasks), arrays=len(arrays),
                runs_per_task={a.model: a.resources.runs_per_task for a in arrays}, cpu_hours=cpu_hours,
                gpu_hours=gpu_hours, wall_hours=wall, wall_basis=basis,
                throttle=profile.array_parallelism if profile else None)
