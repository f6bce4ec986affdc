"""Everything that knows about Slurm, submitit and Apptainer.

- Profiles (`slurm/*.toml`) are data: resources per model, the array throttle, the container image and
  binds, the environment jobs get. `load_profile` validates them; errors name the file, line and key.
- `plan` turns a grid into arrays: the runs without a result and not already queued or running, grouped
  by model (each model has its own resources) and split to respect the cluster's MaxArraySize.
- `submit` sends each array through submitit (one task per run, `RunTask`), then one collector job with
  an `afterany` dependency on every array, and records what it submitted under RESULTS/.slurm/.
- `grid_status` answers from the results folder, `squeue` and those records (no Slurm accounting needed).

A task that is requeued (time-limit signal, preemption, `scontrol requeue`, node failure) starts again
and `train.execute` resumes from the checkpoint on disk, so the resume never depends on a signal.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit

from . import atomic, models, results
from .data import DataError
from .grid import Grid, check_pools
from .pools import PoolError
from .spec import RunSpec
from .tomlfile import TomlFile
from .train import git_commit

# Always set in jobs: compute nodes read the caches `mriaug prefetch` filled and never reach the hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# One-off jobs besides the runs, with their own [resources.NAME] table (else [resources.default]).
COMMAND_JOBS = {"synth": "pool generation (`mriaug synth --profile`)",
                "diffusion": "diffusion training (`mriaug synth train-diffusion --profile`)"}
TOP_KEYS = {"name", "array_parallelism", "max_array_size", "max_requeues", "signal_delay_s", "setup", "pass_env",
            "env", "sbatch", "resources", "collector", "container"}
RESOURCE_KEYS = {"partition", "account", "qos", "gpus", "cpus", "mem_gb", "time", "constraint"}
CONTAINER_KEYS = {"image", "binds", "nv", "apptainer", "options", "python"}
QUEUED_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                 "SUSPENDED", "RESIZING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
STATES = ("done", "queued", "running", "failed", "unsubmitted")


class ProfileError(ValueError):
    pass


class SlurmError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Resources:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int = 0
    cpus: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    constraint: str | None = None

    def describe(self) -> str:
        h, m = divmod(self.time_min, 60)
        parts = [f"partition={self.partition or '(default)'}"]
        parts += [f"{k}={v}" for k, v in (("account", self.account), ("qos", self.qos),
                                            ("constraint", self.constraint)) if v]
        parts += [f"gpus={self.gpus}", f"cpus={self.cpus}",
                  f"mem={f'{self.mem_gb:g}G' if self.mem_gb else '(default)'}", f"time={h}:{m:02d}:00"]
        return " ".join(parts)


@dataclass(frozen=True)
class Container:
    image: Path
    binds: tuple[str, ...] = ()
    nv: bool = True
    apptainer: str = "apptainer"
    options: tuple[str, ...] = ()
    python: str = "python"


@dataclass
class Profile:
    path: Path
    name: str
    resources: dict[str, Resources]  # per model, plus "default" when the profile has one
    collector: Resources
    array_parallelism: int | None = None
    max_array_size: int | None = None
    max_requeues: int = 3
    signal_delay_s: int = 120
    setup: list[str] = field(default_factory=list)
    pass_env: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    sbatch: dict[str, Any] = field(default_factory=dict)
    container: Container | None = None

    def for_model(self, model: str) -> Resources:
        if model in self.resources:
            return self.resources[model]
        if "default" in self.resources:
            return self.resources["default"]
        raise ProfileError(f"{self.path}: resources: no [resources.{model}] and no [resources.default] table")


def parse_time(value: Any) -> int:
    """Slurm time limit -> minutes: 90, "90", "1:30:00", "2-00:00:00", "30:00" (MM:SS)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be minutes or 'D-HH:MM:SS', got {value!r}")
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not m:
        raise ValueError(f"must be minutes or 'D-HH:MM:SS', got {value!r}")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if b is None:  # "MM" or "D-HH"
        minutes = a * 60 if days is not None else a
    elif c is None:  # "MM:SS" or "D-HH:MM"
        minutes = a * 60 + b if days is not None else a + (1 if b else 0)
    else:  # "HH:MM:SS"
        minutes = a * 60 + b + (1 if c else 0)
    minutes += (days or 0) * 24 * 60
    if minutes <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return minutes


class _ProfileReader(TomlFile):
    error = ProfileError

    def expand(self, table: str, key: str, value: str) -> str:
        """$VARS expanded now, on the submitting machine; one left unset would reach the job script quoted."""
        out = os.path.expandvars(value)
        left = re.search(r"\$\{?\w+", out)
        if left:
            raise self.fail(table, key, f"{left.group(0)} in {value!r} is not set in this shell")
        return out

    def resources(self, table: str, doc: Any, base: Resources) -> Resources:
        if not isinstance(doc, dict):
            raise self.fail(table, None, "must be a table")
        self.check_keys(table, doc, RESOURCE_KEYS)
        values = asdict(base)
        for key in ("partition", "account", "qos", "constraint"):
            if key in doc:
                if not isinstance(doc[key], str) or not doc[key]:
                    raise self.fail(table, key, "must be a non-empty string")
                values[key] = doc[key]
        if "gpus" in doc:
            values["gpus"] = self.positive_int(table, "gpus", doc["gpus"], zero_ok=True)
        if "cpus" in doc:
            values["cpus"] = self.positive_int(table, "cpus", doc["cpus"])
        if "mem_gb" in doc:
            if isinstance(doc["mem_gb"], bool) or not isinstance(doc["mem_gb"], int | float) or doc["mem_gb"] <= 0:
                raise self.fail(table, "mem_gb", f"must be a positive number of GB, got {doc['mem_gb']!r}")
            values["mem_gb"] = float(doc["mem_gb"])
        if "time" in doc:
            try:
                values["time_min"] = parse_time(doc["time"])
            except ValueError as e:
                raise self.fail(table, "time", str(e)) from e
        return Resources(**values)

    def container(self, doc: Any) -> Container:
        if not isinstance(doc, dict):
            raise self.fail("container", None, "must be a table")
        self.check_keys("container", doc, CONTAINER_KEYS)
        if not isinstance(doc.get("image"), str) or not doc["image"]:
            raise self.fail("container", "image", "must name the Apptainer image (.sif) the tasks run in")
        binds = self.string_list("container", "binds", doc.get("binds", []))
        for b in binds:
            if not b.startswith("/"):
                raise self.fail("container", "binds", f"bind {b!r} must be an absolute path (SRC[:DST[:ro]])")
        options = self.string_list("container", "options", doc.get("options", []))
        nv = doc.get("nv", True)
        if not isinstance(nv, bool):
            raise self.fail("container", "nv", "must be true or false")
        return Container(image=Path(self.expand("container", "image", doc["image"])).expanduser(),
                         binds=tuple(self.expand("container", "binds", b) for b in binds), nv=nv,
                         apptainer=str(doc.get("apptainer", "apptainer")), options=tuple(options),
                         python=str(doc.get("python", "python")))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a cluster profile (see slurm/README.md)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile {path} does not exist (profiles live in slurm/, e.g. slurm/local.toml)")
    r = _ProfileReader(path)
    doc = r.doc
    r.check_keys("", doc, TOP_KEYS)
    res_doc = doc.get("resources", {})
    if not isinstance(res_doc, dict):
        raise r.fail("", "resources", "must be a table of [resources.MODEL] tables")
    default = r.resources("resources.default", res_doc["default"], Resources()) if "default" in res_doc else None
    resources = {"default": default} if default else {}
    for name, table in res_doc.items():
        if name == "default":
            continue
        if name not in models.MODELS and name not in COMMAND_JOBS:
            known = ", ".join(["default", *models.MODELS, *COMMAND_JOBS])
            raise r.fail(f"resources.{name}", None, f"unknown model or job; known: {known}")
        resources[name] = r.resources(f"resources.{name}", table, default or Resources())
    base = default or Resources()
    collector = Resources(partition=base.partition, account=base.account, qos=base.qos, cpus=1, time_min=30)
    if "collector" in doc:
        collector = r.resources("collector", doc["collector"], collector)
    env = doc.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str | int | float) for v in env.values()):
        raise r.fail("", "env", "must be a table of NAME = \"value\"")
    sbatch = doc.get("sbatch", {})
    if not isinstance(sbatch, dict):
        raise r.fail("", "sbatch", "must be a table of sbatch options (e.g. mail-type = \"FAIL\")")
    p = Profile(
        path=path, name=str(doc.get("name", path.stem)), resources=resources, collector=collector,
        setup=r.string_list("", "setup", doc.get("setup", [])),
        pass_env=r.string_list("", "pass_env", doc.get("pass_env", [])),
        env={k: r.expand("env", k, str(v)) for k, v in env.items()}, sbatch=dict(sbatch),
        container=r.container(doc["container"]) if "container" in doc else None,
    )
    for key in ("array_parallelism", "max_array_size"):
        if key in doc:
            setattr(p, key, r.positive_int("", key, doc[key]))
    for key in ("max_requeues", "signal_delay_s"):
        if key in doc:
            setattr(p, key, r.positive_int("", key, doc[key], zero_ok=True))
    return p


def check_image(profile: Profile, *, need_image: bool = True) -> list[str]:
    """A missing container image stops a submission (raised) or only warns a dry run (returned)."""
    c = profile.container
    if c and not c.image.is_file():
        msg = (f"{profile.path}: container.image: {c.image} does not exist; build it with `make container` "
               "(on a machine with Apptainer) and copy it to the cluster")
        if need_image:
            raise ProfileError(msg)
        return [msg]
    return []


def check_profile_for(profile: Profile, grid: Grid, *, need_image: bool) -> list[str]:
    """Problems that stop a submission (raised) or only a dry run (returned as warnings)."""
    for m in {s.model for s in grid.runs}:
        profile.for_model(m)
    return check_image(profile, need_image=need_image)


# ------------------------------------------------------------------------------------ cluster queries


def _run(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def parse_max_array_size(config_text: str) -> int | None:
    m = re.search(r"^\s*MaxArraySize\s*=\s*(\d+)", config_text, re.MULTILINE)
    return int(m.group(1)) if m else None


def cluster_max_array_size() -> int | None:
    """MaxArraySize from `scontrol show config`; None when scontrol cannot tell."""
    out = _run(["scontrol", "show", "config"])
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
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)])
    if out is None:
        return None
    if out.returncode != 0:
        # Every id already purged from the controller's memory: nothing of ours is in the queue.
        return {} if "Invalid job id" in out.stderr else None
    return parse_squeue(out.stdout)


# ------------------------------------------------------------------------------------- the job side


def failure_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / ".slurm" / "failed" / f"{run_id}.json"


def _job_log_paths() -> tuple[str | None, str | None, str | None]:
    try:
        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stdout), str(env.paths.stderr)
    except RuntimeError:  # not inside a submitit job (called directly)
        return None, None, None


class RunTask(submitit.helpers.Checkpointable):
    """One array task: train one run. submitit requeues it on the time-limit signal (Checkpointable);
    every restart, whatever caused it, resumes from the checkpoint `train.execute` keeps on disk."""

    def __call__(self, spec: RunSpec, results_dir: str, save_weights: bool = False) -> dict[str, Any]:
        from . import train

        print(f"mriaug task {spec.label} [{spec.run_id}] on {os.uname().nodename}, "
              f"attempt {int(os.environ.get('SLURM_RESTART_COUNT', 0)) + 1}", file=sys.stderr, flush=True)
        try:
            r = train.execute(spec, results_dir, save_weights=save_weights)
        except Exception as e:
            job_id, out, err = _job_log_paths()
            # A readable error next to the results, so nobody has to unpickle submitit's result files.
            atomic.write_json(failure_path(results_dir, spec.run_id), {
                "run_id": spec.run_id, "label": spec.label, "job_id": job_id, "stdout": out, "stderr": err,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
                "host": os.uname().nodename, "time": datetime.now(UTC).isoformat(timespec="seconds"),
            })
            raise
        failure_path(results_dir, spec.run_id).unlink(missing_ok=True)
        return {"run_id": r["run_id"], "test_ce": r["metrics"]["test_ce"]}


class CommandTask(submitit.helpers.Checkpointable):
    """A one-off job running an `mriaug` command line (pool generation, diffusion training). Both resume
    from what they wrote to disk, so a requeue simply runs the same command again."""

    def __call__(self, argv: list[str]) -> int:
        from .cli import app

        print(f"mriaug job: mriaug {shlex.join(argv)} on {os.uname().nodename}, "
              f"attempt {int(os.environ.get('SLURM_RESTART_COUNT', 0)) + 1}", file=sys.stderr, flush=True)
        rc = app(argv, prog_name="mriaug", standalone_mode=False)
        if isinstance(rc, int) and rc != 0:
            raise SlurmError(f"`mriaug {shlex.join(argv)}` exited with status {rc}")
        return 0


def submit_command(profile: Profile, job: str, argv: list[str], out_dir: Path) -> submitit.Job:
    """Submit one CommandTask; its logs go to OUT_DIR/.slurm/logs, OUT_DIR is bound into the container."""
    if job not in COMMAND_JOBS:
        raise SlurmError(f"unknown job kind {job!r}; known: {', '.join(COMMAND_JOBS)}")
    check_image(profile)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ex = executor(profile, profile.for_model(job), folder=slurm_dir(out_dir) / "logs", workdir=Path.cwd(),
                  results_dir=out_dir, name=f"mriaug-{job}")
    return ex.submit(CommandTask(), argv)


def collect_task(results_dir: str, run_ids: list[str] | None = None) -> int:
    """The collector job: `mriaug collect RESULTS_DIR --grid GRID` (tables in RESULTS_DIR/tables)."""
    from .cli import _collect

    c = _collect(Path(results_dir), Path(results_dir) / "tables", run_ids=set(run_ids) if run_ids else None)
    return len(c.runs)


# ------------------------------------------------------------------------------------- submission


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
        check_pools(todo)  # a task that cannot find its synthetic images should not wait for a GPU
    except DataError as e:
        if isinstance(e, PoolError):
            raise ProfileError(f"{grid.path}: {e}") from e
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


def job_env(profile: Profile) -> dict[str, str]:
    """Variables every job exports: offline hub, passed-through caches, the profile's [env]."""
    env = dict(OFFLINE_ENV)
    for name in profile.pass_env:
        if name in os.environ:
            env[name] = os.environ[name]
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


def slurm_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / ".slurm"


@dataclass
class Submitted:
    record: Path
    arrays: list[Array]
    collector_id: str


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
        n = len(a.runs)
        try:
            jobs = ex.map_array(RunTask(), a.runs, [str(p.results_dir)] * n, [p.grid.save_weights] * n)
        except Exception as e:
            went_in = ", ".join(f"{x['model']} (job {x['job_id']})" for x in doc["arrays"]) or "none"
            raise SlurmError(f"submitting the {a.model} array ({n} runs, {a.resources.describe()}) failed: {e}; "
                             f"arrays already submitted: {went_in} (recorded in {record}); fix the profile "
                             "and run the same command again to submit the rest") from e
        a.job_id = jobs[0].job_id.split("_")[0]
        for spec, job in zip(a.runs, jobs, strict=True):
            tasks[spec.run_id] = {"job_id": job.job_id, "label": spec.label, "stdout": str(job.paths.stdout),
                                  "stderr": str(job.paths.stderr)}
        doc["arrays"].append({"job_id": a.job_id, "model": a.model, "runs": n, "throttle": a.throttle,
                              "resources": asdict(a.resources)})
        atomic.write_json(record, doc)
    dependency = "afterany:" + ":".join(a.job_id for a in p.arrays if a.job_id)
    cex = executor(p.profile, p.profile.collector, folder=folder, workdir=workdir, results_dir=p.results_dir,
                   name=f"mriaug-{p.grid.name}-collect", dependency=dependency)
    cjob = cex.submit(collect_task, str(p.results_dir), [s.run_id for s in p.grid.runs])
    doc["collector"] = {"job_id": cjob.job_id, "dependency": dependency, "stdout": str(cjob.paths.stdout),
                       "stderr": str(cjob.paths.stderr), "tables": str(p.results_dir / "tables")}
    atomic.write_json(record, doc)
    return Submitted(record, p.arrays, cjob.job_id)


# ------------------------------------------------------------------------------------------- status


@dataclass
class RunState:
    spec: RunSpec
    state: str  # one of STATES
    job_id: str | None = None
    log: str | None = None
    error: str | None = None


@dataclass
class GridStatus:
    grid: Grid
    runs: list[RunState]
    squeue_ok: bool
    collector: dict[str, Any] | None  # the latest submission's collector job, with its "state"

    def counts(self, runs: Iterable[RunState] | None = None) -> dict[str, int]:
        c = dict.fromkeys(STATES, 0)
        for r in self.runs if runs is None else runs:
            c[r.state] += 1
        return c

    @property
    def active(self) -> bool:
        c = self.counts()
        return bool(c["queued"] or c["running"])


def read_records(results_dir: str | Path) -> list[dict[str, Any]]:
    """Submission records, oldest first (their names are UTC time stamps)."""
    import json

    out = []
    for path in sorted((slurm_dir(results_dir) / "submissions").glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # records are written atomically; an unreadable one is not ours
    return out


def _last_error_line(log: str | None) -> str | None:
    """The last line of a log that looks like an error (for tasks that died without a failure record)."""
    if not log or not Path(log).is_file():
        return None
    lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"error|exception|killed|cancelled|oom|timeout|time limit", ln, re.IGNORECASE):
            return ln
    return lines[-1] if lines else None


def _read_failure(results_dir: Path, run_id: str) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(failure_path(results_dir, run_id).read_text())
    except (OSError, ValueError):
        return None


def grid_status(grid: Grid) -> GridStatus:
    """Every run's state from the results folder, squeue and the submission records."""
    results_dir = grid.results.resolve()
    latest: dict[str, dict[str, Any]] = {}
    records = read_records(results_dir)
    for rec in records:
        latest.update(rec.get("tasks", {}))
    collector = dict(records[-1]["collector"]) if records and records[-1].get("collector") else None
    wanted = {t["job_id"] for t in latest.values()} | ({collector["job_id"]} if collector else set())
    # squeue before the results: a task finishing in between then reads as done, never as failed.
    queue = squeue_states(wanted)
    done = results.done_ids(results_dir) if results_dir.is_dir() else set()
    runs = []
    for spec in grid.runs:
        rid, task = spec.run_id, latest.get(spec.run_id)
        if rid in done:
            runs.append(RunState(spec, "done", task and task["job_id"]))
            continue
        if task is None:
            runs.append(RunState(spec, "unsubmitted"))
            continue
        slurm_state = (queue or {}).get(task["job_id"])
        if slurm_state in RUNNING_STATES:
            runs.append(RunState(spec, "running", task["job_id"], task["stderr"]))
        elif slurm_state is not None or queue is None:
            # Unknown without squeue: not done yet is all we can say, so count it as queued.
            runs.append(RunState(spec, "queued", task["job_id"], task["stderr"]))
        else:
            fail = _read_failure(results_dir, rid)
            error = fail["error"] if fail else _last_error_line(task["stderr"]) or "ended without a result"
            runs.append(RunState(spec, "failed", task["job_id"], (fail or {}).get("stderr") or task["stderr"], error))
    if collector:
        state = (queue or {}).get(collector["job_id"])
        collector["state"] = state or ("unknown" if queue is None else "ended")
    return GridStatus(grid, runs, queue is not None, collector)


def render_status(st: GridStatus) -> str:
    g = st.grid
    lines = [f"grid {g.name}: {len(g.runs)} runs -> {g.results}"]
    if not st.squeue_ok:
        lines.append("warning: squeue did not answer; runs not done count as queued")
    head = f"{'model':<10}{'scenario':<10}" + "".join(f"{s:>13}" for s in STATES)
    lines += [head, "-" * len(head)]
    keys = dict.fromkeys((r.spec.model, r.spec.scenario.name) for r in st.runs)
    for model, scen in keys:
        c = st.counts(r for r in st.runs if r.spec.model == model and r.spec.scenario.name == scen)
        lines.append(f"{model:<10}{scen:<10}" + "".join(f"{c[s]:>13}" for s in STATES))
    total = st.counts()
    lines.append(f"{'total':<20}" + "".join(f"{total[s]:>13}" for s in STATES))
    failed = [r for r in st.runs if r.state == "failed"]
    if failed:
        lines.append(f"failed runs ({len(failed)}):")
        for r in failed:
            lines.append(f"  {r.spec.label} [{r.spec.run_id}] job {r.job_id}: {r.error}")
            lines.append(f"    log: {r.log}")
        lines.append("resubmit them with the same `mriaug submit` command once fixed")
    if total["unsubmitted"]:
        lines.append(f"{total['unsubmitted']} runs not submitted yet: mriaug submit {g.path} --profile ...")
    if st.collector:
        c = st.collector
        tables = Path(c["tables"])
        lines.append(f"collector: job {c['job_id']} {c['state'].lower()}; tables "
                     + (f"in {tables}" if tables.is_dir() else f"not written yet ({tables})")
                     + f"; log {c['stdout']}")
    return "\n".join(lines)


def progress_line(st: GridStatus) -> str:
    c = st.counts()
    return (f"{time.strftime('%H:%M:%S')} {st.grid.name}: " + ", ".join(f"{c[s]} {s}" for s in STATES if c[s])
            + f" (of {len(st.runs)})")


def wait(grid: Grid, *, interval: float = 10.0, timeout: float | None = None,
         echo: Any = print) -> GridStatus:
    """Poll until no run is queued or running and the latest collector left the queue."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last, last_at = None, 0.0
    while True:
        st = grid_status(grid)
        line = progress_line(st)
        counts = line.split(" ", 1)[1]
        # On change, or every few minutes as a sign of life: keeps CI logs short.
        if counts != last or time.monotonic() - last_at > 300:
            echo(line + ("" if st.squeue_ok else " (squeue did not answer)"))
            last, last_at = counts, time.monotonic()
        collector_busy = bool(st.collector and st.collector["state"] in QUEUED_STATES | RUNNING_STATES)
        if not st.active and not collector_busy:
            return st
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"still {st.counts()['queued']} queued and {st.counts()['running']} running "
                               f"after {timeout:.0f} s")
        time.sleep(interval)
