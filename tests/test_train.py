from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mriaug import data as data_mod
from mriaug import results, scenarios, synth
from mriaug.data import DataSpec
from mriaug.spec import RunSpec
from mriaug.train import Interrupted, execute
from tests.conftest import tiny_hparams


def _spec(phantom_spec: DataSpec, model: str = "cnn", scenario: str = "1", aug: str = "hflip", seed: int = 0,
          pool: str | None = None, **hp: object) -> RunSpec:
    return RunSpec(model, scenarios.SCENARIOS[scenario], aug, seed, tiny_hparams(model, **hp), phantom_spec, pool)


def test_result_has_the_documented_keys(phantom_spec: DataSpec, tmp_path: Path) -> None:
    r = execute(_spec(phantom_spec), tmp_path, log=lambda m: None)
    on_disk = results.read(results.path_for(tmp_path, r["run_id"]))
    assert on_disk == r
    m = r["metrics"]
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1"):
        assert isinstance(m[key], float)
    assert set(m["per_class"]["Moderate_Demented"]) == {"recall", "precision", "f1", "support"}
    assert len(m["confusion"]) == 4 and sum(map(sum, m["confusion"])) == 80
    assert len(r["history"]) == 2 and r["history"][-1]["test_ce"] == pytest.approx(m["test_ce"])
    assert sum(r["counts"]["real"].values()) == 240 and sum(r["counts"]["synthetic"].values()) == 0
    assert r["data"]["fingerprint"] == data_mod.load(phantom_spec).fingerprint
    assert r["data"]["pool_fingerprint"] is None
    assert {"torch", "device", "git_commit"} <= set(r["env"])
    assert r["timings"]["train_s"] > 0
    assert r["spec"]["hparams"]["epochs"] == 2
    assert not results.checkpoint_for(tmp_path, r["run_id"]).exists()


def test_same_seed_same_metrics_and_rerun_is_skipped(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, aug="autoaugment")
    a = execute(spec, tmp_path / "a", log=lambda m: None)
    b = execute(spec, tmp_path / "b", log=lambda m: None)
    assert a["metrics"] == b["metrics"]
    c = execute(_spec(phantom_spec, aug="autoaugment", seed=1), tmp_path / "a", log=lambda m: None)
    assert c["metrics"]["test_ce"] != a["metrics"]["test_ce"]
    lines: list[str] = []
    again = execute(spec, tmp_path / "a", log=lines.append)
    assert again == a and lines == []


@pytest.mark.parametrize("model", ["cnn", "resnet18", "vit"])
def test_resume_after_interruption_gives_identical_metrics(phantom_spec: DataSpec, tmp_path: Path, model: str) -> None:
    spec = _spec(phantom_spec, model=model, aug="autoaugment", epochs=3)
    whole = execute(spec, tmp_path / "whole", log=lambda m: None)
    with pytest.raises(Interrupted):
        execute(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    assert results.checkpoint_for(tmp_path / "cut", spec.run_id).exists()
    assert not results.path_for(tmp_path / "cut", spec.run_id).exists()
    lines: list[str] = []
    resumed = execute(spec, tmp_path / "cut", log=lines.append)
    assert any("resumed from checkpoint at epoch 1/3" in line for line in lines)
    assert resumed["metrics"] == whole["metrics"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in whole["history"]]
    assert resumed["timings"]["resumed_from_epoch"] == 1
    assert not results.checkpoint_for(tmp_path / "cut", spec.run_id).exists()


def test_scenario3_run_with_transform_pool(phantom_spec: DataSpec, tmp_path: Path) -> None:
    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    r = execute(_spec(phantom_spec, scenario="3", pool=str(tmp_path / "pool")), tmp_path / "res", log=lambda m: None)
    n_mild = ds.counts("train")["Mild_Demented"]
    assert r["counts"]["synthetic"]["Mild_Demented"] == scenarios.round_half_up(0.2 * n_mild)
    assert r["counts"]["synthetic"]["Non_Demented"] == 0
    assert r["data"]["pool_fingerprint"]
    assert len(r["selection"]["pool_rows"]) == sum(r["counts"]["synthetic"].values())


def test_saved_weights_reload_to_the_same_predictions(phantom_spec: DataSpec, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mriaug import models
    from mriaug.train import predict, to_device_uint8

    spec = _spec(phantom_spec, epochs=1)
    r = execute(spec, tmp_path, save_weights=True, log=lambda m: None)
    model = models.build("cnn", spec.hparams)
    model.load_state_dict(load_file(r["weights"]))
    ds = data_mod.load(phantom_spec)
    x = to_device_uint8(ds.test_x, 32, torch.device("cpu"))
    logits = predict(model, x, models.normalization(model), autocast=True)
    from mriaug.metrics import classification_metrics

    assert classification_metrics(logits, ds.test_y)["test_ce"] == pytest.approx(r["metrics"]["test_ce"], abs=1e-6)


def test_run_id_covers_the_whole_spec(phantom_spec: DataSpec) -> None:
    base = _spec(phantom_spec)
    assert base.run_id == _spec(phantom_spec).run_id
    assert base.run_id != _spec(phantom_spec, lr=1e-4).run_id
    assert base.run_id != _spec(phantom_spec, seed=3).run_id
    # A pool only matters to scenarios that draw from it.
    assert base.run_id == _spec(phantom_spec, pool="pools/x").run_id
