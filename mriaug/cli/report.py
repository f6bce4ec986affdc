"""`mriaug cam` and `mriaug report`: where the models look, and one document with everything a study made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SettingError
from .options import HelpCommand, classes_list


def cam(result_json: Annotated[list[Path], typer.Argument(
            metavar="RESULT_JSON", help="run results whose weights were kept (--save-weights); several runs of "
            "one cell (different seeds) also give the maps' stability across seeds")],
        pool: Annotated[Path, typer.Option(metavar="POOL", help="pool folder whose variations are paired with "
                                                                "their real sources (a grid's pool made per split: "
                                                                "the folder of the runs' split is read)")],
        out: Annotated[Path, typer.Option(metavar="DIR", help="where panels/ and cam.json go")],
        method: Annotated[str, typer.Option(metavar="METHOD", help="gradcam | gradcam++ | eigencam")] = "gradcam",
        classes: Annotated[str | None, typer.Option(
            metavar="NAMES", help="source classes, comma-separated (default Moderate_Demented,Non_Demented); "
            "after a data option merge still the source's own (Moderate sources, mapped for the class it joined)")
        ] = None,
        target: Annotated[str | None, typer.Option(
            metavar="CLASS", help="class whose evidence the maps show (default: each image's true class)")] = None,
        pairs: Annotated[int, typer.Option(min=1, metavar="N", help="real/variation pairs per class")] = 8,
        panel_pairs: Annotated[int, typer.Option(min=1, metavar="N", help="pairs drawn per panel")] = 4,
        road_images: Annotated[int, typer.Option(
            min=0, metavar="N", help="images per class (real and variation each) scored with ROAD, which "
            "solves a sparse system per image and threshold")] = 4,
        seed: Annotated[int, typer.Option(min=0, help="which pairs are drawn")] = 0) -> None:
    """Grad-CAM of real images beside their synthetic variations: PNG panels and DIR/cam.json."""
    from ..analysis import cam as cam_mod

    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out}: is a file; panels and cam.json go into a folder")
    r = cam_mod.run_cam(result_json, pool, out, method=method, classes=classes_list(classes), target=target,
                        pairs=pairs, panel_pairs=panel_pairs, road_images=road_images, seed=seed,
                        log=lambda m: typer.echo(m, err=True))
    def f(v: float | None) -> str:
        return "—" if v is None else f"{v:.3f}"

    # The class a source's maps are scored on only where a merge makes it another than the source's own.
    merged = any(name != v["task_class"] for name, v in r["per_class"].items())
    typer.echo(f"{'class':<20}{'task class' if merged else '':<{20 if merged else 0}}{'pairs':>6}{'pearson':>9}"
               f"{'IoU top20%':>12}{'ROAD':>8}{'flat maps':>11}")
    for name, v in r["per_class"].items():
        typer.echo(f"{name:<20}{v['task_class'] if merged else '':<{20 if merged else 0}}{v['pairs']:>6}"
                   f"{f(v['pearson']):>9}{f(v['iou']):>12}{f(v['road']):>8}{v['flat_maps']:>11}")
    for cell, s in r["seed_stability"].items():
        parts = ", ".join(f"{k} {f(v['pearson'])}" for k, v in s["per_class"].items())
        typer.echo(f"seed stability {cell} (seeds {s['seeds']}): mean pearson of real maps across seeds: {parts}")
    typer.echo(f"{len(r['panels'])} panels and {cam_mod.CAM_JSON} written to {out}")


def report(results_dir: Annotated[Path, typer.Argument(metavar="RESULTS_DIR", help="folder of run results")],
           out: Annotated[Path, typer.Option(metavar="DIR", help="where report.html and report.md go")],
           pool: Annotated[list[Path] | None, typer.Option(
               metavar="POOL", help="a pool to show (repeatable; default: the pools the runs used)")] = None,
           cam_dir: Annotated[list[Path] | None, typer.Option(
               "--cam", metavar="DIR", help="a `mriaug cam` output to include, or a folder of several (one per "
               "cell; repeatable; default: any cam.json under RESULTS_DIR, else a small one made here from runs "
               "that kept weights)")] = None,
           seed: Annotated[int, typer.Option(min=0, help="which example images and augmentation draws are shown")] = 0,
           ) -> None:
    """One self-contained HTML report (and a Markdown twin) of a results folder: tables with intervals,
    forest and box plots, data, pools, augmentations, Grad-CAM, provenance."""
    from ..analysis.report import write_report

    if not results_dir.is_dir():
        raise SettingError(f"results folder {results_dir} does not exist or is not a folder")
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out}: is a file; the report goes into a folder")
    written = write_report(results_dir, out, pools=pool, cam_dirs=cam_dir, seed=seed,
                                      log=lambda m: typer.echo(m, err=True))
    for p in written:
        typer.echo(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("cam", cls=HelpCommand)(cam)
    app.command("report", cls=HelpCommand)(report)
