"""`mriaug plan`: the seeds a grid needs to see the effect you care about, and what they cost (the seed arithmetic in
`mriaug.analysis.power`, the tasks and hours in `mriaug.slurm.cost`)."""

from __future__ import annotations

import json
import math
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SettingError
from .options import GridArg, HelpCommand, load_grid

if TYPE_CHECKING:
    from ..analysis.power import RunSeconds
    from ..plan.grid import Grid
    from ..slurm.cost import Cost
    from ..slurm.profile import Profile

FORMATS = ("table", "json")


def _checked(fmt: str, power: float, detect: float | None, pilot: Path | None) -> None:
    if fmt not in FORMATS:
        raise SettingError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if not (math.isfinite(power) and 0 < power < 1):
        raise SettingError(f"--power must be a probability between 0 and 1 (exclusive), got {power}")
    if detect is not None and not (math.isfinite(detect) and detect > 0):
        raise SettingError(f"--detect must be a positive number in the metric's units, got {detect}")
    if pilot is not None and detect is None:
        raise SettingError("--detect DELTA is needed with --pilot: the median paired difference to detect, in the "
                           "metric's units (e.g. --detect 0.01 for one point of balanced accuracy)")


def _write_grid(doc: dict[str, Any], head: str, out: Path) -> Grid:
    """`doc` as a grid file at `out`, loaded first from a temporary copy (a grid that does not load is never
    written); the grid as loaded."""
    from ..plan.grid import load
    from ..store import atomic
    from ..store.tomlfile import dumps

    if out.is_dir():
        raise SettingError(f"--write {out}: is a folder; name the grid file to write")
    text = dumps(doc, head)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / (out.name if out.suffix == ".toml" else "grid.toml")
        probe.write_text(text)
        g = load(probe)
    atomic.write_text(out, text)
    return g


def _cost(g: Grid, profile: Profile | None, secs: RunSeconds) -> Cost:
    from ..analysis import power as pw
    from ..slurm.cost import cost

    return cost(g, profile, secs.cpu_s, secs.gpu_s, pw.GPU_TASK_STARTUP_S)


def _cost_dict(c: Cost, secs: RunSeconds, profile: Profile | None) -> dict[str, Any]:
    return {"runs": c.runs, "tasks": c.tasks, "arrays": c.arrays, "runs_per_task": c.runs_per_task,
            "cpu_hours": c.cpu_hours, "gpu_hours": c.gpu_hours, "gpu_source": list(secs.gpu_source.values()),
            "profile": str(profile.path) if profile else None, "throttle": c.throttle, "wall_hours": c.wall_hours,
            "wall_basis": c.wall_basis, "pretraining": list(secs.pretraining.values())}


def _with_pilot(g: Grid, pilot: Path, metric: str, detect: float, target: float, holm_over: int | None,
                profile: Profile | None, write: Path | None) -> dict[str, Any]:
    from ..analysis import power as pw
    from ..analysis import statistics as st

    comps = pw.comparisons(g, holm_over)
    p = pw.read_pilot(pilot)
    m = p.metric(metric)
    data = pw.load_splits(g)
    notes = [*p.notes, *pw.check_task(p, g, data)]
    pw.estimate(comps, p, m, detect, g, target=target)
    notes += [f"{c.cell} against {c.against}: no spread ({c.missing})" for c in comps if c.missing]
    beyond = [c for c in comps if not c.missing and c.seeds_needed is None]
    notes += [f"{c.cell} against {c.against}: more than {pw.MAX_SEEDS} seeds (sd {c.sd:.4g}); the plan leaves it "
              "out" for c in beyond]
    reachable = [c for c in comps if c.seeds_needed is not None]
    driver = max(reachable, key=lambda c: c.seeds_needed or 0, default=None)
    splits = len(g.split_data) or 1
    out: dict[str, Any] = {
        "grid": str(g.path), "name": g.name, "pilot": str(pilot), "pilot_runs": len(p.runs), "metric": m,
        "detect": detect, "power": target, "alpha": st.ALPHA, "splits": splits,
        "seeds_now": len({r.seed for r in g.runs}), "seeds": driver.seeds_needed if driver else None,
        "driven_by": {"cell": driver.cell, "against": driver.against} if driver else None,
        "comparisons": [c.to_dict() for c in comps], "cost": None, "written": None, "notes": notes}
    if driver is None or driver.seeds_needed is None:
        if write is not None:
            notes.append(f"nothing written to {write}: there is no plan")
        return out
    planned = pw.with_seeds(g, driver.seeds_needed)
    secs = pw.run_seconds(planned.runs, p, data)
    out["cost"] = _cost_dict(_cost(planned, profile, secs), secs, profile)
    notes += secs.notes
    if write is not None:
        doc = {**tomllib.loads(g.path.read_text()), "seeds": driver.seeds_needed, "results": str(g.results)}
        command = f"mriaug plan {g.path} --pilot {pilot} --metric {m} --detect {detect:g} --power {target:g}"
        _write_grid(doc, f"{g.path} with {driver.seeds_needed} seeds per cell, written by `{command}`:\nthe seeds "
                    f"that detect {detect:g} in {m} with probability {target:g} in {driver.cell} against "
                    f"{driver.against}, the comparison that needs the most.\nThe first seeds' runs are the grid's own "
                    "(same run ids, same results folder).", write)
        out["written"] = str(write)
    return out


def _without_pilot(g: Grid, profile: Profile | None, write: Path | None) -> dict[str, Any]:
    from ..analysis import power as pw

    cells = pw.pilot_cells(g)
    splits = len(g.split_data) or 1
    seeds = pw.pilot_seeds(splits)
    doc = pw.pilot_doc(tomllib.loads(g.path.read_text()), g, cells, seeds)
    names = [pw.cell_name(*c) for c in cells]
    head = (f"The pilot of {g.path}, written by `mriaug plan` without --pilot: {names[1]} against {names[0]}, "
            f"{seeds} seeds\n(the spread of {pw.PILOT_PAIRS} paired differences is known to about 15%). Run it, "
            f"then: mriaug plan {g.path} --pilot {doc['results']} --detect DELTA")
    if write is not None:
        pilot_grid = _write_grid(doc, head, write)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pilot_grid = _write_grid(doc, head, Path(tmp) / "pilot.toml")
    secs = pw.run_seconds(pilot_grid.runs, None, pw.load_splits(pilot_grid))
    c = _cost(pilot_grid, profile, secs)
    notes = [*secs.notes, "no measured seconds without a pilot: no CPU-hours (the pilot's runs measure them)"]
    return {"grid": str(g.path), "name": g.name, "pilot": None,
            "pilot_grid": {"cells": names, "seeds": seeds, "splits": splits, "pairs_for_spread": pw.PILOT_PAIRS,
                           "results": doc["results"], "reused": doc["results"] == str(g.results)},
            "cost": _cost_dict(c, secs, profile), "written": str(write) if write else None, "notes": notes}


def _h(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _f(v: float | None) -> str:
    return "∞" if v is None else f"{v:.4f}"


def _cost_lines(c: dict[str, Any]) -> list[str]:
    rpt = ", ".join(f"{m} {k}" for m, k in c["runs_per_task"].items())
    lines = [f"cost: {c['runs']} runs in {c['tasks']} array task(s), {c['arrays']} array(s) (runs per task: {rpt})",
             f"  {_h(c['cpu_hours'])} hours of training at the pilot's measured seconds, one run after another",
             f"  about {_h(c['gpu_hours'])} GPU-hours (an estimate: training images over the measured throughput, "
             "plus a start-up per task)"]
    lines += [f"    {s}" for s in c["gpu_source"]]
    if c["pretraining"]:  # counted in both figures (measured: a pilot's run of the cell trained both phases)
        lines.append("  pretraining counted: " + "; ".join(c["pretraining"]))
    if c["profile"]:
        basis = ", ".join(f"{m}: {b}" for m, b in c["wall_basis"].items())
        at = f"at most {c['throttle']} tasks of an array at once" if c["throttle"] else "no throttle"
        lines.append(f"  wall time with {c['profile']} ({at}; {basis}): {_h(c['wall_hours'])} hours")
    return lines


def _table(out: dict[str, Any]) -> str:
    from ..analysis.power import MAX_SEEDS

    if out["pilot"] is None:
        p = out["pilot_grid"]
        lines = [f"no pilot: run this pilot of {out['name']} ({out['grid']}) first: {p['cells'][1]} against "
                 f"{p['cells'][0]}, {p['seeds']} seeds each (seed s on split s mod {p['splits']}), results in "
                 f"{p['results']}" + (" (the full grid's first seeds: they count there too)" if p["reused"] else "")]
    else:
        lines = [f"plan of {out['name']} ({out['grid']}) from the pilot {out['pilot']} ({out['pilot_runs']} runs): "
                 f"{out['metric']}, a median paired difference of {out['detect']:g} detected with probability "
                 f"{out['power']:g}", f"test: two-sided Wilcoxon signed-rank, Holm over each family's comparisons, "
                 f"alpha {out['alpha']:g}; seed s on split s mod {out['splits']}", ""]
        rows = [("comparison", "against", "Holm over", "pairs", "sd", f"mde at {out['seeds_now']} seeds",
                 "seeds needed")]
        for c in out["comparisons"]:
            rows.append((c["cell"], c["against"], str(c["holm_over"]), str(c["pairs"]) if c["pairs"] else "—",
                         "—" if c["sd"] is None else f"{c['sd']:.4f}", "—" if c["sd"] is None else _f(c["mde_now"]),
                         "—" if c["sd"] is None else f">{MAX_SEEDS}" if c["seeds_needed"] is None
                         else str(c["seeds_needed"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                  for r in rows]
        lines.append("")
        if out["seeds"] is None:
            lines.append("plan: none; no comparison reaches the effect within the seeds mriaug plans")
        else:
            d = out["driven_by"]
            lines.append(f"plan: {out['seeds']} seeds per cell ({out['seeds'] // out['splits']} per split), the most "
                         f"any comparison needs ({d['cell']} against {d['against']})")
    if out["cost"]:
        lines += _cost_lines(out["cost"])
    lines += [f"note: {n}" for n in out["notes"]]
    if out["written"]:
        lines.append(f"wrote {out['written']}")
    return "\n".join(lines)


def plan(grid: GridArg,
         pilot: Annotated[Path | None, typer.Option(
             metavar="RESULTS", help="the pilot's runs: its results folder, or a runs.csv as `mriaug collect` writes "
             "it (without: the pilot grid to run first, and its cost)")] = None,
         metric: Annotated[str, typer.Option(
             metavar="METRIC", help="the metric the effect is in: test_ce, balanced_accuracy, ... (as collect "
             "--metric)")] = "test_ce",
         detect: Annotated[float | None, typer.Option(
             metavar="DELTA", help="the median paired difference to detect, in the metric's units, either sign "
             "(e.g. 0.01: one point of balanced accuracy)")] = None,
         power: Annotated[float, typer.Option(metavar="P", help="the probability of detecting it")] = 0.8,
         holm_over: Annotated[int | None, typer.Option(
             min=1, metavar="M", help="Holm over M comparisons against scenario 1, where the table will hold more "
             "than this grid's (default: the grid's own)")] = None,
         profile: Annotated[Path | None, typer.Option(
             metavar="PROFILE", help="cluster profile (slurm/*.toml): tasks at its runs_per_task, the wall time at "
             "its array_parallelism")] = None,
         fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="table | json")] = "table",
         write: Annotated[Path | None, typer.Option(
             metavar="FILE", help="write the grid with the planned seeds (without --pilot: the pilot grid) to FILE")]
         = None) -> None:
    """The seeds each comparison of a grid's table needs to detect an effect (the table's own test: two-sided
    Wilcoxon signed-rank, Holm), from a pilot's spread, and what they cost: runs, array tasks, hours."""
    _checked(fmt, power, detect, pilot)
    g = load_grid(grid)
    prof = None
    if profile is not None:
        from ..slurm.profile import load_profile

        prof = load_profile(profile)
    if pilot is None:
        out = _without_pilot(g, prof, write)
    else:
        assert detect is not None  # _checked
        out = _with_pilot(g, pilot, metric, detect, power, holm_over, prof, write)
    typer.echo(json.dumps(out, indent=2) if fmt == "json" else _table(out))


def register(app: typer.Typer) -> None:
    app.command("plan", cls=HelpCommand)(plan)
