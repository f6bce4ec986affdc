"""Every run's state from the results folder, squeue and the submission records; `wait` polls it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan.grid import Grid
from ..plan.spec import RunSpec
from ..store import results
from .paths import failure_path, slurm_dir
from .queue import QUEUED_STATES, RUNNING_STATES, STATES, squeue_states


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
    skipped: list[str] = field(default_factory=list)  # files in the results folder that are not valid results
    profile: str | None = None  # the latest submission's profile

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
    out = []
    for path in sorted((slurm_dir(results_dir) / "submissions").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # records are written atomically; an unreadable one is not ours
        if isinstance(rec, dict) and isinstance(rec.get("tasks", {}), dict) and (
                rec.get("collector") is None or isinstance(rec["collector"], dict)):
            out.append(rec)
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
    try:
        fail = json.loads(failure_path(results_dir, run_id).read_text())
    except (OSError, ValueError):
        return None
    return fail if isinstance(fail, dict) and isinstance(fail.get("error"), str) else None


def _current_unit(task: dict[str, Any], done: set[str], results_dir: Path) -> list[str] | None:
    """The unit a packed task trains (or was training when it ended): its first unit with a run that is
    neither done nor failed in this job. Units train in order, so the ones after it have not started."""
    for unit in task["pack"]:
        for rid in unit:
            if rid in done:
                continue
            fail = _read_failure(results_dir, rid)
            if fail and fail.get("job_id") == task["job_id"]:
                continue
            return list(unit)
    return None


def _results(results_dir: Path) -> tuple[set[str], list[str]]:
    """The run ids with a valid result, and the result files that are not valid (why, each)."""
    done, skipped = set(), []
    for path, r in results.scan(results_dir) if results_dir.is_dir() else ():
        if isinstance(r, results.ResultError):
            skipped.append(str(r))
        else:
            done.add(path.stem)
    return done, skipped


def _run_state(spec: RunSpec, latest: dict[str, dict[str, Any]], done: set[str],
               queue: dict[str, str] | None, results_dir: Path) -> RunState:
    """One run's state: its result, else its latest task's Slurm state, failure record and log."""
    rid, task = spec.run_id, latest.get(spec.run_id)
    if rid in done:
        return RunState(spec, "done", task["job_id"] if task else None)
    if task is None:
        return RunState(spec, "unsubmitted")
    slurm_state = (queue or {}).get(task["job_id"])
    fail = _read_failure(results_dir, rid)
    current = _current_unit(task, done, results_dir) if task.get("pack") else None
    if slurm_state in RUNNING_STATES and fail and fail.get("job_id") == task["job_id"] and task.get("pack"):
        # A packed task goes on after a failed run: that run has failed while the task still runs.
        return RunState(spec, "failed", task["job_id"], fail.get("stderr") or task["stderr"], fail["error"])
    if slurm_state in RUNNING_STATES:
        # In a packed task only the unit in training runs; the units after it wait in the task.
        in_training = not task.get("pack") or rid in (current or [])
        return RunState(spec, "running" if in_training else "queued", task["job_id"], task["stderr"])
    if slurm_state is not None or queue is None:
        # Unknown without squeue: not done yet is all we can say, so count it as queued.
        return RunState(spec, "queued", task["job_id"], task["stderr"])
    error: str
    if fail:
        error = fail["error"]
    elif current is not None and rid not in current:
        labels = ", ".join(latest[r]["label"] for r in current if r in latest)
        error = f"not started: its packed task ended without a result while training {labels}"
    else:
        error = _last_error_line(task["stderr"]) or "ended without a result"
    return RunState(spec, "failed", task["job_id"], (fail or {}).get("stderr") or task["stderr"], error)


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
    done, skipped = _results(results_dir)
    runs = [_run_state(spec, latest, done, queue, results_dir) for spec in grid.runs]
    if collector:
        state = (queue or {}).get(collector["job_id"])
        collector["state"] = state or ("unknown" if queue is None else "ended")
    profile = records[-1].get("profile") if records else None
    return GridStatus(grid, runs, queue is not None, collector, skipped,
                      profile if isinstance(profile, str) else None)


def doctor_hint(st: GridStatus) -> str | None:
    """When runs failed and none has finished, the cluster (partition, image, GPUs, caches, folders) is the
    likelier cause than the runs: point at `mriaug doctor`."""
    c = st.counts()
    if not c["failed"] or c["done"]:
        return None
    return (f"{c['failed']} run{'s' if c['failed'] != 1 else ''} failed and none has finished: check the cluster "
            f"with `mriaug doctor --profile {st.profile or 'PROFILE'} --grid {st.grid.path}` before resubmitting")


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
    for err in st.skipped:
        lines.append(f"skipped (not a valid result): {err}")
    failed = [r for r in st.runs if r.state == "failed"]
    if failed:
        lines.append(f"failed runs ({len(failed)}):")
        for r in failed:
            lines.append(f"  {r.spec.label} [{r.spec.run_id}] job {r.job_id}: {r.error}")
            lines.append(f"    log: {r.log}")
        lines.append("resubmit them with the same `mriaug submit` command once fixed")
        hint = doctor_hint(st)
        if hint:
            lines.append(hint)
    if total["unsubmitted"]:
        lines.append(f"{total['unsubmitted']} runs not submitted yet: mriaug submit {g.path} --profile ...")
    if st.collector:
        col = st.collector
        tables = Path(col["tables"])
        lines.append(f"collector: job {col['job_id']} {col['state'].lower()}; tables "
                     + (f"in {tables}" if tables.is_dir() else f"not written yet ({tables})")
                     + f"; log {col['stdout']}")
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
