"""`mriaug synth`: make or extend a pool, train the local diffusion model, report on a pool."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import EXIT_BUDGET, SettingError
from .options import (
    DEFAULT_SOURCE,
    DataOpt,
    DataOptions,
    DeviceOpt,
    HelpCommand,
    HelpGroup,
    Profile,
    classes_list,
    data_spec,
    load_grid,
)

if TYPE_CHECKING:
    from ..data.sources import DataSpec

HELP = """Make synthetic pools, train the local diffusion model, report on pools.

Make (or extend) a pool with this command itself, e.g.

\b
  mriaug synth --out POOL --generator NAME [-s KEY=VALUE ...]
  mriaug synth --grid jobs/smoke.toml --generator transform --classes Mild_Demented,Moderate_Demented
  mriaug synth --out pools/openai --generator openai --per-source 3 --dry-run

A rerun resumes: sources already in the pool are skipped. Generators: transform (local, no model),
openai (any OpenAI-compatible server; key from OPENAI_API_KEY), diffusion (a local model trained with
`mriaug synth train-diffusion`; no image leaves the site)."""

SplitOpt = Annotated[int | None, typer.Option(
    metavar="K", help="with --grid of `[data] splits = N`: only split K (0..N-1; seed s is tested on split s mod N), "
    "not all N")]

Settings = Annotated[list[str] | None, typer.Option(
    "--setting", "-s", metavar="KEY=VALUE", help="generator setting, repeatable: e.g. -s model=gpt-image-2 "
    "-s n=10 -s concurrency=8 or -s endpoint=variation (openai), -s checkpoint=DIR -s strength=0.5 (diffusion), "
    "-s contrast=0.1 (transform)")]


def _settings(items: list[str] | None) -> dict[str, object]:
    from .options import pairs

    # Prompts and model names stay strings; numbers and booleans are parsed.
    return pairs(items, "--setting", keep_str=("prompt", "model", "base_url", "size", "checkpoint"))


def _submit_self(profile: Path, job: str, out: Path) -> None:
    """Send the command line being run, less --profile, to Slurm as one job."""
    from .. import slurm
    from . import run

    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--profile":
            skip = True
        elif not a.startswith("--profile="):
            argv.append(a)
    j = slurm.submit_command(slurm.load_profile(profile), job, argv, out, run)
    typer.echo(f"submitted job {j.job_id}: mriaug {' '.join(argv)}")
    typer.echo(f"log: {j.paths.stderr}")


def synth(ctx: typer.Context,
          out: Annotated[Path | None, typer.Option(metavar="POOL", help="pool folder to create or extend")] = None,
          grid: Annotated[Path | None, typer.Option(metavar="GRID",
                                                    help="take data source and pool folder from a grid")] = None,
          split: SplitOpt = None,
          generator: Annotated[str, typer.Option(metavar="NAME", help="transform | copy | openai | diffusion")]
          = "transform",
          setting: Settings = None,
          data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
          classes: Annotated[str | None, typer.Option(metavar="A,B", help="comma-separated, or all (default)")]
          = None,
          per_source: Annotated[int, typer.Option(help="variations per source image")] = 1,
          max_sources: Annotated[int | None, typer.Option(help="at most this many sources per class")] = None,
          kept_for: Annotated[str | None, typer.Option(
              metavar="SCENARIO:SEED", help="only sources that run SCENARIO:SEED keeps (e.g. 4:0)")] = None,
          dry_run: Annotated[bool, typer.Option(help="print what would be made and its cost; make nothing")] = False,
          max_cost: Annotated[float | None, typer.Option(
              metavar="USD", help="stop when the pool's total spend (all runs) would exceed this")] = None,
          report: Annotated[bool, typer.Option(help="write report.png/report.json at the end")] = True,
          seed: Annotated[int, typer.Option(help="which sources --max-sources picks (generators take -s seed)")]
          = 0, profile: Profile = None) -> None:
    """Make or extend a synthetic pool from training images (resumable: done sources are skipped)."""
    if ctx.invoked_subcommand:
        return
    from ..data import sources as data_mod
    from ..data.kept_for import KeptFor

    targets, n_splits = _pool_targets(grid, out, generator, data_spec(data, data_option), split)
    if profile and not dry_run:
        return _submit_self(profile, "synth", targets[0][1] if len(targets) == 1 else Path(str(targets[0][1])).parent)
    options = _settings(setting)
    kept = KeptFor.parse(kept_for)
    failed = False
    for d, folder in targets:
        opts = dict(options)
        if n_splits > 1:
            typer.echo(f"split {d.options.get('split_seed')}: pool {folder}")
            if "checkpoint" in opts:  # a diffusion model per split, trained with `train-diffusion --grid`
                from ..plan.grid import pool_dir

                opts["checkpoint"] = pool_dir(str(opts["checkpoint"]), d, n_splits)
        # Pools (and diffusion models) are made for the source's own classes; a merged task maps their labels.
        ds = data_mod.load(d.unmerged())
        failed |= _make_one(ds, folder, generator, opts, classes, per_source, max_sources,
                            seed, dry_run, max_cost, kept, report)
    if failed:
        raise typer.Exit(1)


def _pool_targets(grid: Path | None, out: Path | None, generator: str, spec: DataSpec,
                  split: int | None = None) -> tuple[list[tuple[DataSpec, Path]], int]:
    """The pool folders to make, each with its data: --out, or the grid's pool for `generator` (all its splits'
    folders, or split `split`'s); and the number of splits the grid has (1 without a grid)."""
    if grid is None:
        if split is not None:
            raise SettingError(f"--split {split}: picks one of a grid's repeated splits; pass --grid GRID too")
        if out is None:
            raise SettingError("--out is required (or a --grid that sets pool); see `mriaug synth --help`")
        return [(spec, out)], 1
    g = load_grid(grid)
    data = _grid_split(g, grid, split)
    if out is not None:  # this folder, from the grid's data (split `split`'s with --split)
        return [(data[0] if split is not None else g.data, out)], 1
    pool = g.pool_for(generator)
    if not pool:
        raise SettingError(f"{grid}: the grid sets no pool; pass --out POOL")
    # A grid of K repeated subject splits has a pool folder per split (sources from that split).
    return [(d, Path(folder)) for d, folder in g.pool_dirs(pool) if d in data], len(g.split_data) or 1


def _grid_split(g: Any, grid: Path, split: int | None) -> list[DataSpec]:
    """The data of every split of the grid, or of split `split` alone (refused outside 0..K-1)."""
    every = g.split_data or [g.data]
    if split is None:
        return list(every)
    if isinstance(split, bool) or not 0 <= split < len(every):
        raise SettingError(f"--split {split}: the grid {grid} has {len(every)} split(s) ([data] splits = "
                           f"{len(every)}), numbered 0..{len(every) - 1}")
    return [every[split]]


def _make_one(ds: Any, out: Path, generator: str, options: dict[str, object],
              classes: str | None, per_source: int, max_sources: int | None, seed: int, dry_run: bool,
              max_cost: float | None, kept: Any, report: bool) -> bool:
    """Make one pool folder; True when some source failed (a rerun retries it)."""
    from ..generators import synth as synth_mod

    s = synth_mod.make_pool(ds, out, generator, classes=pool_classes(classes), per_source=per_source,
                            max_sources=max_sources, seed=seed, options=options, dry_run=dry_run, max_cost=max_cost,
                            kept_for=kept)
    if dry_run:
        typer.echo(f"dry run, pool {out}: {s['done']} image(s) already made; {s['text']}")
        if s.get("warning"):  # e.g. the model has a shutdown date
            typer.secho(s["warning"], fg="yellow", err=True)
        return False
    line = f"pool {out}: {s['pool_size']} images ({s['generated']} new)"
    if "spend_usd" in s:
        req = s.get("requests", {})
        line += (f"; spend ${s['spend_usd']:.4f} (usage-based; estimate ${s.get('spend_estimate_usd', 0.0):.4f}) "
                 f"over {req.get('sent', 0)} request(s), {req.get('billed', 0)} billed, {req.get('usage', 0)} "
                 f"with usage; this run ${s.get('run_spend_usd', 0.0):.4f} (estimate "
                 f"${s.get('run_spend_estimate_usd', 0.0):.4f})")
    typer.echo(line)
    if s.get("warning"):
        typer.secho(s["warning"], fg="yellow", err=True)
    if report and s["pool_size"]:
        if s["generated"] == 0 and _report_is_current(out):
            # A rerun of a finished pool (`make study` reruns every step) need not score it again: the report
            # takes a minute per pool, and nothing it reads has changed.
            typer.echo(f"report: {out} unchanged since its report.json (nothing new); kept")
        else:
            _report(out, ds)
    if s.get("failed"):
        typer.secho(f"{len(s['failed'])} source(s) failed (recorded in {Path(out) / 'pool.json'}; "
                    "a rerun retries them):", fg="yellow", err=True)
        for tag, err in sorted(s["failed"].items()):
            typer.echo(f"  train row {tag}: {err}", err=True)
    if s.get("stopped_at_budget"):
        typer.secho(s["message"], fg="yellow", err=True)
        raise typer.Exit(EXIT_BUDGET)
    return bool(s.get("failed"))


def pool_classes(classes: str | None) -> list[str] | None:
    """`--classes`: `all` is the default (None), so a pool or model made with it is the one made without it."""
    return None if classes is not None and classes.strip().lower() == "all" else classes_list(classes)


def _channels(channels: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in channels.split(","))
    except ValueError as e:
        raise SettingError(f"--channels {channels!r}: expected comma-separated integers") from e


def _trained(folder: str, info: dict[str, Any], steps: int) -> str:
    """One line on a trained (or resumed) model: its step, images, last loss and speed."""
    h = info["history"][-1] if info["history"] else {}
    ips = h.get("images_per_s")
    return (f"diffusion model {folder}: step {info['step']}/{steps}, {info['n_rows']} training images, "
            f"last loss {h.get('loss', float('nan')):.4f}" + (f", {ips:.1f} images/s" if ips else ""))


def train_diffusion(
        out: Annotated[Path, typer.Option(metavar="DIR", help="checkpoint folder (resumed when it exists)")],
        data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
        grid: Annotated[Path | None, typer.Option(metavar="GRID", help="take the data source from a grid")] = None,
        split: SplitOpt = None,
        steps: Annotated[int, typer.Option(help="total training steps")] = 20000,
        batch_size: Annotated[int, typer.Option(help="images per training step")] = 64,
        lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 2e-4,
        resolution: Annotated[int | None, typer.Option(help="model resolution (default: the dataset's)")] = None,
        channels: Annotated[str, typer.Option(metavar="C1,C2,...", help="UNet channels per level")] = "32,64,128,256",
        layers_per_block: Annotated[int, typer.Option(help="ResNet layers per UNet level")] = 2,
        attention: Annotated[bool, typer.Option(help="self-attention on the coarsest level")] = True,
        classes: Annotated[str | None, typer.Option(metavar="A,B", help="comma-separated, or all (default)")]
        = None,
        kept_for: Annotated[str | None, typer.Option(
            metavar="SCENARIO:SEED", help="train only on the real images run SCENARIO:SEED keeps (e.g. 4:0)")] = None,
        checkpoint_every: Annotated[int, typer.Option(help="write the checkpoint every this many steps")] = 500,
        precision: Annotated[str, typer.Option(metavar="bf16|fp32", help="autocast precision")] = "bf16",
        device: DeviceOpt = None,
        seed: Annotated[int, typer.Option(help="fixes initialisation, batches, noise and timesteps")] = 0,
        profile: Profile = None) -> None:
    """Train the class-conditional diffusion model of the `diffusion` generator (checkpointed, resumable)."""
    from .. import checks
    from ..data import sources as data_mod
    from ..data.kept_for import KeptFor
    from ..generators import diffusion

    # Checked before a job is submitted or a step is taken: NaN or a negative rate would fail late.
    checks.positive(lr, "--lr")
    for value, name in ((steps, "--steps"), (batch_size, "--batch-size"), (checkpoint_every, "--checkpoint-every"),
                        (layers_per_block, "--layers-per-block")):
        checks.positive_int(value, name)
    checks.seed(seed, "--seed")
    # A grid of K repeated subject splits trains a model per split, each on its own training part (DIR/split-SEED);
    # --split K only split K's.
    n_splits = 1
    if grid is None:
        if split is not None:
            raise SettingError(f"--split {split}: picks one of a grid's repeated splits; pass --grid GRID too")
        targets = [(data_spec(data, data_option), str(out))]
    else:
        g = load_grid(grid)
        chosen, n_splits = _grid_split(g, grid, split), len(g.split_data) or 1
        targets = [(d, folder) for d, folder in g.pool_dirs(str(out)) if d in chosen]
    if profile:
        return _submit_self(profile, "diffusion", out)
    kept = KeptFor.parse(kept_for)
    ch = _channels(channels)
    for spec, folder in targets:
        if n_splits > 1:
            typer.echo(f"split {spec.options.get('split_seed')}: model {folder}", err=True)
        ds = data_mod.load(spec.unmerged())
        info = diffusion.train(ds, folder, steps=steps, batch_size=batch_size, lr=lr, resolution=resolution,
                               channels=ch, layers_per_block=layers_per_block, attention=attention,
                               classes=pool_classes(classes), kept_for=kept, seed=seed,
                               checkpoint_every=checkpoint_every, precision=precision, device=device,
                               log=lambda m: typer.echo(m, err=True))
        typer.echo(_trained(folder, info, steps))
    typer.echo(f"use it: mriaug synth --generator diffusion -s checkpoint={out} -s strength=0.5 "
               + (f"--grid {grid}" + (f" --split {split}" if split is not None else "") if grid else "--out POOL ..."))


def report_cmd(pool: Annotated[Path, typer.Argument(metavar="POOL", help="pool folder")],
               data: Annotated[str | None, typer.Option(
                   "--data", metavar="SOURCE", help="dataset source (default: the one recorded in pool.json)")]
               = None, data_option: DataOptions = None,
               per_class: Annotated[int, typer.Option(help="sources shown per class")] = 4) -> None:
    """Write report.png (real sources beside their variations) and report.json (numbers per class: SSIM and
    histogram distance to the source, KID beside its real-vs-real floor, the share of near-copies of
    training images, class fidelity beside the classifier's recall on real held-out images); print the
    table, a plain-words verdict per number with its threshold, and how the images were made."""
    from ..data import sources as data_mod

    ds = data_mod.load(data_spec(data, data_option)) if data else None
    _report(pool, ds, per_class)


def _report_is_current(pool: Path) -> bool:
    """The pool's report.png and report.json exist and the report scored the images the pool holds now (its
    `pool_fingerprint`, the manifest's content: a rerun rewrites pool.json and the manifest, so no mtime says)."""
    import json

    from ..analysis import pool_report
    from ..data import pools

    made = pool / pool_report.REPORT_JSON
    if not (made.exists() and (pool / pool_report.REPORT_PNG).exists()):
        return False
    try:
        scored = json.loads(made.read_text()).get("pool_fingerprint")
    except (OSError, ValueError):
        return False  # a report cut short is made again
    return scored is not None and scored == pools.manifest_fingerprint(pool)


def _report(pool: Path, ds: Any, per_class: int = 4) -> None:
    """Write a pool's report.png / report.json and print its table, verdicts and provenance."""
    from ..analysis import pool_report

    r = pool_report.write(pool, ds, per_class)
    typer.echo(f"report: {pool / pool_report.REPORT_PNG}, {pool / pool_report.REPORT_JSON}")
    typer.echo(pool_report.format_table(r))
    typer.echo(pool_report.format_verdicts(r))
    typer.echo(pool_report.format_provenance(r))


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(cls=HelpGroup, invoke_without_command=True, no_args_is_help=False, help=HELP)
    synth_app.callback()(synth)
    synth_app.command("train-diffusion", cls=HelpCommand)(train_diffusion)
    synth_app.command("report", cls=HelpCommand)(report_cmd)
    app.add_typer(synth_app, name="synth")
