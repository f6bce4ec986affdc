"""Grad-CAM on runs shaped like the published study's (issue 37): subject splits with a pool folder per split made
for every class, Moderate merged into Mild (3 task classes), weights kept by the grid, scenario 1 beside a
pretraining scenario. `mriaug cam` on each cell's split-0 runs, with a merged-away source class (Moderate) and a
kept one, then `mriaug report --cam` with both cells. Phantom data at 32 px, one thread."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.analysis import cam
from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data_mod
from mriaug.store import results

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

GRID = """name = "camstudy"
results = "{root}/results"
models = ["cnn"]
scenarios = ["1", "pre-diffusion"]
augmentations = ["none"]
seeds = 4
budget = "steps"
save_weights = true

[pool]
diffusion = "{root}/pool"

[scenario.pre-diffusion]
pretrain = {{pool = "diffusion", images = 60, epochs = 1}}

[data]
source = "phantom"
n_train = 240
n_test = 80
size = 32
split = "subject"
splits = 2
split_seed = 0
merge = {{Moderate_Demented = "Mild_Demented"}}

[model.cnn]
epochs = 3
batch_size = 32
resolution = 32
class_weight = "balanced"
"""
CLASSES = "Moderate_Demented,Non_Demented"  # a source class merged away, and one the task keeps
CELLS = {"scenario-1": "1", "pre-diffusion": "pre-diffusion"}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid's pools (transform, `--classes all`, one folder per split) and its 8 runs, weights kept."""
    root = tmp_path_factory.mktemp("camstudy")
    g = root / "grid.toml"
    g.write_text(GRID.format(root=root))
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--grid", str(g), "--generator", "transform", "--classes", "all",
                            "--no-report"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    return root


def _runs(root: Path, scenario: str, seeds: tuple[int, ...] = (0, 2)) -> list[str]:
    """The result files of one scenario's runs of the given seeds (0 and 2: split 0 of 2), in seed order."""
    found = {r.seed: p for p, r in results.scan(root / "results") if not isinstance(r, results.ResultError)
             and r.scenario == scenario and r.seed in seeds}
    return [str(found[s]) for s in seeds]


@pytest.fixture(scope="module")
def cams(study: Path) -> Path:
    """`mriaug cam` per cell into CAM/CELL: scenario 1 given the split's folder, the pretraining cell the grid's
    pool (the folder of every split), which cam resolves to the runs' split."""
    runner = CliRunner()
    for cell, scenario in CELLS.items():
        pool = study / "pool" / ("split-0" if scenario == "1" else "")
        r = runner.invoke(app, ["cam", *_runs(study, scenario), "--pool", str(pool), "--out",
                                str(study / "cam" / cell), "--classes", CLASSES, "--pairs", "3",
                                "--road-images", "1"])
        assert r.exit_code == 0, r.output
        assert "task class" in r.output and re.search(r"Moderate_Demented\s+Mild_Demented", r.output), r.output
    return study / "cam"


def _cam(cams: Path, cell: str) -> dict:
    return json.loads((cams / cell / "cam.json").read_text())


def test_cam_json_of_each_cell_names_it_and_holds_every_number(study: Path, cams: Path) -> None:
    unmerged = None
    for cell, scenario in CELLS.items():
        rep = _cam(cams, cell)
        assert Path(rep["pool"]) == study / "pool" / "split-0"  # the runs' split, also where the parent was given
        assert rep["split"] == {"kind": "subject", "seed": 0, "splits": 2}
        assert rep["classes"] == ["Mild_Demented", "Non_Demented", "Very_Mild_Demented"]
        (c,) = rep["cells"]
        assert c["scenario"] == scenario and c["seeds"] == [0, 2] and len(c["run_ids"]) == 2
        if scenario == "1":
            assert c["name"] == "cnn/s1/none" and c["pretraining"] is None and not c["trained_on_pool"]
        else:  # named by its pretraining, which drew on this very pool
            assert c["name"] == "cnn/spre-diffusion/none, pretrained on diffusion (60 images, 1 epoch)"
            assert c["pretraining"]["pool"] == "diffusion" and c["pretraining"]["images"] == 60
            assert c["trained_on_pool"]
        assert set(rep["per_class"]) == {"Moderate_Demented", "Non_Demented"}
        assert rep["per_class"]["Moderate_Demented"]["task_class"] == "Mild_Demented"
        assert rep["per_class"]["Non_Demented"]["task_class"] == "Non_Demented"
        for v in rep["per_class"].values():
            assert v["runs"] == 2 and v["pairs"] >= 2
            assert v["pearson"] is None or -1 <= v["pearson"] <= 1
            assert v["iou"] is None or 0 <= v["iou"] <= 1
            for key in ("road", "road_real", "road_synthetic"):
                assert v[key] is not None and np.isfinite(v[key])
            assert 0 <= v["p_target_real"] <= 1 and 0 <= v["p_target_synthetic"] <= 1
        (st,) = rep["seed_stability"].values()
        assert list(rep["seed_stability"]) == [c["name"]] and st["seeds"] == [0, 2]
        assert set(st["per_class"]) == {"Moderate_Demented", "Non_Demented"}
        # The pairs are of the asked source class: Moderate sources (label Mild after the merge), Non sources.
        run = cam.load_run(_runs(study, scenario)[0])
        if unmerged is None:
            spec = run.result.data_spec
            unmerged = data_mod.load(data_mod.DataSpec(spec["source"], spec["options"]).unmerged())
        for name, want in (("Moderate_Demented", (1, 0)), ("Non_Demented", (2, 1))):
            e = rep["per_run"][run.run_id]["per_class"][name]
            src = np.asarray(e["sources"])
            assert len(src) == e["pairs"] >= 2 and e["target"] == e["task_class"]
            assert (unmerged.train_y[src] == want[0]).all() and (run.dataset.train_y[src] == want[1]).all()
        for p in rep["panels"]:
            assert (cams / cell / p["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_pair_numbers_are_the_maps_of_the_task_class(study: Path, cams: Path) -> None:
    """The first pretraining run's numbers again, from its weights: Moderate sources' maps are of Mild (task label
    0), not of the source's own index (1, Non_Demented's label after the merge)."""
    rep = _cam(cams, "pre-diffusion")
    run = cam.load_run(_runs(study, "pre-diffusion")[0])
    pool = pools.load(rep["pool"], run.dataset)
    e = rep["per_run"][run.run_id]["per_class"]["Moderate_Demented"]
    real, syn = run.dataset.train_x[e["sources"]], pool.images[e["pool_rows"]]
    t = [0] * len(real)
    mr, ms = cam.maps(run.cam_model, real, t), cam.maps(run.cam_model, syn, t)
    assert not any(cam.flat(m) for m in (*mr, *ms))  # evidence for Mild on Moderate sources: defined numbers
    assert e["pearson_per_pair"] == pytest.approx([cam.pearson(a, b) for a, b in zip(mr, ms, strict=True)], abs=1e-5)
    assert e["iou_per_pair"] == pytest.approx([cam.iou(a, b) for a, b in zip(mr, ms, strict=True)], abs=1e-5)
    assert e["p_target_real"] == pytest.approx(float(run.cam_model.probabilities(real)[:, 0].mean()), abs=1e-5)


def test_report_shows_both_cells_maps_and_numbers(study: Path, cams: Path) -> None:
    out = study / "report"
    r = CliRunner().invoke(app, ["report", str(study / "results"), "--out", str(out), "--cam", str(cams)])
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="gradcam">'):html.index('<section id="provenance">')]
    # One row per cell and source class, each cell named with its pretraining and seeds, its numbers as cam.json
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    cells = {}
    for cell in CELLS:
        rep = _cam(cams, cell)
        name = f"{rep['cells'][0]['name']} (seeds 0, 2)"
        for cls, v in rep["per_class"].items():
            label = cls if cls == v["task_class"] else f"{cls} (as {v['task_class']})"
            row = [x for x in rows if f"<td>{name}</td>" in x and f"<td>{label}</td>" in x]
            assert len(row) == 1, (name, label, rows)
            cells[cell, cls] = re.findall(r"<td>(.*?)</td>", row[0])
            want = ["—" if v[k] is None else f"{v[k]:.3f}" for k in ("pearson", "iou", "road_real")]
            assert cells[cell, cls][4:7] == want
    assert ("pre-diffusion", "Moderate_Demented") in cells and ("scenario-1", "Non_Demented") in cells
    assert "pretrained on diffusion (60 images, 1 epoch)" in section and "cnn/s1/none (seeds 0, 2)" in section
    assert "pool/split-0" in section and "split 0 of 2" in section
    assert "not new to them" in section  # the pretraining cell trained on the pool's images
    # Panels of both cells, each source class of each, embedded and captioned with the cell
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S)
    for cls in CLASSES.split(","):
        assert any(c.startswith("cnn/s1/none, seed 0: " + cls) for c in captions), captions
        assert any(c.startswith("cnn/spre-diffusion/none, pretrained on diffusion") and f": {cls} sources" in c
                   for c in captions), captions
    assert section.count('src="data:image/png;base64,') == 4
    md = (out / "report.md").read_text()
    assert "| cnn/s1/none (seeds 0, 2) | Moderate_Demented (as Mild_Demented) |" in md


def test_cam_refuses_runs_of_two_splits_and_a_cam_folder_without_output(study: Path, cams: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["cam", *_runs(study, "1", (0, 1)), "--pool", str(study / "pool"), "--out",
                            str(study / "mixed")])
    assert r.exit_code == 2 and "different datasets" in r.output, r.output
    r = runner.invoke(app, ["report", str(study / "results"), "--out", str(study / "r2"), "--cam",
                            str(study / "pool")])
    assert r.exit_code == 2 and "no cam.json" in r.output, r.output
