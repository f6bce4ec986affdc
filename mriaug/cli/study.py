"""`mriaug data`, `prefetch`, `run`, `grid`, `collect`: the study on this machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SettingError
from .options import (
    DEFAULT_SOURCE,
    DataOpt,
    DataOptions,
    DeviceOpt,
    GridArg,
    HelpCommand,
    HelpGroup,
    data_spec,
    load_grid,
)

if TYPE_CHECKING:
    from ..grid import Grid
    from ..spec import RunSpec


def data_show(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None) -> None:
    """Per-class image counts of each split (thesis Table 2.1)."""
    from .. import data as data_mod

    ds = data_mod.load(data_spec(data, data_option))
    tr, te = ds.counts("train"), ds.counts("test")
    res = f"{ds.resolution}x{ds.resolution}"
    typer.echo(f"source: {ds.source['source']}  fingerprint: {ds.fingerprint}  resolution: {res}")
    typer.echo(f"{'class':<22}{'train':>8}{'test':>8}")
    for name in tr:
        typer.echo(f"{name:<22}{tr[name]:>8}{te[name]:>8}")
    typer.echo(f"{'total':<22}{sum(tr.values()):>8}{sum(te.values()):>8}")


def data_audit(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
               as_json: Annotated[bool, typer.Option("--json", help="print the audit as one JSON object")] = False,
               ) -> None:
    """Recover the scan groups from the images and check how independent the test split is of training."""
    from .. import audit
    from .. import data as data_mod

    ds = data_mod.load(data_spec(data, data_option))
    r = audit.audit(ds, data_mod.cache_root() / "groups")
    typer.echo(json.dumps(r) if as_json else audit.format_text(r))


def data_prepare(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None) -> None:
    """Decode a source into the uint8 array cache that runs read."""
    from .. import data as data_mod

    ds = data_mod.load(data_spec(data, data_option))
    typer.echo(f"cached {len(ds.train_y)} train + {len(ds.test_y)} test images, fingerprint {ds.fingerprint}")


def prefetch(grid: Annotated[Path | None, typer.Option(metavar="GRID", help="warm what every run of this grid "
                                                       "needs (dataset and pretrained weights)")] = None,
             data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
             model: Annotated[list[str] | None, typer.Option(
                 metavar="MODEL", help="a model whose pretrained weights to fetch (repeatable): cnn | resnet18 | vit")]
             = None) -> None:
    """Download the dataset and pretrained weights into the caches runs read (needs internet)."""
    from .. import data as data_mod
    from .. import hparams, models

    if grid:
        g = load_grid(grid)
        spec, archs = g.data, {hp.arch for hp in g.hparams.values() if hp.pretrained and not hp.weights}
    else:
        spec = data_spec(data, data_option)
        archs = {hparams.resolve(m).arch for m in (model or []) if hparams.card(m).pretrained_by_default}
    ds = data_mod.load(spec)
    typer.echo(f"dataset {spec.source}: {len(ds.train_y)} train / {len(ds.test_y)} test, fingerprint {ds.fingerprint}")
    for arch in sorted(archs):
        models.prefetch(arch)
        typer.echo(f"weights {arch}: cached")


def run(model: Annotated[str, typer.Option(metavar="MODEL", help="cnn | resnet18 | vit")],
        scenario: Annotated[str, typer.Option(metavar="SCENARIO", help="scenario preset 1-6")],
        aug: Annotated[str, typer.Option(metavar="AUG", help="none | hflip | autoaugment")],
        seed: Annotated[int, typer.Option(min=0, help="fixes the subsample, synthetic picks, init and order")] = 0,
        data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
        pool: Annotated[str | None, typer.Option(metavar="DIR", help="synthetic pool folder (scenarios 3-6)")] = None,
        out: Annotated[Path, typer.Option(metavar="DIR", help="results folder")] = Path("results/runs"),
        grid: Annotated[Path | None, typer.Option(
            metavar="GRID", help="take the model's hyper-parameters from this grid (default: the thesis's, "
            "shipped with mriaug, which jobs/thesis.toml runs too)")] = None,
        epochs: Annotated[int | None, typer.Option(help="override the number of epochs")] = None,
        lr: Annotated[float | None, typer.Option(help="override the learning rate")] = None,
        batch_size: Annotated[int | None, typer.Option(help="override the batch size")] = None,
        resolution: Annotated[int | None, typer.Option(help="override the input resolution (pixels per side)")]
        = None,
        pretrained: Annotated[bool | None, typer.Option(
            "--pretrained/--no-pretrained", help="start from pretrained weights (default: the model's)")] = None,
        weights: Annotated[str | None, typer.Option(metavar="FILE", help="local pretrained weights file "
                                                                         "(.safetensors)")] = None,
        device: DeviceOpt = None,
        save_weights: Annotated[bool, typer.Option(help="also write the trained weights (.safetensors)")] = False,
        budget: Annotated[str, typer.Option(
            metavar="BUDGET", help="epochs (the thesis) | steps (the optimizer steps scenario 1 takes in its epochs)")]
        = "epochs",
        select: Annotated[str, typer.Option(
            metavar="SELECT", help="last (the thesis) | best_val (the epoch with the lowest validation loss; needs "
            "-o val_fraction > 0, the default on -o split=subject)")] = "last",
        ) -> None:
    """Train and evaluate one run (hyper-parameters default to the thesis's); write its JSON result."""
    from .. import grid as grid_mod
    from .. import hparams, results, scenarios
    from ..train import execute

    base = grid_mod.model_hparams(model, grid)
    hp = hparams.resolve(model, base.to_dict(), dict(epochs=epochs, lr=lr, batch_size=batch_size,
                                                   resolution=resolution, pretrained=pretrained, weights=weights))
    if scenario not in scenarios.SCENARIOS:
        raise SettingError(f"--scenario {scenario!r}: unknown scenario; presets: {', '.join(scenarios.SCENARIOS)}")
    spec = grid_mod.make_spec(model, scenarios.SCENARIOS[scenario], aug, seed, hp, data_spec(data, data_option), pool,
                             budget=budget, select=select)
    done = results.path_for(out, spec.run_id)
    if done.exists():
        typer.echo(f"run {spec.run_id} is already done: {done} (delete it to train again)", err=True)
        if save_weights and not results.weights_for(out, spec.run_id).exists():
            typer.secho("warning: it was trained without --save-weights; no weights to write", fg="yellow", err=True)
    r = execute(spec, out, device=device, save_weights=save_weights)
    if r.diverged:
        typer.echo(json.dumps({"run_id": r.run_id, "status": "diverged", "epoch": r.diverged_at_epoch,
                               "result": str(results.path_for(out, r.run_id))}))
        return
    m = r.metrics
    assert m.test_ce is not None and m.accuracy is not None and m.balanced_accuracy is not None  # read checked them
    typer.echo(json.dumps({"run_id": r.run_id, "test_ce": round(m.test_ce, 4), "accuracy": round(m.accuracy, 4),
                           "balanced_accuracy": round(m.balanced_accuracy, 4),
                           "result": str(results.path_for(out, r.run_id))}))


def grid_cmd(file: GridArg, device: DeviceOpt = None,
             verbose: Annotated[bool, typer.Option(help="print a line per epoch")] = False,
             only: Annotated[list[str] | None, typer.Option(
                 metavar="RUN_ID", help="only the runs whose id starts with this (repeatable), e.g. to rerun one run "
                 "of a published runs.csv")] = None,
             results_dir: Annotated[Path | None, typer.Option(
                 "--results", metavar="DIR", help="write results here instead of the grid's folder")] = None,
             dry_run: Annotated[bool, typer.Option(
                 help="print each setting the grid trains and the run count; train nothing")] = False) -> None:
    """Run every run of a grid on this machine, skipping finished ones, then print the tables."""
    from tqdm import tqdm

    from .. import grid as grid_mod
    from .. import local, results
    from ..analysis.collect import collect
    from ..errors import PoolError

    g = load_grid(file)
    if results_dir is not None:
        g.results = results_dir
    if only:
        g.runs = [r for r in g.runs if any(r.run_id.startswith(p) for p in only)]
        if not g.runs:
            raise SettingError(f"{file}: no run id starts with {', '.join(only)}")
    done = results.done_ids(g.results)
    todo = [r for r in g.runs if r.run_id not in done]
    counts = f"grid {g.name}: {len(g.runs)} runs, {len(g.runs) - len(todo)} done, {len(todo)} to run -> {g.results}"
    if dry_run:
        _print_settings(g)
        typer.echo(f"{counts} (dry run: nothing trained)")
        return
    try:
        grid_mod.check_pools(todo)
    except PoolError as e:
        raise PoolError(f"{file}: {e}") from e
    typer.echo(counts)
    log = (lambda m: tqdm.write(m, file=sys.stderr)) if verbose else (lambda m: None)
    with tqdm(total=len(todo), unit="run", file=sys.stderr) as bar:
        worker = local.Worker(Path(g.results), device=device, save_weights=g.save_weights, log=log,
                              progress=_Bar(bar))
        worker.run(g.units(todo))
    collect(g.results, g.results / "tables", run_ids={r.run_id for r in g.runs}, echo=typer.echo, warn=_warn)


def _print_settings(g: Grid) -> None:
    """What `grid --dry-run` shows of each setting the grid trains."""
    for s in g.settings():
        hp = ", ".join(f"{k}={v}" for k, v in s["hparams"].items() if v is not None)
        opts = ", ".join(f"{k}={v}" for k, v in s["options"].items())
        typer.echo(f"{s['model']}: {s['runs']} runs; {hp}")
        packing = f"packs of {s['pack_seeds']} seeds" if s["pack_seeds"] > 1 else "one run per task"
        typer.echo(f"  data {s['data']}" + (f" ({opts})" if opts else "") + f"; budget {s['budget']}, select "
                   f"{s['select']}; pools {', '.join(s['pools']) or 'none'}; {packing}")


class _Bar:
    """The local scheduler's progress on a tqdm bar (`mriaug.local.Progress`)."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def starting(self, unit: list[RunSpec]) -> None:
        from .. import local

        self.bar.set_postfix_str(local.describe(unit))

    def trained(self, unit: list[RunSpec]) -> None:
        self.bar.update(len(unit))

    def waiting(self, busy: int) -> None:
        from tqdm import tqdm

        tqdm.write(f"{busy} run(s) being trained by other workers; waiting for them", file=sys.stderr)


def _warn(msg: str) -> None:
    typer.secho(msg, fg="yellow", err=True)


def collect_cmd(results_dir: Annotated[Path, typer.Argument(metavar="RESULTS_DIR", help="folder of run results")],
                out: Annotated[Path | None, typer.Option(metavar="DIR",
                                                         help="where tables go (default RESULTS_DIR/tables)")] = None,
                thesis: Annotated[bool, typer.Option(help="also print our medians beside the thesis's")] = False,
                grid: Annotated[Path | None, typer.Option(
                    metavar="GRID",
                    help="only the runs of this grid (others in the folder, e.g. of an earlier version, left out)")]
                = None,
                metric: Annotated[str, typer.Option(
                    metavar="METRIC",
                    help="what the tables show: test_ce, accuracy, balanced_accuracy, macro_f1, ece or recall:CLASS "
                         "(stats.csv holds them all)")] = "test_ce") -> None:
    """Print the thesis tables (per cell the median with its bootstrap 95% interval, n, and a mark where
    a scenario differs from scenario 1, paired by seed) and write CSV, Markdown, LaTeX, stats.csv and a figure."""
    from ..analysis import statistics
    from ..analysis.collect import collect

    metric = statistics.metric_name(metric)

    if not results_dir.exists():
        raise SettingError(f"results folder {results_dir} does not exist")
    if not results_dir.is_dir():
        raise SettingError(f"{results_dir} is a file; collect takes the folder that holds the run results")
    target = out or results_dir / "tables"
    if target.exists() and not target.is_dir():
        raise SettingError(f"--out {target}: is a file; tables go into a folder (e.g. {results_dir / 'tables'})")
    ids = {r.run_id for r in load_grid(grid).runs} if grid else None
    collect(results_dir, target, versus_thesis=thesis, run_ids=ids, metric=metric, echo=typer.echo, warn=_warn)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(cls=HelpGroup, help="Inspect and prepare the dataset.", no_args_is_help=True)
    data_app.command("show", cls=HelpCommand)(data_show)
    data_app.command("prepare", cls=HelpCommand)(data_prepare)
    data_app.command("audit", cls=HelpCommand)(data_audit)
    app.add_typer(data_app, name="data")
    app.command(cls=HelpCommand)(prefetch)
    app.command(cls=HelpCommand)(run)
    app.command("grid", cls=HelpCommand)(grid_cmd)
    app.command("collect", cls=HelpCommand)(collect_cmd)
