"""`mriaug grid` (with `mriaug synth` and `mriaug collect` around it, end to end): every run of a grid trained
once, and a grid's pool checked before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import data, grid, results
from mriaug.cli import app
from tests.conftest import finish, mriaug_process
from tests.slurm_helpers import write_grid

runner = CliRunner()

GRID = """name = "cli"
results = "{results}"
models = ["cnn", "vit"]
scenarios = ["1", "3"]
augmentations = ["none", "autoaugment"]
seeds = 2
pool = "{pool}"

[data]
source = "phantom"
n_train = 160
n_test = 64
size = 32

[model.cnn]
epochs = 1
resolution = 32

[model.vit]
arch = "vit_tiny_patch16_224"
pretrained = false
epochs = 1
resolution = 32
"""


def test_synth_grid_collect_end_to_end(tmp_path: Path) -> None:
    g = tmp_path / "grid.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "pool"))
    r = runner.invoke(app, ["synth", "--grid", str(g), "--classes", "Mild_Demented,Moderate_Demented"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pool" / "manifest.jsonl").exists()
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    assert "16 runs, 0 done, 16 to run" in r.output
    assert len(list((tmp_path / "res").glob("*.json"))) == 16
    assert "(n=2)" in r.output and "Scenario 3" in r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert "16 runs, 16 done, 0 to run" in r.output
    r = runner.invoke(app, ["collect", str(tmp_path / "res")])
    assert r.exit_code == 0 and "vit — median test cross-entropy" in r.output


def test_grid_checks_its_pool_before_training_anything(tmp_path: Path) -> None:
    g = tmp_path / "grid.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "missing-pool"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2, r.output
    assert "missing-pool: no such folder" in r.output
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").glob("*.json"))
    # A pool too small for scenario 3: also refused up front, with the counts.
    runner.invoke(app, ["synth", "--grid", str(g), "--out", str(tmp_path / "small"), "--classes", "Mild_Demented",
                        "--max-sources", "2"])
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "small"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "synthetic Mild_Demented images whose sources are among" in r.output, r.output
    assert not list((tmp_path / "res").glob("*.json"))


def test_a_run_without_images_of_a_class_is_refused_at_planning(tmp_path: Path) -> None:
    g = write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["empty"], n_train=80)
    g.write_text(g.read_text() + "\n[scenario.empty]\nreal_fraction = {default = 0.0}\n")
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2, r.output
    assert "no training images of class Mild_Demented" in r.output
    assert not list((tmp_path / "res").glob("*.json"))
    g.write_text(g.read_text().replace("{default = 0.0}", "{default = 1.0, Moderate_Demented = 0.0}"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "no training images of class Moderate_Demented" in r.output, r.output


# Two `mriaug grid` workers on one results folder. (Until issue 23 in test_concurrency.py.)

@pytest.mark.timeout(300)
def test_two_grid_workers_train_each_run_once(tmp_path: Path) -> None:
    res = tmp_path / "results"
    g = write_grid(tmp_path / "g.toml", res, scenarios=["1", "2"], augmentations=["none", "hflip"], seeds=2,
                   epochs=2, n_train=240)
    data.load(grid.load(g).data)
    procs = [mriaug_process("grid", str(g), "--verbose") for _ in range(2)]
    outs = finish(procs)
    for code, so, se in outs:
        assert code == 0, so + se
    # Every training announces itself once ("N training images"), in whichever worker ran it.
    trainings = [line for _, _, se in outs for line in se.splitlines() if "training images" in line]
    runs = grid.load(g).runs
    assert len(trainings) == len(runs) == 8, "\n".join(trainings)
    assert all(any(line for line in t.splitlines()) for _, _, t in outs)
    assert min(sum("training images" in ln for ln in se.splitlines()) for _, _, se in outs) >= 1, "one worker idle"
    assert results.done_ids(res) == {r.run_id for r in runs}
    assert not list((res / ".locks").glob("*.lock"))
