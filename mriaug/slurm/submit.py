"""Submission through submitit: each array (`TrainTask`s of one run each, or several), then one
collector job with an `afterany` dependency on every array; what went in is recorded under
RESULTS/.slurm/submissions/."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit

from ..engine.runtime import git_commit
from ..errors import SlurmError
from ..store import atomic
from .paths import failure_path, slurm_dir
from .planning import Array, Plan
from .profile import COMMAND_JOBS, Profile, Resources, check_image
from .tasks import CommandTask, TrainTask, collect_task

# Always set in jobs: compute nodes read the caches `mriaug prefetch` filled and never reach the hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def job_env(profile: Profile) -> dict[str, str]:
    """Variables the job script exports: offline hub, the commit, the profile's [env]. The values of
    `pass_env` are not among them: they may be secrets (API keys), and the script is a file under the
    results folder. sbatch hands the submitting shell's environment to the job (--export=ALL), so they
    reach it without being written anywhere."""
    env = dict(OFFLINE_ENV)
    commit = git_commit()
    if commit:
        env["MRIAUG_GIT_COMMIT"] = commit  # provenance, even where the image has no git checkout
    env.update(profile.env)
    return env


def setup_lines(profile: Profile, resources: Resources) -> list[str]:
    lines = []
    for k, v in job_env(profile).items():
        lines.append(f"export {k}={shlex.quote(v)}")
        if profile.container:  # survives `--cleanenv` among the container options
            lines.append(f"export APPTAINERENV_{k}={shlex.quote(v)}")
    if profile.container:  # by name: the script holds "$NAME", the value comes from the job's environment
        lines += [f'export APPTAINERENV_{name}="${{{name}}}"' for name in profile.pass_env if name in os.environ]
        # The task runs with the submit directory as its working directory, which `python -m` puts first on
        # sys.path: from a checkout, its mriaug/ would shadow the image's installed code (and a half-edited file
        # there would break every task). Python 3.11's safe path keeps the image's code in charge.
        lines.append("export APPTAINERENV_PYTHONSAFEPATH=1")
    # One thread per allocated CPU, not per core of the node.
    lines.append(f"export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{resources.cpus}}}")
    return lines + profile.setup


def python_command(profile: Profile, workdir: Path, results_dir: Path) -> str:
    """How jobs start python: this interpreter, or the image's through `apptainer exec`."""
    c = profile.container
    if c is None:
        return shlex.quote(sys.executable)
    binds = list(dict.fromkeys([*c.binds, str(workdir), str(results_dir)]))
    cmd = [c.apptainer, "exec", *(["--nv"] if c.nv else []), *(f"--bind={b}" for b in binds),
           f"--pwd={workdir}", *c.options, str(c.image), c.python]
    return " ".join(shlex.quote(p) for p in cmd)


def executor(profile: Profile, resources: Resources, *, folder: Path, workdir: Path, results_dir: Path,
             name: str, throttle: int | None = None, dependency: str | None = None) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm",
                               slurm_python=python_command(profile, workdir, results_dir),
                               slurm_max_num_timeout=profile.max_requeues)
    # chdir: grid paths (pools, data folders) are relative to where `mriaug submit` ran.
    additional: dict[str, Any] = {"chdir": str(workdir), "requeue": True, **profile.sbatch}
    if dependency:
        additional["dependency"] = dependency
    params: dict[str, Any] = {
        "name": name, "timeout_min": resources.time_min, "cpus_per_task": resources.cpus, "nodes": 1,
        "tasks_per_node": 1, "slurm_setup": setup_lines(profile, resources),
        "slurm_signal_delay_s": profile.signal_delay_s, "slurm_additional_parameters": additional,
        # Slurm 22.05's srun no longer inherits --cpus-per-task from the batch step.
        "slurm_srun_args": [f"--cpus-per-task={resources.cpus}"],
    }
    if throttle:
        params["slurm_array_parallelism"] = throttle
    if resources.gpus:
        params["gpus_per_node"] = resources.gpus
    if resources.mem_gb:
        params["mem_gb"] = resources.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(resources, key):
            params[f"slurm_{key}"] = getattr(resources, key)
    ex.update_parameters(**params)
    return ex


@dataclass
class Submitted:
    record: Path
    arrays: list[Array]
    collector_id: str


def _record_tasks(a: Array, jobs: list[submitit.Job[Any]], tasks: dict[str, dict[str, Any]]) -> None:
    """Each run of the array's tasks in `tasks`: its task's job id, label and logs."""
    for task, job in zip(a.tasks, jobs, strict=True):
        # A packed task's runs share its job id; "pack" (the task's units, in the order they train) lets
        # `mriaug status` tell the unit in training from those still waiting in the task.
        pack = [[s.run_id for s in unit] for unit in task] if a.packed else None
        for spec in (s for unit in task for s in unit):
            tasks[spec.run_id] = {"job_id": job.job_id, "label": spec.label, "stdout": str(job.paths.stdout),
                                  "stderr": str(job.paths.stderr), **({"pack": pack} if pack else {})}


def _submit_collector(p: Plan, folder: Path, workdir: Path, dependency: str, record: Path) -> submitit.Job[Any]:
    """The job that collects the grid's tables once every array has ended."""
    cex = executor(p.profile, p.profile.collector, folder=folder, workdir=workdir, results_dir=p.results_dir,
                   name=f"mriaug-{p.grid.name}-collect", dependency=dependency)
    try:
        return cex.submit(collect_task, str(p.results_dir), [s.run_id for s in p.grid.runs])
    except Exception as e:
        raise SlurmError(f"submitting the collector failed: {e}; every array went in (recorded in {record}); "
                         "collect by hand with `mriaug collect` when they end") from e


def submit(p: Plan) -> Submitted:
    """Submit the planned arrays and the collector. The submission record is rewritten after every
    array, so tasks that went in before a failure are tracked (status sees them, resubmits skip them)."""
    if not p.arrays:
        raise SlurmError("nothing to submit")
    workdir = Path.cwd()
    folder = slurm_dir(p.results_dir) / "logs"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    record = slurm_dir(p.results_dir) / "submissions" / f"{stamp}.json"
    tasks: dict[str, dict[str, Any]] = {}
    doc: dict[str, Any] = {"grid": str(p.grid.path.resolve()), "profile": str(p.profile.path.resolve()),
                           "submitted_at": stamp, "workdir": str(workdir), "folder": str(folder), "arrays": [],
                           "tasks": tasks, "collector": None}
    for a in p.arrays:
        for spec in a.runs:  # a resubmitted run's old error no longer applies
            failure_path(p.results_dir, spec.run_id).unlink(missing_ok=True)
        ex = executor(p.profile, a.resources, folder=folder, workdir=workdir, results_dir=p.results_dir,
                      name=f"mriaug-{p.grid.name}-{a.model}", throttle=a.throttle)
        n = len(a.tasks)
        jobs: list[submitit.Job[Any]]
        try:
            jobs = ex.map_array(TrainTask(), a.tasks, [str(p.results_dir)] * n, [p.grid.save_weights] * n)
        except Exception as e:
            went_in = ", ".join(f"{x['model']} (job {x['job_id']})" for x in doc["arrays"]) or "none"
            raise SlurmError(f"submitting the {a.model} array ({len(a.runs)} runs in {n} tasks, "
                             f"{a.resources.describe()}) failed: {e}; "
                             f"arrays already submitted: {went_in} (recorded in {record}); fix the profile "
                             "and run the same command again to submit the rest") from e
        a.job_id = jobs[0].job_id.split("_")[0]
        _record_tasks(a, jobs, tasks)
        doc["arrays"].append({"job_id": a.job_id, "model": a.model, "runs": len(a.runs), "tasks": n,
                              "throttle": a.throttle, "resources": asdict(a.resources)})
        atomic.write_json(record, doc)
    dependency = "afterany:" + ":".join(a.job_id for a in p.arrays if a.job_id)
    cjob = _submit_collector(p, folder, workdir, dependency, record)
    doc["collector"] = {"job_id": cjob.job_id, "dependency": dependency, "stdout": str(cjob.paths.stdout),
                       "stderr": str(cjob.paths.stderr), "tables": str(p.results_dir / "tables")}
    atomic.write_json(record, doc)
    return Submitted(record, p.arrays, cjob.job_id)


def submit_command(profile: Profile, job: str, argv: list[str], out_dir: Path,
                   command: Callable[[list[str]], int]) -> submitit.Job:
    """Submit one CommandTask running `command(argv)`; its logs go to OUT_DIR/.slurm/logs, OUT_DIR is bound
    into the container."""
    if job not in COMMAND_JOBS:
        raise SlurmError(f"unknown job kind {job!r}; known: {', '.join(COMMAND_JOBS)}")
    check_image(profile)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ex = executor(profile, profile.for_model(job), folder=slurm_dir(out_dir) / "logs", workdir=Path.cwd(),
                  results_dir=out_dir, name=f"mriaug-{job}")
    try:
        return ex.submit(CommandTask(command), argv)
    except Exception as e:  # sbatch refusing the job (bad partition, account, ...)
        raise SlurmError(f"submitting the {job} job ({profile.for_model(job).describe()}) failed: {e}") from e
