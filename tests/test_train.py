from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mriaug import augment, pools, results, scenarios, synth
from mriaug import data as data_mod
from mriaug.data import DataSpec
from mriaug.grid import plan_run
from mriaug.spec import RunSpec
from mriaug.train import Interrupted, execute
from tests.conftest import tiny_hparams


def _spec(phantom_spec: DataSpec, model: str = "cnn", scenario: str = "1", aug: str = "hflip", seed: int = 0,
          pool: str | None = None, **hp: object) -> RunSpec:
    return plan_run(model, scenarios.SCENARIOS[scenario], aug, seed, tiny_hparams(model, **hp), phantom_spec, pool)


def test_result_has_the_documented_keys(phantom_spec: DataSpec, tmp_path: Path) -> None:
    r = execute(_spec(phantom_spec), tmp_path, log=lambda m: None)
    on_disk = results.read(results.path_for(tmp_path, r["run_id"]))
    assert on_disk == r
    m = r["metrics"]
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1"):
        assert isinstance(m[key], float)
    assert set(m["per_class"]["Moderate_Demented"]) == {"recall", "precision", "f1", "support"}
    assert len(m["confusion"]) == 4 and sum(map(sum, m["confusion"])) == 80
    # No validation part on the given split by default: the history is the training loss; test is seen once.
    assert len(r["history"]) == 2 and all("test_ce" not in h and "val_ce" not in h for h in r["history"])
    assert r["training"] == {"budget": "epochs", "epochs": 2, "steps": 16, "select": "last", "selected_epoch": 2,
                             "optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0}
    assert r["data"]["split"]["kind"] == "given" and r["validation"] is None
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


def test_augmenting_several_batches_per_call_on_the_cpu_changes_nothing(phantom_spec: DataSpec, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # On the CPU a run augments AutoAugment a few batches per call (augment.ahead_images); the run must be the
    # run of one call per batch, to the last bit.
    spec = _spec(phantom_spec, aug="autoaugment")
    calls: list[int] = []
    real = augment.ahead

    def counted(aug: augment.Augment, x: torch.Tensor, rows: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        calls.append(len(rows))
        return real(aug, x, rows, keys)

    monkeypatch.setattr(augment, "ahead", counted)
    monkeypatch.setattr(augment, "CPU_CALL_PIXELS", 3 * 32 * 32 * 32 + 5)  # three batches of 32 at 32 px
    three = execute(spec, tmp_path / "three", log=lambda m: None)
    assert calls == [96, 96, 48] * 2  # 240 images per epoch, 2 epochs: the last call takes what is left
    calls.clear()
    monkeypatch.setattr(augment, "CPU_CALL_PIXELS", 1)  # at least one batch per call
    one = execute(spec, tmp_path / "one", log=lambda m: None)
    assert calls == ([32] * 7 + [16]) * 2
    assert one["metrics"] == three["metrics"]
    assert [h["train_loss"] for h in one["history"]] == [h["train_loss"] for h in three["history"]]


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


def test_pool_identity_is_its_content_not_its_path(phantom_spec: DataSpec, tmp_path: Path) -> None:
    import shutil

    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "p", "transform", classes=["Mild_Demented"], max_sources=10,
                    progress_bar=False)
    first = _spec(phantom_spec, scenario="3", pool=str(tmp_path / "p")).run_id
    shutil.copytree(tmp_path / "p", tmp_path / "moved")
    assert _spec(phantom_spec, scenario="3", pool=str(tmp_path / "moved")).run_id == first
    synth.make_pool(ds, tmp_path / "p", "transform", classes=["Mild_Demented"], progress_bar=False)
    assert _spec(phantom_spec, scenario="3", pool=str(tmp_path / "p")).run_id != first
    assert _spec(phantom_spec, scenario="3", pool=str(tmp_path / "none")).run_id != first


def test_run_id_changes_with_every_part_of_the_spec(phantom_spec: DataSpec) -> None:
    base = _spec(phantom_spec).run_id
    variants = [
        _spec(phantom_spec, model="vit"), _spec(phantom_spec, aug="none"), _spec(phantom_spec, scenario="2"),
        _spec(phantom_spec, epochs=3), _spec(DataSpec("phantom", {**phantom_spec.options, "seed": 1})),
    ]
    ids = {v.run_id for v in variants}
    assert base not in ids and len(ids) == len(variants)
    # A weights file applies to pretrained models only (cnn refuses one): it is part of their run id.
    assert _spec(phantom_spec, model="resnet18", weights="w.safetensors").run_id != _spec(
        phantom_spec, model="resnet18").run_id


def test_unreadable_result_is_set_aside_and_run_again(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, epochs=1)
    first = execute(spec, tmp_path, log=lambda m: None)
    path = results.path_for(tmp_path, spec.run_id)
    path.write_text(path.read_text()[:100])
    lines: list[str] = []
    again = execute(spec, tmp_path, log=lines.append)
    assert any("not valid JSON" in line and "moved to" in line for line in lines)
    assert (tmp_path / f"{spec.run_id}.json.bad").exists()
    assert again["metrics"] == first["metrics"]


def test_bad_or_foreign_checkpoint_is_not_resumed(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, epochs=3)
    whole = execute(spec, tmp_path / "whole", log=lambda m: None)
    ckpt = results.checkpoint_for(tmp_path / "cut", spec.run_id)
    # A checkpoint cut short: set aside, the run starts afresh and still matches.
    with pytest.raises(Interrupted):
        execute(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    lines: list[str] = []
    assert execute(spec, tmp_path / "cut", log=lines.append)["metrics"] == whole["metrics"]
    assert any("unreadable checkpoint" in line for line in lines)
    # A checkpoint of the same run id made from other data (the selection differs): not resumed.
    results.path_for(tmp_path / "cut", spec.run_id).unlink()
    with pytest.raises(Interrupted):
        execute(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    state = torch.load(ckpt, weights_only=True)
    state["data_fingerprint"] = "0" * 16
    torch.save(state, ckpt)
    lines.clear()
    assert execute(spec, tmp_path / "cut", log=lines.append)["metrics"] == whole["metrics"]
    assert any("checkpoint made with another data_fingerprint" in line for line in lines)
    assert not any("resumed" in line for line in lines)


def test_resume_uses_the_thread_count_the_run_started_with(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, epochs=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(Interrupted):
            execute(spec, tmp_path, log=lambda m: None, stop_after=1)
        torch.set_num_threads(2)
        lines: list[str] = []
        r = execute(spec, tmp_path, log=lines.append)
        assert any("resuming with 1 threads" in line for line in lines)
        assert r["env"]["threads"] == 1
    finally:
        torch.set_num_threads(threads)


def test_pool_changed_after_planning_keeps_the_id_and_is_refused(phantom_spec: DataSpec, tmp_path: Path) -> None:
    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "p", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    planned = _spec(phantom_spec, scenario="3", pool=str(tmp_path / "p"))
    run_id = planned.run_id
    synth.make_pool(ds, tmp_path / "p", "transform", classes=["Non_Demented"], max_sources=3, progress_bar=False)
    assert planned.run_id == run_id
    with pytest.raises(pools.PoolError, match=r"changed since run cnn/s3/hflip/seed0 was planned"):
        execute(planned, tmp_path / "res", log=lambda m: None)
    assert not list((tmp_path / "res").glob("*.json"))


def test_the_cnn_learns_the_phantom(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # A few epochs must beat the majority class clearly and bring test CE well below ln 4 (a uniform guess):
    # fails when training does nothing (no optimizer step, frozen weights, labels shuffled).
    import math

    import numpy as np

    ds = data_mod.load(phantom_spec)
    majority = np.bincount(ds.test_y).max() / len(ds.test_y)
    r = execute(_spec(phantom_spec, aug="none", epochs=6, batch_size=16), tmp_path, log=lambda m: None)
    m = r["metrics"]
    assert m["accuracy"] >= majority + 0.2, (m["accuracy"], majority)
    assert m["balanced_accuracy"] >= 0.45  # chance is 0.25
    assert m["test_ce"] < math.log(4) - 0.5, m["test_ce"]
    losses = [h["train_loss"] for h in r["history"]]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("key", ["selection", "pool_fingerprint", "data_fingerprint"])
def test_checkpoint_of_another_identity_is_set_aside(phantom_spec: DataSpec, tmp_path: Path, key: str) -> None:
    # README: "a checkpoint made from other data or another selection of images is set aside, never resumed".
    spec = _spec(phantom_spec, epochs=2)
    with pytest.raises(Interrupted):
        execute(spec, tmp_path, log=lambda m: None, stop_after=1)
    ckpt = results.checkpoint_for(tmp_path, spec.run_id)
    state = torch.load(ckpt, weights_only=True)
    assert key in state
    state[key] = "0" * 16
    torch.save(state, ckpt)
    lines: list[str] = []
    r = execute(spec, tmp_path, log=lines.append)
    assert any(f"checkpoint made with another {key}" in line for line in lines), lines
    assert not any("resumed" in line for line in lines)
    assert r["timings"]["resumed_from_epoch"] == 0 and len(r["history"]) == 2
    assert ckpt.with_name(ckpt.name + ".bad").exists() and not ckpt.exists()
