"""The synthetic-pretraining arm (issue 37): `[scenario.NAME] pretrain = {pool, images, epochs}` trains on synthetic
images of every class first, then on the scenario's own mix. Its record in the result and runs.csv, the two phases'
step counts, resume in either phase, a seed pack against its separate runs, run ids with and without it, and the
grid's refusals. Phantom data at 32 px, a transform pool over all four classes, one thread (float sums depend on it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug.analysis import collect
from mriaug.cli import app, options
from mriaug.cli import synth as synth_cli
from mriaug.data import pools
from mriaug.data import sources as data_mod
from mriaug.data.classes import CLASSES
from mriaug.data.sources import DataSpec
from mriaug.engine import train
from mriaug.engine.train import Interrupted
from mriaug.errors import GridError, PoolError, ResultError
from mriaug.generators import synth
from mriaug.plan import grid, scenarios
from mriaug.plan.grid import make_spec
from mriaug.plan.spec import RunSpec
from mriaug.store import results
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one

DATA = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
PRE = {"pool": "transform", "images": 100, "epochs": 2}
TOL = 1e-3  # a pack's summation order against a single network's (see test_pack_vs_single.py)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A transform pool over every class, made as `mriaug synth --classes all` makes one."""
    out = tmp_path_factory.mktemp("pretrain") / "transform"
    r = CliRunner().invoke(app, ["synth", "--out", str(out), "--generator", "transform", "--classes", "all",
                                 "--data", "phantom", "-o", "n_train=240", "-o", "n_test=80", "-o", "size=32",
                                 "--no-report"])
    assert r.exit_code == 0, r.output
    return str(out)


def _spec(pool: str, seed: int = 0, real: float = 1.0, budget: str = "epochs", **pre: object) -> RunSpec:
    scen = scenarios.custom("pre", real_fraction=real, pretrain={**PRE, **pre})
    return make_spec("cnn", scen, "hflip", seed, tiny_hparams("cnn", precision="fp32"), DATA, budget=budget,
                     pretrain_pool=pool)


def test_synth_classes_all_makes_every_class_and_is_the_default(pool_dir: str, tmp_path: Path) -> None:
    ds = data_mod.load(DATA)
    made = pools.load(pool_dir, ds)
    assert sorted(set(made.labels.tolist())) == [0, 1, 2, 3]
    r = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "default"), "--generator", "transform",
                                 "--data", "phantom", "-o", "n_train=240", "-o", "n_test=80", "-o", "size=32",
                                 "--no-report"])
    assert r.exit_code == 0, r.output
    assert pools.load(tmp_path / "default", ds).fingerprint == made.fingerprint
    # `all` is the default of `synth` and `synth train-diffusion` (a diffusion model records its classes: one made
    # with `--classes all` is the one made without), and every class where another command's default is not
    assert synth_cli.pool_classes("all") is None and synth_cli.pool_classes(None) is None
    assert options.classes_list("all") == list(CLASSES) and options.classes_list("Mild_Demented") == ["Mild_Demented"]


def test_pretraining_is_recorded_with_both_phases_steps(pool_dir: str, tmp_path: Path) -> None:
    # 80% real with budget "steps": the fine-tuning takes scenario 1's 16 steps (2 epochs of 240 images in batches
    # of 32), the pretraining 2 passes over 100 images (4 steps each), counted apart.
    spec = _spec(pool_dir, real=0.8, budget="steps")
    r = train_one(spec, tmp_path / "res", log=lambda m: None)
    assert results.read(results.path_for(tmp_path / "res", r.run_id)) == r
    pre, ds = r.pretraining, data_mod.load(DATA)
    assert pre is not None and r.training is not None
    assert (pre.pool, pre.pool_path, pre.images, pre.epochs, pre.steps) == ("transform", pool_dir, 100, 2, 8)
    assert pre.pool_fingerprint == pools.manifest_fingerprint(pool_dir) == r.spec["pretrain"]["pool"]["fingerprint"]
    assert [h["steps"] for h in pre.history] == [4, 8] and r.training.steps == 16
    # every class, as imbalanced as the real training images, and never a source the run dropped
    assert pre.counts == dict(zip(ds.classes, scenarios.pretrain_counts(ds, 100), strict=True))
    assert sum(pre.counts.values()) == 100 and all(v > 0 for v in pre.counts.values())
    made = pools.load(pool_dir, ds)
    assert np.isin(made.sources[pre.pool_rows], r.selection["real_train_rows"]).all()
    assert sum(r.counts.synthetic.values()) == 0  # the fine-tuning's mix is the scenario's own: real only
    plain = train_one(make_spec("cnn", scenarios.SCENARIOS["1"], "hflip", 0, tiny_hparams("cnn", precision="fp32"),
                                DATA, budget="steps"), tmp_path / "res", log=lambda m: None)
    assert plain.pretraining is None and "pretraining" not in results.read(
        results.path_for(tmp_path / "res", plain.run_id)).to_dict()
    # validated on write and read: a pretraining run's record is there and names its pool's content and sizes
    for broken in (None, dataclasses.replace(pre, steps=0), dataclasses.replace(pre, pool_fingerprint=None)):
        with pytest.raises(ResultError, match="pretraining"):
            results.write(tmp_path / "bad", dataclasses.replace(r, pretraining=broken))
    runs = collect.gather(tmp_path / "res").runs.set_index("run_id")
    assert runs.loc[r.run_id, "pretrain"] == "transform" and runs.loc[plain.run_id, "pretrain"] == ""
    assert runs.loc[r.run_id, "table"] == runs.loc[plain.run_id, "table"]  # one table: paired with scenario 1


@pytest.mark.parametrize("stop_after", [1, 2, 3])  # in the pretraining, at its end, in the fine-tuning
def test_a_run_interrupted_in_either_phase_resumes_to_the_same_numbers(pool_dir: str, tmp_path: Path,
                                                                        stop_after: int) -> None:
    spec = _spec(pool_dir)
    whole = train_one(spec, tmp_path / "whole", log=lambda m: None)
    with pytest.raises(Interrupted):
        train_one(spec, tmp_path / "cut", log=lambda m: None, stop_after=stop_after)
    lines: list[str] = []
    resumed = train_one(spec, tmp_path / "cut", log=lines.append)
    assert any(f"resumed from checkpoint at epoch {stop_after}/4" in line for line in lines)
    assert resumed.pretraining is not None and whole.pretraining is not None
    assert resumed.pretraining.history == [{**h, "seconds": r["seconds"]} for h, r in
                                           zip(whole.pretraining.history, resumed.pretraining.history, strict=True)]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert resumed.metrics == whole.metrics


def test_a_pack_with_pretraining_is_its_separate_runs(pool_dir: str, tmp_path: Path) -> None:
    specs = [_spec(pool_dir, seed=s, real=0.8) for s in (0, 1)]
    packed = train.run_unit(specs, tmp_path / "packed", log=lambda m: None)
    separate = [train_one(s, tmp_path / "separate", log=lambda m: None) for s in specs]
    for p, s in zip(packed, separate, strict=True):
        assert p.packed is not None and p.pretraining is not None and s.pretraining is not None
        assert p.pretraining.pool_rows == s.pretraining.pool_rows and p.selection == s.selection
        assert [h["train_loss"] for h in p.pretraining.history] == pytest.approx(
            [h["train_loss"] for h in s.pretraining.history], abs=TOL)
        assert [h["train_loss"] for h in p.history] == pytest.approx([h["train_loss"] for h in s.history], abs=TOL)
        assert p.metrics.test_ce == pytest.approx(s.metrics.test_ce, abs=TOL)
    # the seeds are told apart: a seed pretrained on the other's images, or as the other, would show
    a, b = (s.pretraining for s in separate)
    assert a is not None and b is not None and a.pool_rows != b.pool_rows
    assert max(abs(x["train_loss"] - y["train_loss"]) for x, y in zip(a.history, b.history, strict=True)) > 10 * TOL


GRID = """name = "pre"
results = "{results}"
models = ["cnn"]
scenarios = ["1", "pre"]
augmentations = ["none"]
seeds = 2
{pool}

[scenario.pre]
{pretrain}

[data]
source = "phantom"
n_train = 240
n_test = 80
size = 32

[model.cnn]
epochs = 1
batch_size = 32
resolution = 32
"""


def _grid(tmp_path: Path, pool: str, pretrain: str = 'pretrain = {pool = "diffusion", images = 100, epochs = 2}',
          name: str = "grid.toml") -> Path:
    g = tmp_path / name
    g.write_text(GRID.format(results=tmp_path / "res", pool=pool, pretrain=pretrain))
    return g


def test_run_ids_change_with_the_pretraining_and_only_then(pool_dir: str, tmp_path: Path) -> None:
    smoke = [s.run_id for s in grid.load(Path(__file__).parents[1] / "jobs" / "smoke.toml").runs][:3]
    assert smoke == ["e7cd9d65218aec9c", "6cca1b22163efb58", "92f62d01b7e82328"]  # ids before issue 37
    runs = grid.load(_grid(tmp_path, f'[pool]\ndiffusion = "{pool_dir}"')).runs
    plain, pre = runs[:2], runs[2:]
    assert [r.run_id for r in plain] == [make_spec("cnn", scenarios.SCENARIOS["1"], "none", s, r.hparams, r.data
                                                   ).run_id for s, r in enumerate(plain)]
    assert all(r.pretrain_pool == pool_dir and r.pretrain_fingerprint == pools.manifest_fingerprint(pool_dir)
               for r in pre)
    # the same scenario without pretraining: another id; the pool's name is no part of it, its content, the
    # images and the epochs are
    bare = grid.load(_grid(tmp_path, f'[pool]\ndiffusion = "{pool_dir}"', "", "bare.toml")).runs[2]
    renamed = grid.load(_grid(tmp_path, f'[pool]\nother = "{pool_dir}"',
                              'pretrain = {pool = "other", images = 100, epochs = 2}', "renamed.toml")).runs[2]
    assert bare.run_id != pre[0].run_id and renamed.run_id == pre[0].run_id
    ids = {pre[0].run_id}
    for change in ("images = 101, epochs = 2", "images = 100, epochs = 3"):
        g = _grid(tmp_path, f'[pool]\ndiffusion = "{pool_dir}"',
                  f'pretrain = {{pool = "diffusion", {change}}}', "changed.toml")
        ids.add(grid.load(g).runs[2].run_id)
    assert len(ids) == 3
    assert dataclasses.replace(pre[0], pretrain_fingerprint="0" * 16).run_id not in ids  # the pool's content


@pytest.mark.parametrize(("pool", "pretrain", "words"), [
    ('[pool]\ncopy = "P"', 'pretrain = {pool = "diffusion", images = 100, epochs = 2}',
     "pool 'diffusion' is not one of the grid's pools (copy)"),
    ("", 'pretrain = {pool = "diffusion", images = 100, epochs = 2}', "is not a pool of the grid, which sets none"),
    ('[pool]\ndiffusion = "P"', 'pretrain = {pool = "diffusion", images = 0, epochs = 2}',
     "images must be a whole number above 0, got 0"),
    ('[pool]\ndiffusion = "P"', 'pretrain = {pool = "diffusion", images = 100, epochs = -1}',
     "epochs must be a whole number above 0, got -1"),
    ('[pool]\ndiffusion = "P"', 'pretrain = {pool = "diffusion", images = 100}', "missing epochs"),
    ('[pool]\ndiffusion = "P"', 'pretrain = "diffusion"', "must be a table"),
])
def test_bad_pretrain_settings_are_refused_naming_the_setting(tmp_path: Path, pool: str, pretrain: str,
                                                              words: str) -> None:
    g = _grid(tmp_path, pool.replace('"P"', f'"{tmp_path / "pool"}"'), pretrain)
    with pytest.raises(GridError, match="scenario.pre.pretrain") as e:
        grid.load(g)
    line = g.read_text().splitlines().index(pretrain) + 1
    assert words in str(e.value) and f"{g}, line {line}: scenario.pre.pretrain: " in str(e.value)
    r = CliRunner().invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "scenario.pre.pretrain" in r.output and words in r.output, r.output


def test_a_pool_without_every_class_is_refused_before_training(tmp_path: Path) -> None:
    ds = data_mod.load(DATA)
    synth.make_pool(ds, tmp_path / "two", "transform", classes=["Mild_Demented", "Moderate_Demented"],
                    progress_bar=False)
    g = _grid(tmp_path, f'[pool]\ndiffusion = "{tmp_path / "two"}"')
    with pytest.raises(PoolError, match="pretraining: needs 50 synthetic Non_Demented images .* has 0 such"):
        grid.check_pools(grid.load(g).runs)
