"""`mriaug.cli` (the app around every command): every user error is one line with its exit code, a bug keeps
its traceback, every option is explained. (Until issue 23 in test_layout.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import sources as data
from mriaug.errors import EXIT_BUG, EXIT_USER
from mriaug.plan import grid
from tests.slurm_helpers import write_grid

runner = CliRunner()
D = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]


def _one_error_line(args: list[str], needle: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == EXIT_USER, (args, r.output)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, r.output)
    assert "Traceback" not in r.output


def test_user_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    pool = str(tmp_path / "pool")
    phantom = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]
    _one_error_line(["synth", "--out", pool, *phantom, "-s", "contrast=-5", "--classes", "Moderate_Demented",
                     "--no-report"], "contrast must be a finite number in [0, 1], got -5")
    _one_error_line(["synth", "--out", pool, *phantom, "--generator", "diffusion"],
                    "setting checkpoint is required")
    _one_error_line(["synth", "--out", pool, *phantom, "--kept-for", "4-0"], "--kept-for '4-0': expected SCENARIO:SEED")
    (tmp_path / "res").mkdir()
    some_file = tmp_path / "some_file.toml"
    some_file.write_text("x = 1\n")
    _one_error_line(["collect", str(tmp_path / "res"), "--out", str(some_file)], "is a file")
    _one_error_line(["collect", str(some_file)], "is a file; collect takes the folder")
    _one_error_line(["run", "--model", "nope", "--scenario", "1", "--aug", "none", *phantom],
                    "unknown model 'nope'")
    _one_error_line(["run", "--model", "cnn", "--scenario", "1", "--aug", "rotate", *phantom],
                    "unknown augmentation 'rotate'")


def test_a_bug_keeps_its_traceback_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(data, "load", broken)
    r = runner.invoke(app, ["data", "show", "--data", "phantom"])
    assert r.exit_code == EXIT_BUG
    assert "Traceback" in r.output and "ZeroDivisionError: a bug" in r.output
    assert "internal error: this is a bug in mriaug" in r.output


def _all_commands() -> list[tuple[str, object]]:
    out = []

    def walk(cmd: object, name: str) -> None:
        out.append((name, cmd))
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{name} {sub_name}")

    walk(get_command(app), "mriaug")
    return out


def test_every_option_is_explained_and_help_has_no_type_noise() -> None:
    for name, cmd in _all_commands():
        for p in cmd.params:  # type: ignore[attr-defined]
            if p.param_type_name == "option" and p.name != "help":
                assert p.help, f"{name} {p.opts[0]} has no help text"
        r = runner.invoke(app, [*name.split()[1:], "--help"])
        assert r.exit_code == 0, (name, r.output)
        for noise in ("<int>", "<bool>", "<float>", "<path>", "<text>", "{"):
            assert noise not in r.output, (name, noise, r.output)
    synth_help = runner.invoke(app, ["synth", "--help"]).output
    assert "mriaug synth --out POOL --generator NAME" in synth_help


# Non-finite settings refused wherever they are read. (Until issue 23 in test_robustness.py.)

def test_non_finite_settings_are_refused(tmp_path: Path) -> None:
    g = tmp_path / "g.toml"
    write_grid(g, tmp_path / "res")
    g.write_text(g.read_text() + "lr = inf\n")
    with pytest.raises(grid.GridError, match=r"model\.cnn\.lr: must be a positive finite number, got inf"):
        grid.load(g)
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--lr", "nan"])
    assert r.exit_code == 2 and "lr" in r.output
    r = runner.invoke(app, ["synth", *D, "--out", str(tmp_path / "p"), "-s", "contrast=nan"])
    assert r.exit_code == 2 and "contrast" in r.output
    r = runner.invoke(app, ["synth", "train-diffusion", *D, "--out", str(tmp_path / "dm"), "--lr", "nan"])
    assert r.exit_code == 2 and "--lr must be a finite number above 0, got nan" in r.output, r.output


def test_a_library_first_imported_in_a_command_logs_to_stderr_after_it(tmp_path: Path) -> None:
    """Issue 32: huggingface_hub, first imported inside a command run by click's CliRunner, gave its logger a
    handler on that command's stderr, closed when the command returned; its next message, in a later command (a
    tests/test_splits.py audit after tests/test_merge.py), printed a "Logging error" traceback into that command's
    JSON. Checked in a fresh interpreter, where the library is not imported yet."""
    import subprocess
    import sys

    from tests.conftest import mriaug_env
    from tests.slurm_helpers import ROOT
    from tests.test_data import _write_parquet_dataset

    _write_parquet_dataset(tmp_path / "pq", 8)
    script = f"""
import logging, sys
from typer.testing import CliRunner
from mriaug.cli import app
assert "huggingface_hub" not in sys.modules
r = CliRunner().invoke(app, ["data", "show", "--data", {str(tmp_path / "pq")!r}])
assert r.exit_code == 0 and "huggingface_hub" in sys.modules, r.output
logging.getLogger("huggingface_hub.repocard").warning("a later message of the library")
r = CliRunner().invoke(app, ["data", "show", "--data", "phantom", "-o", "n_train=80", "-o", "n_test=40"])
logging.getLogger("huggingface_hub").warning("one during no command")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env=mriaug_env(MRIAUG_CACHE=str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr
    assert "Logging error" not in done.stderr and "ValueError: I/O operation on closed file" not in done.stderr
    assert "a later message of the library" in done.stderr and "one during no command" in done.stderr
