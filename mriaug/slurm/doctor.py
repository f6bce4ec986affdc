"""`mriaug doctor`: everything a grid needs from a cluster, checked before the grid is spent.

From the login node: Slurm answers, every partition the profile names exists and is up, every resources table
is accepted by the controller (`sbatch --test-only`: partition, account, QOS, GPUs, memory, time), the
array size limit, the container image, this environment against its lock, the results and pool folders,
free space and the clock against the shared filesystem's. Then one short job with the profile's resources
(and its container, as tasks run) checks from inside: the image imports mriaug and records a lock, the GPUs
(count, model, driver, the CUDA runtime of the image's torch, kernels for their generation), the caches the
grid's data and pretrained weights load from (offline, as tasks run), the results and pool folders writable,
free space, and the node's clock.

Each check is one `Check`: ok, or a problem with what to do. `run_doctor` returns them in order.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import envlock
from ..errors import MriaugError
from ..plan.grid import Grid
from ..store import locks
from .profile import Profile, Resources
from .queue import parse_max_array_size, run_command

# The doctor's job needs minutes, not the profile's hours.
JOB_TIME_MIN = 10
DEFAULT_MIN_FREE_GB = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        head = f"{'ok' if self.ok else 'PROBLEM':<8}{self.name}: {self.detail}"
        return head if self.ok or not self.fix else f"{head}\n{'':8}-> {self.fix}"


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


# ---------------------------------------------------------------- parsing what Slurm prints (pure functions)

def parse_partitions(sinfo_text: str) -> dict[str, str]:
    """`sinfo -h -o '%P|%a'` -> {partition: availability}; the default partition's '*' is dropped."""
    out: dict[str, str] = {}
    for line in sinfo_text.splitlines():
        if "|" in line:
            name, avail = (s.strip() for s in line.split("|", 1))
            out.setdefault(name.rstrip("*"), avail)
    return out


def default_partition(sinfo_text: str) -> str | None:
    for line in sinfo_text.splitlines():
        name = line.split("|", 1)[0].strip()
        if name.endswith("*"):
            return name[:-1]
    return None


def test_only_args(res: Resources) -> list[str]:
    """The sbatch options a task of these resources is submitted with, for `sbatch --test-only`."""
    args = [f"--cpus-per-task={res.cpus}", f"--time={res.time_min}", "--nodes=1", "--ntasks=1"]
    for key, flag in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos"),
                      ("constraint", "--constraint")):
        if getattr(res, key):
            args.append(f"{flag}={getattr(res, key)}")
    if res.gpus:
        args.append(f"--gpus-per-node={res.gpus}")
    if res.mem_gb:
        args.append(f"--mem={math.ceil(res.mem_gb * 1024)}M")
    return args


def slurm_error(text: str) -> str:
    """The gist of an sbatch error ('sbatch: error: Batch job submission failed: Invalid qos specification')."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower():
            return re.sub(r"^sbatch:\s*error:\s*", "", ln)
    return lines[-1] if lines else "no output"


def clock_check(login_skew_s: float, node_skew_s: float, timeout_s: float, node: str) -> Check:
    """Login and node clocks, each against the shared filesystem's timestamps (what lock heartbeats are
    judged by). A skew over a tenth of the lock timeout eats into the margin before a live lock looks stale."""
    diff = node_skew_s - login_skew_s
    worst = max(abs(login_skew_s), abs(node_skew_s), abs(diff))
    detail = (f"login {login_skew_s:+.2f} s, node {node} {node_skew_s:+.2f} s against the results filesystem "
              f"(login - node {-diff:+.2f} s); MRIAUG_LOCK_TIMEOUT {timeout_s:g} s")
    if worst > timeout_s / 10:
        return _problem("clock", detail, f"clocks must agree to well within MRIAUG_LOCK_TIMEOUT: ask the admins "
                        f"to fix NTP on {node} / the login node, or raise MRIAUG_LOCK_TIMEOUT above {worst * 10:.0f} s")
    return _ok("clock", detail)


# ---------------------------------------------------------------- probes that run on either side

def fs_skew(folder: Path) -> float:
    """This host's clock minus the filesystem's: a fresh file's mtime is stamped by the file server on NFS."""
    probe = folder / f".mriaug-doctor-clock-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    before = time.time()
    probe.write_bytes(b"")
    after = time.time()
    try:
        return (before + after) / 2 - probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first: what creating it makes."""
    made = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        made.append(probe)
        probe = probe.parent
    return made[::-1]


def remove_made(made: Iterable[Path]) -> None:
    """Remove the folders a check created, innermost first, where they are still empty (a run may have written
    there since); the doctor leaves nothing behind."""
    for folder in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def writable(name: str, folder: Path, where: str, fix: str, made: list[Path] | None = None) -> Check:
    """Create the folder if needed, write, read back and remove a probe file. The folders it created are added to
    `made` (for `remove_made` once every check that needs them has run)."""
    probe = folder / f".mriaug-doctor-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    try:
        new = missing_folders(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.extend(new)
        probe.write_text("probe")
        if probe.read_text() != "probe":
            raise OSError("read back something else")
        probe.unlink()
    except OSError as e:
        return _problem(name, f"{folder} is not writable {where} ({type(e).__name__}: {e.strerror or e})", fix)
    return _ok(name, f"{folder} writable {where}")


def free_space(name: str, folder: Path, where: str, min_free_gb: float) -> Check:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    detail = f"{free:.1f} GiB free at {probe} {where} (need {min_free_gb:g})"
    if free < min_free_gb:
        return _problem(name, detail, "free space there or point the grid's `results` elsewhere (--min-free-gb "
                        "sets the bar)")
    return _ok(name, detail)


# ---------------------------------------------------------------- what the job checks on the node

@dataclass
class NodeRequest:
    gpus: int
    results: str
    pools: list[str]
    data: Any  # a DataSpec, or None without a grid
    models: dict[str, Any]  # model name -> HParams of the grid's models
    min_free_gb: float
    grid: str | None


class NodeProbe:
    """The doctor's job: runs on the compute node (inside the profile's container), returns Checks and the
    node's clock skew. Every probe is caught: one failing probe never hides the others."""

    def __call__(self, req: NodeRequest) -> dict[str, Any]:
        host = socket.gethostname()
        checks: list[Check] = []
        made: list[Path] = []  # folders the checks created on the node: removed at the end

        def guard(name: str, probe: Callable[[], Iterable[Check]]) -> None:
            try:
                checks.extend(probe())
            except Exception as e:  # a probe that crashes is a problem to report, not a reason to stop
                checks.append(_problem(name, f"the check itself failed on {host}: {type(e).__name__}: {e}",
                                       "see the job's log; " + traceback.format_exc(limit=1).splitlines()[-1]))

        guard("image", lambda: [self.image(host)])
        guard("gpus", lambda: [self.gpus(req.gpus, host)])
        guard("cache", lambda: self.caches(req, host))
        guard("results (node)", lambda: [writable(
            "results (node)", Path(req.results), f"from {host}",
            "make the results folder writable from the compute nodes (a shared filesystem they mount read-write; "
            "with a container it is bound automatically) or point the grid's `results` at one", made)])
        pool_fix = ("pools are written by `mriaug synth` jobs and read by tasks: put them on a shared filesystem "
                    "and bind it in the profile's [container].binds")
        def pool_check(folder: Path) -> Callable[[], list[Check]]:
            return lambda: [writable("pool (node)", folder, f"from {host}", pool_fix, made)]

        for pool in req.pools:
            guard("pool (node)", pool_check(Path(pool)))
        guard("free space (node)", lambda: [free_space("free space (node)", Path(req.results), f"from {host}",
                                                       req.min_free_gb)])
        skew: float | None = None
        try:
            skew = fs_skew(Path(req.results))
        except OSError:
            pass  # the results check above already says the folder is not writable
        remove_made(made)
        return {"host": host, "checks": checks, "skew": skew}

    @staticmethod
    def image(host: str) -> Check:
        import torch

        import mriaug

        lock = envlock.installed_hash()
        detail = (f"{sys.executable} on {host}: mriaug {mriaug.__version__}, torch {torch.__version__} "
                  f"(CUDA {torch.version.cuda or 'none'}), Python {platform.python_version()}, lock {lock}")
        if lock is None:
            return _problem("image", detail, "this environment was not installed from the lock: rebuild the image "
                            "(`make container`) or the venv (`make venv`)")
        return _ok("image", detail)

    @staticmethod
    def gpus(wanted: int, host: str) -> Check:
        import torch

        if wanted == 0:
            return _ok("gpus", f"none asked for (gpus = 0); {host} trains on its CPUs")
        if not torch.cuda.is_available():
            return _problem("gpus", f"{wanted} asked for, but torch (CUDA {torch.version.cuda or 'none'}) sees none "
                            f"on {host}", "check that the partition has GPUs, that the profile asks for them "
                            "(gpus = N) and that the container runs with --nv (nv = true); a driver older than the "
                            "CUDA runtime of torch also hides them")
        n = torch.cuda.device_count()
        names, problems = [], []
        archs = torch.cuda.get_arch_list()
        for i in range(n):
            major, minor = torch.cuda.get_device_capability(i)
            names.append(f"{torch.cuda.get_device_name(i)} (sm_{major}{minor})")
            if f"sm_{major}{minor}" not in archs and not any(a.startswith(f"compute_{major}") for a in archs):
                problems.append(f"{torch.cuda.get_device_name(i)} is sm_{major}{minor}, torch has kernels for "
                                f"{' '.join(archs)}")
        driver = "unknown"
        out = run_command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=20)
        if out is not None and out.returncode == 0 and out.stdout.strip():
            driver = out.stdout.split()[0]
        detail = (f"{n} visible on {host}: {', '.join(names)}; driver {driver}, torch CUDA runtime "
                  f"{torch.version.cuda}")
        if n < wanted:
            problems.append(f"{wanted} asked for")
        if problems:
            return _problem("gpus", f"{detail}; {'; '.join(problems)}", "ask for GPUs the image's torch supports "
                            "(a constraint in the profile) or rebuild the image with a torch for them")
        return _ok("gpus", detail)

    @staticmethod
    def caches(req: NodeRequest, host: str) -> list[Check]:
        from ..data import sources as data
        from ..engine import models

        if req.data is None:
            return [_ok("cache", "no --grid: the dataset and weights caches are not checked")]
        fix = (f"run `mriaug prefetch --grid {req.grid}` on a machine with internet, with the MRIAUG_CACHE and "
               "HF_HOME the jobs see (the profile's [env], pass_env and [container].binds)")
        out: list[Check] = []
        spec = req.data
        offline = f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}"
        if spec.kind == "phantom":
            out.append(_ok("cache: data", f"phantom data is generated on {host}; nothing to cache"))
        else:
            try:
                ds = data.load(spec)
                out.append(_ok("cache: data", f"{spec.source} loads on {host} ({offline}): {len(ds.train_y)} train / "
                               f"{len(ds.test_y)} test images, fingerprint {ds.fingerprint}"))
            except MriaugError as e:
                out.append(_problem("cache: data", f"{spec.source} does not load on {host} ({offline}): {e}", fix))
        for name, hp in sorted(req.models.items()):
            if not (hp.pretrained or hp.weights):
                out.append(_ok(f"cache: weights {name}", "trained from scratch; no weights to load"))
                continue
            try:
                models.build(name, hp)
            except MriaugError as e:
                out.append(_problem(f"cache: weights {name}", f"{hp.arch} does not load on {host} ({offline}): {e}",
                                    fix))
                continue
            source = hp.weights or f"the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')})"
            out.append(_ok(f"cache: weights {name}", f"{hp.arch} loads from {source} on {host}"))
        return out


# ---------------------------------------------------------------- the login side

def _grid_resources(profile: Profile, grid: Grid | None) -> dict[str, Resources]:
    """The resources tables the grid's jobs use (every model's, else the profile's tables), and the collector's."""
    names = list(dict.fromkeys(s.model for s in grid.runs)) if grid else list(profile.resources)
    out = {}
    for name in names:
        try:
            out[name] = profile.for_model(name)
        except MriaugError:
            continue  # reported by the profile check
    out["collector"] = profile.collector
    return out


def _job_resources(profile: Profile, grid: Grid | None) -> tuple[str, Resources]:
    """The doctor's job runs with the resources of the grid's most demanding model (most GPUs), for minutes."""
    res = {k: v for k, v in _grid_resources(profile, grid).items() if k != "collector"} or \
        {"collector": profile.collector}
    name = max(res, key=lambda k: res[k].gpus)
    return name, replace(res[name], time_min=min(JOB_TIME_MIN, res[name].time_min), runs_per_task=1)


def _partition_checks(profile: Profile, resources: dict[str, Resources], parts: dict[str, str],
                      default: str | None) -> tuple[list[Check], set[str | None]]:
    """Each partition the resources name (None: the cluster's default) exists and is up; the bad ones."""
    checks: list[Check] = []
    users: dict[str | None, list[str]] = {}
    for job, res in resources.items():
        for p in (res.partition.split(",") if res.partition else [None]):
            users.setdefault(p, []).append(job)
    bad_partitions: set[str | None] = set()
    for part, jobs in users.items():
        where = f"{profile.path} (resources: {', '.join(jobs)})"
        if part is None:
            if default:
                checks.append(_ok("partition", f"the cluster's default, {default}, for {where}"))
            else:
                bad_partitions.add(part)
                checks.append(_problem("partition", f"none set for {where} and the cluster has no default partition",
                                       "set `partition` in the profile's resources"))
        elif part not in parts:
            bad_partitions.add(part)
            checks.append(_problem("partition", f"partition {part!r} named in {where} does not exist on this "
                                   f"cluster", f"use one of: {', '.join(sorted(parts)) or '(sinfo lists none)'}"))
        elif parts[part] != "up":
            bad_partitions.add(part)
            checks.append(_problem("partition", f"partition {part!r} ({where}) is {parts[part]}",
                                   "wait until it is up, or use another partition"))
        else:
            checks.append(_ok("partition", f"{part} is up (resources: {', '.join(jobs)})"))
    return checks, bad_partitions


def _resource_checks(profile: Profile, resources: dict[str, Resources],
                     bad_partitions: set[str | None]) -> list[Check]:
    """`sbatch --test-only` of each distinct resources table whose partitions are good."""
    checks: list[Check] = []
    seen: dict[Resources, str] = {}
    for job, res in resources.items():
        if res in seen or (set(res.partition.split(",")) if res.partition else {None}) & bad_partitions:
            continue
        seen[res] = job
        out = run_command(["sbatch", "--test-only", *test_only_args(res), "--wrap", "true"], timeout=30)
        if out is None:
            checks.append(_problem(f"resources {job}", "sbatch not found", "run on a login node with Slurm"))
        elif out.returncode != 0:
            table = "[collector]" if job == "collector" else \
                f"[resources.{job if job in profile.resources else 'default'}]"
            checks.append(_problem(f"resources {job}", f"Slurm refuses {res.describe()}: "
                                   f"{slurm_error(out.stdout + out.stderr)}",
                                   f"fix partition / account / qos / gpus / mem / time in {profile.path} {table}"))
        else:
            checks.append(_ok(f"resources {job}", f"Slurm accepts {res.describe()}"))
    return checks


def slurm_checks(profile: Profile, grid: Grid | None) -> tuple[list[Check], bool]:
    """Slurm reachable, partitions, resources accepted, array size. The bool: a job can be submitted."""
    checks: list[Check] = []
    ping = run_command(["scontrol", "ping"], timeout=20)
    if ping is None or ping.returncode != 0:
        why = "scontrol not found" if ping is None else slurm_error(ping.stdout + ping.stderr)
        fix = "run the doctor on a login node of the cluster (module load slurm, if the site needs it)"
        return [_problem("slurm", f"the controller does not answer ({why})", fix)], False
    checks.append(_ok("slurm", ping.stdout.strip().splitlines()[-1] if ping.stdout.strip() else "controller answers"))
    sinfo = run_command(["sinfo", "-h", "-o", "%P|%a"], timeout=20)
    sinfo_text = sinfo.stdout if sinfo and sinfo.returncode == 0 else ""
    parts, default = parse_partitions(sinfo_text), default_partition(sinfo_text)
    resources = _grid_resources(profile, grid)
    part_checks, bad_partitions = _partition_checks(profile, resources, parts, default)
    checks += part_checks
    checks += _resource_checks(profile, resources, bad_partitions)
    config = run_command(["scontrol", "show", "config"], timeout=20)
    limit = parse_max_array_size(config.stdout) if config and config.returncode == 0 else None
    checks.append(array_check(profile, grid, limit))
    return checks, not bad_partitions and all(c.ok for c in checks if c.name.startswith("resources"))


def array_check(profile: Profile, grid: Grid | None, limit: int | None) -> Check:
    """MaxArraySize against the grid's arrays (planning splits an array that is too long; this says how)."""
    if limit is None:
        return _problem("array size", "MaxArraySize unknown (scontrol show config did not say)",
                        "ask the admins for the array size limit and set max_array_size in the profile")
    cap = min(limit, profile.max_array_size or limit)  # indices 0..MaxArraySize-1: MaxArraySize tasks
    if grid is None:
        return _ok("array size", f"MaxArraySize {limit}: arrays of up to {cap} tasks")
    parts = []
    for model in dict.fromkeys(s.model for s in grid.runs):
        runs = sum(1 for s in grid.runs if s.model == model)
        tasks = math.ceil(runs / profile.for_model(model).runs_per_task)
        parts.append(f"{model} {tasks} tasks" + (f" in {math.ceil(tasks / cap)} arrays" if tasks > cap else ""))
    return _ok("array size", f"MaxArraySize {limit} (arrays of up to {cap} tasks): {', '.join(parts)}")


def openai_checks(grid: Grid | None, today: Any = None) -> list[Check]:
    """The OpenAI model of each of the grid's pools made (or to be made) by the `openai` generator: the model its
    pool.json records, else the generator's default for a pool named `openai` not made yet. A model past its
    shutdown date is a problem; one with a date ahead is ok with the warning (`synth --dry-run` says it too)."""
    import json

    from ..generators import openai_api

    if grid is None:
        return []
    models: dict[str, list[str]] = {}
    for label, folder in grid.pools.items():
        for _, split_folder in grid.pool_dirs(folder):
            meta_file = Path(split_folder) / "pool.json"
            try:
                meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            except (OSError, ValueError):
                meta = {}
            if meta.get("generator") == "openai":
                params = meta.get("generator_params") or {}
                model = params.get("model") or openai_api.DEFAULT_MODEL.get(params.get("endpoint", "edit"), "")
            elif not meta and label == "openai":
                model = openai_api.DEFAULT_MODEL[openai_api.DEFAULT_ENDPOINT]
            else:
                continue
            models.setdefault(str(model), []).append(label)
    out = []
    for model, labels in sorted(models.items()):
        date = openai_api.shutdown_date(model)
        warning = openai_api.shutdown_warning(model, date, today)
        where = f"pool {', '.join(dict.fromkeys(labels))}"
        if warning is None:
            out.append(_ok("openai model", f"{model} ({where}) has no shutdown date"))
        elif "shut down on" in warning:
            out.append(_problem("openai model", f"{model} ({where}): {warning.removeprefix('warning: ')}",
                                "extend or remake the pool with a current model (-s model=NAME)"))
        else:
            out.append(_ok("openai model", f"{model} ({where}): {warning}"))
    return out


def login_checks(profile: Profile, grid: Grid | None, results: Path, pools: list[Path],
                 min_free_gb: float, made: list[Path] | None = None) -> list[Check]:
    """The checks on this login node; folders they create are added to `made`."""
    checks = []
    c = profile.container
    if c is None:
        checks.append(_ok("container", f"none: tasks run {sys.executable} (this environment) on the nodes"))
    elif not c.image.is_file():
        checks.append(_problem("container", f"image {c.image} does not exist", "build it with `make container` on a "
                               "machine with Apptainer and copy it there (profile [container].image)"))
    else:
        checks.append(_ok("container", f"image {c.image} ({c.image.stat().st_size / 2**30:.1f} GiB)"))
    stamp = envlock.read_stamp()
    if stamp is None:
        checks.append(_problem("lock", f"{sys.prefix} was not installed from a lock",
                               "install with `make venv` (requirements/dev.txt)"))
    else:
        diff = [d for d in envlock.differences(stamp["pins"], envlock.installed_versions())
                if "installed but not in the lock" not in d]
        if diff:
            checks.append(_problem("lock", f"{sys.prefix} has drifted from {stamp['lock']} ({'; '.join(diff[:3])}"
                                   f"{'; ...' if len(diff) > 3 else ''})", "reinstall: rm -rf .venv && make venv"))
        else:
            checks.append(_ok("lock", f"{sys.prefix} is {stamp['lock']} (lock {stamp['hash']})"))
    fix = ("make the results folder writable (or point the grid's `results` elsewhere)" if grid else
           "run the doctor from the folder you submit from (jobs start there), one you can write")
    checks.append(writable("results (login)", results, "from this login node", fix, made))
    for pool in pools:
        checks.append(writable("pool (login)", pool, "from this login node",
                               "make the pool folder writable, or point the grid's `pool` elsewhere", made))
    checks.append(free_space("free space (login)", results, "from this login node", min_free_gb))
    checks += openai_checks(grid)
    return checks


def run_doctor(profile: Profile, grid: Grid | None, *, timeout_s: float = 600.0, min_free_gb: float =
               DEFAULT_MIN_FREE_GB, echo: Callable[[str], None] = print) -> list[Check]:
    """Every check, in order; `echo` gets each line as soon as it is known (the job takes a while). The results
    and pool folders the checks create are removed again (when still empty), whatever the checks found."""
    made: list[Path] = []
    try:
        return _run_doctor(profile, grid, timeout_s, min_free_gb, echo, made)
    finally:
        remove_made(made)


def _run_doctor(profile: Profile, grid: Grid | None, timeout_s: float, min_free_gb: float,
                echo: Callable[[str], None], made: list[Path]) -> list[Check]:
    from .submit import executor

    checks: list[Check] = []

    def add(new: Iterable[Check]) -> None:
        for c in new:
            checks.append(c)
            echo(c.line())

    workdir = Path.cwd()
    results = grid.results.resolve() if grid else workdir
    pools = [Path(p).resolve() for p in grid.pools.values()] if grid else []
    s_checks, can_submit = slurm_checks(profile, grid)
    add(s_checks)
    add(login_checks(profile, grid, results, pools, min_free_gb, made))
    if not can_submit:
        add([_problem("job", "not submitted: Slurm would refuse it (see the lines above)",
                      "fix those first; the node checks (image, GPUs, caches, folders, clock) run in that job")])
        return checks
    container = profile.container
    if container is not None and not container.image.is_file():
        add([_problem("job", "not submitted: the container image is missing", "build and copy the image first")])
        return checks
    job_name, res = _job_resources(profile, grid)
    folder = workdir / ".mriaug-doctor" / time.strftime("%Y%m%dT%H%M%S")
    req = _node_request(grid, res, results, pools, min_free_gb)
    ex = executor(profile, res, folder=folder, workdir=workdir, results_dir=results, name="mriaug-doctor")
    try:
        job = ex.submit(NodeProbe(), req)
    except Exception as e:
        add([_problem("job", f"sbatch refused the doctor's job ({res.describe()}): {e}",
                      "fix the profile's resources")])
        return checks
    echo(f"{'':8}job {job.job_id} submitted ({job_name}'s resources for {res.time_min} min: {res.describe()}); "
         f"waiting up to {timeout_s:.0f} s")
    result = _wait_for(job, timeout_s)
    if isinstance(result, Check):
        add([result])
        return checks
    add(result["checks"])
    add([_clock(results, result)])
    if all(c.ok for c in checks):  # the job's logs are kept only when something is wrong
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only when no earlier run's logs are left there
    return checks


def _node_request(grid: Grid | None, res: Resources, results: Path, pools: list[Path],
                  min_free_gb: float) -> NodeRequest:
    """What the job on the node checks: its GPUs, folders, data and models."""
    return NodeRequest(gpus=res.gpus, results=str(results), pools=[str(p) for p in pools],
                       data=grid.data if grid else None,
                       models={m: grid.hparams[m] for m in dict.fromkeys(s.model for s in grid.runs)} if grid else {},
                       min_free_gb=min_free_gb, grid=str(grid.path) if grid else None)


def _clock(results: Path, result: dict[str, Any]) -> Check:
    """The login node's and the node's clocks, each against the results folder's filesystem."""
    try:
        if result["skew"] is None:
            raise OSError("the node could not write there")
        return clock_check(fs_skew(results), result["skew"], locks.timeout_s(), result["host"])
    except OSError as e:
        return _problem("clock", f"not measured: it needs a file in the results folder ({e})",
                        "make the results folder writable (see above), then run the doctor again")


def _in_queue(job_id: str) -> bool | None:
    """Whether squeue still lists the job (pending, running, completing); None when squeue does not answer."""
    out = run_command(["squeue", "-h", "-j", job_id, "-o", "%T"], timeout=20)
    if out is None:
        return None
    if out.returncode != 0:
        return False if "Invalid job id" in out.stderr else None
    return bool(out.stdout.strip())


def _log_tail(path: Path) -> str:
    """The last line of a job's log that looks like an error, else its last line."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"(no log at {path})"
    # The program's own error before srun's and slurmstepd's summaries of it ("task 0: Exited with exit code 1").
    ours = [ln for ln in lines if not ln.startswith(("srun:", "slurmstepd:"))]
    for group in (ours, lines):
        for ln in reversed(group):
            if re.search(r"error|exception|not found|no such|denied|killed", ln, re.IGNORECASE):
                return ln
    return lines[-1] if lines else "(empty log)"


def _wait_for(job: Any, timeout_s: float) -> dict[str, Any] | Check:
    deadline = time.monotonic() + timeout_s
    log = f"log: {job.paths.stderr}"
    gone_since: float | None = None
    while not job.paths.result_pickle.exists():
        # A job that left the queue without a result died before its checks ran (the image, python, imports).
        if _in_queue(str(job.job_id)) is False:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > 5 and not job.paths.result_pickle.exists():
                return _problem("job", f"job {job.job_id} ended on the node without running its checks: "
                                f"{_log_tail(Path(job.paths.stderr))}", "the image or environment does not start "
                                f"mriaug there (the container command, python, imports); {log}")
        if time.monotonic() > deadline:
            state = run_command(["squeue", "-h", "-j", str(job.job_id), "-o", "%T %r"], timeout=20)
            where = state.stdout.strip() if state and state.returncode == 0 and state.stdout.strip() else "gone"
            run_command(["scancel", str(job.job_id)], timeout=30)
            return _problem("job", f"job {job.job_id} did not finish within {timeout_s:.0f} s (squeue: {where}); "
                            "cancelled", "a busy partition: rerun with a longer --timeout; a job that stays "
                            f"PENDING with a reason like ReqNodeNotAvail or QOSMaxGRESPerUser names the limit; {log}")
        time.sleep(1.0)
    try:
        result: dict[str, Any] = job.result()
        return result
    except Exception as e:
        last = [ln for ln in str(e).splitlines() if ln.strip()][-1:] or ["(no message)"]
        return _problem("job", f"job {job.job_id} failed on the node before its checks ran: {last[0]}",
                        "the image or environment does not start mriaug there (python, imports, the container "
                        f"options); {log}")


def summary(checks: list[Check]) -> str:
    bad = [c for c in checks if not c.ok]
    if not bad:
        return f"all {len(checks)} checks ok"
    return f"{len(bad)} of {len(checks)} checks found a problem: fix them and run the doctor again"

