"""The documentation against the code: the generated reference lists exactly the keys the readers accept, with the
defaults they apply; every module and test file is on its page; every console example is scripted (and the fast
ones still print what the page shows) or marked as recorded; the site builds with warnings as errors."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mriaug.data import sources as data
from mriaug.data import splits
from mriaug.plan import grid, hparams, scenarios
from mriaug.slurm import profile

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


gen = _load("gen_reference")
examples = _load("examples")


def _keys(rows: list[list[str]]) -> set[str]:
    """The keys in the first column of generated rows (`key` in backticks)."""
    return {row[0].strip("`") for row in rows}


def test_pages_read_on_the_repository_hold_their_generated_tables() -> None:
    """Issue 32: the README says the pages read on the repository page too, but reference.md and study-design.md
    held only `<!-- generated: ... -->` markers there. Their tables are in the files, as docs/gen_architecture.py
    writes them now (a key, meaning or preset changed fails here until it is rerun); only testing.md's test map,
    the README says, is filled in by the site alone."""
    arch = _load("gen_architecture")
    for page in ("reference.md", "study-design.md"):
        text = (DOCS / page).read_text()
        assert arch.render(text, arch.tables(page)) == text, f"docs/{page} is out of date: run " \
            "`python docs/gen_architecture.py`"
        assert "\n<!-- generated: " not in text, page
    assert "| `pack_seeds` |" in (DOCS / "reference.md").read_text()
    bare = {p.name for p in DOCS.glob("*.md") if "\n<!-- generated: " in p.read_text()}
    assert bare == {"testing.md"}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "except the test map of [Testing](docs/testing.md)" in readme


def test_grid_reference_lists_every_key_the_grid_reader_accepts() -> None:
    assert set(gen.grid_keys()) == grid.TOP_KEYS
    page = gen.render("grid")
    for key in grid.TOP_KEYS:
        assert f"| `{key}` |" in page


def test_table_references_list_every_key_their_readers_accept() -> None:
    assert _keys(gen.model_keys()) == set(hparams.KEYS) | {"pack_seeds"}
    assert _keys(gen.data_keys()) == set().union(*data.OPTIONS.values()) | {"source"}
    assert _keys(gen.scenario_keys()) == grid.SCENARIO_KEYS
    assert _keys(gen.profile_keys()) == profile.TOP_KEYS
    assert _keys(gen.resource_keys()) == profile.RESOURCE_KEYS
    assert _keys(gen.container_keys()) == profile.CONTAINER_KEYS
    assert [r[0] for r in gen.resource_tables()] == [f"`[resources.{n}]`" for n in
                                                     ("default", *hparams.MODELS, *profile.COMMAND_JOBS)]


def test_a_key_without_a_meaning_stops_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    meanings = dict(gen.GRID_MEANING)
    del meanings["budget"]
    monkeypatch.setattr(gen, "GRID_MEANING", meanings)
    with pytest.raises(ValueError, match=r"without a meaning here: \['budget'\]"):
        gen.render("grid")
    monkeypatch.setattr(gen, "PROFILE_MEANING", {**gen.PROFILE_MEANING, "no_such_key": "x"})
    with pytest.raises(ValueError, match=r"keys it does not accept: \['no_such_key'\]"):
        gen.render("profile")


def test_documented_grid_defaults_are_what_the_reader_applies(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('data = "phantom"\nscenarios = ["1"]\n')
    g = grid.load(path)
    doc = gen.grid_keys()
    assert doc["seeds"].default == f"`{len({r.seed for r in g.runs})}`" == "`20`"
    assert doc["models"].default == f"`{gen.toml(sorted({r.model for r in g.runs}, key=list(hparams.MODELS).index))}`"
    assert doc["augmentations"].default == f"`{gen.toml(list(dict.fromkeys(r.augmentation for r in g.runs)))}`"
    assert doc["budget"].default == f"`{gen.toml(g.budget)}`" and doc["select"].default == f"`{gen.toml(g.select)}`"
    assert doc["save_weights"].default == "`false`" and g.save_weights is False
    assert g.name == "mine" and g.results == Path("results/mine") and g.pool is None
    assert doc["data"].default == f"`{gen.toml(grid.DataSpec().source)}`"
    # scenarios: a grid without the key runs 1-4, which needs a pool for 3 and 4
    with_pool = tmp_path / "pooled.toml"
    with_pool.write_text('data = "phantom"\npool = "nowhere"\nseeds = 1\nmodels = ["cnn"]\naugmentations = ["none"]\n')
    assert doc["scenarios"].default == f"`{gen.toml([r.scenario.name for r in grid.load(with_pool).runs])}`"


def test_documented_model_and_data_defaults_are_the_codes() -> None:
    rows = {row[0].strip("`"): row for row in gen.model_keys()}
    for i, name in enumerate(hparams.MODELS, start=2):
        assert rows["epochs"][i].startswith(f"`{hparams.MODELS[name].defaults.epochs}`")
        thesis = hparams.thesis(name).lr
        assert (f"thesis `{thesis!r}`" in rows["lr"][i]) == (thesis != hparams.MODELS[name].defaults.lr)
    drows = {row[0].strip("`"): row for row in gen.data_keys()}
    assert drows["n_train"][2].startswith(f"`{data.PHANTOM_DEFAULTS['n_train']}`")
    assert drows["test_fraction"][2] == f"`{splits.SUBJECT_DEFAULTS['test_fraction']}`"
    presets = gen.scenario_presets()
    assert [r[0] for r in presets] == [f"`{n}`" for n in scenarios.SCENARIOS]
    assert presets[3][1:3] == ["80% of every class", "Mild 20%, Moderate 20%"]  # scenario 4, by hand


def test_documented_profile_defaults_are_what_the_reader_applies(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[resources.default]\npartition = "gpu"\n')
    p = profile.load_profile(path)
    rows = {row[0].strip("`"): row for row in gen.profile_keys()}
    assert rows["max_requeues"][2] == f"`{p.max_requeues}`" and rows["signal_delay_s"][2] == f"`{p.signal_delay_s}`"
    assert rows["collector"][2].startswith(f"{p.collector.cpus} CPU, {p.collector.time_min} min")
    assert p.collector.partition == "gpu"  # "the default's partition"
    res = {row[0].strip("`"): row for row in gen.resource_keys()}
    assert res["time"][2] == f"`{p.for_model('cnn').time_min}` (minutes)"
    assert res["cpus"][2] == f"`{p.for_model('cnn').cpus}`" and res["gpus"][2] == f"`{p.for_model('cnn').gpus}`"


def test_architecture_page_names_every_module() -> None:
    page = gen.expand((DOCS / "architecture.md").read_text())
    files = [p for p in (ROOT / "mriaug").rglob("*.py")]
    assert len(files) > 40
    for path in files:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert f"`{name}`" in page, f"docs/architecture.md does not name {name}"
    # the layers as pyproject.toml orders them
    assert "| 1 | `cli` |" in page and "`errors`" in page.split("| 1 | `cli` |")[1]


def test_testing_page_maps_every_test_file() -> None:
    text = (DOCS / "testing.md").read_text()
    section = text.split("## Which file tests what")[1].split("\n## ")[0]
    listed = re.findall(r"^\| `(test_\w+\.py)` \|", section, re.M)
    assert sorted(listed) == sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert len(listed) == len(set(listed))


def test_every_environment_variable_the_code_reads_is_documented() -> None:
    read = set()
    for path in (ROOT / "mriaug").rglob("*.py"):
        read |= set(re.findall(r"\bMRIAUG_[A-Z_]+\b", path.read_text()))
    documented = (DOCS / "reference.md").read_text().split("## Environment variables")[1]
    assert read and {v for v in read if f"`{v}`" not in documented} == set()


PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
RECORDED = re.compile(r"^\*Recorded \d{4}-\d{2}-\d{2} on .+\*$")


def test_every_console_example_is_scripted_or_recorded_with_date_and_machine() -> None:
    blocks = 0
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "```console":
                continue
            blocks += 1
            before = [x.strip() for x in lines[max(0, i - 3):i] if x.strip()]
            assert before and (examples.MARKER.match(before[-1]) or RECORDED.match(before[-1])), \
                f"{page.relative_to(ROOT)}, line {i + 1}: a console block neither scripted nor marked as recorded"
    assert blocks >= 10


def test_every_scripted_example_is_on_a_page() -> None:
    shown = {name for page in PAGES for name, _, _ in examples.blocks(page.read_text())}
    assert shown == set(examples.EXAMPLES)
    assert any(ex.fast for ex in examples.EXAMPLES.values())


def test_the_fast_scripted_examples_print_what_the_pages_show() -> None:
    p = subprocess.run([sys.executable, str(DOCS / "examples.py"), "--check"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 block(s) differ" in p.stdout


def test_the_example_check_fails_on_a_block_that_no_longer_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- example: grid-error -->\n```console\n$ mriaug status jobs/bad.toml\nerror: line 99\n```\n")
    monkeypatch.setattr(examples, "PAGES", [page])
    assert examples.main(["--check", "grid-error"]) == 1
    assert "-error: line 99" in capsys.readouterr().out
    assert examples.main(["grid-error"]) == 0  # rewritten, and then it holds
    assert "line 7: model.cnn.epochs: must be a positive integer" in page.read_text()


def _make_docs() -> list[str]:
    """`make docs`'s mkdocs command as the Makefile has it, so the tests run what CI runs (a `--quiet` there would
    hide the warnings that --strict counts, and the build would pass with them)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe = lines[lines.index("docs: $(STAMP)") + 1].split()
    words = [w for w in recipe if "=" not in w or w.startswith("-")]  # without the environment assignment
    assert words[0] == "$(BIN)/mkdocs", recipe
    return [str(Path(sys.executable).parent / "mkdocs"), *words[1:]]


def _build(cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_make_docs(), "-d", str(site)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    p = _build(ROOT, tmp_path / "site")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "WARNING" not in p.stdout + p.stderr
    site = tmp_path / "site"
    reference = (site / "reference.html").read_text()
    assert "<code>pack_seeds</code>" in reference and "<!-- generated" not in reference
    assert "runs_per_task" in reference
    assert "Running the grid on Slurm" in (site / "slurm.html").read_text()  # the included README
    # The study's report ships as its one self-contained HTML page, where the study's README links it.
    assert (site / "study" / "report" / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert 'href="report/report.html"' in (site / "study" / "index.html").read_text()
    # Search from the file system: the index as a script, the worker shim from the site itself, nothing fetched.
    assert (site / "search" / "search_index.js").read_text().startswith("var __index = {")
    index = (site / "index.html").read_text()
    assert '<script src="assets/iframe-worker-shim.js">' in index and "unpkg" not in index
    assert "window.Worker=o" in (site / "assets" / "iframe-worker-shim.js").read_text()


def test_make_docs_fails_on_a_link_to_a_missing_file(tmp_path: Path) -> None:
    """The site built from a copy of docs/ in which one page links to a file that is not there."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(DOCS, tmp_path / "docs")
    for name in ("mriaug", "tests", "pyproject.toml", "benchmarks", "containers", "slurm"):  # what the build reads
        (tmp_path / name).symlink_to(ROOT / name)
    page = tmp_path / "docs" / "study" / "README.md"
    page.write_text(page.read_text() + "\nSee [the runs](runs-missing.csv).\n")
    p = _build(tmp_path, tmp_path / "site")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "contains a link 'runs-missing.csv', but the target 'study/runs-missing.csv' is not found" in out
    assert "Aborted with 1 warnings in strict mode" in out


def test_every_command_of_the_cli_is_documented() -> None:
    import typer

    from mriaug.cli import app

    def commands(group, prefix: str):  # the click group typer builds, walked to its leaves
        yield prefix
        for name, sub in getattr(group, "commands", {}).items():
            yield from commands(sub, f"{prefix} {name}")

    text = "\n".join(page.read_text() for page in PAGES)
    found = list(commands(typer.main.get_command(app), "mriaug"))
    assert len(found) > 12
    missing = [c for c in found if c != "mriaug" and f"`{c}" not in text and f"$ {c}" not in text]
    assert missing == [], f"commands no page of README.md or docs/ shows: {missing}"


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 260
    first_block = text.split("```")[1]
    assert "make smoke" in first_block and "make test" in first_block


def test_the_example_check_reads_past_a_phantom_fingerprint_only() -> None:
    """The phantom's content fingerprint differs between CPUs (numpy's vectorised float32 kernels), so the check
    masks it; anything else that changes in a block still counts."""
    page = "source: phantom  fingerprint: e9eb7bc9304e4047  resolution: 32x32\nMild_Demented  68  21"
    assert examples.comparable(page) == examples.comparable(page.replace("e9eb7bc9304e4047", "6fb2a39061b02009"))
    assert examples.comparable(page) != examples.comparable(page.replace("32x32", "64x64"))
    assert examples.comparable(page) != examples.comparable(page.replace("68", "69"))
