"""The `mriaug` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import collect as collect_mod
from . import data as data_mod
from . import grid as grid_mod
from . import models, pools, results, scenarios

app = typer.Typer(help="The synthetic-augmentation MRI study as reproducible batch jobs.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect and prepare the dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataOpt = Annotated[str, typer.Option("--data", help="phantom | hf:REPO | a parquet folder | an image-folder tree")]
DataOptions = Annotated[list[str] | None, typer.Option("--data-option", "-o",
                        help="source option KEY=VALUE (e.g. size=64, n_train=400, test_fraction=0.2)")]

USER_ERRORS = (data_mod.DataError, grid_mod.GridError, results.ResultError, models.WeightsError, ValueError,
               FileNotFoundError)


def _fail(msg: str) -> typer.Exit:
    typer.secho(f"error: {msg}", fg="red", err=True)
    return typer.Exit(2)


def _value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v.startswith(("{", "[")):
        return json.loads(v)
    return {"true": True, "false": False}.get(v.lower(), v)


def pairs(items: list[str] | None, flag: str, keep_str: tuple[str, ...] = ()) -> dict[str, Any]:
    """KEY=VALUE options (numbers, booleans and JSON parsed, except keys in keep_str); errors name the option."""
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise _fail(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[k.strip()] = v if k.strip() in keep_str else _value(v)
        except json.JSONDecodeError as e:
            raise _fail(f"{flag} {item!r}: the value is not valid JSON ({e.msg} at column {e.colno})") from e
    return out


def _spec(source: str, options: list[str] | None) -> data_mod.DataSpec:
    return data_mod.DataSpec(source, pairs(options, "--data-option"))


def _grid(path: Path) -> grid_mod.Grid:
    try:
        return grid_mod.load(path)
    except grid_mod.GridError as e:
        raise _fail(str(e)) from e


def _load_data(spec: data_mod.DataSpec) -> data_mod.Dataset:
    try:
        return data_mod.load(spec)
    except USER_ERRORS as e:
        raise _fail(str(e)) from e


@data_app.command("show")
def data_show(data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None) -> None:
    """Per-class image counts of each split (thesis Table 2.1)."""
    ds = _load_data(_spec(data, data_option))
    tr, te = ds.counts("train"), ds.counts("test")
    res = f"{ds.resolution}x{ds.resolution}"
    typer.echo(f"source: {ds.source['source']}  fingerprint: {ds.fingerprint}  resolution: {res}")
    typer.echo(f"{'class':<22}{'train':>8}{'test':>8}")
    for name in tr:
        typer.echo(f"{name:<22}{tr[name]:>8}{te[name]:>8}")
    typer.echo(f"{'total':<22}{sum(tr.values()):>8}{sum(te.values()):>8}")


@data_app.command("prepare")
def data_prepare(data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None) -> None:
    """Decode a source into the uint8 array cache that runs read."""
    ds = _load_data(_spec(data, data_option))
    typer.echo(f"cached {len(ds.train_y)} train + {len(ds.test_y)} test images, fingerprint {ds.fingerprint}")


@app.command()
def prefetch(grid: Annotated[Path | None, typer.Option(help="warm what every run of this grid needs")] = None,
             data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None,
             model: Annotated[list[str] | None, typer.Option(help="models whose pretrained weights to fetch")] = None
             ) -> None:
    """Download the dataset and pretrained weights into the caches runs read (needs internet)."""
    if grid:
        g = _grid(grid)
        spec, archs = g.data, {hp["arch"] for hp in g.hparams.values() if hp["pretrained"] and not hp["weights"]}
    else:
        spec = _spec(data, data_option)
        try:
            archs = {grid_mod.grid_hparams(m)["arch"] for m in (model or []) if models.entry(m).pretrained_by_default}
        except USER_ERRORS as e:
            raise _fail(str(e)) from e
    ds = _load_data(spec)
    typer.echo(f"dataset {spec.source}: {len(ds.train_y)} train / {len(ds.test_y)} test, fingerprint {ds.fingerprint}")
    for arch in sorted(archs):
        try:
            models.prefetch(arch)
        except Exception as e:
            raise _fail(f"cannot fetch pretrained weights for {arch}: {e}") from e
        typer.echo(f"weights {arch}: cached")


@app.command()
def run(model: Annotated[str, typer.Option(help="cnn | resnet18 | vit")],
        scenario: Annotated[str, typer.Option(help="scenario preset 1-6")],
        aug: Annotated[str, typer.Option(help="none | hflip | autoaugment")],
        seed: Annotated[int, typer.Option(min=0, help="fixes the subsample, synthetic picks, init and order")] = 0,
        data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None,
        pool: Annotated[str | None, typer.Option(help="synthetic pool folder (scenarios 3-6)")] = None,
        out: Annotated[Path, typer.Option(help="results folder")] = Path("results/runs"),
        grid: Annotated[Path | None, typer.Option(
            help="take the model's hyper-parameters from this grid (default jobs/thesis.toml)")] = None,
        epochs: Annotated[int | None, typer.Option(help="override the grid's epochs")] = None,
        lr: Annotated[float | None, typer.Option(help="override the learning rate")] = None,
        batch_size: Annotated[int | None, typer.Option(help="override the batch size")] = None,
        resolution: Annotated[int | None, typer.Option(help="override the input resolution")] = None,
        pretrained: Annotated[bool | None, typer.Option("--pretrained/--no-pretrained")] = None,
        weights: Annotated[str | None, typer.Option(help="local pretrained weights file")] = None,
        device: Annotated[str | None, typer.Option(help="cuda | cpu (default: cuda when available)")] = None,
        save_weights: Annotated[bool, typer.Option(help="also write the trained weights (.safetensors)")] = False,
        ) -> None:
    """Train and evaluate one run (hyper-parameters default to jobs/thesis.toml); write its JSON result."""
    from .spec import RunSpec, validate_hparams
    from .train import execute

    try:
        hp = grid_mod.grid_hparams(model, grid)
        for k, v in dict(epochs=epochs, lr=lr, batch_size=batch_size, resolution=resolution,
                         pretrained=pretrained, weights=weights).items():
            if v is not None:
                hp[k] = v
        for key, problem in validate_hparams(model, hp):
            raise ValueError(f"{key}: {problem}")
        if scenario not in scenarios.SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; presets: {', '.join(scenarios.SCENARIOS)}")
        spec = RunSpec(model, scenarios.SCENARIOS[scenario], aug, seed, hp, _spec(data, data_option), pool)
        done = results.path_for(out, spec.run_id)
        if done.exists():
            typer.echo(f"run {spec.run_id} is already done: {done} (delete it to train again)", err=True)
            if save_weights and not results.weights_for(out, spec.run_id).exists():
                typer.secho("warning: it was trained without --save-weights; no weights to write", fg="yellow",
                            err=True)
        r = execute(spec, out, device=device, save_weights=save_weights)
    except (*USER_ERRORS, pools.PoolError) as e:
        raise _fail(str(e)) from e
    m = r["metrics"]
    typer.echo(json.dumps({"run_id": r["run_id"], "test_ce": round(m["test_ce"], 4),
                           "accuracy": round(m["accuracy"], 4), "balanced_accuracy": round(m["balanced_accuracy"], 4),
                           "result": str(results.path_for(out, r["run_id"]))}))


@app.command("grid")
def grid_cmd(file: Annotated[Path, typer.Argument(help="grid file, e.g. jobs/smoke.toml")],
             device: Annotated[str | None, typer.Option(help="cuda | cpu (default: cuda when available)")] = None,
             verbose: Annotated[bool, typer.Option(help="per-epoch lines")] = False) -> None:
    """Run every run of a grid on this machine, skipping finished ones, then print the tables."""
    from tqdm import tqdm

    from .train import execute

    g = _grid(file)
    done = results.done_ids(g.results)
    todo = [r for r in g.runs if r.run_id not in done]
    try:
        grid_mod.check_pools(todo)
    except (*USER_ERRORS, pools.PoolError) as e:
        raise _fail(f"{file}: {e}") from e
    typer.echo(f"grid {g.name}: {len(g.runs)} runs, {len(g.runs) - len(todo)} done, {len(todo)} to run -> {g.results}")
    log = (lambda m: tqdm.write(m, file=sys.stderr)) if verbose else (lambda m: None)
    with tqdm(todo, unit="run", file=sys.stderr) as bar:
        for spec in bar:
            bar.set_postfix_str(spec.label)
            try:
                execute(spec, g.results, device=device, save_weights=g.save_weights, log=log)
            except (*USER_ERRORS, pools.PoolError) as e:
                raise _fail(f"{spec.label}: {e}") from e
    _collect(g.results, g.results / "tables", run_ids={r.run_id for r in g.runs})


def _collect(results_dir: Path, out: Path, versus_thesis: bool = False,
             run_ids: set[str] | None = None) -> collect_mod.Collected:
    c = collect_mod.gather(results_dir, run_ids)
    for warning in c.warnings:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    for err in c.errors:
        typer.secho(f"skipped: {err}", fg="yellow", err=True)
    typer.echo(collect_mod.render(c, versus_thesis))
    written = collect_mod.write(c, out)
    typer.echo(f"{len(c.runs)} runs; tables written to {out} ({len(written)} files)")
    return c


@app.command()
def collect(results_dir: Annotated[Path, typer.Argument(help="folder of run results")],
            out: Annotated[Path | None, typer.Option(help="where tables go (default RESULTS_DIR/tables)")] = None,
            thesis: Annotated[bool, typer.Option(help="also print our medians beside the thesis's")] = False,
            grid: Annotated[Path | None, typer.Option(
                help="only the runs of this grid (others in the folder, e.g. of an earlier version, left out)")] = None,
            ) -> None:
    """Print the thesis tables (median test CE per cell) and write CSV, Markdown, LaTeX and a figure."""
    if not results_dir.is_dir():
        raise _fail(f"results folder {results_dir} does not exist")
    ids = {r.run_id for r in _grid(grid).runs} if grid else None
    _collect(results_dir, out or results_dir / "tables", thesis, ids)


def _register_subcommands() -> None:
    # Kept in their own modules: pool generation and the cluster launcher.
    from . import cli_cluster, cli_synth

    cli_synth.register(app)
    cli_cluster.register(app)


_register_subcommands()
