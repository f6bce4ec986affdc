"""`mriaug submit` / `mriaug status`: the Slurm side of the command line (see mriaug/slurm/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import EXIT_BUDGET
from .options import GridArg, HelpCommand, load_grid

if TYPE_CHECKING:  # imported when a command runs, to keep `mriaug --help` fast
    from ..slurm import Plan


def _sizes(arrays: list[Any]) -> str:
    """Array sizes in tasks, compactly: "16 + 8", or "15x16 + 1x8" for many arrays."""
    sizes = [len(a.tasks) for a in arrays]
    if len(sizes) <= 3:
        return " + ".join(map(str, sizes))
    return " + ".join(f"{sizes.count(n)}x{n}" for n in dict.fromkeys(sizes))


def _print_plan(p: Plan) -> None:
    g, prof = p.grid, p.profile
    typer.echo(f"grid {g.name} ({g.path}): {len(g.runs)} runs, {p.done} done, {p.active} queued or running, "
               f"{p.to_submit} to submit -> {g.results}")
    image = f"apptainer image {prof.container.image}" if prof.container else "no container"
    limit = f"{p.max_array_size} ({p.max_array_source})" if p.max_array_size else "unknown"
    typer.echo(f"profile {prof.name} ({prof.path}): {image}; max array size {limit}")
    for w in p.warnings:
        typer.secho(f"warning: {w}", fg="yellow", err=True)
    if not p.arrays:
        return
    typer.echo(f"{'model':<10}{'runs':>6}{'tasks':>7}  {'arrays':<16}{'throttle':<10}resources")
    packing = []
    for model in dict.fromkeys(a.model for a in p.arrays):
        arrays = [a for a in p.arrays if a.model == model]
        throttle = f"%{arrays[0].throttle}" if arrays[0].throttle else "none"
        runs, tasks = sum(len(a.runs) for a in arrays), sum(len(a.tasks) for a in arrays)
        typer.echo(f"{model:<10}{runs:>6}{tasks:>7}  {_sizes(arrays):<16}{throttle:<10}"
                   f"{arrays[0].resources.describe()}")
        if runs != tasks:
            seeds = g.pack_seeds.get(model, 1)
            packs = sum(len(t) for a in arrays for t in a.tasks)
            k = arrays[0].resources.runs_per_task
            packing.append(f"{model}: {runs} runs in {tasks} tasks (runs_per_task = {k})"
                           + (f", trained as {packs} seed packs of up to {seeds} (pack_seeds)" if seeds > 1 else "")
                           + "; a task trains its runs one after another, data loaded once")
    for line in packing:
        typer.echo(line)
    typer.echo(f"collector: 1 job after all {len(p.arrays)} arrays (afterany), {prof.collector.describe()} "
               f"-> {g.results / 'tables'}")


def submit(grid: GridArg,
           profile: Annotated[Path, typer.Option(metavar="PROFILE", help="cluster profile, e.g. slurm/local.toml")],
           dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be submitted; submit nothing")]
           = False
           ) -> None:
    """Submit the grid's missing runs to Slurm: an array task per run, then a collector job.

    Runs with a result, or still queued or running, are not submitted again. See slurm/README.md."""
    from .. import slurm
    from ..slurm.status import doctor_hint

    g = load_grid(grid)
    p = slurm.plan(g, slurm.load_profile(profile), dry_run=dry_run)
    _print_plan(p)
    hint = doctor_hint(slurm.grid_status(g)) if p.arrays else None
    if hint:
        typer.secho(f"warning: {hint}", fg="yellow", err=True)
    if dry_run:
        typer.echo("dry run: nothing submitted")
        return
    if not p.arrays:
        typer.echo("nothing to submit" + (" (all runs done)" if p.done == len(g.runs) else ""))
        return
    s = slurm.submit(p)
    for a in s.arrays:
        typer.echo(f"submitted array {a.job_id}: {a.model}, {len(a.runs)} run{'s' if len(a.runs) != 1 else ''}")
    typer.echo(f"submitted collector {s.collector_id} (afterany on {len(s.arrays)} arrays)")
    typer.echo(f"record: {s.record}")
    typer.echo(f"follow with: mriaug status {grid} --wait")


def status(grid: GridArg,
           wait: Annotated[bool, typer.Option("--wait", help="block until every run is done or failed")] = False,
           interval: Annotated[float, typer.Option(metavar="SECONDS", help="seconds between polls with --wait")]
           = 10.0,
           timeout: Annotated[float | None, typer.Option(metavar="SECONDS",
                                                         help="give up waiting after this many seconds")] = None
           ) -> None:
    """Runs done, queued, running and failed per model and scenario (results folder + squeue).

    Failed runs are listed with their error and log. With --wait: poll until nothing is queued or running
    (and the collector ended); exit 0 when all runs are done, 1 when any failed or was never submitted,
    3 on timeout."""
    from .. import slurm

    g = load_grid(grid)
    if wait:
        try:
            st = slurm.wait(g, interval=interval, timeout=timeout, echo=typer.echo)
        except TimeoutError as e:
            typer.echo(slurm.render_status(slurm.grid_status(g)))
            typer.secho(f"timed out: {e}", fg="red", err=True)
            raise typer.Exit(EXIT_BUDGET) from e
    else:
        st = slurm.grid_status(g)
    typer.echo(slurm.render_status(st))
    c = st.counts()
    if wait and (c["failed"] or c["unsubmitted"]):
        raise typer.Exit(1)


def doctor(profile: Annotated[Path, typer.Option(metavar="PROFILE", help="cluster profile, e.g. slurm/local.toml")],
           grid: Annotated[Path | None, typer.Option(
               metavar="GRID", help="also check what this grid needs: its data and weights caches, results and "
               "pool folders, array sizes")] = None,
           timeout: Annotated[float, typer.Option(
               metavar="SECONDS", help="give up on the doctor's job after this many seconds (queue wait included)")]
           = 600.0,
           min_free_gb: Annotated[float, typer.Option(
               metavar="GIB", help="free space needed where results go")] = 5.0,
           ) -> None:
    """Check a cluster before a grid is spent on it: one line per check, ok or PROBLEM with what to do.

    From this login node: Slurm, partitions, resources (sbatch --test-only), array size, container image,
    this environment's lock, results folder, free space. Then one short job with the profile's resources and
    container: image imports, GPUs, caches (offline), results and pool folders writable from the node, clock
    skew against MRIAUG_LOCK_TIMEOUT. Exit 0 only when every check passes."""
    from ..slurm import doctor as doc
    from ..slurm import load_profile

    prof = load_profile(profile)
    g = load_grid(grid) if grid else None
    typer.echo(f"doctor: profile {prof.name} ({prof.path})" + (f", grid {g.name} ({g.path})" if g else ""))
    checks = doc.run_doctor(prof, g, timeout_s=timeout, min_free_gb=min_free_gb, echo=typer.echo)
    typer.echo(doc.summary(checks))
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the cluster commands to the main app."""
    app.command(cls=HelpCommand)(submit)
    app.command(cls=HelpCommand)(status)
    app.command(cls=HelpCommand)(doctor)
