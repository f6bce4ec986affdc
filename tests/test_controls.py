"""Matched budgets, validation and selection, AdamW, the copy control, sources-first pool sampling, the
group leakage guard, and grids with several pools."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mriaug import data, grid, hparams, pools, scenarios, synth
from mriaug.cli import app
from mriaug.data import DataSpec
from mriaug.errors import GridError, PoolError, SettingError
from mriaug.spec import RunSpec
from mriaug.train import epoch_batches, execute, make_optimizer
from tests.conftest import tiny_hparams

runner = CliRunner()
QUIET = {"log": lambda m: None}


@pytest.fixture
def ds(phantom_spec: DataSpec) -> data.Dataset:
    return data.load(phantom_spec)


def test_epoch_batches_match_scenario1_steps() -> None:
    assert epoch_batches(240, 32, 3, "epochs", 240) == [8, 8, 8]
    # 80% of the images: the same 24 steps as scenario 1, the last pass cut short.
    assert epoch_batches(192, 32, 3, "steps", 240) == [6, 6, 6, 6]
    assert epoch_batches(200, 32, 3, "steps", 240) == [7, 7, 7, 3]
    # More images (synthetic added): fewer passes, the same number of updates.
    assert epoch_batches(290, 32, 3, "steps", 240) == [10, 10, 4]
    for n in (150, 192, 240, 290, 400):
        assert sum(epoch_batches(n, 32, 3, "steps", 240)) == 24


def test_steps_budget_gives_every_scenario_scenario1s_updates(phantom_spec: DataSpec, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    synth.make_pool(data.load(phantom_spec), pool, "copy", progress_bar=False)
    out = {}
    for name in ("1", "2", "3"):
        spec = grid.plan_run("cnn", scenarios.SCENARIOS[name], "none", 0, tiny_hparams(epochs=2), phantom_spec,
                             str(pool), budget="steps")
        out[name] = execute(spec, tmp_path / "r", **QUIET)
    steps = {k: r["training"]["steps"] for k, r in out.items()}
    assert steps == {"1": 16, "2": 16, "3": 16}
    assert [r["history"][-1]["steps"] for r in out.values()] == [16, 16, 16]
    assert out["2"]["training"]["epochs"] > 2 and out["3"]["training"]["epochs"] == 2
    assert all(r["spec"]["budget"] == "steps" and r["training"]["budget"] == "steps" for r in out.values())
    epochs_run = grid.plan_run("cnn", scenarios.SCENARIOS["2"], "none", 0, tiny_hparams(epochs=2), phantom_spec)
    assert "budget" not in epochs_run.to_dict()  # the thesis's run ids do not move
    assert execute(epochs_run, tmp_path / "e", **QUIET)["training"]["steps"] == 12


def test_validation_history_and_best_val_selection(tmp_path: Path) -> None:
    spec_data = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, "split": "subject",
                                     "val_fraction": 0.3})
    runs = {}
    for select in ("last", "best_val"):
        spec = grid.plan_run("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams(epochs=4, lr=1e-2), spec_data,
                             select=select)
        runs[select] = execute(spec, tmp_path, **QUIET)
    last, best = runs["last"], runs["best_val"]
    assert [h["train_loss"] for h in last["history"]] == [h["train_loss"] for h in best["history"]]
    assert all({"val_ce", "val_accuracy"} <= set(h) and "test_ce" not in h for h in best["history"])
    val = [h["val_ce"] for h in best["history"]]
    assert best["training"]["selected_epoch"] == int(np.argmin(val)) + 1
    assert last["training"]["selected_epoch"] == 4
    assert best["validation"]["val_ce"] == min(val)
    if best["training"]["selected_epoch"] != 4:
        assert best["metrics"]["test_ce"] != last["metrics"]["test_ce"]
    assert best["data"]["split"]["kind"] == "subject" and sum(best["counts"]["val"].values()) > 0


def test_best_val_without_validation_is_refused(phantom_spec: DataSpec, tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="val_fraction"):
        grid.plan_run("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams(), phantom_spec, select="best_val")
    g = tmp_path / "g.toml"
    g.write_text('models = ["cnn"]\nscenarios = ["1"]\nselect = "best_val"\n[data]\nsource = "phantom"\n')
    with pytest.raises(GridError, match="line 3: select"):
        grid.load(g)


def test_adamw_whenever_weight_decay() -> None:
    model = torch.nn.Linear(2, 2)
    opt, name = make_optimizer(model, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW) and name == "adamw"
    opt, name = make_optimizer(model, 1e-3, 0.0)
    assert type(opt) is torch.optim.Adam and name == "adam"
    vit = RunSpec("vit", scenarios.SCENARIOS["1"], "none", 0, hparams.thesis("vit"))
    assert vit.to_dict()["optimizer"] == "adamw"
    assert "optimizer" not in RunSpec("cnn", scenarios.SCENARIOS["1"], "none", 0, hparams.thesis("cnn")).to_dict()


def test_copy_pool_holds_exact_copies(ds: data.Dataset, tmp_path: Path) -> None:
    synth.make_pool(ds, tmp_path / "copy", "copy", classes=["Moderate_Demented"], progress_bar=False)
    p = pools.load(tmp_path / "copy", ds)
    assert len(p.labels) == ds.counts("train")["Moderate_Demented"]
    np.testing.assert_array_equal(p.images, ds.train_x[p.sources])


def test_pool_sampling_takes_sources_first_and_records_reuse(ds: data.Dataset, tmp_path: Path) -> None:
    synth.make_pool(ds, tmp_path / "p", "copy", classes=["Mild_Demented", "Moderate_Demented"], per_source=3,
                    progress_bar=False)
    p = pools.load(tmp_path / "p", ds)
    for seed in range(4):
        m = scenarios.mix(ds, scenarios.SCENARIOS["3"], seed, p)
        for c, name in ((0, "Mild_Demented"), (1, "Moderate_Demented")):
            rows = m.synthetic_index[p.labels[m.synthetic_index] == c]
            n_sources = len(np.unique(p.sources[rows]))
            assert n_sources == len(rows)  # one variation per source while sources last
            if len(rows):
                assert m.pool_sampling[name]["reused"] == 0 and m.pool_sampling[name]["sources"] == len(rows)
        assert m.pool_sampling["Mild_Demented"]["images"] > 0
    n_mod = ds.counts("train")["Moderate_Demented"]
    more = scenarios.custom("more", 1.0, {"Moderate_Demented": 2.0})
    m = scenarios.mix(ds, more, 0, p)
    rows = m.synthetic_index
    assert len(rows) == 2 * n_mod and len(np.unique(p.sources[rows])) == n_mod
    assert np.bincount(p.sources[rows]).max() == 2  # reuse spread evenly: every source twice, none three times
    assert m.pool_sampling["Moderate_Demented"] == {"images": 2 * n_mod, "sources": n_mod,
                                                    "sources_available": n_mod, "reused": n_mod}


def test_group_leakage_guard(phantom_spec: DataSpec, tmp_path: Path) -> None:
    plain = data.load(phantom_spec)
    # A pool made before validation was carved has variations of every train image.
    synth.make_pool(plain, tmp_path / "p", "copy", classes=["Mild_Demented"], progress_bar=False)
    carved = data.load(DataSpec("phantom", {**phantom_spec.options, "val_fraction": 0.3}))
    assert carved.train_groups is not None
    p = pools.load(tmp_path / "p", carved)
    refused = scenarios.refused_sources(carved, p)
    assert refused.any() and np.isin(p.sources[refused], carved.val_rows).all()
    all_mild = scenarios.custom("all", 1.0, {"Mild_Demented": 1.0})
    m = scenarios.mix(carved, all_mild, 0, p)
    assert not np.isin(p.sources[m.synthetic_index], carved.val_rows).any()
    # A training row that shares a scan group with a validation image is refused too.
    fit_mild = np.flatnonzero(carved.fit_mask & (carved.train_y == 0))
    groups = carved.train_groups.copy()
    groups[fit_mild[0]] = groups[carved.val_rows[0]]
    leaky = dataclasses.replace(carved, train_groups=groups)
    assert scenarios.refused_sources(leaky, p)[p.sources == fit_mild[0]].all()
    with pytest.raises(PoolError, match="shares a scan group with a validation or test image"):
        scenarios.mix(leaky, all_mild, 0, p)
    # On the subject split a pool is made from the training part only: no validation or test source.
    sub = data.load(DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "split": "subject"}))
    synth.make_pool(sub, tmp_path / "s", "copy", progress_bar=False)
    ps = pools.load(tmp_path / "s", sub)
    assert len(ps.sources) == int(sub.fit_mask.sum()) and not scenarios.refused_sources(sub, ps).any()


GRID = """name = "pools"
results = "{results}"
models = ["cnn"]
scenarios = ["1", "3"]
augmentations = ["none"]
seeds = 2
budget = "steps"

[pool]
copy = "{copy}"
transform = "{transform}"

[data]
source = "phantom"
n_train = 240
n_test = 80
size = 32

[model.cnn]
epochs = 1
resolution = 32
"""


def test_grid_with_several_pools_keeps_them_apart(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text(GRID.format(results=tmp_path / "res", copy=tmp_path / "copy", transform=tmp_path / "tr"))
    for gen in ("copy", "transform"):
        res = runner.invoke(app, ["synth", "--grid", str(path), "--generator", gen, "--classes",
                                  "Mild_Demented,Moderate_Demented", "--no-report"])
        assert res.exit_code == 0, res.output
    g = grid.load(path)
    assert g.pools == {"copy": str(tmp_path / "copy"), "transform": str(tmp_path / "tr")}
    labels = sorted(r.label for r in g.runs)
    assert len(labels) == 6 and "cnn/s3/copy/none/seed0" in labels and "cnn/s1/none/seed1" in labels
    assert len({r.run_id for r in g.runs}) == 6
    with pytest.raises(GridError, match="none after generator 'openai'"):
        g.pool_for("openai")
    res = runner.invoke(app, ["grid", str(path)])
    assert res.exit_code == 0, res.output
    assert "Scenario 3 · copy" in res.output and "Scenario 3 · transform" in res.output
    r = json.loads(next(p for p in (tmp_path / "res").glob("*.json")
                        if json.loads(p.read_text())["data"]["pool_label"] == "copy").read_text())
    assert r["training"]["budget"] == "steps" and r["selection"]["pool_sampling"]["Mild_Demented"]["reused"] == 0


def test_subject_grid_is_the_thesis_grid_on_a_subject_split() -> None:
    g = grid.load(Path(__file__).resolve().parents[1] / "jobs" / "subject.toml")
    assert g.data.options["split"] == "subject" and g.budget == "steps" and g.select == "best_val"
    assert set(g.pools) == {"openai", "copy"}
    # Scenarios 1-2 once, 3-6 once per pool: 3 models x 3 augmentations x 20 seeds x (2 + 4 x 2). (Until the
    # pools are made their runs share ids: a pool's content is part of a run's id, and none is planned yet.)
    assert len(g.runs) == 3 * 3 * 20 * 10
    assert {r.pool_label for r in g.runs if r.scenario.needs_pool} == {"openai", "copy"}
    assert all(r.to_dict()["budget"] == "steps" for r in g.runs)
