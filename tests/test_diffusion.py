"""The local diffusion generator: train a tiny model on the phantom data, resume it, make a pool, train on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mriaug import data, pools, scenarios, synth
from mriaug.cli import app
from mriaug.generators import diffusion
from mriaug.grid import model_hparams
from mriaug.spec import RunSpec
from mriaug.train import execute

SPEC = data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32})
TINY = {"batch_size": 8, "channels": (16, 32), "layers_per_block": 1, "attention": False,
        "classes": ["Mild_Demented", "Moderate_Demented"], "checkpoint_every": 2, "progress_bar": False}


@pytest.fixture(scope="module")
def dataset() -> data.Dataset:
    return data.load(SPEC)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: data.Dataset) -> Path:
    out = tmp_path_factory.mktemp("diffusion")
    # Interrupted after 2 steps, then resumed to 4: the checkpoint carries the run on.
    info = diffusion.train(dataset, out, steps=4, stop_after=2, **TINY)
    assert info["step"] == 2 and (out / diffusion.CHECKPOINT).exists()
    info = diffusion.train(dataset, out, steps=4, **TINY)
    assert info["step"] == 4
    assert [h["step"] for h in info["history"]] == [2, 4]
    assert all(np.isfinite(h["loss"]) for h in info["history"])
    return out


def test_resumed_training_equals_uninterrupted(tmp_path: Path, dataset: data.Dataset, trained: Path) -> None:
    diffusion.train(dataset, tmp_path, steps=4, **TINY)
    a = torch.load(trained / diffusion.CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / diffusion.CHECKPOINT, weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # Resuming with other settings is refused, naming the setting.
    with pytest.raises(diffusion.DiffusionError, match="batch_size"):
        diffusion.train(dataset, tmp_path, steps=6, **{**TINY, "batch_size": 4})


def test_pool_from_diffusion_feeds_a_scenario_3_run(tmp_path: Path, dataset: data.Dataset, trained: Path) -> None:
    pool = tmp_path / "pool"
    opts = {"checkpoint": str(trained), "strength": 0.4, "steps": 10, "batch_size": 16}
    s = synth.make_pool(dataset, pool, "diffusion", classes=["Mild_Demented", "Moderate_Demented"], options=opts,
                        progress_bar=False)
    n = int(np.isin(dataset.train_y, [0, 1]).sum())
    assert s["generated"] == n
    p = pools.load(pool, dataset)
    assert len(p.labels) == n and p.images.shape[1:] == (32, 32) and p.images.dtype == np.uint8
    assert p.entries[0]["params"]["strength"] == 0.4 and p.entries[0]["params"]["trained_steps"] == 4
    # Resumable: nothing left to do.
    assert synth.make_pool(dataset, pool, "diffusion", classes=["Mild_Demented", "Moderate_Demented"],
                           options=opts, progress_bar=False)["generated"] == 0

    run = RunSpec("cnn", scenarios.SCENARIOS["3"], "none", 0,
                  model_hparams("cnn", {"epochs": 1, "resolution": 32, "batch_size": 32}), SPEC, str(pool))
    res = execute(run, tmp_path / "results", log=lambda m: None)
    assert res["counts"]["synthetic"]["Mild_Demented"] == round(0.2 * int((dataset.train_y == 0).sum()))
    assert res["data"]["pool_fingerprint"] == p.fingerprint
    assert np.isfinite(res["metrics"]["test_ce"])


def test_generator_refuses_other_dataset_and_bad_settings(tmp_path: Path, trained: Path) -> None:
    other = data.load(data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32, "seed": 5}))
    with pytest.raises(diffusion.DiffusionError, match="trained on dataset"):
        synth.make_pool(other, tmp_path / "p", "diffusion", options={"checkpoint": str(trained)}, progress_bar=False)
    with pytest.raises(ValueError, match="strength"):
        synth.make_pool(other, tmp_path / "p", "diffusion", options={"checkpoint": str(trained), "strength": 1.5})
    with pytest.raises(ValueError, match="train-diffusion"):
        synth.make_pool(other, tmp_path / "p", "diffusion", options={"checkpoint": str(tmp_path / "none")})


def test_train_diffusion_cli(tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = ["synth", "train-diffusion", "--data", "phantom", "-o", "n_train=160", "-o", "n_test=80", "-o", "size=32",
            "--out", str(out), "--steps", "2", "--batch-size", "4", "--channels", "16,32", "--layers-per-block", "1",
            "--no-attention", "--classes", "Moderate_Demented", "--kept-for", "4:0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "step 2/2" in r.output and "images/s" in r.output
    info = json.loads((out / diffusion.INFO).read_text())
    assert info["kept_for"] == ["4", 0] and info["step"] == 2
    r = CliRunner().invoke(app, [*args[:-1], "5:0"])
    assert r.exit_code == 2 and "kept_for" in r.output
