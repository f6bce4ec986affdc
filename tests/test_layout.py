"""The shape of the package: imports point one way, no private names cross modules, the CLI starts without
torch, and every user error is one line with its exit code (the error boundary of `mriaug.cli`)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

import mriaug
from mriaug import data, hparams
from mriaug.cli import app
from mriaug.errors import EXIT_BUG, EXIT_USER, SlurmError

PKG = Path(mriaug.__file__).parent
runner = CliRunner()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)}, counting imports inside functions."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for path in PKG.rglob("*.py"):
        mod = _module_name(path)
        is_pkg = path.name == "__init__.py"
        found: set[tuple[str, str | None]] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(a.name, None) for a in node.names if a.name.startswith("mriaug")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("mriaug"):
                    found |= {(target, a.name) for a in node.names}
        out[mod] = found
    return out


def test_no_private_names_cross_modules() -> None:
    modules = set(_imports())
    bad = [(mod, target, name) for mod, found in _imports().items() for target, name in found
           if name and name.startswith("_") and not name.endswith("__") and f"{target}.{name}" not in modules
           and target != mod]
    assert not bad, bad


def test_no_import_cycles() -> None:
    modules = _imports()
    graph: dict[str, set[str]] = {}
    for mod, found in modules.items():
        edges = set()
        for target, name in found:
            sub = f"{target}.{name}" if name else None
            edges.add(sub if sub in modules else target)
        graph[mod] = {e for e in edges if e in modules and e != mod and e != "mriaug"}
    # A package's __init__ re-exporting its own modules is not a cycle with them.
    for mod in graph:
        graph[mod] = {e for e in graph[mod] if not (mod.startswith(e + ".") and e in graph)}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(n):], n]))
            if n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def _no_torch_after(code: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('TORCH' if 'torch' in sys.modules else "
                          "'NO_TORCH')"], capture_output=True, text=True, env={**os.environ, **(env or {})},
                         cwd=PKG.parent, timeout=120)
    return out.stdout + out.stderr


def test_cli_import_and_help_load_no_torch() -> None:
    assert _no_torch_after("import mriaug.cli").strip().endswith("NO_TORCH")
    out = _no_torch_after("from mriaug.cli import run\nrc = run(['--help'])")
    assert "Usage: mriaug" in out and out.strip().endswith("NO_TORCH")


def test_submit_dry_run_and_status_load_no_torch(tmp_path: Path) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "g"\nresults = "{tmp_path / "res"}"\nmodels = ["cnn"]\nscenarios = ["1"]\n'
                    'augmentations = ["none"]\nseeds = 1\n[data]\nsource = "phantom"\nn_train = 40\nn_test = 16\n'
                    'size = 16\n')
    profile = Path(__file__).resolve().parents[1] / "slurm" / "local.toml"
    env = {"MRIAUG_CACHE": str(tmp_path / "cache")}
    out = _no_torch_after(f"from mriaug.cli import run\nrc = run(['submit', '{grid}', '--profile', '{profile}', "
                          "'--dry-run'])\nassert rc == 0, rc", env)
    assert "dry run: nothing submitted" in out and out.strip().endswith("NO_TORCH"), out
    out = _no_torch_after(f"from mriaug.cli import run\nrc = run(['status', '{grid}'])\nassert rc == 0, rc", env)
    assert "unsubmitted" in out and out.strip().endswith("NO_TORCH"), out


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


def test_truncated_data_cache_is_rebuilt_naming_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    spec = data.DataSpec("phantom", {"n_train": 40, "n_test": 16, "size": 16, "seed": 7})
    before = set((data.cache_root() / "datasets").glob("*.npz"))
    ds = data.load(spec)
    (cache,) = set((data.cache_root() / "datasets").glob("*.npz")) - before
    cache.write_bytes(cache.read_bytes()[:100])
    again = data.load(spec)
    assert np.array_equal(again.train_x, ds.train_x) and again.fingerprint == ds.fingerprint
    assert f"data cache {cache} is unreadable" in capsys.readouterr().err


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


def test_hparams_resolve_defaults_then_table_then_overrides() -> None:
    card = hparams.MODELS["vit"].defaults
    hp = hparams.resolve("vit", {"lr": 1e-4, "epochs": 3}, {"epochs": 5, "batch_size": None})
    assert (hp.lr, hp.epochs, hp.batch_size, hp.weight_decay) == (1e-4, 5, card.batch_size, card.weight_decay)
    assert hparams.thesis("vit").weight_decay == 0.05 and hparams.thesis("cnn").epochs == 10
    with pytest.raises(hparams.HParamError, match="lr: must be a positive finite number, got inf"):
        hparams.resolve("cnn", {"lr": float("inf")})


def test_jobs_queued_before_the_move_still_run_or_say_resubmit(phantom_spec: data.DataSpec) -> None:
    from mriaug.grid import plan_run
    from mriaug.scenarios import SCENARIOS
    from mriaug.slurm import CommandTask
    from mriaug.slurm.tasks import upgrade_spec

    spec = plan_run("cnn", SCENARIOS["1"], "none", 0, hparams.thesis("cnn"), phantom_spec)
    old = replace(spec)
    object.__setattr__(old, "hparams", spec.hparams.to_dict())  # as a pickled spec of the old layout holds it
    assert upgrade_spec(old).run_id == spec.run_id
    with pytest.raises(SlurmError, match="submitted by an older version of mriaug; submit it again"):
        CommandTask.__new__(CommandTask)(["synth", "--out", "x"])
