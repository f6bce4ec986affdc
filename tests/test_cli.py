from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mriaug.cli import app

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


def test_run_command_and_errors(tmp_path: Path) -> None:
    args = ["run", "--model", "cnn", "--scenario", "2", "--aug", "hflip", "--seed", "3", "--data", "phantom",
            "-o", "n_train=160", "-o", "n_test=64", "-o", "size=32", "--epochs", "1", "--resolution", "32",
            "--out", str(tmp_path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    result = json.loads(Path(out["result"]).read_text())
    assert result["spec"]["seed"] == 3 and result["spec"]["scenario"]["name"] == "2"
    assert result["spec"]["hparams"]["lr"] == 1e-3  # the cnn default of jobs/thesis.toml
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and f"run {out['run_id']} is already done" in r.output
    r = runner.invoke(app, [*args[:4], "3", *args[5:]])
    assert r.exit_code == 2 and "needs" in r.output and "no pool was given" in r.output
    r = runner.invoke(app, ["run", "--model", "lenet", "--scenario", "1", "--aug", "none", "--data", "phantom"])
    assert r.exit_code == 2 and "unknown model 'lenet'" in r.output
    r = runner.invoke(app, [*args[:4], "3", *args[5:], "--pool", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder" in r.output


def test_data_show_phantom() -> None:
    r = runner.invoke(app, ["data", "show", "--data", "phantom"])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0]: ln.split()[1:] for ln in r.output.splitlines() if ln.strip()}
    assert lines["Mild_Demented"] == ["724", "172"]
    assert lines["Moderate_Demented"] == ["49", "15"]
    assert lines["Non_Demented"] == ["2566", "634"]
    assert lines["Very_Mild_Demented"] == ["1781", "459"]


def test_run_rejects_bad_settings_naming_them(tmp_path: Path) -> None:
    base = ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", "--data", "phantom", "--out", str(tmp_path)]
    for extra, message in ((["--epochs", "0"], "epochs: must be a positive integer, got 0"),
                           (["--batch-size", "0"], "batch_size: must be a positive integer, got 0"),
                           (["--resolution", "30"], "resolution: must be a multiple of 4"),
                           (["-o", "class_map={bad"], "--data-option 'class_map={bad': the value is not valid JSON"),
                           (["--grid", str(tmp_path / "nope.toml")], "nope.toml does not exist"),
                           (["-o", "size=abc"], "option size: must be an integer >= 16, got 'abc'"),
                           (["-o", "n_train=-5"], "option n_train: must be an integer >= 8, got -5"),
                           (["--device", "tpu"], "device 'tpu'"),
                           (["--seed", "-1"], "Invalid value for '--seed'")):
        r = runner.invoke(app, [*base, *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert message in r.output, (extra, r.output)
    assert not list(tmp_path.glob("*.json"))


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
