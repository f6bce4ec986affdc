"""`mriaug/train.py`: matched budgets (epochs or scenario 1's steps), validation history and best-val
selection, AdamW whenever weight decay. (Until issue 23 in test_controls.py; kept apart from test_train.py,
which was being edited at the time of the move.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mriaug import data, grid, hparams, scenarios, synth
from mriaug.data import DataSpec
from mriaug.spec import RunSpec
from mriaug.train import epoch_batches, execute, make_optimizer
from tests.conftest import tiny_hparams

QUIET = {"log": lambda m: None}


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
    training = {k: r.training for k, r in out.items() if r.training is not None}
    assert {k: t.steps for k, t in training.items()} == {"1": 16, "2": 16, "3": 16}
    assert [r.history[-1]["steps"] for r in out.values()] == [16, 16, 16]
    assert training["2"].epochs and training["2"].epochs > 2 and training["3"].epochs == 2
    assert all(r.spec["budget"] == "steps" for r in out.values())
    assert all(t.budget == "steps" for t in training.values())
    epochs_run = grid.plan_run("cnn", scenarios.SCENARIOS["2"], "none", 0, tiny_hparams(epochs=2), phantom_spec)
    assert "budget" not in epochs_run.to_dict()  # the thesis's run ids do not move
    epochs_training = execute(epochs_run, tmp_path / "e", **QUIET).training
    assert epochs_training is not None and epochs_training.steps == 12


def test_validation_history_and_best_val_selection(tmp_path: Path) -> None:
    spec_data = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, "split": "subject",
                                     "val_fraction": 0.3})
    runs = {}
    for select in ("last", "best_val"):
        spec = grid.plan_run("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams(epochs=4, lr=1e-2), spec_data,
                             select=select)
        runs[select] = execute(spec, tmp_path, **QUIET)
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
