from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data import sources as data_mod
from mriaug.data.classes import CLASSES
from mriaug.data.sources import DataSpec
from mriaug.engine import augment, batches, nets, runtime, speed, train
from mriaug.engine.metrics import classification_metrics
from mriaug.engine.train import Interrupted, make_optimizer, steps_per_epoch
from mriaug.generators import synth
from mriaug.plan import grid, hparams, scenarios
from mriaug.plan.grid import make_spec
from mriaug.plan.spec import RunSpec
from mriaug.store import atomic, results
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one


def _spec(phantom_spec: DataSpec, model: str = "cnn", scenario: str = "1", aug: str = "hflip", seed: int = 0,
          pool: str | None = None, **hp: object) -> RunSpec:
    return make_spec(model, scenarios.SCENARIOS[scenario], aug, seed, tiny_hparams(model, **hp), phantom_spec, pool)


def test_result_has_the_documented_keys(phantom_spec: DataSpec, tmp_path: Path) -> None:
    r = train_one(_spec(phantom_spec), tmp_path, log=lambda m: None)
    on_disk = results.read(results.path_for(tmp_path, r.run_id))
    assert on_disk == r
    m = r.metrics
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1"):
        assert isinstance(getattr(m, key), float)
    assert set(m.per_class["Moderate_Demented"]) == {"recall", "precision", "f1", "support"}
    assert len(m.confusion) == 4 and sum(map(sum, m.confusion)) == 80
    # No validation part on the given split by default: the history is the training loss; test is seen once.
    assert len(r.history) == 2 and all("test_ce" not in h and "val_ce" not in h for h in r.history)
    # bf16 was asked for: the result says what ran (bf16 where this CPU has it natively, else fp32)
    ran = "bf16" if runtime.autocast_bf16("bf16", torch.device("cpu")) else "fp32"
    assert r.training.to_dict() == {"budget": "epochs", "epochs": 2, "steps": 16, "select": "last", "selected_epoch": 2,
                             "optimizer": "adam", "lr": 2e-3, "weight_decay": 0.0, "precision": ran}
    assert r.data.split["kind"] == "given" and r.validation is None
    assert sum(r.counts.real.values()) == 240 and sum(r.counts.synthetic.values()) == 0
    assert r.data.fingerprint == data_mod.load(phantom_spec).fingerprint
    assert r.data.pool_fingerprint is None and r.data.pool_path is None and r.data.pool_label is None
    assert {"torch", "device", "git_commit"} <= set(r.env)
    assert r.timings["train_s"] > 0 and r.timings["total_s"] >= r.timings["train_s"] + r.timings["data_s"]
    assert r.schema == results.SCHEMA and r.data.source == data_mod.load(phantom_spec).source
    assert r.spec["hparams"]["epochs"] == 2
    assert not results.checkpoint_for(tmp_path, r.run_id).exists()


def test_same_seed_same_metrics_and_rerun_is_skipped(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, aug="autoaugment")
    a = train_one(spec, tmp_path / "a", log=lambda m: None)
    b = train_one(spec, tmp_path / "b", log=lambda m: None)
    assert a.metrics == b.metrics
    c = train_one(_spec(phantom_spec, aug="autoaugment", seed=1), tmp_path / "a", log=lambda m: None)
    assert c.metrics.test_ce != a.metrics.test_ce
    lines: list[str] = []
    again = train_one(spec, tmp_path / "a", log=lines.append)
    assert again == a and lines == []


@pytest.mark.parametrize("model", ["cnn", "resnet18", "vit"])
def test_resume_after_interruption_gives_identical_metrics(phantom_spec: DataSpec, tmp_path: Path, model: str) -> None:
    spec = _spec(phantom_spec, model=model, aug="autoaugment", epochs=3)
    whole = train_one(spec, tmp_path / "whole", log=lambda m: None)
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    assert results.checkpoint_for(tmp_path / "cut", spec.run_id).exists()
    assert not results.path_for(tmp_path / "cut", spec.run_id).exists()
    lines: list[str] = []
    resumed = train_one(spec, tmp_path / "cut", log=lines.append)
    assert any("resumed from checkpoint at epoch 1/3" in line for line in lines)
    assert resumed.metrics == whole.metrics
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert resumed.timings["resumed_from_epoch"] == 1
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
    three = train_one(spec, tmp_path / "three", log=lambda m: None)
    assert calls == [96, 96, 48] * 2  # 240 images per epoch, 2 epochs: the last call takes what is left
    calls.clear()
    monkeypatch.setattr(augment, "CPU_CALL_PIXELS", 1)  # at least one batch per call
    one = train_one(spec, tmp_path / "one", log=lambda m: None)
    assert calls == ([32] * 7 + [16]) * 2
    assert one.metrics == three.metrics
    assert [h["train_loss"] for h in one.history] == [h["train_loss"] for h in three.history]


def test_scenario3_run_with_transform_pool(phantom_spec: DataSpec, tmp_path: Path) -> None:
    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    r = train_one(_spec(phantom_spec, scenario="3", pool=str(tmp_path / "pool")), tmp_path / "res", log=lambda m: None)
    n_mild = ds.counts("train")["Mild_Demented"]
    assert r.counts.synthetic["Mild_Demented"] == scenarios.round_half_up(0.2 * n_mild)
    assert r.counts.synthetic["Non_Demented"] == 0
    assert r.data.pool_fingerprint
    assert len(r.selection["pool_rows"]) == sum(r.counts.synthetic.values())
    spec = _spec(phantom_spec, scenario="3", pool=str(tmp_path / "pool"))
    # no pool name in the grid: the table's name for it is its folder's
    assert spec.pool_label is None
    assert r.data.pool_path == str(tmp_path / "pool") and r.data.pool_label == "pool"


def test_saved_weights_reload_to_the_same_predictions(phantom_spec: DataSpec, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mriaug.engine import models
    from mriaug.engine.train import to_device_uint8

    spec = _spec(phantom_spec, epochs=1)
    r = train_one(spec, tmp_path, save_weights=True, log=lambda m: None)
    model = models.build("cnn", spec.hparams)
    model.load_state_dict(load_file(r.weights))
    ds = data_mod.load(phantom_spec)
    x = to_device_uint8(ds.test_x, 32, torch.device("cpu"))
    logits = nets.Single(model, model).predict(x, runtime.autocast_bf16(spec.hparams.precision, x.device))[0]
    from mriaug.engine.metrics import classification_metrics

    assert classification_metrics(logits, ds.test_y)["test_ce"] == pytest.approx(r.metrics.test_ce, abs=1e-6)


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
    first = train_one(spec, tmp_path, log=lambda m: None)
    path = results.path_for(tmp_path, spec.run_id)
    path.write_text(path.read_text()[:100])
    lines: list[str] = []
    again = train_one(spec, tmp_path, log=lines.append)
    assert any(line.startswith(f"{path}: ") and "not valid JSON" in line
               and line.endswith(f"; moved to {path.name}.bad, starting this run afresh") for line in lines)
    assert (tmp_path / f"{spec.run_id}.json.bad").exists()
    assert again.metrics == first.metrics


def test_bad_or_foreign_checkpoint_is_not_resumed(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, epochs=3)
    whole = train_one(spec, tmp_path / "whole", log=lambda m: None)
    ckpt = results.checkpoint_for(tmp_path / "cut", spec.run_id)
    # A checkpoint cut short: set aside, the run starts afresh and still matches.
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    lines: list[str] = []
    assert train_one(spec, tmp_path / "cut", log=lines.append).metrics == whole.metrics
    bad = [line for line in lines if "unreadable checkpoint" in line]
    assert len(bad) == 1 and bad[0].startswith(f"{ckpt}: unreadable checkpoint (") and "(NoneType:" not in bad[0]
    assert bad[0].endswith(f"; moved to {ckpt.name}.bad, starting this run afresh")
    # A checkpoint of the same run id made from other data (the selection differs): not resumed.
    results.path_for(tmp_path / "cut", spec.run_id).unlink()
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    state = torch.load(ckpt, weights_only=True)
    state["data_fingerprint"] = "0" * 16
    torch.save(state, ckpt)
    lines.clear()
    assert train_one(spec, tmp_path / "cut", log=lines.append).metrics == whole.metrics
    assert (f"{ckpt}: checkpoint made with another data_fingerprint ({'0' * 16} != {whole.data.fingerprint}); "
            f"moved to {ckpt.name}.bad, starting this run afresh") in lines
    assert not any("resumed" in line for line in lines)


def test_resume_uses_the_thread_count_the_run_started_with(phantom_spec: DataSpec, tmp_path: Path) -> None:
    spec = _spec(phantom_spec, epochs=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with pytest.raises(Interrupted):
            train_one(spec, tmp_path, log=lambda m: None, stop_after=1)
        torch.set_num_threads(2)
        lines: list[str] = []
        r = train_one(spec, tmp_path, log=lines.append)
        assert any("resuming with 1 threads" in line for line in lines)
        assert r.env["threads"] == 1
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
        train_one(planned, tmp_path / "res", log=lambda m: None)
    assert not list((tmp_path / "res").glob("*.json"))


def test_the_cnn_learns_the_phantom(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # A few epochs must beat the majority class clearly and bring test CE well below ln 4 (a uniform guess):
    # fails when training does nothing (no optimizer step, frozen weights, labels shuffled).
    import math

    import numpy as np

    ds = data_mod.load(phantom_spec)
    majority = np.bincount(ds.test_y).max() / len(ds.test_y)
    r = train_one(_spec(phantom_spec, aug="none", epochs=6, batch_size=16), tmp_path, log=lambda m: None)
    m = r.metrics
    assert m.accuracy >= majority + 0.2, (m.accuracy, majority)
    assert m.balanced_accuracy >= 0.45  # chance is 0.25
    assert m.test_ce < math.log(4) - 0.5, m.test_ce
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("key", ["selection", "pool_fingerprint", "data_fingerprint"])
def test_checkpoint_of_another_identity_is_set_aside(phantom_spec: DataSpec, tmp_path: Path, key: str) -> None:
    # README: "a checkpoint made from other data or another selection of images is set aside, never resumed".
    spec = _spec(phantom_spec, epochs=2)
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path, log=lambda m: None, stop_after=1)
    ckpt = results.checkpoint_for(tmp_path, spec.run_id)
    state = torch.load(ckpt, weights_only=True)
    assert key in state
    state[key] = "0" * 16
    torch.save(state, ckpt)
    lines: list[str] = []
    r = train_one(spec, tmp_path, log=lines.append)
    assert any(f"checkpoint made with another {key}" in line for line in lines), lines
    assert not any("resumed" in line for line in lines)
    assert r.timings["resumed_from_epoch"] == 0 and len(r.history) == 2
    assert ckpt.with_name(ckpt.name + ".bad").exists() and not ckpt.exists()


# --- known answers: selection, budget, divergence, resume (issue 18) -----------------------------------------

# The given split with a quarter of the train part carved out for validation, by scan group: 64 validation
# rows (16 Mild, 0 Moderate, 28 Non, 20 Very mild), 176 rows that train.
VAL_OPTIONS = {"n_train": 240, "n_test": 80, "size": 32, "val_fraction": 0.25}


def _val_spec(epochs: int, select: str = "best_val", scenario: str = "1", budget: str = "epochs",
              seed: int = 0) -> RunSpec:
    return make_spec("cnn", scenarios.SCENARIOS[scenario], "none", seed, tiny_hparams("cnn", epochs=epochs),
                    DataSpec("phantom", dict(VAL_OPTIONS)), None, budget=budget, select=select)


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, val_ce: list[float]) -> list[int]:
    """Validation losses of the coming epochs set by the test (the real metrics otherwise): each call on the
    64 validation rows takes the next value of `val_ce`. Returns the sizes of every metrics call."""
    real = classification_metrics  # the module's own, also when an earlier script is in place
    calls: list[int] = []
    script = list(val_ce)

    def scripted(logits: object, y: object, classes: tuple[str, ...] = CLASSES) -> dict:
        m = real(logits, y, classes)  # type: ignore[arg-type]
        calls.append(len(y))  # type: ignore[arg-type]
        if len(y) == 64:  # type: ignore[arg-type]
            m = {**m, "test_ce": script.pop(0)}
        return m

    monkeypatch.setattr(train, "classification_metrics", scripted)
    return calls


def test_the_validation_part_is_the_documented_64_rows() -> None:
    ds = data_mod.load(DataSpec("phantom", dict(VAL_OPTIONS)))
    assert len(ds.val_rows) == 64 and int(ds.fit_mask.sum()) == 176
    assert [int((ds.train_y[ds.val_rows] == k).sum()) for k in range(4)] == [16, 0, 28, 20]


def test_best_val_tests_the_weights_of_the_selected_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation losses 0.9, 0.5, 0.5, 0.7: epoch 2 is best (the tie of epoch 3 does not replace it). Its weights
    # are those a 2-epoch run ends with (every epoch reseeds from (seed, epoch)), so the test numbers must be that
    # run's, and not the 4-epoch run's last weights.
    two = train_one(_val_spec(2, select="last"), tmp_path / "two", log=lambda m: None)
    four = train_one(_val_spec(4, select="last"), tmp_path / "four", log=lambda m: None)
    assert two.metrics.test_ce != four.metrics.test_ce  # the weights differ, and so do the numbers
    calls = _scripted_validation(monkeypatch, [0.9, 0.5, 0.5, 0.7])
    best = train_one(_val_spec(4), tmp_path / "best", log=lambda m: None)
    assert calls == [64, 64, 64, 64, 80]  # validation once per epoch, the test set once at the end
    assert best.training.selected_epoch == 2 and best.training.select == "best_val"
    assert best.metrics == two.metrics
    assert [h["val_ce"] for h in best.history] == [0.9, 0.5, 0.5, 0.7]
    assert best.validation == best.history[1] and best.validation["epoch"] == 2
    assert [h["train_loss"] for h in best.history] == [h["train_loss"] for h in four.history]
    # select = "last" on the same data: the last epoch, its own validation entry.
    assert four.training.selected_epoch == 4 and four.validation == four.history[3]
    assert four.counts.val == {"Mild_Demented": 16, "Moderate_Demented": 0, "Non_Demented": 28,
                                     "Very_Mild_Demented": 20}


def test_best_val_when_the_first_or_the_last_epoch_is_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = train_one(_val_spec(1, select="last"), tmp_path / "one", log=lambda m: None)
    three = train_one(_val_spec(3, select="last"), tmp_path / "three", log=lambda m: None)
    _scripted_validation(monkeypatch, [0.4, 0.6, 0.5])
    first = train_one(_val_spec(3), tmp_path / "first", log=lambda m: None)
    assert first.training.selected_epoch == 1 and first.metrics == one.metrics
    _scripted_validation(monkeypatch, [0.7, 0.6, 0.5])
    last = train_one(_val_spec(3), tmp_path / "last", log=lambda m: None)
    assert last.training.selected_epoch == 3 and last.metrics == three.metrics
    assert last.validation["val_ce"] == 0.5


def test_a_resumed_best_val_run_keeps_the_best_epoch_of_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Epochs 1-2 before the interruption (0.9, 0.5), epochs 3-4 after it (0.6, 0.7): epoch 2 stays the best.
    two = train_one(_val_spec(2, select="last"), tmp_path / "two", log=lambda m: None)
    _scripted_validation(monkeypatch, [0.9, 0.5])
    with pytest.raises(Interrupted):
        train_one(_val_spec(4), tmp_path / "cut", log=lambda m: None, stop_after=2)
    _scripted_validation(monkeypatch, [0.6, 0.7])
    r = train_one(_val_spec(4), tmp_path / "cut", log=lambda m: None)
    assert r.training.selected_epoch == 2 and r.metrics == two.metrics
    assert [h["val_ce"] for h in r.history] == [0.9, 0.5, 0.6, 0.7]
    assert r.timings["resumed_from_epoch"] == 2


def _counted_steps(monkeypatch: pytest.MonkeyPatch, diverge_at: int | None = None) -> list[int]:
    """The batch size of every training step; from step `diverge_at` (1-based) on, the loss is infinite."""
    ce = train.F.cross_entropy
    sizes: list[int] = []

    def counted(logits: torch.Tensor, target: torch.Tensor, *a: object, **k: object) -> torch.Tensor:
        sizes.append(len(target))
        loss = ce(logits, target, *a, **k)  # type: ignore[arg-type]
        return loss * float("inf") if diverge_at is not None and len(sizes) >= diverge_at else loss

    monkeypatch.setattr(train.F, "cross_entropy", counted)
    return sizes


def test_steps_budget_is_counted_on_the_part_that_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Scenario 1 trains on the 176 rows outside validation: ceil(176 / 32) = 6 steps an epoch, 12 in 2 epochs
    # (not the 16 of all 240 train rows). Scenario 2 keeps 80% of each class's 18 / 2 / 92 / 64 rows, half up:
    # 14 + 2 + 74 + 51 = 141 images, 5 steps a pass (4 of 32 and one of 13): 12 steps = passes of 5, 5, 2.
    sizes = _counted_steps(monkeypatch)
    s1 = train_one(_val_spec(2, select="last", budget="steps"), tmp_path, log=lambda m: None)
    assert sizes == ([32] * 5 + [16]) * 2
    assert s1.training.steps == 12 and s1.training.epochs == 2
    sizes.clear()
    s2 = train_one(_val_spec(2, select="last", scenario="2", budget="steps"), tmp_path, log=lambda m: None)
    assert sum(s2.counts.real.values()) == 141
    assert sizes == [32, 32, 32, 32, 13] * 2 + [32, 32]
    assert s2.training.steps == 12 and s2.training.epochs == 3
    assert [h["steps"] for h in s2.history] == [5, 10, 12]
    # Images trained: 141 + 141 + 64 = 346, the figure images/s is taken of.
    t = s2.timings
    assert t["train_images_per_s"] * t["train_s"] == pytest.approx(346)
    # The epochs budget: 2 full passes over the 141 images, 10 steps.
    sizes.clear()
    e2 = train_one(_val_spec(2, select="last", scenario="2"), tmp_path, log=lambda m: None)
    assert sizes == [32, 32, 32, 32, 13] * 2 and e2.training.steps == 10


def test_a_diverged_run_stops_in_its_epoch_and_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 240 images, batches of 32: 8 steps an epoch. Interrupted after epoch 1, resumed, and the loss of the
    # 2nd step of epoch 2 (the 10th step) is infinite: the run stops at the end of epoch 2, diverged there.
    spec = _spec(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}), aug="none", epochs=3)
    whole = train_one(spec, tmp_path / "whole", log=lambda m: None)
    with pytest.raises(Interrupted, match="^stopped after epoch 1 as asked$"):
        train_one(spec, tmp_path / "cut", log=lambda m: None, stop_after=1)
    ckpt = results.checkpoint_for(tmp_path / "cut", spec.run_id)
    assert ckpt.exists()
    sizes = _counted_steps(monkeypatch, diverge_at=2)  # counted from the resumed epoch 2
    lines: list[str] = []
    r = train_one(spec, tmp_path / "cut", log=lines.append)
    assert sizes == [32] * 7 + [16]  # epoch 2's steps, then nothing more
    assert r.status == "diverged" and r.diverged_at_epoch == 2 and r.training is None and r.validation is None
    assert all(getattr(r.metrics, key) is None for key in results.REQUIRED_METRICS)
    assert r.history[0]["train_loss"] == whole.history[0]["train_loss"]
    assert r.history[1] == {"epoch": 2, "train_loss": None, "diverged": True} and len(r.history) == 2
    assert sum(r.counts.real.values()) == 240 and sum(r.counts.test.values()) == 80
    assert r.weights is None and r.data.fingerprint == whole.data.fingerprint
    assert results.read(results.path_for(tmp_path / "cut", spec.run_id)) == r
    assert not ckpt.exists() and r.timings["total_s"] > 0
    assert any("diverged" in line and "epoch 2" in line for line in lines)
    # Recorded, not trained again.
    sizes.clear()
    assert train_one(spec, tmp_path / "cut", log=lambda m: None) == r and sizes == []


def test_a_resumed_run_counts_the_images_it_trained(tmp_path: Path) -> None:
    spec = _spec(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}), aug="none", epochs=3)
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path, log=lambda m: None, stop_after=1)
    r = train_one(spec, tmp_path, log=lambda m: None)
    t = r.timings
    assert t["resumed_from_epoch"] == 1 and t["train_images_per_s"] * t["train_s"] == pytest.approx(480)
    assert [h["epoch"] for h in r.history] == [1, 2, 3] and [h["steps"] for h in r.history] == [8, 16, 24]


def test_steps_per_epoch_by_hand() -> None:
    # epochs budget: ceil(n / batch) every epoch, whatever scenario 1 has.
    assert train.steps_per_epoch(100, 32, 3, "epochs", 999) == [4, 4, 4]
    assert train.steps_per_epoch(96, 32, 2, "epochs", 1) == [3, 3]
    # steps: epochs x ceil(n1 / batch) steps in passes of ceil(n / batch): 3 x 2 = 6 in passes of 4 -> 4, 2.
    assert train.steps_per_epoch(100, 32, 3, "steps", 60) == [4, 2]
    assert train.steps_per_epoch(64, 32, 3, "steps", 64) == [2, 2, 2]  # whole passes: no short pass at the end
    assert train.steps_per_epoch(33, 32, 1, "steps", 95) == [2, 1]  # 3 steps in passes of 2


def test_predict_in_batches_and_to_device_in_chunks() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x = torch.randint(0, 256, (7, 1, 4, 4), dtype=torch.uint8)
    one = nets.Single(model, model)  # no pretrained_cfg: normalised with 0.5 / 0.5
    one.norm = (0.5, 0.25)
    whole = one.predict(x, autocast=False)[0]
    assert whole.shape == (7, 4) and one.predict(x, autocast=False).shape == (1, 7, 4)
    assert abs(one.predict(x, autocast=False, batch=3)[0] - whole).max() < 1e-6
    # normalisation by hand: ((x / 255) - 0.5) / 0.25 through the linear layer
    by_hand = model((x.float() / 255.0 - 0.5) / 0.25).detach().numpy()
    assert abs(whole - by_hand).max() < 1e-5
    # 1030 constant images (value = index mod 256) resized 4 -> 2 in chunks of 1024: each stays its constant.
    import numpy as np

    imgs = np.repeat((np.arange(1030) % 256).astype(np.uint8)[:, None, None], 4, 1).repeat(4, 2)
    out = train.to_device_uint8(imgs, 2, torch.device("cpu"))
    assert out.shape == (1030, 1, 2, 2) and out.dtype == torch.uint8
    assert (out[:, 0].reshape(1030, 4) == torch.from_numpy(imgs[:, :2, :2].reshape(1030, 4))).all()
    same = train.to_device_uint8(imgs, 4, torch.device("cpu"))
    assert (same[:, 0].numpy() == imgs).all()
    # Downsizing is antialiased (a stripe pattern 4 -> 2 px: plain bilinear would give other grey levels).
    stripes = np.tile(np.array([0, 255, 0, 255], np.uint8), (4, 1))[None]
    t = torch.from_numpy(stripes).float()[:, None]
    want = torch.nn.functional.interpolate(t, size=(2, 2), mode="bilinear", antialias=True, align_corners=False)
    plain = torch.nn.functional.interpolate(t, size=(2, 2), mode="bilinear", antialias=False, align_corners=False)
    assert not torch.equal(want.round(), plain.round())
    got = train.to_device_uint8(stripes, 2, torch.device("cpu"))
    assert torch.equal(got, want.round().clamp(0, 255).to(torch.uint8))


def test_an_untrained_runs_numbers_by_hand(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # lr = 1e-12: the network stays its initialisation (seeded by the run's seed, then built). The CNN has no
    # dropout or batch norm, so every epoch's training loss is the mean cross-entropy of that network over the
    # 240 training images, and the test numbers are its numbers on the 80 test images, worked out here directly.
    import torch.nn.functional as F

    from mriaug.engine import models

    spec = _spec(phantom_spec, aug="none", epochs=2, lr=1e-12, precision="fp32")
    r = train_one(spec, tmp_path, log=lambda m: None)
    ds = data_mod.load(phantom_spec)
    torch.manual_seed(0)
    net = models.build("cnn", spec.hparams)
    mean, sd = models.normalization(net)
    with torch.no_grad():
        train_logits = net((torch.from_numpy(ds.train_x).float()[:, None] / 255.0 - mean) / sd)
        test_logits = net((torch.from_numpy(ds.test_x).float()[:, None] / 255.0 - mean) / sd)
    train_ce = float(F.cross_entropy(train_logits, torch.from_numpy(ds.train_y)))
    test_ce = float(F.cross_entropy(test_logits, torch.from_numpy(ds.test_y)))
    assert [h["train_loss"] for h in r.history] == pytest.approx([train_ce, train_ce], rel=1e-5)
    assert r.metrics.test_ce == pytest.approx(test_ce, rel=1e-5)
    assert r.metrics.accuracy == pytest.approx(float((test_logits.argmax(1).numpy() == ds.test_y).mean()))
    assert [h["steps"] for h in r.history] == [8, 16] and r.training.steps == 16


def test_best_val_without_a_validation_part_is_refused_at_run_time(phantom_spec: DataSpec, tmp_path: Path) -> None:
    import dataclasses

    from mriaug.errors import SettingError

    spec = dataclasses.replace(_spec(phantom_spec, epochs=1), select="best_val")  # planned around the check
    with pytest.raises(SettingError, match=r"^cnn/s1/hflip/seed0: select = 'best_val' needs a validation part; set "
                       r"the data option val_fraction \(e\.g\. -o val_fraction=0\.1\) or select = 'last'$"):
        train_one(spec, tmp_path, log=lambda m: None)
    assert not list(tmp_path.glob("*.json"))


def test_a_run_diverging_before_any_checkpoint(phantom_spec: DataSpec, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _counted_steps(monkeypatch, diverge_at=1)
    r = train_one(_spec(phantom_spec, aug="none", epochs=2), tmp_path, log=lambda m: None)
    assert r.diverged_at_epoch == 1 and len(sizes) == 8  # the first epoch's 8 steps, no checkpoint ever made
    assert not results.checkpoint_for(tmp_path, r.run_id).exists()


def test_a_run_held_by_a_live_worker_is_not_trained_twice(phantom_spec: DataSpec, tmp_path: Path) -> None:
    from mriaug.store import locks

    spec = _spec(phantom_spec, epochs=1)
    with results.run_lock(tmp_path, spec.run_id, wait=False):
        with pytest.raises(locks.Busy):
            train_one(spec, tmp_path, log=lambda m: None, wait=False)
    assert not results.path_for(tmp_path, spec.run_id).exists()


def test_optimizer_and_result_data_by_hand() -> None:
    from types import SimpleNamespace

    model = torch.nn.Linear(2, 2)
    opt, name = train.make_optimizer(model, 3e-4, 0.05)  # not AdamW's default lr (1e-3): the one given is kept
    assert name == "adamw" and isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[0]["lr"] == 3e-4
    opt, name = train.make_optimizer(model, 2e-3, 0.0)
    assert name == "adam" and opt.param_groups[0]["lr"] == 2e-3 and opt.param_groups[0]["weight_decay"] == 0
    ds = SimpleNamespace(fingerprint="d1", source={"source": "phantom"}, resolution=32, split={"kind": "given"},
                         train_x=torch.zeros(1, 32, 32))
    spec = SimpleNamespace(pool_label="copy pool")
    pool = SimpleNamespace(fingerprint="p1", path=Path("pools/p"))
    assert train.result_data(spec, ds, pool).to_dict() == {  # type: ignore[arg-type]
        "fingerprint": "d1", "source": {"source": "phantom"}, "resolution": 32, "pool_fingerprint": "p1",
        "pool_path": "pools/p", "pool_label": "copy pool", "split": {"kind": "given"}}
    assert train.result_data(spec, ds, None).to_dict() == {  # type: ignore[arg-type]
        "fingerprint": "d1", "source": {"source": "phantom"}, "resolution": 32, "pool_fingerprint": None,
        "pool_path": None, "pool_label": None, "split": {"kind": "given"}}


# Matched budgets, validation history and best_val, AdamW (were test_controls.py, then test_train_budget.py).
QUIET = {"log": lambda m: None}


def test_steps_per_epoch_match_scenario1_steps() -> None:
    assert steps_per_epoch(240, 32, 3, "epochs", 240) == [8, 8, 8]
    # 80% of the images: the same 24 steps as scenario 1, the last pass cut short.
    assert steps_per_epoch(192, 32, 3, "steps", 240) == [6, 6, 6, 6]
    assert steps_per_epoch(200, 32, 3, "steps", 240) == [7, 7, 7, 3]
    # More images (synthetic added): fewer passes, the same number of updates.
    assert steps_per_epoch(290, 32, 3, "steps", 240) == [10, 10, 4]
    for n in (150, 192, 240, 290, 400):
        assert sum(steps_per_epoch(n, 32, 3, "steps", 240)) == 24


def test_steps_budget_gives_every_scenario_scenario1s_updates(phantom_spec: DataSpec, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    synth.make_pool(data.load(phantom_spec), pool, "copy", progress_bar=False)
    out = {}
    for name in ("1", "2", "3"):
        spec = grid.make_spec("cnn", scenarios.SCENARIOS[name], "none", 0, tiny_hparams(epochs=2), phantom_spec,
                             str(pool), budget="steps")
        out[name] = train_one(spec, tmp_path / "r", **QUIET)
    training = {k: r.training for k, r in out.items() if r.training is not None}
    assert {k: t.steps for k, t in training.items()} == {"1": 16, "2": 16, "3": 16}
    assert [r.history[-1]["steps"] for r in out.values()] == [16, 16, 16]
    assert training["2"].epochs and training["2"].epochs > 2 and training["3"].epochs == 2
    assert all(r.spec["budget"] == "steps" for r in out.values())
    assert all(t.budget == "steps" for t in training.values())
    epochs_run = grid.make_spec("cnn", scenarios.SCENARIOS["2"], "none", 0, tiny_hparams(epochs=2), phantom_spec)
    assert "budget" not in epochs_run.to_dict()  # the thesis's run ids do not move
    epochs_training = train_one(epochs_run, tmp_path / "e", **QUIET).training
    assert epochs_training is not None and epochs_training.steps == 12


def test_validation_history_and_best_val_selection(tmp_path: Path) -> None:
    spec_data = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, "split": "subject",
                                     "val_fraction": 0.3})
    runs = {}
    for select in ("last", "best_val"):
        spec = grid.make_spec("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams(epochs=4, lr=1e-2), spec_data,
                             select=select)
        runs[select] = train_one(spec, tmp_path, **QUIET)
    last, best = runs["last"], runs["best_val"]
    assert [h["train_loss"] for h in last.history] == [h["train_loss"] for h in best.history]
    assert all({"val_ce", "val_accuracy"} <= set(h) and "test_ce" not in h for h in best.history)
    val = [h["val_ce"] for h in best.history]
    assert best.training is not None and last.training is not None and best.validation is not None
    assert best.training.selected_epoch == int(np.argmin(val)) + 1
    assert last.training.selected_epoch == 4
    assert best.validation["val_ce"] == min(val)
    if best.training.selected_epoch != 4:
        assert best.metrics.test_ce != last.metrics.test_ce
    assert best.data.split_kind == "subject" and best.counts.val and sum(best.counts.val.values()) > 0


def test_adamw_whenever_weight_decay() -> None:
    model = torch.nn.Linear(2, 2)
    opt, name = make_optimizer(model, 1e-3, 0.05)
    assert isinstance(opt, torch.optim.AdamW) and name == "adamw"
    opt, name = make_optimizer(model, 1e-3, 0.0)
    assert type(opt) is torch.optim.Adam and name == "adam"
    vit = RunSpec("vit", scenarios.SCENARIOS["1"], "none", 0, hparams.thesis("vit"))
    assert vit.to_dict()["optimizer"] == "adamw"
    assert "optimizer" not in RunSpec("cnn", scenarios.SCENARIOS["1"], "none", 0, hparams.thesis("cnn")).to_dict()


def test_a_run_killed_in_epoch_2_resumes_from_the_checkpoint_of_epoch_1(phantom_spec: DataSpec, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A preemption is not `stop_after`: the checkpoint of epoch 1 must be there because the pacer said it was due
    # (the first epoch's always is), not because the run was told to stop.
    spec = _spec(phantom_spec, aug="none", epochs=3)
    original = train.train_epoch

    def killed_in_epoch_2(u: train.Unit, epoch: int, alive: torch.Tensor) -> list[float]:
        if epoch == 1:
            raise RuntimeError("killed")
        return original(u, epoch, alive)

    monkeypatch.setattr(train, "train_epoch", killed_in_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        train_one(spec, tmp_path, log=lambda m: None)
    ckpt = torch.load(results.checkpoint_for(tmp_path, spec.run_id), weights_only=True)
    assert ckpt["epoch"] == 1 and [h["epoch"] for h in ckpt["histories"][0]] == [1]
    monkeypatch.setattr(train, "train_epoch", original)
    r = train_one(spec, tmp_path, log=lambda m: None)
    assert r.timings["resumed_from_epoch"] == 1 and [h["epoch"] for h in r.history] == [1, 2, 3]


def test_every_epoch_reseeds_torch_from_the_seed_and_the_epoch(phantom_spec: DataSpec, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Dropout draws from torch: epoch e of seed s starts from torch.manual_seed(s * 100_003 + e + 1), so a resumed
    # epoch draws what it drew uninterrupted.
    drawn: list[int] = []
    monkeypatch.setattr(train, "_seed_everything", drawn.append)
    train_one(_spec(phantom_spec, aug="none", seed=3, epochs=2), tmp_path, log=lambda m: None)
    assert drawn == [300_010, 300_011]


def test_a_two_seed_unit_and_a_plain_runs_records_by_hand(phantom_spec: DataSpec, tmp_path: Path) -> None:
    specs = [_spec(phantom_spec, scenario="2", aug="none", seed=s, epochs=1, precision="fp32") for s in (0, 1)]
    t0 = time.perf_counter()
    pair = train.run_unit(specs, tmp_path / "pair", log=lambda m: None)
    took = time.perf_counter() - t0
    plain = train.run_unit(specs[:1], tmp_path / "plain", log=lambda m: None)[0]
    assert plain.packed is None and pair[0].packed is not None
    for r in pair:
        assert r.packed.to_dict() == {"how": "torch.func vmap (mriaug.engine.nets)", "pack": train.unit_id(specs),
                                      "size": 2, "seeds": [0, 1], "run_ids": [s.run_id for s in specs]}
        assert r.training.precision == "fp32"  # asked for, whatever the CPU has
        assert set(r.selection) == {"real_train_rows", "pool_rows", "pool_sampling"}
        assert 0 < r.timings["total_s"] <= took and r.timings["speed"] == speed.settings().to_dict()
    # Each seed's own rows (scenario 2 subsamples per seed), seed 0's those of its plain run.
    assert pair[0].selection == plain.selection != pair[1].selection


def test_prepare_lays_out_each_seeds_real_rows_then_pool_lines(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # Two seeds of scenario 3 with a pool: each seed's rows of `images` must give its own real training images, then
    # its own pool images (in `Mix` order), with their labels and the identities `batches` keys; each image once.
    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    specs = [_spec(phantom_spec, scenario="3", seed=s, pool=str(tmp_path / "pool"), resolution=ds.train_x.shape[-1])
             for s in (0, 1)]
    u = train.prepare(specs, device="cpu", t_start=time.perf_counter())
    pool = pools.load(specs[0].pool, ds)
    for k, m in enumerate(u.mixes):
        assert len(m.synthetic_index) > 0 and u.n_train == len(m.real_index) + len(m.synthetic_index)
        rows = u.rows[k].numpy()
        want_x = np.concatenate([ds.train_x[m.real_index], pool.images[m.synthetic_index]])
        want_y = np.concatenate([ds.train_y[m.real_index], pool.labels[m.synthetic_index]])
        assert np.array_equal(u.images[rows, 0].numpy(), want_x) and np.array_equal(u.labels[rows].numpy(), want_y)
        assert np.array_equal(u.ids[k].numpy(), batches.identities(m.real_index, m.synthetic_index))
    real = np.unique(np.concatenate([m.real_index for m in u.mixes]))
    synthetic = np.unique(np.concatenate([m.synthetic_index for m in u.mixes]))
    assert u.images.shape == (len(real) + len(synthetic), 1, *ds.train_x.shape[1:])
    assert train.unit_id(specs) == "pack-" + atomic.stable_hash([s.run_id for s in specs])
    assert train.unit_id(specs[1:]) == specs[1].run_id


def test_a_pack_whose_first_seed_diverges_records_every_epoch_of_the_others(phantom_spec: DataSpec, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Seed 0 of two diverges in epoch 2 (its loss +inf from the 7th step: 6 steps an epoch on scenario 2's 192
    # images): seed 1, handled after it in the same epoch, must still get epoch 2's entry and finish.
    real, steps = nets.Stacked.losses, [0]

    def losses(self: nets.Stacked, xb: torch.Tensor, yb: torch.Tensor, autocast: bool,
               weight: torch.Tensor | None = None) -> torch.Tensor:
        steps[0] += 1
        out = real(self, xb, yb, autocast, weight)
        return out * torch.tensor([float("inf"), 1.0]) if steps[0] > 6 else out

    monkeypatch.setattr(nets.Stacked, "losses", losses)
    specs = [_spec(phantom_spec, scenario="2", aug="none", seed=s, epochs=3) for s in (0, 1)]
    first, second = train.run_unit(specs, tmp_path, log=lambda m: None)
    assert first.diverged and first.diverged_at_epoch == 2
    assert [h["epoch"] for h in second.history] == [1, 2, 3] and second.metrics.test_ce > 0 and not second.diverged


def test_train_s_is_the_sum_of_every_epochs_training_time(phantom_spec: DataSpec, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Three epochs that each take 0.2 s (and train nothing): train_s is their sum, not the last one's.
    def slow(u: train.Unit, epoch: int, alive: torch.Tensor) -> list[float]:
        time.sleep(0.2)
        return [0.5] * len(u.specs)

    monkeypatch.setattr(train, "train_epoch", slow)
    r = train_one(_spec(phantom_spec, aug="none", epochs=3), tmp_path, log=lambda m: None)
    t = r.timings
    assert 0.6 <= t["train_s"] < r.timings["total_s"] and [h["train_loss"] for h in r.history] == [0.5] * 3
    assert t["train_images_per_s"] == pytest.approx(3 * 240 / t["train_s"])  # scenario 1: all 240 images an epoch


def test_a_run_held_elsewhere_is_waited_for_by_default_and_refused_without_waiting(phantom_spec: DataSpec,
                                                                                   tmp_path: Path) -> None:
    import threading

    from mriaug.store import locks

    spec = _spec(phantom_spec, epochs=1)
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with results.run_lock(tmp_path, spec.run_id):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(30)
    try:
        with pytest.raises(locks.Busy):
            train_one(spec, tmp_path, log=lambda m: None, wait=False)
        lines: list[str] = []
        threading.Timer(0.5, release.set).start()  # the holder lets go while the run waits
        r = train_one(spec, tmp_path, log=lines.append)  # waits by default, then trains
    finally:
        release.set()
        t.join()
    assert r.run_id == spec.run_id and results.read(results.path_for(tmp_path, spec.run_id)) == r
    assert any("being trained by" in line and "waiting for its result" in line for line in lines), lines


def test_the_one_door_locks_in_run_id_order_and_asks_once_whether_each_run_is_done(
        phantom_spec: DataSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = [_spec(phantom_spec, scenario="2", aug="none", seed=s, epochs=1) for s in (0, 1, 2)]
    (done,) = train.run_unit([specs[1]], tmp_path, log=lambda m: None)  # one of the three finished before
    locked: list[str] = []
    asked: list[str] = []
    real_lock, real_finished = results.run_lock, train.read_finished
    monkeypatch.setattr(results, "run_lock", lambda d, rid, **kw: locked.append(rid) or real_lock(d, rid, **kw))
    monkeypatch.setattr(train, "read_finished", lambda s, d, log: asked.append(s.run_id) or real_finished(s, d, log))
    given = sorted(specs, key=lambda s: s.run_id, reverse=True)
    out = train.run_unit(given, tmp_path, log=lambda m: None)
    assert locked == sorted(s.run_id for s in specs)  # one order for every worker: no two wait on each other
    assert asked == [s.run_id for s in given]  # once per run
    assert [r.run_id for r in out] == [s.run_id for s in given]
    assert out[given.index(specs[1])] == done and done.packed is None  # read back, not trained again
    assert [r.packed.size for r in out if r.run_id != done.run_id] == [2, 2]  # the other two as a pack of two
