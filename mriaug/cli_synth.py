"""`mriaug synth`: the pool-making commands.

    mriaug synth --out POOL --generator NAME [-s KEY=VALUE ...]   make or extend a pool (resumable)
    mriaug synth train-diffusion --out DIR ...                   train the local diffusion model
    mriaug synth report POOL                                     figure + fidelity numbers of a pool
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import data as data_mod
from . import grid as grid_mod
from . import pool_report
from . import synth as synth_mod
from .cli import USER_ERRORS, DataOpt, DataOptions, _fail, _load_data, _spec, pairs

Settings = Annotated[list[str] | None, typer.Option(
    "--setting", "-s", help="generator setting KEY=VALUE, e.g. -s endpoint=edit -s model=gpt-image-2 "
    "-s concurrency=8 (openai), -s checkpoint=DIR -s strength=0.5 (diffusion)")]


def _settings(items: list[str] | None) -> dict[str, object]:
    # Prompts and model names stay strings; numbers and booleans are parsed.
    return pairs(items, "--setting", keep_str=("prompt", "model", "base_url", "size", "checkpoint"))


Profile = Annotated[Path | None, typer.Option(
    help="submit this command as one Slurm job with this cluster profile instead of running it here")]


def _submit_self(profile: Path, job: str, out: Path) -> None:
    """Send the command line being run, less --profile, to Slurm as one job (see mriaug/slurm.py)."""
    import sys

    from . import slurm

    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--profile":
            skip = True
        elif not a.startswith("--profile="):
            argv.append(a)
    try:
        j = slurm.submit_command(slurm.load_profile(profile), job, argv, out)
    except (slurm.ProfileError, slurm.SlurmError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"submitted job {j.job_id}: mriaug {' '.join(argv)}")
    typer.echo(f"log: {j.paths.stderr}")


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(invoke_without_command=True, no_args_is_help=False,
                            help="Make synthetic pools, train the local diffusion model, report on pools.")
    app.add_typer(synth_app, name="synth")

    @synth_app.callback()
    def synth(ctx: typer.Context,
              out: Annotated[Path | None, typer.Option(help="pool folder to create or extend")] = None,
              grid: Annotated[Path | None, typer.Option(help="take data source and pool folder from a grid")] = None,
              generator: Annotated[str, typer.Option(help="transform | openai | diffusion")] = "transform",
              setting: Settings = None,
              data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None,
              classes: Annotated[str | None, typer.Option(help="comma-separated classes (default: all)")] = None,
              per_source: Annotated[int, typer.Option(help="variations per source image")] = 1,
              max_sources: Annotated[int | None, typer.Option(help="at most this many sources per class")] = None,
              kept_for: Annotated[str | None, typer.Option(
                  help="only sources that run SCENARIO:SEED keeps (e.g. 4:0)")] = None,
              dry_run: Annotated[bool, typer.Option(help="print what would be made and its cost")] = False,
              max_cost: Annotated[float | None, typer.Option(
                  help="stop when the pool's total spend (USD, all runs) would exceed this")] = None,
              report: Annotated[bool, typer.Option(help="write report.png/report.json at the end")] = True,
              seed: Annotated[int, typer.Option(help="which sources --max-sources picks (generators take -s seed)")]
              = 0, profile: Profile = None) -> None:
        """Make a synthetic pool from training images (resumable: done sources are skipped)."""
        if ctx.invoked_subcommand:
            return
        spec = _spec(data, data_option)
        if grid:
            try:
                g = grid_mod.load(grid)
            except grid_mod.GridError as e:
                raise _fail(str(e)) from e
            spec, out = g.data, out or (Path(g.pool) if g.pool else None)
        if out is None:
            raise _fail("--out is required (or a --grid that sets pool)")
        if profile and not dry_run:
            return _submit_self(profile, "synth", out)
        options = _settings(setting)
        ds = _load_data(spec)
        try:
            s = synth_mod.make_pool(ds, out, generator, classes=classes.split(",") if classes else None,
                                    per_source=per_source, max_sources=max_sources, seed=seed, options=options,
                                    dry_run=dry_run, max_cost=max_cost, kept_for=synth_mod.parse_kept_for(kept_for))
        except USER_ERRORS as e:
            raise _fail(str(e)) from e
        if dry_run:
            typer.echo(f"dry run, pool {out}: {s['done']} image(s) already made; {s['text']}")
            return
        line = f"pool {out}: {s['pool_size']} images ({s['generated']} new)"
        if "spend_usd" in s:
            req = s.get("requests", {})
            line += f"; spend ${s['spend_usd']:.4f} over {req.get('sent', 0)} request(s), {req.get('billed', 0)} billed"
        typer.echo(line)
        if report and s["pool_size"]:
            try:
                r = pool_report.write(out, ds)
                typer.echo(f"report: {Path(out) / pool_report.REPORT_PNG}, {Path(out) / pool_report.REPORT_JSON}")
                typer.echo(pool_report.format_table(r))
            except USER_ERRORS as e:
                raise _fail(str(e)) from e
        if s.get("failed"):
            typer.secho(f"{len(s['failed'])} source(s) failed (recorded in {Path(out) / 'pool.json'}; "
                        "a rerun retries them):", fg="yellow", err=True)
            for tag, err in sorted(s["failed"].items()):
                typer.echo(f"  train row {tag}: {err}", err=True)
        if s.get("stopped_at_budget"):
            typer.secho(s["message"], fg="yellow", err=True)
            raise typer.Exit(3)
        if s.get("failed"):
            raise typer.Exit(1)

    @synth_app.command("train-diffusion")
    def train_diffusion(
            out: Annotated[Path, typer.Option(help="checkpoint folder (resumed when it exists)")],
            data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None,
            grid: Annotated[Path | None, typer.Option(help="take the data source from a grid")] = None,
            steps: Annotated[int, typer.Option(help="total training steps")] = 20000,
            batch_size: int = 64, lr: float = 2e-4,
            resolution: Annotated[int | None, typer.Option(help="model resolution (default: the dataset's)")] = None,
            channels: Annotated[str, typer.Option(help="UNet channels per level")] = "32,64,128,256",
            layers_per_block: int = 2,
            attention: Annotated[bool, typer.Option(help="self-attention on the coarsest level")] = True,
            classes: Annotated[str | None, typer.Option(help="comma-separated classes (default: all)")] = None,
            kept_for: Annotated[str | None, typer.Option(
                help="train only on the real images run SCENARIO:SEED keeps (e.g. 4:0)")] = None,
            checkpoint_every: int = 500, precision: Annotated[str, typer.Option(help="bf16 | fp32")] = "bf16",
            device: Annotated[str | None, typer.Option(help="cuda | cpu (default: cuda if available)")] = None,
            seed: int = 0, profile: Profile = None) -> None:
        """Train the class-conditional diffusion model of the `diffusion` generator (checkpointed, resumable)."""
        from .generators import diffusion

        if profile:
            return _submit_self(profile, "diffusion", out)
        spec = _spec(data, data_option)
        if grid:
            try:
                spec = grid_mod.load(grid).data
            except grid_mod.GridError as e:
                raise _fail(str(e)) from e
        ds = _load_data(spec)
        try:
            ch = tuple(int(c) for c in channels.split(","))
        except ValueError as e:
            raise _fail(f"--channels {channels!r}: expected comma-separated integers") from e
        try:
            info = diffusion.train(ds, out, steps=steps, batch_size=batch_size, lr=lr, resolution=resolution,
                                   channels=ch, layers_per_block=layers_per_block, attention=attention,
                                   classes=classes.split(",") if classes else None,
                                   kept_for=synth_mod.parse_kept_for(kept_for), seed=seed,
                                   checkpoint_every=checkpoint_every, precision=precision, device=device,
                                   log=lambda m: typer.echo(m, err=True))
        except USER_ERRORS as e:
            raise _fail(str(e)) from e
        h = info["history"][-1] if info["history"] else {}
        ips = h.get("images_per_s")
        typer.echo(f"diffusion model {out}: step {info['step']}/{steps}, {info['n_rows']} training images, "
                   f"last loss {h.get('loss', float('nan')):.4f}" + (f", {ips:.1f} images/s" if ips else ""))
        typer.echo(f"use it: mriaug synth --generator diffusion -s checkpoint={out} -s strength=0.5 --out POOL ...")

    @synth_app.command("report")
    def report_cmd(pool: Annotated[Path, typer.Argument(help="pool folder")],
                   data: Annotated[str | None, typer.Option(
                       "--data", help="dataset source (default: the one recorded in pool.json)")] = None,
                   data_option: DataOptions = None,
                   per_class: Annotated[int, typer.Option(help="sources shown per class")] = 4) -> None:
        """Write report.png (real sources beside their variations) and report.json (fidelity per class)."""
        try:
            ds = _load_data(_spec(data, data_option)) if data else None
            r = pool_report.write(pool, ds, per_class)
        except USER_ERRORS as e:
            raise _fail(str(e)) from e
        typer.echo(f"report: {pool / pool_report.REPORT_PNG}, {pool / pool_report.REPORT_JSON}")
        typer.echo(pool_report.format_table(r))
