"""Seeds trained together (`pack_seeds`, mriaug.engine.seedpack): the same runs as separate trainings, in
distribution."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from mriaug.data.sources import DataSpec
from mriaug.engine import seedpack, train
from mriaug.engine.train import Interrupted
from mriaug.errors import GridError, SettingError
from mriaug.plan import grid as grid_mod
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from mriaug.plan.spec import RunSpec
from mriaug.store import results
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one
from tests.slurm_helpers import write_grid


def _specs(phantom_spec: DataSpec, seeds: range, aug: str = "hflip", **hp: object) -> list[RunSpec]:
    hps = tiny_hparams("cnn", **hp)
    return [make_spec("cnn", scenarios.SCENARIOS["2"], aug, s, hps, phantom_spec) for s in seeds]


def test_eight_seeds_together_match_eight_separate_runs(phantom_spec: DataSpec, tmp_path: Path) -> None:
    specs = _specs(phantom_spec, range(8))
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    # The same runs: ids of the separate runs, each its own result file, saying how it was trained.
    assert [r.run_id for r in packed] == [s.run_id for s in specs] == [r.run_id for r in separate]
    for r in packed:
        assert results.read(results.path_for(tmp_path / "packed", r.run_id)) == r
        assert r.packed.size == 8 and r.packed.seeds == list(range(8))
        assert r.timings["pack_images_per_s"] > r.timings["train_images_per_s"] > 0
    # Each seed keeps its own training set (scenario 2 subsamples per seed), as its separate run does.
    for p, s in zip(packed, separate, strict=True):
        assert p.selection == s.selection
    sel = {tuple(r.selection["real_train_rows"]) for r in packed}
    assert len(sel) == 8
    ce_packed = [r.metrics.test_ce for r in packed]
    ce_separate = [r.metrics.test_ce for r in separate]
    assert len(set(ce_packed)) == 8, "seeds trained together must differ (own init, order, draws)"
    assert min(ce_separate) <= statistics.median(ce_packed) <= max(ce_separate), (ce_packed, ce_separate)
    # Same initialisation and draws as the separate run: the first epoch's loss agrees closely per seed.
    for p, s in zip(packed, separate, strict=True):
        assert p.history[0]["train_loss"] == pytest.approx(s.history[0]["train_loss"], rel=0.02)
    assert not list((tmp_path / "packed" / ".checkpoints").glob("*"))


def test_interrupted_pack_resumes_to_the_same_metrics(phantom_spec: DataSpec, tmp_path: Path) -> None:
    specs = _specs(phantom_spec, range(3), epochs=3)
    whole = train.run_unit(specs, tmp_path / "whole", log=lambda m: None)
    with pytest.raises(Interrupted):
        train.run_unit(specs, tmp_path / "cut", log=lambda m: None, stop_after=1)
    assert not results.done_ids(tmp_path / "cut")
    lines: list[str] = []
    resumed = train.run_unit(specs, tmp_path / "cut", log=lines.append)
    assert any("resumed from checkpoint at epoch 1/3" in line for line in lines), lines
    assert [r.metrics for r in resumed] == [r.metrics for r in whole]
    assert all(r.timings["resumed_from_epoch"] == 1 for r in resumed)
    # Finished seeds are read back, not trained again; a pack of the rest trains only those.
    results.path_for(tmp_path / "cut", specs[1].run_id).unlink()
    lines.clear()
    again = train.run_unit(specs, tmp_path / "cut", log=lines.append)
    assert [r.run_id for r in again] == [s.run_id for s in specs]
    assert again[0] == resumed[0] and again[2] == resumed[2]
    assert again[1].metrics.test_ce > 0 and again[1].packed is None  # one left: a plain run


def test_a_pack_holds_one_cell(phantom_spec: DataSpec) -> None:
    a = _specs(phantom_spec, range(2))
    b = _specs(phantom_spec, range(2, 3), aug="none")
    with pytest.raises(SettingError, match="differ in more than the seed"):
        seedpack.check_pack(a + b)
    with pytest.raises(SettingError, match="seed twice"):
        seedpack.check_pack(a + a[:1])
    units = grid_mod.seed_packs(a + b + _specs(phantom_spec, range(2, 5)), {"cnn": 2})
    assert [[s.seed for s in u] for u in units] == [[0, 1], [2], [2, 3], [4]]
    assert [u[0].augmentation for u in units] == ["hflip", "none", "hflip", "hflip"]


def test_grid_pack_seeds_keeps_run_ids(tmp_path: Path) -> None:
    plain = grid_mod.load(write_grid(tmp_path / "plain.toml", tmp_path / "r", seeds=5))
    path = write_grid(tmp_path / "packed.toml", tmp_path / "r", seeds=5)
    path.write_text(path.read_text() + "pack_seeds = 4\n")
    packed = grid_mod.load(path)
    assert [r.run_id for r in packed.runs] == [r.run_id for r in plain.runs]
    assert packed.pack_seeds == {"cnn": 4} and plain.pack_seeds == {}
    assert [len(u) for u in packed.units(packed.runs)] == [4, 1]
    assert grid_mod.model_hparams("cnn", path) == plain.hparams["cnn"]
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('models = ["cnn"]', 'models = ["cnn", "resnet18"]')
                   + '\n[model.resnet18]\narch = "resnet18"\npretrained = false\npack_seeds = 2\n')
    with pytest.raises(GridError, match=r"bad.toml, line \d+: model.resnet18.pack_seeds: only cnn, vit can train "
                                        r"seeds together \(resnet18: its batch norm updates running statistics"):
        grid_mod.load(bad)
    bad.write_text(path.read_text().replace("pack_seeds = 4", "pack_seeds = 0"))
    with pytest.raises(GridError, match="model.cnn.pack_seeds: must be a positive integer"):
        grid_mod.load(bad)


def test_mriaug_grid_trains_seed_packs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mriaug.cli import app

    path = write_grid(tmp_path / "g.toml", tmp_path / "res", seeds=3)
    path.write_text(path.read_text() + "pack_seeds = 3\n")
    out = CliRunner().invoke(app, ["grid", str(path)])
    assert out.exit_code == 0, out.output
    g = grid_mod.load(path)
    rs = [results.read(results.path_for(tmp_path / "res", r.run_id)) for r in g.runs]
    assert [r.packed.run_ids for r in rs] == [[r.run_id for r in g.runs]] * 3
    assert "cnn — median test cross-entropy" in out.output


# --- known answers (issue 18) ------------------------------------------------------------------------------


def test_what_a_pack_refuses_is_named_and_the_honest_settings_are_taken(phantom_spec: DataSpec) -> None:
    with pytest.raises(SettingError, match="at least one run"):
        seedpack.check_pack([])
    hps = tiny_hparams("cnn")
    val = DataSpec("phantom", {**phantom_spec.options, "val_fraction": 0.25})
    sub = DataSpec("phantom", {**phantom_spec.options, "split": "subject"})
    s1 = scenarios.SCENARIOS["1"]
    # Every setting of the subject grid packs (issue 19): the steps budget, best_val, weight decay, validation.
    for specs in ([make_spec("cnn", s1, "none", s, hps, phantom_spec, budget="steps") for s in (0, 1)],
                  [make_spec("cnn", s1, "none", s, hps, val, select="best_val") for s in (0, 1)],
                  [make_spec("cnn", s1, "none", s, tiny_hparams("cnn", weight_decay=0.1), phantom_spec)
                   for s in (0, 1)],
                  [make_spec("cnn", s1, "none", s, hps, sub) for s in (0, 1)]):
        seedpack.check_pack(specs)
    resnet = [make_spec("resnet18", s1, "none", s, tiny_hparams("resnet18"), phantom_spec) for s in (0, 1)]
    with pytest.raises(SettingError, match="model resnet18: only cnn, vit can train seeds together"):
        seedpack.check_pack(resnet)
    seedpack.check_pack([make_spec("vit", s1, "none", s, tiny_hparams("vit"), phantom_spec) for s in (0, 1)])
    seedpack.check_pack(_specs(phantom_spec, range(3)))  # one cell, plain settings: fine
    assert train.unit_id(_specs(phantom_spec, range(2))) == train.unit_id(_specs(phantom_spec, range(2)))
    assert train.unit_id(_specs(phantom_spec, range(2))).startswith("pack-")
    assert train.unit_id(_specs(phantom_spec, range(2))) != train.unit_id(_specs(phantom_spec, range(1, 3)))


def test_a_pack_that_does_not_learn_gives_each_seeds_untrained_network(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # lr = 1e-12: Adam moves a weight by about 1e-12 a step, so seed k's network stays its initialisation (drawn as the
    # separate run draws it). Its numbers are then the separate run's, up to the arithmetic (grouped convolutions):
    # test metrics, and every epoch's training loss over the same batches.
    specs = _specs(phantom_spec, range(3), aug="none", epochs=2, lr=1e-12)
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    for p, s in zip(packed, separate, strict=True):
        assert p.metrics.test_ce == pytest.approx(s.metrics.test_ce, abs=1e-4)
        assert p.metrics.confusion == s.metrics.confusion
        assert [h["train_loss"] for h in p.history] == pytest.approx([h["train_loss"] for h in s.history],
                                                                        abs=1e-4)
        assert [h["epoch"] for h in p.history] == [1, 2] and p.schema == results.SCHEMA
        assert all(0 <= h["seconds"] <= p.timings["total_s"] for h in p.history) and p.weights is None
        # The same record as the separate run's, apart from how it was trained and timed.
        assert p.counts == s.counts and p.data == s.data and p.selection == s.selection
        assert p.training == s.training and p.validation is s.validation is None
        assert p.training.steps == 12  # ceil(192 / 32) = 6 steps in each of 2 epochs
        # 192 images (80% of 240) in each of 2 epochs; the pack's rate is 3 seeds' images.
        t = p.timings
        assert t["train_images_per_s"] * t["train_s"] == pytest.approx(384)
        assert t["pack_images_per_s"] == pytest.approx(3 * t["train_images_per_s"])
        assert p.packed.run_ids == [s.run_id for s in specs] and p.packed.pack == train.unit_id(specs)
    assert len({r.metrics.test_ce for r in packed}) == 3  # three different initialisations


def test_a_pack_draws_from_its_pool_as_separate_runs_do(phantom_spec: DataSpec, tmp_path: Path) -> None:
    from mriaug.data import pools
    from mriaug.data import sources as data_mod
    from mriaug.generators import synth

    ds = data_mod.load(phantom_spec)
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    hps = tiny_hparams("cnn", epochs=1, lr=1e-12)
    specs = [make_spec("cnn", scenarios.SCENARIOS["3"], "none", s, hps, phantom_spec, str(tmp_path / "pool"))
             for s in (0, 1)]
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    for p, s in zip(packed, separate, strict=True):
        assert p.selection == s.selection and len(p.selection["pool_rows"]) > 0
        assert p.counts == s.counts and p.data == s.data and p.data.pool_fingerprint
        assert p.metrics.test_ce == pytest.approx(s.metrics.test_ce, abs=1e-4)
        assert p.timings["data_s"] >= 0 and p.timings["total_s"] >= p.timings["train_s"] > 0
    # The pool changed after planning: refused, naming the run and both fingerprints.
    synth.make_pool(ds, tmp_path / "pool", "transform", classes=["Non_Demented"], max_sources=3, progress_bar=False)
    new = pools.load(tmp_path / "pool", ds).fingerprint
    with pytest.raises(pools.PoolError, match=rf"^pool {tmp_path / 'pool'} changed since run cnn/s3/none/seed0 was "
                       rf"planned \(manifest {new}, planned {specs[0].pool_fingerprint}\)"):
        train.run_unit(specs, tmp_path / "again", log=lambda m: None)


def test_a_packs_saved_weights_are_each_seeds_network(phantom_spec: DataSpec, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from mriaug.data import sources as data_mod
    from mriaug.engine import models, nets, runtime
    from mriaug.engine.metrics import classification_metrics
    from mriaug.engine.train import to_device_uint8

    specs = _specs(phantom_spec, range(2), aug="none", epochs=1)
    packed = train.run_unit(specs, tmp_path, save_weights=True, log=lambda m: None)
    ds = data_mod.load(phantom_spec)
    x = to_device_uint8(ds.test_x, 32, torch.device("cpu"))
    for spec, r in zip(specs, packed, strict=True):
        assert r.weights == str(results.weights_for(tmp_path, spec.run_id))
        net = models.build("cnn", spec.hparams)
        net.load_state_dict(load_file(r.weights))
        bf16 = runtime.autocast_bf16(spec.hparams.precision, x.device)
        ce = classification_metrics(nets.Single(net, net).predict(x, bf16)[0], ds.test_y)["test_ce"]
        assert ce == pytest.approx(r.metrics.test_ce, abs=1e-3)


@pytest.mark.parametrize("split", ["given", "subject"])  # without and with a validation part
def test_a_diverging_pack_writes_each_seed_as_diverged_and_a_rerun_trains_nothing(phantom_spec: DataSpec,
                                                                                  tmp_path: Path, split: str) -> None:
    data = DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "slices": 8, "split": split})
    specs = _specs(data if split == "subject" else phantom_spec, range(2), lr=1e9)
    lines: list[str] = []
    out = train.run_unit(specs, tmp_path, log=lines.append)
    assert [r.status for r in out] == ["diverged", "diverged"]
    assert [r.run_id for r in out] == [s.run_id for s in specs]
    for r in out:
        assert r.diverged and r.history[-1]["diverged"] and r.diverged_at_epoch >= 1
    assert not results.checkpoint_for(tmp_path, train.unit_id(specs)).exists()  # nothing left to resume
    assert results.done_ids(tmp_path) == {s.run_id for s in specs}
    lines.clear()
    again = train.run_unit(specs, tmp_path, log=lines.append)
    assert again == out and not lines  # read back, not trained again


def test_a_pack_of_the_honest_settings_selects_per_seed_and_matches_separate_runs(tmp_path: Path) -> None:
    spec = DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "slices": 8, "split": "subject"})
    hps = tiny_hparams("cnn", epochs=3, weight_decay=0.05)
    s2 = scenarios.SCENARIOS["2"]  # keeps 80% of the real images: the steps budget gives it scenario 1's steps
    specs = [make_spec("cnn", s2, "hflip", s, hps, spec, budget="steps", select="best_val") for s in range(4)]
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    for p, r in zip(packed, separate, strict=True):
        assert p.packed.size == 4 and r.packed is None
        for key in ("budget", "epochs", "steps", "select", "optimizer", "weight_decay"):
            assert getattr(p.training, key) == getattr(r.training, key), key
        assert p.training.optimizer == "adamw" and p.training.steps > 0
        # each seed records its own selected epoch: the one with the lowest validation loss of its own history
        vals = [h["val_ce"] for h in p.history]
        assert p.training.selected_epoch == 1 + vals.index(min(vals))
        assert p.validation == p.history[p.training.selected_epoch - 1]
        assert sum(p.counts.val.values()) == sum(r.counts.val.values()) > 0
    # The same draws, other arithmetic: the packed median lies within the separate runs' range.
    sep = [r.metrics.test_ce for r in separate]
    assert min(sep) <= statistics.median(p.metrics.test_ce for p in packed) <= max(sep)


def test_a_grid_packs_the_vit_and_records_both_seeds_as_packed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mriaug.cli import app

    g = tmp_path / "vit.toml"
    g.write_text(f'name = "vitpack"\nresults = "{tmp_path / "res"}"\nmodels = ["vit"]\nscenarios = ["1"]\n'
                 'augmentations = ["hflip"]\nseeds = 2\n\n[data]\nsource = "phantom"\nn_train = 160\nn_test = 80\n'
                 'size = 32\n\n[model.vit]\narch = "vit_tiny_patch16_224"\npretrained = false\nepochs = 1\n'
                 'batch_size = 16\nlr = 1e-3\nresolution = 32\npack_seeds = 2\n')
    r = CliRunner().invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    done = [results.read(p) for p in sorted((tmp_path / "res").glob("*.json"))]
    assert len(done) == 2 and all(d.packed and d.packed.size == 2 and d.packed.seeds == [0, 1] for d in done)
    assert {d.seed for d in done} == {0, 1}


def test_an_untrained_pack_matches_its_separate_runs_closely(phantom_spec: DataSpec, tmp_path: Path) -> None:
    # fp32 and lr 1e-12: seed k's pack network is its separate run's initial network, so the numbers agree to the
    # arithmetic (grouped convolutions, another summation order): far closer than any change of the inputs'
    # scaling (measured: 1e-8 apart; a 255 -> 256 slip in the pack fails).
    specs = _specs(phantom_spec, range(2), aug="none", epochs=1, lr=1e-12, precision="fp32")
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    for p, s in zip(packed, separate, strict=True):
        assert p.metrics.test_ce == pytest.approx(s.metrics.test_ce, abs=2e-6)
        assert p.history[0]["train_loss"] == pytest.approx(s.history[0]["train_loss"], abs=2e-6)
        assert p.training.precision == s.training.precision == "fp32"


def _seed_1_diverges_from_epoch_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 1's training loss becomes +inf from the pack's 9th step on (epoch 2 of 8 steps per epoch)."""
    import torch

    from mriaug.engine import nets

    real, steps = nets.Stacked.losses, [0]

    def losses(self: nets.Stacked, xb: torch.Tensor, yb: torch.Tensor, autocast: bool,
               weight: torch.Tensor | None = None) -> torch.Tensor:
        steps[0] += 1
        out = real(self, xb, yb, autocast, weight)
        return out * torch.tensor([1.0, math.inf]) if steps[0] > 8 else out

    monkeypatch.setattr(nets.Stacked, "losses", losses)


def test_a_pack_resumed_after_a_seed_diverged_resumes_whole(phantom_spec: DataSpec, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs(phantom_spec, range(2), aug="none", epochs=4)
    _seed_1_diverges_from_epoch_2(monkeypatch)
    with pytest.raises(Interrupted):
        train.run_unit(specs, tmp_path, log=lambda m: None, stop_after=3)
    assert results.read(results.path_for(tmp_path, specs[1].run_id)).diverged_at_epoch == 2
    lines: list[str] = []
    out = train.run_unit(specs, tmp_path, log=lines.append)
    # the survivor goes on from the pack's checkpoint, not afresh as a unit of its own
    assert any("resumed from checkpoint at epoch 3/4" in line for line in lines), lines
    assert out[0].timings["resumed_from_epoch"] == 3 and [h["epoch"] for h in out[0].history] == [1, 2, 3, 4]
    assert out[1].diverged and not list((tmp_path / ".checkpoints").glob("*"))


def test_an_epoch_in_which_every_seed_diverged_leaves_no_checkpoint(phantom_spec: DataSpec, tmp_path: Path) -> None:
    specs = _specs(phantom_spec, range(2), aug="none", epochs=3, lr=1e9)
    out = train.run_unit(specs, tmp_path, log=lambda m: None, stop_after=1)  # not interrupted: nothing to resume
    assert all(r.diverged for r in out) and not list((tmp_path / ".checkpoints").glob("*"))


def test_a_pack_with_a_busy_run_is_skipped_without_waiting(phantom_spec: DataSpec, tmp_path: Path) -> None:
    from mriaug.store import locks

    specs = _specs(phantom_spec, range(2), aug="none", epochs=1)
    with results.run_lock(tmp_path, specs[1].run_id), pytest.raises(locks.Busy):
        train.run_unit(specs, tmp_path, log=lambda m: None, wait=False)
    # the lock of the run it took first is given back
    assert not results.lock_for(tmp_path, specs[0].run_id).exists()
    assert not list(tmp_path.glob("*.json"))


def test_check_pack_names_the_runs_by_hand(phantom_spec: DataSpec) -> None:
    with pytest.raises(SettingError, match="^a seed pack needs at least one run$"):
        seedpack.check_pack([])
    # One run is a unit of one (a run of its own, or a cell's last seed left): any model, nothing to compare.
    seedpack.check_pack(_specs(phantom_spec, range(1)))
    s1 = scenarios.SCENARIOS["1"]
    seedpack.check_pack([make_spec("resnet18", s1, "none", 0, tiny_hparams("resnet18"), phantom_spec)])
    with pytest.raises(SettingError, match="^model resnet18: only cnn, vit can train seeds together$"):
        seedpack.check_pack([make_spec("resnet18", s1, "none", s, tiny_hparams("resnet18"), phantom_spec)
                             for s in (0, 1)])
    # Two runs, the second of another cell: the message names it and the pack's first run.
    a, b = _specs(phantom_spec, range(1)), _specs(phantom_spec, range(1, 2), aug="none")
    with pytest.raises(SettingError, match=r"^cnn/s2/none/seed1 cannot train in one pack with cnn/s2/hflip/seed0: "
                                           "they differ in more than the seed$"):
        seedpack.check_pack(a + b)
    with pytest.raises(SettingError, match="^cnn/s2/hflip/seed0: a seed pack lists a seed twice$"):
        seedpack.check_pack(_specs(phantom_spec, range(2)) + _specs(phantom_spec, range(1, 2)))


def test_a_pack_waits_for_a_live_holder_by_default_and_clears_its_leftovers(phantom_spec: DataSpec,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    from mriaug.engine import runtime
    from mriaug.store import locks

    asked: list[str | None] = []  # the device the pack was told reaches the engine (a GPU's index, say)
    monkeypatch.setattr(train, "pick_device", lambda d: asked.append(d) or runtime.pick_device("cpu"))

    specs = _specs(phantom_spec, range(2), aug="none", epochs=1)
    holder = locks.FileLock(results.lock_for(tmp_path, specs[1].run_id)).acquire(wait=False)
    # A killed writer's temporary checkpoint of this pack, and one of another pack (not this pack's to remove).
    ours = tmp_path / ".checkpoints" / f".{train.unit_id(specs)}.pt.123.tmp"
    theirs = tmp_path / ".checkpoints" / ".pack-other.pt.456.tmp"
    ours.parent.mkdir()
    ours.write_bytes(b"cut")
    theirs.write_bytes(b"cut")
    told: list[str] = []
    held_by = locks.read_holder(holder.path)
    assert held_by is not None and held_by["pid"] == os.getpid() and held_by["token"] == holder.token

    def log(line: str) -> None:  # the live holder finishes while the pack waits
        if "waiting" in line:
            told.append(line)
            holder.release()

    # Should the pack not say it waits, the holder still finishes (and `told` stays empty): no test hangs.
    late = threading.Timer(10, holder.release)
    late.start()
    try:
        out = train.run_unit(specs, tmp_path, device="cpu", log=log)  # waits: the default
    finally:
        late.cancel()
    assert told == [f"[{specs[1].run_id}] {specs[1].label}: being trained by {locks.describe(held_by)}; waiting for "
                    "its result"]
    assert [r.run_id for r in out] == [s.run_id for s in specs] and all(r.metrics.test_ce > 0 for r in out)
    assert not ours.exists() and theirs.exists() and asked == ["cpu"]
    assert not results.lock_for(tmp_path, specs[0].run_id).exists()
    assert not results.lock_for(tmp_path, specs[1].run_id).exists()
