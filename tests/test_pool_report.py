"""Pool reports (figure + fidelity numbers) and the guards that keep test and dropped images out of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug import data, pool_report, pools, scenarios, synth
from mriaug.cli import app
from mriaug.generators.transform import TransformGenerator

SMALL = data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32})
# Big enough that scenario 4 drops a Moderate image (6 of them, 5 kept) and needs one synthetic.
MEDIUM = data.DataSpec("phantom", {"n_train": 640, "n_test": 80, "size": 32})


@pytest.fixture(scope="module")
def small() -> data.Dataset:
    return data.load(SMALL)


@pytest.fixture(scope="module")
def medium() -> data.Dataset:
    return data.load(MEDIUM)


def _write(pool: Path, ds: data.Dataset, rows: list[int]) -> None:
    w = pools.PoolWriter(pool, ds, "transform")
    gen = TransformGenerator()
    for r in rows:
        w.add(gen.variation(ds.train_x[r], r, 0), r, 0, "transform", {})
    w.flush()


# --- the report -------------------------------------------------------------------------------

def test_ssim_and_histogram_distance() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    assert np.allclose(pool_report.ssim(x, x), 1.0)
    assert (pool_report.ssim(x, 255 - x) < 0).all()
    noisy = np.clip(x.astype(int) + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    s = pool_report.ssim(x, noisy)
    assert (s > 0.3).all() and (s < 1).all()
    assert pool_report.hist_distance(x, x) == 0.0
    assert pool_report.hist_distance(np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)) == 2.0


def test_report_written_next_to_the_manifest(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    synth.make_pool(small, pool, "transform", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False)
    # The CLI finds the dataset from pool.json.
    r = CliRunner().invoke(app, ["synth", "report", str(pool), "--per-class", "3"])
    assert r.exit_code == 0, r.output
    assert "Mild_Demented" in r.output and "SSIM" in r.output
    rep = json.loads((pool / "report.json").read_text())
    assert set(rep["per_class"]) == {"Mild_Demented", "Moderate_Demented"}
    mild = rep["per_class"]["Mild_Demented"]
    assert mild["images"] == int((small.train_y == 0).sum())
    assert 0.3 < mild["ssim_to_source_mean"] < 1.0 and 0.0 <= mild["hist_l1_to_source_mean"] <= 2.0
    png = (pool / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(pool.glob(".*.tmp"))  # atomic writes leave no temporaries
    # The pool itself is still valid with the report beside it.
    pools.load(pool, small)


def test_report_on_a_missing_pool_is_one_clear_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["synth", "report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "pool.json" in r.output


# --- the guards: never a test image, never a dropped image ---------------------------------------

def test_source_outside_the_train_split_is_rejected(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    _write(pool, small, [int(np.flatnonzero(small.train_y == 0)[0])])
    lines = (pool / "manifest.jsonl").read_text().splitlines()
    e = json.loads(lines[0])
    n = len(small.train_y)
    for bad in (n, n + 5, -1):  # a test image would sit past the train rows
        e["source_index"] = bad
        (pool / "manifest.jsonl").write_text(json.dumps(e) + "\n")
        with pytest.raises(pools.PoolError, match="not a row of the train split"):
            pools.load(pool, small)


def test_variations_of_dropped_images_make_mix_fail(tmp_path: Path, medium: data.Dataset) -> None:
    pool = tmp_path / "pool"
    kept = synth.kept_rows(medium, "4", 0)
    mild = np.flatnonzero(medium.train_y == 0).tolist()
    moderate = np.flatnonzero(medium.train_y == 1)
    dropped = [int(r) for r in moderate if r not in kept]
    assert dropped, "scenario 4 should drop a Moderate image here"
    # Every Mild row has a variation; the only Moderate variations come from dropped images.
    _write(pool, medium, mild + dropped)
    p = pools.load(pool, medium)
    with pytest.raises(pools.PoolError, match=r"synthetic Moderate_Demented images whose sources are among the 5 kept"):
        scenarios.mix(medium, scenarios.SCENARIOS["4"], 0, p)
    # Scenario 3 keeps everything, so the same pool serves it.
    m = scenarios.mix(medium, scenarios.SCENARIOS["3"], 0, p)
    assert m.counts_synthetic["Moderate_Demented"] == 1


def test_pool_made_for_a_kept_set(tmp_path: Path, medium: data.Dataset) -> None:
    pool = tmp_path / "pool"
    r = CliRunner().invoke(app, ["synth", "--data", "phantom", "-o", "n_train=640", "-o", "n_test=80", "-o", "size=32",
                                 "--out", str(pool), "--classes", "Mild_Demented,Moderate_Demented",
                                 "--kept-for", "4:0", "--no-report"])
    assert r.exit_code == 0, r.output
    p = pools.load(pool, medium)
    kept = synth.kept_rows(medium, "4", 0)
    assert np.isin(p.sources, kept).all()
    mm = np.isin(medium.train_y, [0, 1])
    assert len(p.sources) == int(np.isin(np.flatnonzero(mm), kept).sum())
    assert json.loads((pool / "pool.json").read_text())["kept_for"] == {"scenario": "4", "seed": 0}
    m = scenarios.mix(medium, scenarios.SCENARIOS["4"], 0, p)
    assert np.array_equal(np.sort(m.real_index), kept)  # the run keeps exactly the rows the pool was made for
    assert np.isin(p.sources[m.synthetic_index], m.real_index).all()
    r = CliRunner().invoke(app, ["synth", "--data", "phantom", "--out", str(pool), "--kept-for", "4"])
    assert r.exit_code == 2 and "SCENARIO:SEED" in r.output


def test_diffusion_trains_only_on_kept_rows(medium: data.Dataset) -> None:
    from mriaug.generators.diffusion import training_rows

    rows = training_rows(medium, ["Moderate_Demented"], ("4", 0))
    kept = synth.kept_rows(medium, "4", 0)
    assert np.isin(rows, kept).all() and len(rows) == 5
    assert len(training_rows(medium, ["Moderate_Demented"])) == 6
