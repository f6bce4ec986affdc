"""What runs inside a job: the units of an array task (one run, or several packed), a one-off command, the
collector.

These are pickled by submitit at submission and unpickled on the node, so their names are public
(`mriaug.slurm.TrainTask`, ...) and stay importable from `mriaug.slurm` across versions (`RunTask` and
`PackTask`, the two task classes of earlier versions, are names of `TrainTask`).
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit

from ..errors import SlurmError
from ..plan import hparams
from ..plan.spec import RunSpec
from ..store import atomic
from .paths import failure_path


def job_log_paths() -> tuple[str | None, str | None, str | None]:
    try:
        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stdout), str(env.paths.stderr)
    except RuntimeError:  # not inside a submitit job (called directly)
        return None, None, None


class TrainTask(submitit.helpers.Checkpointable):
    """One array task: its units (each a run, or a pack of seeds trained together) one after another in one
    process, so Python, torch, the device and the data start once (`runs_per_task` runs, or one).
    submitit requeues it on the time-limit signal (Checkpointable).

    Everything stays per run: a unit with a result is skipped (a requeued task restarts here, skips the
    finished runs and resumes the interrupted one from its checkpoint), a failing unit writes the failure
    record of each of its runs and the task goes on with the next unit; the task fails at the end if any did."""

    def __call__(self, units: list[list[RunSpec]] | RunSpec, results_dir: str, save_weights: bool = False
                 ) -> list[dict[str, Any]]:
        from ..data import pools

        if isinstance(units, RunSpec):  # an array submitted as `RunTask`s by an earlier mriaug: one run per task
            units = [[units]]
        units = [[upgrade_spec(s) for s in unit] for unit in units]
        n_runs = sum(map(len, units))
        print(f"mriaug task: {n_runs} runs in {len(units)} unit(s) on {os.uname().nodename}, "
              f"attempt {int(os.environ.get('SLURM_RESTART_COUNT', 0)) + 1}", file=sys.stderr, flush=True)
        done: list[dict[str, Any]] = []
        failed: list[str] = []
        with pools.cached_in_process():  # the dataset and pools are read once for all the task's runs
            for unit in units:
                failed += _train(unit, results_dir, save_weights, done)
        if failed:
            raise SlurmError(f"{len(failed)} of the task's {n_runs} runs failed ({', '.join(failed)}); their errors "
                             f"are in {failure_path(results_dir, '').parent}/RUN_ID.json and `mriaug status`")
        return done


# The names arrays were submitted under before there was one task class: a queued job's pickle names its class.
PackTask = TrainTask
RunTask = TrainTask


def _train(unit: list[RunSpec], results_dir: str, save_weights: bool, done: list[dict[str, Any]]) -> list[str]:
    """Train a unit's runs without a result; append what they got to `done` and return the labels of those
    that failed (each with its failure record)."""
    from ..local import train_unit
    from ..store import results

    todo = []
    for spec in unit:
        if spec.run_id in results.done_ids_of(results_dir, [spec.run_id]):
            print(f"[{spec.run_id}] {spec.label}: already done, skipped", file=sys.stderr, flush=True)
        else:
            todo.append(spec)
    if not todo:
        return []
    print(f"mriaug task: {', '.join(s.label for s in todo)}", file=sys.stderr, flush=True)
    try:
        out = train_unit(todo, results_dir, save_weights=save_weights)
    except Exception as e:
        traceback.print_exc()
        for spec in todo:
            record_failure(results_dir, spec, e)
        return [s.label for s in todo]
    for spec, r in zip(todo, out, strict=True):
        failure_path(results_dir, spec.run_id).unlink(missing_ok=True)
        done.append({"run_id": r.run_id, "test_ce": r.metrics.test_ce})
    return []


def record_failure(results_dir: str, spec: RunSpec, e: BaseException) -> None:
    """A readable error next to the results, so nobody has to unpickle submitit's result files."""
    job_id, out, err = job_log_paths()
    atomic.write_json(failure_path(results_dir, spec.run_id), {
        "run_id": spec.run_id, "label": spec.label, "job_id": job_id, "stdout": out, "stderr": err,
        "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
        "host": os.uname().nodename, "time": datetime.now(UTC).isoformat(timespec="seconds"),
    })


class CommandTask(submitit.helpers.Checkpointable):
    """A one-off job running an `mriaug` command line (pool generation, diffusion training). Both resume
    from what they wrote to disk, so a requeue simply runs the same command again.

    `command` is the command line's entry point (`mriaug.cli.run`), handed over by the CLI at submission:
    this package sits below the CLI and never imports it."""

    def __init__(self, command: Callable[[list[str]], int] | None = None):
        self.command = command

    def __call__(self, argv: list[str]) -> int:
        command = getattr(self, "command", None)
        if command is None:  # pickled by an mriaug from before the cli/ and slurm/ packages
            raise SlurmError("this job was submitted by an older version of mriaug; submit it again "
                             f"(`mriaug {shlex.join(argv)} --profile ...`)")
        print(f"mriaug job: mriaug {shlex.join(argv)} on {os.uname().nodename}, "
              f"attempt {int(os.environ.get('SLURM_RESTART_COUNT', 0)) + 1}", file=sys.stderr, flush=True)
        rc = command(argv)
        if rc != 0:
            raise SlurmError(f"`mriaug {shlex.join(argv)}` exited with status {rc}")
        return 0


def collect_task(results_dir: str, run_ids: list[str] | None = None) -> int:
    """The collector job: `mriaug collect RESULTS_DIR --grid GRID` (tables in RESULTS_DIR/tables)."""
    from ..analysis.collect import collect

    c = collect(Path(results_dir), Path(results_dir) / "tables", run_ids=set(run_ids) if run_ids else None,
                warn=lambda m: print(m, file=sys.stderr, flush=True))
    return len(c.runs)


def upgrade_spec(spec: RunSpec) -> RunSpec:
    """A spec unpickled from a job queued by an earlier mriaug holds its hyper-parameters as a mapping."""
    if isinstance(spec.hparams, dict):
        object.__setattr__(spec, "hparams", hparams.from_dict(spec.model, spec.hparams))
    return spec
