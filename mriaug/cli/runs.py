"""`mriaug run`, `grid`, `collect`: runs trained on this machine (one, or every run of a grid through the local
scheduler, `mriaug.local`) and the tables of their results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import SettingError
from .options import DEFAULT_SOURCE, DataOpt, DataOptions, DeviceOpt, GridArg, HelpCommand, data_spec, load_grid

if TYPE_CHECKING:
    from ..plan.grid import Grid
    from ..plan.spec import RunSpec
    from ..store.results import RunResult


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
    from .. import local
    from ..plan import grid as grid_mod
    from ..plan import hparams, scenarios
    from ..store import results

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
    (r,) = local.train_unit([spec], out, device=device, save_weights=save_weights)
    typer.echo(json.dumps(_summary(r, results.path_for(out, r.run_id))))


def _summary(r: RunResult, path: Path) -> dict[str, Any]:
    """What `mriaug run` prints of a run's result: its metrics rounded, or that it diverged."""
    if r.diverged:
        return {"run_id": r.run_id, "status": "diverged", "epoch": r.diverged_at_epoch, "result": str(path)}
    m = r.metrics
    assert m.test_ce is not None and m.accuracy is not None and m.balanced_accuracy is not None  # read checked them
    return {"run_id": r.run_id, "test_ce": round(m.test_ce, 4), "accuracy": round(m.accuracy, 4),
            "balanced_accuracy": round(m.balanced_accuracy, 4), "result": str(path)}


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

    from .. import local
    from ..analysis.collect import collect
    from ..errors import PoolError
    from ..plan import grid as grid_mod
    from ..store import results

    g = load_grid(file)
    if results_dir is not None:
        g.results = results_dir
    if only:
        chosen = [r for r in g.runs if any(r.run_id.startswith(p) for p in only)]
        if not chosen:
            # A run's id holds its pool's content: until the pool is made here, a published id matches no run.
            missing = _missing_pools(file, [r for r in g.runs if r.pool in grid_mod.missing_pools(g.runs)])
            _list_missing(missing)
            if missing:
                raise PoolError(f"{file}: no run id starts with {', '.join(only)}, and {len(missing)} of the grid's "
                                "pool folders are not made yet (above, each with the command that makes it); a run "
                                "that adds synthetic images has its id only once its pool exists: make the pool of "
                                "the run's split (seed s uses split s mod K) and try again")
            raise SettingError(f"{file}: no run id starts with {', '.join(only)}")
        g.runs = chosen
    done = results.done_ids(g.results)
    todo = [r for r in g.runs if r.run_id not in done]
    counts = f"grid {g.name}: {len(g.runs)} runs, {len(g.runs) - len(todo)} done, {len(todo)} to run -> {g.results}"
    if dry_run:
        # What `grid` would refuse is refused here too (the data under every split, each pool against it);
        # a pool not made yet is listed with the command that makes it.
        missing = _missing_pools(file, todo)
        _print_settings(g)
        _list_missing(missing)
        typer.echo(f"{counts} (dry run: nothing trained" + (f"; {len(missing)} pool folder(s) to make first, "
                                                            "above)" if missing else ")"))
        return
    _check_pools(file, todo)
    typer.echo(counts)
    log = (lambda m: tqdm.write(m, file=sys.stderr)) if verbose else (lambda m: None)
    with tqdm(total=len(todo), unit="run", file=sys.stderr) as bar:
        worker = local.Worker(Path(g.results), device=device, save_weights=g.save_weights, log=log,
                              progress=_Bar(bar))
        worker.run(g.units(todo))
    collect(g.results, g.results / "tables", run_ids={r.run_id for r in g.runs}, echo=typer.echo, warn=_warn)


def _check_pools(file: Path, runs: list[RunSpec], missing: dict[str, str] | None = None) -> None:
    """`grid_mod.check_pools` with the grid file named in its error."""
    from ..errors import DataError
    from ..plan import grid as grid_mod

    try:
        grid_mod.check_pools(runs, missing)
    except DataError as e:  # the data under a split, or a pool (PoolError is one)
        raise type(e)(f"{file}: {e}") from e


def _missing_pools(file: Path, runs: list[RunSpec]) -> dict[str, str]:
    """Check the runs as `grid` would, but collect each pool folder not made yet (with the command that makes it)
    instead of stopping at the first."""
    missing: dict[str, str] = {}
    _check_pools(file, runs, missing)
    return missing


def _list_missing(missing: dict[str, str]) -> None:
    if missing:
        typer.echo(f"{len(missing)} pool folder(s) not made yet:", err=True)
        for why in missing.values():
            typer.echo(f"  {why}", err=True)


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
                    help="what the tables show: test_ce, accuracy, balanced_accuracy, macro_f1, ece, recall:CLASS, "
                         "or per scan (a test scan scored by the mean of its slices' probabilities) scan_ce, "
                         "scan_accuracy, scan_balanced_accuracy (stats.csv holds them all)")] = "test_ce") -> None:
    """Print the thesis tables and write CSV, Markdown, LaTeX, stats.csv and a figure. Per cell: the median, its
    distribution-free 95% interval (order statistics of the seeds' values), n, and a mark where a scenario differs
    from scenario 1 (paired by seed)."""
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
    app.command(cls=HelpCommand)(run)
    app.command("grid", cls=HelpCommand)(grid_cmd)
    app.command("collect", cls=HelpCommand)(collect_cmd)
