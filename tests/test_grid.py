"""`mriaug.plan.grid`: grid files, seeds, custom scenarios, splits, several pools, errors with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data.sources import DataSpec
from mriaug.errors import SettingError
from mriaug.plan import grid, scenarios
from mriaug.plan.grid import GridError
from tests.conftest import tiny_hparams

ROOT = Path(__file__).resolve().parents[1]


def test_thesis_grid_is_720_runs() -> None:
    g = grid.load(ROOT / "jobs" / "thesis.toml")
    assert len(g.runs) == 720
    assert len({r.run_id for r in g.runs}) == 720
    assert {r.model for r in g.runs} == {"cnn", "resnet18", "vit"}
    assert {r.scenario.name for r in g.runs} == {"1", "2", "3", "4"}
    assert g.hparams["resnet18"].pretrained and not g.hparams["cnn"].pretrained
    assert g.hparams["vit"].resolution == 256


def test_smoke_grid_fills_every_cell_with_two_seeds() -> None:
    g = grid.load(ROOT / "jobs" / "smoke.toml")
    assert len(g.runs) == 72
    assert g.data.source == "phantom"


def _grid(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "g.toml"
    p.write_text(text)
    return p


BASE = """name = "t"
models = ["cnn"]
scenarios = ["1", "x"]
augmentations = ["none"]
seeds = {start = 5, count = 2}
pool = "pools/p"
data = "phantom"

[scenario.x]
real_fraction = 0.5
synthetic_fraction = {Moderate_Demented = 1.0}

[model.cnn]
epochs = 1
"""


def test_custom_scenarios_and_seed_ranges(tmp_path: Path) -> None:
    g = grid.load(_grid(tmp_path, BASE))
    assert [r.seed for r in g.runs] == [5, 6, 5, 6]
    x = [r for r in g.runs if r.scenario.name == "x"][0]
    assert x.scenario.synthetic_fraction == (0.0, 1.0, 0.0, 0.0)
    assert g.hparams["cnn"].epochs == 1 and g.hparams["cnn"].resolution == 128


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("epochs = 1", "epochs = -1", r"line 14: model.cnn.epochs: must be a positive integer"),
        ("epochs = 1", "epoch = 1", r"line 14: model.cnn.epoch: unknown hyper-parameter"),
        ('models = ["cnn"]', 'models = ["cnn", "alexnet"]', r"line 2: models: unknown model 'alexnet'"),
        ('augmentations = ["none"]', 'augmentations = ["mixup"]', r"line 4: augmentations: unknown augmentation"),
        ('scenarios = ["1", "x"]', 'scenarios = ["1", "9"]', r"line 3: scenarios: unknown scenario '9'"),
        ('pool = "pools/p"\n', "", r"scenarios: scenario\(s\) x add synthetic images but the grid sets no pool"),
        ("seeds = {start = 5, count = 2}", "seeds = 0", r"line 5: seeds: must be a count"),
        ('name = "t"', 'name = "t"\nseedz = 3', r"line 2: seedz: unknown key"),
        ("real_fraction = 0.5", 'real_fraction = {Severe = 0.5}', r"scenario.x: unknown class 'Severe'"),
        ("epochs = 1", "epochs = [1", r"not valid TOML"),
        ("epochs = 1", "epochs = true", r"line 14: model.cnn.epochs: must be a positive integer, got True"),
        ("epochs = 1", 'pretrained = "false"', r"line 14: model.cnn.pretrained: must be true or false"),
        ("epochs = 1", "weight_decay = -0.1", r"line 14: model.cnn.weight_decay: must be a non-negative finite number"),
        ("epochs = 1", "resolution = 30", r"line 14: model.cnn.resolution: must be a multiple of 4"),
        ('models = ["cnn"]', 'models = ["cnn", "cnn"]', r"line 2: models: listed more than once: cnn"),
        ("seeds = {start = 5, count = 2}", "seeds = [1, 2, 1]", r"line 5: seeds: listed more than once: 1"),
        ("[scenario.x]", "[scenario.3]", r"line 9: scenario.3: '3' is a preset scenario"),
        ("seeds = {start = 5, count = 2}", "seeds = true", r"line 5: seeds: must be a count"),
        ("seeds = {start = 5, count = 2}", "seeds = [-1]", r"line 5: seeds: must be a count"),
        ("seeds = {start = 5, count = 2}", "seeds = {start = 0, count = 0}", r"line 5: seeds: must be a count"),
        ('name = "t"', 'name = "t"\nsave_weights = "no"', r"line 2: save_weights: must be true or false"),
        ('name = "t"', 'name = "t"\nresults = 5', r"line 2: results: must be a folder path string"),
        ('data = "phantom"', 'data = "./no/such/folder"', r"line 7: data: data source './no/such/folder': no such"),
    ],
)
def test_malformed_grid_names_key_and_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(GridError, match=message) as e:
        grid.load(_grid(tmp_path, BASE.replace(old, new)))
    assert str(tmp_path / "g.toml") in str(e.value)


@pytest.mark.parametrize(("option", "message"), [("ntrain = 300", r"line 4: data.ntrain: unknown option for a phantom"),
                                                 ('n_train = "abc"', r"line 4: data.n_train: must be an integer >= 8")])
def test_data_options_are_checked_at_load(tmp_path: Path, option: str, message: str) -> None:
    text = f'models = ["cnn"]\nscenarios = ["1"]\n[data]\n{option}\nsource = "phantom"\n'
    with pytest.raises(GridError, match=message):
        grid.load(_grid(tmp_path, text))


@pytest.mark.parametrize("key", ["model", "scenario"])
def test_table_keys_that_are_not_tables(tmp_path: Path, key: str) -> None:
    text = f'models = ["cnn"]\nscenarios = ["1"]\n{key} = 3\n'
    with pytest.raises(GridError, match=rf"line 3: {key}: must be a table"):
        grid.load(_grid(tmp_path, text))


def test_missing_grid_file(tmp_path: Path) -> None:
    with pytest.raises(GridError, match="does not exist"):
        grid.load(tmp_path / "nope.toml")


REPEATED = """name = "k"
models = ["cnn"]
scenarios = ["1", "3"]
augmentations = ["none"]
seeds = 7
budget = "steps"
select = "best_val"

[pool]
copy = "pools/c"

[data]
source = "phantom"
n_train = 480
n_test = 160
size = 32
split = "subject"
splits = 3
split_seed = 10
"""


def test_repeated_subject_splits_give_seed_s_split_s_mod_k_and_its_pool(tmp_path: Path) -> None:
    g = grid.load(_grid(tmp_path, REPEATED))
    s1 = {r.seed: r for r in g.runs if r.scenario.name == "1"}
    s3 = {r.seed: r for r in g.runs if r.scenario.name == "3"}
    # seed s -> split seed 10 + s mod 3: 0->10, 1->11, 2->12, 3->10, ..., 6->10
    assert [s1[s].data.options["split_seed"] for s in range(7)] == [10, 11, 12, 10, 11, 12, 10]
    assert all(r.data.options["splits"] == 3 for r in g.runs)
    # both scenarios of a seed test the same patients (the pair is within one split)
    assert all(s3[s].data == s1[s].data for s in range(7))
    # each split has its own pool folder, named in the tables by the grid's name for the pool
    assert [s3[s].pool for s in (0, 1, 2, 3)] == ["pools/c/split-10", "pools/c/split-11", "pools/c/split-12",
                                                   "pools/c/split-10"]
    assert {r.pool_label for r in s3.values()} == {"copy"}
    assert [d.options["split_seed"] for d in g.split_data] == [10, 11, 12]
    assert [f for _, f in g.pool_dirs("x")] == ["x/split-10", "x/split-11", "x/split-12"]
    assert len({r.run_id for r in g.runs}) == 14


def test_one_split_keeps_run_ids_and_pool_folders(tmp_path: Path) -> None:
    one = grid.load(_grid(tmp_path, REPEATED.replace("splits = 3", "splits = 1")))
    tmp2 = tmp_path / "b"
    tmp2.mkdir()
    none = grid.load(_grid(tmp2, REPEATED.replace("splits = 3\n", "")))
    assert [r.run_id for r in one.runs] == [r.run_id for r in none.runs]
    assert {r.pool for r in one.runs if r.pool} == {"pools/c"}
    assert {r.data.options["split_seed"] for r in one.runs} == {10}


@pytest.mark.parametrize("old,new,message", [
    ("splits = 3", "splits = 0", "whole number >= 1"),
    ("splits = 3", "splits = 2.5", "whole number >= 1"),
    ('split = "subject"', 'split = "given"', "repeats a subject split"),
])
def test_bad_splits_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(GridError, match=message) as e:
        grid.load(_grid(tmp_path, REPEATED.replace(old, new)))
    assert "splits" in str(e.value)


def test_a_model_without_a_table_trains_the_thesis_settings_and_dry_run_shows_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mriaug.cli import app

    g = _grid(tmp_path, 'name = "v"\nresults = "%s"\nmodels = ["vit", "cnn"]\nscenarios = ["1"]\n'
                        'augmentations = ["none"]\nseeds = 2\ndata = "phantom"\n\n[model.cnn]\nepochs = 3\n'
              % (tmp_path / "res"))
    loaded = grid.load(g)
    assert (loaded.hparams["vit"].lr, loaded.hparams["vit"].weight_decay) == (3e-5, 0.05)
    assert loaded.hparams["cnn"].epochs == 3 and loaded.hparams["cnn"].lr == 1e-3  # the table overrides what it names
    r = CliRunner().invoke(app, ["grid", str(g), "--dry-run"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    vit = next(line for line in lines if line.startswith("vit: 2 runs;"))
    assert "lr=3e-05" in vit and "weight_decay=0.05" in vit
    assert any(line.startswith("cnn: 2 runs;") and "epochs=3" in line for line in lines)
    assert lines[-1].startswith("grid v: 4 runs, 0 done, 4 to run") and "nothing trained" in lines[-1]
    assert not (tmp_path / "res").exists()  # nothing trained, nothing written


# Selection, several pools and the subject grid. (Until issue 23 in test_controls.py.)

def test_best_val_without_validation_is_refused(phantom_spec: DataSpec, tmp_path: Path) -> None:
    with pytest.raises(SettingError, match="val_fraction"):
        grid.make_spec("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams(), phantom_spec, select="best_val")
    g = tmp_path / "g.toml"
    g.write_text('models = ["cnn"]\nscenarios = ["1"]\nselect = "best_val"\n[data]\nsource = "phantom"\n')
    with pytest.raises(GridError, match="line 3: select"):
        grid.load(g)


runner = CliRunner()
POOLS_GRID = """name = "pools"
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
    path.write_text(POOLS_GRID.format(results=tmp_path / "res", copy=tmp_path / "copy", transform=tmp_path / "tr"))
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
    g = grid.load(ROOT / "jobs" / "subject.toml")
    assert g.data.options["split"] == "subject" and g.budget == "steps" and g.select == "best_val"
    assert set(g.pools) == {"openai", "copy"}
    # Scenarios 1-2 once, 3-6 once per pool: 3 models x 3 augmentations x 20 seeds x (2 + 4 x 2). (Until the
    # pools are made their runs share ids: a pool's content is part of a run's id, and none is planned yet.)
    assert len(g.runs) == 3 * 3 * 20 * 10
    assert {r.pool_label for r in g.runs if r.scenario.needs_pool} == {"openai", "copy"}
    assert all(r.to_dict()["budget"] == "steps" for r in g.runs)



def test_run_ids_and_cells_of_the_published_grids_stay_as_they_are() -> None:
    smoke = grid.load(ROOT / "jobs" / "smoke.toml").runs
    # Known answers: the ids of runs already trained (results/smoke's runs.csv, the thesis's first run).
    assert [r.run_id for r in smoke[:2]] == ["e7cd9d65218aec9c", "6cca1b22163efb58"]
    assert grid.load(ROOT / "jobs" / "thesis.toml").runs[0].run_id == "815ac755006389f1"
    # A cell is the run without its seed: the two seeds share it, the next augmentation does not.
    assert smoke[0].seed != smoke[1].seed and smoke[0].cell == smoke[1].cell
    assert "seed" not in smoke[0].cell and smoke[2].cell != smoke[0].cell
    assert {**smoke[0].cell, "seed": smoke[0].seed} == smoke[0].to_dict()
