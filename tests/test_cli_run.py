"""`mriaug run`: one run trained and written, a finished run not trained again, bad settings refused by name.
(Until issue 23 in test_cli.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.store import results
from tests.conftest import strict_json

runner = CliRunner()


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


# Diverged runs and options checked first. (Until issue 23 in test_robustness.py.)

D = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]


def test_a_diverged_run_is_valid_json_with_its_status_and_epoch(tmp_path: Path) -> None:
    out = tmp_path / "r"
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--resolution", "32",
                            "--epochs", "2", "--lr", "1e6", "--out", str(out)])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["status"] == "diverged"
    doc = strict_json(Path(line["result"]))
    assert doc["status"] == "diverged" and doc["diverged_at_epoch"] == line["epoch"] >= 1
    assert doc["metrics"]["test_ce"] is None
    back = results.read(Path(line["result"]))
    assert back.status == "diverged" and back.diverged and back.diverged_at_epoch == line["epoch"]
    assert not results.checkpoint_for(out, doc["run_id"]).exists()
    # Done, not retried: a second call reads it back.
    again = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--resolution",
                                "32", "--epochs", "2", "--lr", "1e6", "--out", str(out)])
    assert "already done" in again.output


@pytest.mark.parametrize("args, match", [
    (["--seed", "1000000000000000"], "seed must be a whole number in"),
    (["--resolution", "2048"], "resolution: must be at most 1024"),
    (["--weights", "/nonexistent.safetensors"], "weights: model cnn is trained from scratch"),
])
def test_run_options_checked_before_anything_runs(tmp_path: Path, args: list[str], match: str) -> None:
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--epochs", "1",
                            "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and match in r.output, r.output
