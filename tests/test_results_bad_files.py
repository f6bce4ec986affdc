"""`mriaug.results`' readers meet bad files: `mriaug collect`, `mriaug grid`, the status and the collector skip
a binary, a mistyped and a foreign JSON file and name each; the reader says what is wrong. (Until issue 23 in
test_robustness.py; kept apart from test_results.py, which was being edited at the time of the move.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug import grid, results, slurm
from mriaug.cli import app
from tests.slurm_helpers import write_grid

runner = CliRunner()


def _spoil(folder: Path) -> tuple[Path, Path, Path]:
    good = sorted(folder.glob("*.json"))[0]
    binary = folder / "0000binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    doc = json.loads(good.read_text())
    doc["counts"]["real"] = {k: str(v) for k, v in doc["counts"]["real"].items()}
    doc["run_id"] = "0000strings"
    strings = folder / "0000strings.json"
    strings.write_text(json.dumps(doc))
    foreign = folder / "package.json"
    foreign.write_text(json.dumps({"name": "x", "version": "1.0"}))
    return binary, strings, foreign


def test_collect_grid_status_and_collector_skip_and_name_bad_files(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    bad = _spoil(res)
    r = runner.invoke(app, ["collect", str(res)])
    assert r.exit_code == 0, r.output
    for f in bad:
        assert f"skipped: {f}" in r.output
    assert "(n=1)" in r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    assert all(str(f) in r.output for f in bad)
    st = slurm.grid_status(grid.load(g))
    assert st.counts()["done"] == 1
    text = slurm.render_status(st)
    assert all(f.name in text for f in bad), text
    assert slurm.collect_task(str(res)) == 1


def test_result_reader_names_wrong_types(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    _, strings, _ = _spoil(res)
    with pytest.raises(results.ResultError, match=r"counts\.real\.Mild_Demented' is not a count"):
        results.read(strings)
    with pytest.raises(results.ResultError, match="binary"):
        results.read(res / "0000binary.json")
