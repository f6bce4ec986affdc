"""The shape of the package, the layer rules `make lint` also checks: imports point one way, no private names
cross modules, the CLI (and `submit --dry-run`, `status`) starts without torch."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import mriaug

PKG = Path(mriaug.__file__).parent


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


def test_architecture_page_holds_its_tables_as_generated() -> None:
    """docs/architecture.md carries its layer and module tables in the file (the repository page shows them), and
    they are what docs/gen_architecture.py writes now: a new module or layer fails here until it is rerun."""
    import importlib.util

    docs = PKG.parent / "docs"
    spec = importlib.util.spec_from_file_location("gen_architecture", docs / "gen_architecture.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    page = (docs / "architecture.md").read_text()
    assert gen.render(page, gen.tables()) == page, "docs/architecture.md is out of date: run " \
        "`python docs/gen_architecture.py`"
    assert "<!-- begin generated: layers -->\n| layer |" in page and "| 1 | `cli` |" in page
    assert all(f"`{_module_name(p)}`" in page for p in PKG.rglob("*.py"))
    # A changed table is written between the markers, the text around them kept.
    text = "intro\n<!-- begin generated: modules -->\nold\n<!-- end generated: modules -->\nafter\n"
    assert gen.render(text, {"modules": "new"}) == text.replace("old", "new")
    assert gen.render("<!-- generated: modules -->\n", {"modules": "T"}) == (
        "<!-- begin generated: modules -->\nT\n<!-- end generated: modules -->\n")


def test_top_level_shows_the_tiers() -> None:
    """Issue 33: the package's folders are its tiers; few modules stand beside them, each named in the import
    contract (an unlisted one would escape the layer check)."""
    import tomllib

    top = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in {"__init__", "__main__"})
    subpackages = sorted(p.parent.name for p in PKG.glob("*/__init__.py"))
    assert len(top) <= 8, top
    assert len(subpackages) >= 5, subpackages
    layers = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert named == set(top) | set(subpackages), named ^ (set(top) | set(subpackages))


def test_no_module_imports_an_old_path() -> None:
    """The old module paths (mriaug.spec, ...) exist for pickled jobs only (mriaug/compat.py): code that used
    one would pass every test through the alias and break the day the aliases go."""
    from mriaug.compat import MOVED

    used = [(mod, target, name) for mod, found in _imports().items() for target, name in found
            if target in MOVED or (target == "mriaug" and f"mriaug.{name}" in MOVED)]
    assert not used, used
    for path in [*(PKG.parent / "tests").glob("*.py"), *(PKG.parent / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "mriaug" else []
                assert node.module not in MOVED and not set(names) & set(MOVED), f"{path.name}:{node.lineno}"


LAYOUT_V1 = Path(__file__).parent / "data" / "layout_v1"


def test_jobs_pickled_by_the_old_layout_still_load() -> None:
    """A job queued before the subpackages (tests/data/layout_v1/: submitit's own pickles, written by the
    commit named in written.json) unpickles on a node with the new code: its RunSpec, DataSpec, HParams and
    Scenario come back as today's classes (the very same objects, so isinstance checks hold), with the same
    run ids, and the task classes still call."""
    import json

    from submitit.core.utils import DelayedSubmission

    from mriaug.data.sources import DataSpec
    from mriaug.plan.hparams import HParams
    from mriaug.plan.scenarios import Scenario
    from mriaug.plan.spec import RunSpec
    from mriaug.slurm.tasks import CommandTask, TrainTask, collect_task

    written = json.loads((LAYOUT_V1 / "written.json").read_text())
    assert written["modules"]["RunSpec"] == "mriaug.spec"  # the fixture really is of the old layout
    code = ("import json, sys\nfrom submitit.core.utils import DelayedSubmission\n"
            f"job = DelayedSubmission.load({str(LAYOUT_V1 / 'train_submitted.pkl')!r})\n"
            "print(json.dumps([s.run_id for unit in job.args[0] for s in unit]))\n"
            "print(type(job.args[0][0][0]).__module__)")
    # In a fresh interpreter, as on a node: nothing of mriaug imported before the unpickling.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    ids, module = out.stdout.splitlines()
    assert json.loads(ids) == written["run_ids"] and module == "mriaug.plan.spec"

    train = DelayedSubmission.load(LAYOUT_V1 / "train_submitted.pkl")
    assert isinstance(train.function, TrainTask)
    specs = [s for unit in train.args[0] for s in unit]
    assert all(type(s) is RunSpec and type(s.data) is DataSpec and type(s.hparams) is HParams
               and type(s.scenario) is Scenario for s in specs)
    assert [s.run_id for s in specs] == written["run_ids"]
    assert isinstance(DelayedSubmission.load(LAYOUT_V1 / "command_submitted.pkl").function, CommandTask)
    assert DelayedSubmission.load(LAYOUT_V1 / "collect_submitted.pkl").function is collect_task
