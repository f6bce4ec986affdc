"""`mriaug data show|prepare|audit|phantom-bids` and `mriaug prefetch`: the dataset and pretrained weights made
ready on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import SettingError
from .options import DEFAULT_SOURCE, DataOpt, DataOptions, HelpCommand, HelpGroup, data_spec, load_grid


def data_show(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
              subjects: Annotated[Path | None, typer.Option(
                  metavar="FILE", help="a BIDS source: write its split as a TSV, one row per scan (participant_id, "
                  "session, part; with -o splits=K also split)")] = None) -> None:
    """Per-class image counts of each split (thesis Table 2.1)."""
    from ..data import sources as data_mod

    spec = data_spec(data, data_option)
    if subjects is not None and spec.kind != "bids":
        raise SettingError(f"--subjects: {data} is not a BIDS folder (dataset_description.json); only a BIDS source "
                           "knows the participant of each scan")
    ds = data_mod.load(spec)
    tr, te = ds.counts("train"), ds.counts("test")
    res = f"{ds.resolution}x{ds.resolution}"
    typer.echo(f"source: {ds.source['source']}  fingerprint: {ds.fingerprint}  resolution: {res}")
    typer.echo(f"{'class':<22}{'train':>8}{'test':>8}")
    for name in tr:
        typer.echo(f"{name:<22}{tr[name]:>8}{te[name]:>8}")
    typer.echo(f"{'total':<22}{sum(tr.values()):>8}{sum(te.values()):>8}")
    if subjects is not None:
        from ..data import bids

        rows = bids.subject_rows(spec.source, spec.options, data_mod.cache_root() / "datasets")
        bids.write_subjects(subjects, rows)
        typer.echo(f"wrote {subjects}: {len(rows)} rows, {len({r['participant_id'] for r in rows})} participants")


def data_phantom_bids(
        out: Annotated[Path, typer.Argument(metavar="DIR", help="the folder to write (new, or empty)")],
        participants: Annotated[int, typer.Option(help="participants, cycling through the four classes")] = 12,
        longitudinal: Annotated[int, typer.Option(help="of them, how many have a second session")] = 2,
        size: Annotated[int, typer.Option(min=16, help="voxels per side of an axial slice")] = 64,
        depth: Annotated[int, typer.Option(min=2, help="axial slices per volume")] = 48,
        seed: Annotated[int, typer.Option(min=0, help="fixes the participants' anatomy and pose")] = 0) -> None:
    """Write the phantom as a BIDS folder of NIfTI volumes (a cohort to try `--data DIR` on)."""
    from ..data import bids

    scans = bids.write_phantom(out, participants, longitudinal, size, depth, seed)
    typer.echo(f"wrote {out}: {participants} participants, {len(scans)} scans of {size}x{size}x{depth} voxels, "
               "participants.tsv with cdr")


def data_audit(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
               as_json: Annotated[bool, typer.Option("--json", help="print the audit as one JSON object")] = False,
               ) -> None:
    """Recover the scan groups from the images and check how independent the test split is of training."""
    from ..data import audit
    from ..data import sources as data_mod

    ds = data_mod.load(data_spec(data, data_option))
    r = audit.audit(ds, data_mod.cache_root() / "groups")
    typer.echo(json.dumps(r) if as_json else audit.format_text(r))


def data_prepare(data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None) -> None:
    """Decode a source into the uint8 array cache that runs read."""
    from ..data import sources as data_mod

    ds = data_mod.load(data_spec(data, data_option))
    typer.echo(f"cached {len(ds.train_y)} train + {len(ds.test_y)} test images, fingerprint {ds.fingerprint}")


def prefetch(grid: Annotated[Path | None, typer.Option(metavar="GRID", help="warm what every run of this grid "
                                                       "needs (dataset and pretrained weights)")] = None,
             data: DataOpt = DEFAULT_SOURCE, data_option: DataOptions = None,
             model: Annotated[list[str] | None, typer.Option(
                 metavar="MODEL", help="a model whose pretrained weights to fetch (repeatable): cnn | resnet18 | vit")]
             = None) -> None:
    """Download the dataset and pretrained weights into the caches runs read (needs internet)."""
    from ..data import sources as data_mod
    from ..engine import models
    from ..plan import hparams

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


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(cls=HelpGroup, help="Inspect and prepare the dataset.", no_args_is_help=True)
    data_app.command("show", cls=HelpCommand)(data_show)
    data_app.command("prepare", cls=HelpCommand)(data_prepare)
    data_app.command("audit", cls=HelpCommand)(data_audit)
    data_app.command("phantom-bids", cls=HelpCommand)(data_phantom_bids)
    app.add_typer(data_app, name="data")
    app.command(cls=HelpCommand)(prefetch)
