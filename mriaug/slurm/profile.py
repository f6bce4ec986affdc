"""Cluster profiles (`slurm/*.toml`) as data: resources per model and job, the array throttle, the container
image and binds, the environment jobs get. `load_profile` validates them; errors name the file, line and key."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ProfileError
from ..plan import hparams
from ..plan.grid import Grid
from ..store.tomlfile import TomlFile

# One-off jobs besides the runs, with their own [resources.NAME] table (else [resources.default]).
COMMAND_JOBS = {"synth": "pool generation (`mriaug synth --profile`)",
                "diffusion": "diffusion training (`mriaug synth train-diffusion --profile`)"}
TOP_KEYS = {"name", "array_parallelism", "max_array_size", "max_requeues", "signal_delay_s", "setup", "pass_env",
            "env", "sbatch", "resources", "collector", "container"}
# Partition, account and QOS names as Slurm takes them: a name or a comma-separated list of names.
NAME_LIST = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*")
RESOURCE_KEYS = {"partition", "account", "qos", "gpus", "cpus", "mem_gb", "time", "constraint", "runs_per_task"}
CONTAINER_KEYS = {"image", "binds", "nv", "apptainer", "options", "python"}


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
    # Runs of the grid one array task trains one after another in one process (start-up and data paid once).
    runs_per_task: int = 1

    def describe(self) -> str:
        h, m = divmod(self.time_min, 60)
        parts = [f"partition={self.partition or '(default)'}"]
        parts += [f"{k}={v}" for k, v in (("account", self.account), ("qos", self.qos),
                                            ("constraint", self.constraint)) if v]
        parts += [f"gpus={self.gpus}", f"cpus={self.cpus}",
                  f"mem={f'{self.mem_gb:g}G' if self.mem_gb else '(default)'}", f"time={h}:{m:02d}:00"]
        if self.runs_per_task > 1:
            parts.append(f"runs_per_task={self.runs_per_task}")
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
            # One-off jobs are one command each: a default's runs_per_task is for the grid's runs.
            return replace(self.resources["default"], runs_per_task=1) if model in COMMAND_JOBS \
                else self.resources["default"]
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
    days_s, a_s, b_s, c_s = m.groups()
    days, a = int(days_s or 0), int(a_s)
    b, c = (int(b_s) if b_s else None), (int(c_s) if c_s else None)
    # Minutes and seconds after a colon, and hours after a day count, must be in range: Slurm would
    # otherwise carry them over silently ("1:99:99" is not 1 h 99 min 99 s but 2:40:39).
    if any(v is not None and v >= 60 for v in (b, c)) or (days_s is not None and a >= 24):
        raise ValueError(f"{value!r} is not a valid time: minutes and seconds go up to 59, hours after a day to 23")
    if b is None:  # "MM" or "D-HH"
        minutes = a * 60 if days_s is not None else a
    elif c is None:  # "MM:SS" or "D-HH:MM"
        minutes = a * 60 + b if days_s is not None else a + (1 if b else 0)
    else:  # "HH:MM:SS"
        minutes = a * 60 + b + (1 if c else 0)
    minutes += days * 24 * 60
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

    def resources(self, table: str, doc: Any, base: Resources, *, runs: bool = True) -> Resources:
        """A resources table; `runs`: whether it is a model's (or the default), which may pack runs."""
        if not isinstance(doc, dict):
            raise self.fail(table, None, "must be a table")
        self.check_keys(table, doc, RESOURCE_KEYS)
        if not runs and "runs_per_task" in doc:
            raise self.fail(table, "runs_per_task", "only a model's table (or [resources.default]) packs runs")
        values = asdict(base)
        for key in ("partition", "account", "qos", "constraint"):
            if key in doc:
                if not isinstance(doc[key], str) or not doc[key]:
                    raise self.fail(table, key, "must be a non-empty string")
                if key != "constraint" and not NAME_LIST.fullmatch(doc[key]):
                    raise self.fail(table, key, f"{doc[key]!r} is not a Slurm name (letters, digits, '_', '-', '.'; "
                                    "several separated by commas, no spaces)")
                values[key] = doc[key]
        if "gpus" in doc:
            values["gpus"] = self.positive_int(table, "gpus", doc["gpus"], zero_ok=True)
        if "cpus" in doc:
            values["cpus"] = self.positive_int(table, "cpus", doc["cpus"])
        if "runs_per_task" in doc:
            values["runs_per_task"] = self.positive_int(table, "runs_per_task", doc["runs_per_task"])
        if "mem_gb" in doc:
            values["mem_gb"] = self.number(table, "mem_gb", doc["mem_gb"], lo=0.0, lo_open=True)
        if "time" in doc:
            try:
                values["time_min"] = parse_time(doc["time"])
            except ValueError as e:
                raise self.fail(table, "time", str(e)) from e
        return Resources(**values)

    def resource_tables(self, res_doc: Any) -> tuple[Resources | None, dict[str, Resources]]:
        """[resources.default] (None when absent) and every table of [resources], each model's or command job's
        starting from the default's values."""
        if not isinstance(res_doc, dict):
            raise self.fail("", "resources", "must be a table of [resources.MODEL] tables")
        default = (self.resources("resources.default", res_doc["default"], Resources()) if "default" in res_doc
                   else None)
        resources = {"default": default} if default else {}
        for name, table in res_doc.items():
            if name == "default":
                continue
            if name not in hparams.MODELS and name not in COMMAND_JOBS:
                known = ", ".join(["default", *hparams.MODELS, *COMMAND_JOBS])
                raise self.fail(f"resources.{name}", None, f"unknown model or job; known: {known}")
            start = (replace(default or Resources(), runs_per_task=1) if name in COMMAND_JOBS
                     else default or Resources())
            resources[name] = self.resources(f"resources.{name}", table, start, runs=name not in COMMAND_JOBS)
        return default, resources

    def pass_env(self, doc: Any, export: str) -> list[str]:
        """The environment variables `pass_env` names, which sbatch's `export` must let through."""
        pass_env = self.string_list("", "pass_env", doc)
        for name in pass_env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self.fail("", "pass_env", f"{name!r} is not an environment variable name")
        if pass_env and not export.upper().startswith("ALL"):
            # pass_env values travel in the environment sbatch exports; NONE or a list would drop them.
            raise self.fail("sbatch", "export", f"{export!r} would not pass {', '.join(pass_env)} (pass_env) to the "
                            "jobs; leave export out (ALL) or start it with ALL,")
        return pass_env

    def container(self, doc: Any) -> Container:
        if not isinstance(doc, dict):
            raise self.fail("container", None, "must be a table")
        self.check_keys("container", doc, CONTAINER_KEYS)
        if not isinstance(doc.get("image"), str) or not doc["image"]:
            raise self.fail("container", "image", "must name the Apptainer image (.sif) the tasks run in")
        # Expanded first: "$HOME/.cache" is an absolute path once $HOME is.
        binds = [self.expand("container", "binds", b) for b in self.string_list("container", "binds",
                                                                                doc.get("binds", []))]
        for b in binds:
            if not b.startswith("/"):
                raise self.fail("container", "binds", f"bind {b!r} must be an absolute path (SRC[:DST[:ro]])")
        options = self.string_list("container", "options", doc.get("options", []))
        nv = doc.get("nv", True)
        if not isinstance(nv, bool):
            raise self.fail("container", "nv", "must be true or false")
        apptainer = doc.get("apptainer", "apptainer")
        if not isinstance(apptainer, str) or not apptainer.strip():
            raise self.fail("container", "apptainer", "must name the apptainer command (on PATH, or a path)")
        apptainer = os.path.expanduser(self.expand("container", "apptainer", apptainer))
        if "/" in apptainer:  # a path (containers/apptainer.sh): from where you submit, as the image is
            apptainer = str(Path(apptainer).absolute())
        return Container(image=Path(self.expand("container", "image", doc["image"])).expanduser(),
                         binds=tuple(binds), nv=nv,
                         apptainer=apptainer, options=tuple(options), python=str(doc.get("python", "python")))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a cluster profile (see slurm/README.md)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile {path} does not exist (profiles live in slurm/, e.g. slurm/local.toml)")
    r = _ProfileReader(path)
    doc = r.doc
    r.check_keys("", doc, TOP_KEYS)
    default, resources = r.resource_tables(doc.get("resources", {}))
    base = default or Resources()
    collector = Resources(partition=base.partition, account=base.account, qos=base.qos, cpus=1, time_min=30)
    if "collector" in doc:
        collector = r.resources("collector", doc["collector"], collector, runs=False)
    env = doc.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str | int | float) for v in env.values()):
        raise r.fail("", "env", "must be a table of NAME = \"value\"")
    sbatch = doc.get("sbatch", {})
    if not isinstance(sbatch, dict):
        raise r.fail("", "sbatch", "must be a table of sbatch options (e.g. mail-type = \"FAIL\")")
    export = str(sbatch.get("export", "ALL"))
    pass_env = r.pass_env(doc.get("pass_env", []), export)
    p = Profile(
        path=path, name=str(doc.get("name", path.stem)), resources=resources, collector=collector,
        setup=r.string_list("", "setup", doc.get("setup", [])),
        pass_env=pass_env,
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
    """A missing container image (or apptainer command given as a path) stops a submission (raised) or only warns
    a dry run (returned)."""
    c = profile.container
    problems = []
    if c and not c.image.is_file():
        problems.append(f"{profile.path}: container.image: {c.image} does not exist; build it with `make container` "
                        "and copy it where the compute nodes see it")
    # A command given as a path must be there; one looked up on PATH may appear only in the job (`setup`).
    if c and "/" in c.apptainer and not os.access(c.apptainer, os.X_OK):
        problems.append(f"{profile.path}: container.apptainer: {c.apptainer} is not an executable file")
    if problems and need_image:
        raise ProfileError("; ".join(problems))
    return problems


def check_profile_for(profile: Profile, grid: Grid, *, need_image: bool) -> list[str]:
    """Problems that stop a submission (raised) or only a dry run (returned as warnings)."""
    for m in {s.model for s in grid.runs}:
        profile.for_model(m)
    return check_image(profile, need_image=need_image)
