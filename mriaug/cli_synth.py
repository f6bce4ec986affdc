"""`mriaug synth`: the pool-making commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import data as data_mod
from . import grid as grid_mod
from . import synth as synth_mod
from .cli import USER_ERRORS, DataOpt, DataOptions, _fail, _load_data, _spec


def register(app: typer.Typer) -> None:
    @app.command()
    def synth(out: Annotated[Path | None, typer.Option(help="pool folder to create or extend")] = None,
              grid: Annotated[Path | None, typer.Option(help="take data source and pool folder from a grid")] = None,
              generator: Annotated[str, typer.Option(help="generator name")] = "transform",
              data: DataOpt = data_mod.DEFAULT_SOURCE, data_option: DataOptions = None,
              classes: Annotated[str | None, typer.Option(help="comma-separated classes (default: all)")] = None,
              per_source: Annotated[int, typer.Option(help="variations per source image")] = 1,
              max_sources: Annotated[int | None, typer.Option(help="at most this many sources per class")] = None,
              seed: int = 0) -> None:
        """Make a synthetic pool from training images (resumable: done sources are skipped)."""
        spec = _spec(data, data_option)
        if grid:
            try:
                g = grid_mod.load(grid)
            except grid_mod.GridError as e:
                raise _fail(str(e)) from e
            spec, out = g.data, out or (Path(g.pool) if g.pool else None)
        if out is None:
            raise _fail("--out is required (or a --grid that sets pool)")
        ds = _load_data(spec)
        try:
            s = synth_mod.make_pool(ds, out, generator, classes=classes.split(",") if classes else None,
                                    per_source=per_source, max_sources=max_sources, seed=seed)
        except USER_ERRORS as e:
            raise _fail(str(e)) from e
        typer.echo(f"pool {out}: {s['pool_size']} images ({s['generated']} new)")
