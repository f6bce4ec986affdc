"""The local diffusion generator: train a tiny model on the phantom data, resume it, make a pool, train on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data.kept_for import KeptFor
from mriaug.errors import MriaugError
from mriaug.generators import diffusion, synth
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from mriaug.plan.hparams import resolve as model_hparams
from tests.engine_helpers import train_one as execute

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


def _assert_same_state(a: object, b: object, where: str = "") -> None:
    """Bit-for-bit equality of nested state dicts (tensors compared with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_state(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def test_resumed_training_equals_uninterrupted(tmp_path: Path, dataset: data.Dataset, trained: Path) -> None:
    diffusion.train(dataset, tmp_path, steps=4, **TINY)
    a = torch.load(trained / diffusion.CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / diffusion.CHECKPOINT, weights_only=True)
    for part in ("model", "ema", "optimizer"):  # bit for bit, not merely close
        _assert_same_state(a[part], b[part], part)
    assert a["optimizer"]["state"], "the optimiser has moments to compare"
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
    # The model saw every Mild/Moderate train row: a run that drops some must not use this pool.
    (t,) = p.meta["trained_on"]
    assert t["kept_for"] is None and t["n_rows"] == n and t["classes"] == ["Mild_Demented", "Moderate_Demented"]
    assert pools.training_conflicts(p, KeptFor("4", 0)) == [t]
    assert p.entries[0]["params"]["strength"] == 0.4 and p.entries[0]["params"]["trained_steps"] == 4
    # Resumable: nothing left to do.
    assert synth.make_pool(dataset, pool, "diffusion", classes=["Mild_Demented", "Moderate_Demented"],
                           options=opts, progress_bar=False)["generated"] == 0

    run = make_spec("cnn", scenarios.SCENARIOS["3"], "none", 0,
                  model_hparams("cnn", {"epochs": 1, "resolution": 32, "batch_size": 32}), SPEC, str(pool))
    res = execute(run, tmp_path / "results", log=lambda m: None)
    assert res.counts.synthetic["Mild_Demented"] == round(0.2 * int((dataset.train_y == 0).sum()))
    assert res.data.pool_fingerprint == p.fingerprint
    assert res.metrics.test_ce is not None and np.isfinite(res.metrics.test_ce)
    # Scenario 4 drops real images the model was trained on: refused before any training.
    with pytest.raises(pools.PoolError, match=r"scenario 4, seed 0: .* trained on all train rows.*--kept-for 4:0"):
        scenarios.mix(dataset, scenarios.SCENARIOS["4"], 0, p)


def test_generator_refuses_other_dataset_and_bad_settings(tmp_path: Path, trained: Path) -> None:
    other = data.load(data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32, "seed": 5}))
    with pytest.raises(diffusion.DiffusionError, match="trained on dataset"):
        synth.make_pool(other, tmp_path / "p", "diffusion", options={"checkpoint": str(trained)}, progress_bar=False)
    with pytest.raises(MriaugError, match="strength"):
        synth.make_pool(other, tmp_path / "p", "diffusion", options={"checkpoint": str(trained), "strength": 1.5})
    with pytest.raises(MriaugError, match="train-diffusion"):
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

    # A pool from this model records what it was trained on, for the check at mix time.
    ds = data.load(SPEC)
    opts = {"checkpoint": str(out), "steps": 2, "strength": 0.5}
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "diffusion", classes=["Moderate_Demented"], kept_for=KeptFor("4", 0), options=opts,
                    progress_bar=False)
    p = pools.load(pool, ds)
    assert [t["kept_for"] for t in p.meta["trained_on"]] == [["4", 0]]
    assert p.meta["runs"][0]["trained_on"]["kept_for"] == ["4", 0]
    assert pools.training_conflicts(p, KeptFor("4", 0)) == [] and pools.training_conflicts(p, KeptFor("4", 1)) != []
    # A pool run for another kept set is refused: the model saw rows that run drops.
    with pytest.raises(diffusion.DiffusionError, match=r"trained on the kept set of \['4', 0\].*kept set of 4:1"):
        synth.make_pool(ds, tmp_path / "p41", "diffusion", classes=["Moderate_Demented"], kept_for=KeptFor("4", 1),
                        options=opts, progress_bar=False)


def test_train_diffusion_grid_split_trains_that_splits_model_alone(tmp_path: Path) -> None:
    """Issue 32: `--grid` trained a model for every one of the grid's K splits; `--split K` trains split K's."""
    g = tmp_path / "g.toml"
    g.write_text('models = ["cnn"]\nscenarios = ["1"]\n\n[data]\nsource = "phantom"\nn_train = 240\nn_test = 80\n'
                 'size = 32\nsplit = "subject"\nsplits = 2\nsplit_seed = 10\n')
    out = tmp_path / "model"
    args = ["synth", "train-diffusion", "--grid", str(g), "--out", str(out), "--steps", "1", "--batch-size", "4",
            "--channels", "16,32", "--layers-per-block", "1", "--no-attention", "--classes", "Moderate_Demented"]
    r = CliRunner().invoke(app, [*args, "--split", "1"])
    assert r.exit_code == 0, r.output
    assert (out / "split-11" / diffusion.INFO).exists() and not (out / "split-10").exists()
    assert f"--grid {g} --split 1" in r.output  # the synth command that uses it makes that split's pool only
    r = CliRunner().invoke(app, [*args, "--split", "2"])
    assert r.exit_code == 2 and "--split 2: the grid" in r.output and "numbered 0..1" in r.output, r.output
    assert not (out / "split-10").exists()


def test_legacy_pool_json_trained_on_comes_from_the_manifest(tmp_path: Path, dataset: data.Dataset,
                                                             trained: Path) -> None:
    pool = tmp_path / "pool"
    synth.make_pool(dataset, pool, "diffusion", classes=["Moderate_Demented"], progress_bar=False,
                    options={"checkpoint": str(trained), "steps": 2})
    meta = json.loads((pool / "pool.json").read_text())
    for k in ("runs", "trained_on"):
        del meta[k]
    (pool / "pool.json").write_text(json.dumps(meta))
    p = pools.load(pool, dataset)
    assert pools.trained_on(p) == [{"kept_for": None}]
    assert pools.training_conflicts(p, KeptFor("4", 0)) == [{"kept_for": None}]


def test_a_model_trained_on_all_rows_cannot_make_a_pool_for_a_kept_set(tmp_path: Path, dataset: data.Dataset,
                                                                       trained: Path) -> None:
    with pytest.raises(diffusion.DiffusionError, match="trained on every train row.*kept set of 4:0"):
        synth.make_pool(dataset, tmp_path / "p", "diffusion", classes=["Moderate_Demented"], kept_for=KeptFor("4", 0),
                        options={"checkpoint": str(trained), "steps": 2}, progress_bar=False)
    assert not (tmp_path / "p" / "manifest.jsonl").exists()


def test_noise_is_seeded_per_source_and_variation_without_collisions() -> None:
    # The old seed, seed*1_000_003 + source*101 + variation, was the same for (0, 101) and (1, 0).
    n = diffusion._noise(0, [(0, 101), (1, 0), (9901, 2)], (1, 8, 8))
    m = diffusion._noise(1, [(0, 0)], (1, 8, 8))
    assert not torch.equal(n[0], n[1]) and not torch.equal(n[2], m[0])
    assert torch.equal(diffusion._noise(0, [(1, 0)], (1, 8, 8))[0], n[1])  # independent of the batch


def test_device_choice_is_the_training_runs(monkeypatch: pytest.MonkeyPatch, dataset: data.Dataset,
                                            tmp_path: Path) -> None:
    import mriaug.engine.train

    asked: list[str | None] = []

    def pick(requested: str | None = None) -> torch.device:
        asked.append(requested)
        return torch.device("cpu")

    # One function decides for both (mriaug.engine.runtime); the generator calls it with the requested device.
    assert diffusion.pick_device is mriaug.engine.train.pick_device
    monkeypatch.setattr(diffusion, "pick_device", pick)
    diffusion.train(dataset, tmp_path, steps=1, **{**TINY, "classes": ["Moderate_Demented"]}, device="cpu")
    assert asked == ["cpu"]


@pytest.mark.parametrize(("kw", "name"), [({"steps": 0}, "steps"), ({"checkpoint_every": 0}, "checkpoint_every"),
                                          ({"seed": -1}, "seed")])
def test_bad_training_settings_are_named(tmp_path: Path, dataset: data.Dataset, kw: dict, name: str) -> None:
    with pytest.raises(diffusion.DiffusionError, match=rf"diffusion: {name} must be"):
        diffusion.train(dataset, tmp_path, **{"steps": 2, **TINY, **kw})


def test_variations_depart_from_their_sources_as_strength_grows(tmp_path: Path, dataset: data.Dataset,
                                                                 trained: Path) -> None:
    # SDEdit: strength is how far along the noise schedule the source is pushed before denoising. A pool of
    # verbatim copies, or one that ignores strength, fails here.
    distance = {}
    for strength in (0.1, 0.5, 1.0):
        pool = tmp_path / f"s{strength}"
        synth.make_pool(dataset, pool, "diffusion", classes=["Mild_Demented"], max_sources=4, progress_bar=False,
                        options={"checkpoint": str(trained), "strength": strength, "steps": 10})
        p = pools.load(pool, dataset)
        assert len(p.sources) == 4
        diff = np.abs(p.images.astype(int) - dataset.train_x[p.sources].astype(int)).mean(axis=(1, 2))
        assert (diff > 0.1).all(), f"strength {strength}: an image is (nearly) a copy of its source: {diff}"
        distance[strength] = float(diff.mean())
    print("mean |variation - source| by strength:", distance)
    assert distance[0.1] < distance[0.5] < distance[1.0], distance
    assert distance[1.0] > 2 * distance[0.1], distance


SUBJECT = data.DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "slices": 8, "split": "subject"})


def test_the_model_learns_from_the_training_part_only_and_a_model_that_may_have_seen_validation_is_refused(
        tmp_path: Path) -> None:
    ds = data.load(SUBJECT)
    assert len(ds.val_rows) > 0
    rows = diffusion.training_rows(ds, ["Mild_Demented", "Moderate_Demented"])
    # every fit row of the two classes, and no validation row
    want = np.flatnonzero(np.isin(ds.train_y, [0, 1]) & ds.fit_mask)
    assert rows.tolist() == want.tolist()
    assert not np.isin(rows, ds.val_rows).any()
    out = tmp_path / "model"
    info = diffusion.train(ds, out, steps=1, **TINY)
    assert info["n_rows"] == len(want) and info["trained_part"] == "fit"
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "diffusion", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False,
                    options={"checkpoint": str(out), "steps": 2})
    p = pools.load(pool, ds)
    assert pools.trained_on(p)[0]["trained_part"] == "fit" and pools.saw_validation(p) == []
    scenarios.mix(ds, scenarios.SCENARIOS["3"], 0, p)  # accepted
    # the same pool as a model made before `trained_part` was recorded (it trained on validation rows too)
    meta = json.loads((pool / "pool.json").read_text())
    for record in [*meta["trained_on"], *(r["trained_on"] for r in meta["runs"])]:
        del record["trained_part"]
    (pool / "pool.json").write_text(json.dumps(meta))
    old = pools.load(pool, ds)
    with pytest.raises(MriaugError, match="may have seen this split's validation images"):
        scenarios.mix(ds, scenarios.SCENARIOS["3"], 0, old)
