from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import results, scenarios
from mriaug.analysis import collect
from mriaug.cli import app
from mriaug.data import DataSpec
from mriaug.grid import plan_run
from mriaug.train import execute
from tests.conftest import tiny_hparams


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    for scen in ("1", "2"):
        for aug in ("none", "hflip"):
            for seed in (0, 1, 2):
                hp = tiny_hparams("cnn", epochs=1)
                execute(plan_run("cnn", scenarios.SCENARIOS[scen], aug, seed, hp, spec), out, log=lambda m: None)
    return out


def test_tables_are_medians_with_counts(results_dir: Path) -> None:
    c = collect.gather(results_dir)
    assert len(c.runs) == 12 and not c.errors
    t = c.table("cnn")
    assert list(t.columns) == ["No Augmentation", "Random Horizontal Augment", "AutoAugment"]
    assert list(t.index) == ["Scenario 1", "Scenario 2", "Scenario 3", "Scenario 4"]
    cell = c.runs[(c.runs.scenario == "1") & (c.runs.augmentation == "none")]["test_ce"].median()
    assert t.loc["Scenario 1", "No Augmentation"] == f"{cell:.3f} (n=3)"
    assert t.loc["Scenario 3", "AutoAugment"] == "— (n=0)"
    assert (c.table("vit") == "— (n=0)").all().all()


def test_corrupt_result_is_named_and_tables_still_print(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    victim = sorted(work.glob("*.json"))[0]
    victim.write_text(victim.read_text()[: len(victim.read_text()) // 2])
    (work / "0000000000000000.json").write_text(json.dumps({"run_id": "0000000000000000"}))
    # Valid JSON with every top-level key, but a metric that is not a number.
    broken = json.loads(sorted(results_dir.glob("*.json"))[1].read_text())
    broken["metrics"]["test_ce"] = "low"
    (work / sorted(results_dir.glob("*.json"))[1].name).write_text(json.dumps(broken))
    res = CliRunner().invoke(app, ["collect", str(work)])
    assert res.exit_code == 0, res.output
    assert f"skipped: {victim}: not valid JSON" in res.output
    assert "0000000000000000.json: missing or malformed key 'spec'" in res.output
    assert "'metrics.test_ce' is not a number ('low')" in res.output
    assert "Scenario 1" in res.output and "(n=3)" in res.output and "(n=2)" in res.output
    for model in ("cnn", "resnet18", "vit"):
        for suffix in (".csv", ".md", ".tex"):
            assert (work / "tables" / f"{model}{suffix}").exists()
    runs = (work / "tables" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 10
    assert r"\begin{tabular}" in (work / "tables" / "cnn.tex").read_text()


def test_result_reader_rejects_mismatched_name(results_dir: Path, tmp_path: Path) -> None:
    src = sorted(results_dir.glob("*.json"))[0]
    dst = tmp_path / "abcdef.json"
    dst.write_text(src.read_text())
    with pytest.raises(results.ResultError, match="does not match its run_id"):
        results.read(dst)


def test_versus_thesis_and_figure(results_dir: Path, tmp_path: Path) -> None:
    c = collect.gather(results_dir)
    t = c.versus_thesis("cnn")
    ours = c.medians("cnn").loc[("1", "none"), "median"]
    assert t.loc["Scenario 1", "No Augmentation"] == f"{ours:.3f} / 0.114"
    assert t.loc["Scenario 3", "AutoAugment"] == "— / 0.137"
    assert collect.thesis_medians().query("model == 'resnet18' and scenario == '2'").empty
    written = collect.write(c, tmp_path)
    png = tmp_path / "cnn.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "vit.png").exists()


def test_collect_keeps_one_grids_runs_and_warns_of_mixed_cells(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    # The same cell and seed again with other settings, as after editing a grid.
    other = plan_run("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams("cnn", epochs=1, lr=5e-3), spec)
    execute(other, work, log=lambda m: None)
    mixed = collect.gather(work)
    assert len(mixed.runs) == 13 and mixed.warnings and "cnn/1/none/0" in mixed.warnings[0]
    only = collect.gather(work, {other.run_id})
    assert list(only.runs["run_id"]) == [other.run_id] and not only.warnings
