"""`mriaug grid` (with `mriaug synth` and `mriaug collect` around it, end to end): every run of a grid trained
once, and a grid's pool checked before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import sources as data
from mriaug.plan import grid
from mriaug.store import results
from tests.conftest import REAL_DATA, finish, mriaug_process, require_real_data
from tests.slurm_helpers import write_grid

runner = CliRunner()

GRID = """name = "cli"
results = "{results}"
models = ["cnn", "vit"]
scenarios = ["1", "3"]
augmentations = ["none", "autoaugment"]
seeds = 2
pool = "{pool}"

[data]
source = "phantom"
n_train = 160
n_test = 64
size = 32

[model.cnn]
epochs = 1
resolution = 32

[model.vit]
arch = "vit_tiny_patch16_224"
pretrained = false
epochs = 1
resolution = 32
"""


def test_synth_grid_collect_end_to_end(tmp_path: Path) -> None:
    g = tmp_path / "grid.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "pool"))
    r = runner.invoke(app, ["synth", "--grid", str(g), "--classes", "Mild_Demented,Moderate_Demented"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pool" / "manifest.jsonl").exists()
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    assert "16 runs, 0 done, 16 to run" in r.output
    assert len(list((tmp_path / "res").glob("*.json"))) == 16
    assert "(n=2)" in r.output and "Scenario 3" in r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert "16 runs, 16 done, 0 to run" in r.output
    r = runner.invoke(app, ["collect", str(tmp_path / "res")])
    assert r.exit_code == 0 and "vit — median test cross-entropy" in r.output


def test_grid_checks_its_pool_before_training_anything(tmp_path: Path) -> None:
    g = tmp_path / "grid.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "missing-pool"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2, r.output
    assert "missing-pool: no such folder" in r.output
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").glob("*.json"))
    # A pool too small for scenario 3: also refused up front, with the counts.
    runner.invoke(app, ["synth", "--grid", str(g), "--out", str(tmp_path / "small"), "--classes", "Mild_Demented",
                        "--max-sources", "2"])
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "small"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "synthetic Mild_Demented images whose sources are among" in r.output, r.output
    assert not list((tmp_path / "res").glob("*.json"))


def test_a_run_without_images_of_a_class_is_refused_at_planning(tmp_path: Path) -> None:
    g = write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["empty"], n_train=80)
    g.write_text(g.read_text() + "\n[scenario.empty]\nreal_fraction = {default = 0.0}\n")
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2, r.output
    assert "no training images of class Mild_Demented" in r.output
    assert not list((tmp_path / "res").glob("*.json"))
    g.write_text(g.read_text().replace("{default = 0.0}", "{default = 1.0, Moderate_Demented = 0.0}"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "no training images of class Moderate_Demented" in r.output, r.output


DRY = """name = "dry"
results = "{results}"
models = ["cnn"]
scenarios = ["1"]
augmentations = ["none"]
seeds = 2

[data]
source = "{source}"
split = "subject"
{extra}

[model.cnn]
epochs = 1
resolution = 32
"""
PHANTOM = "n_train = 480\nn_test = 160\nsize = 32\n"  # its scan groups, recovered from the images: 22


@pytest.mark.parametrize("extra, words", [
    ('merge = {Moderate_Demented = "Mild_Demeted"}', "data.merge: Moderate_Demented = 'Mild_Demeted': "
                                                     "'Mild_Demeted' is no class but resembles Mild_Demented"),
    ('merge = {Mild_Demented = "Mild_Demented"}', "data.merge: Mild_Demented = 'Mild_Demented' merges a class into "
                                                  "itself"),
    ("splits = 23", "[data] splits = 23: more repeated subject splits than the data has scan groups (22)"),
])
def test_a_dry_run_refuses_what_grid_would(tmp_path: Path, extra: str, words: str) -> None:
    """Issue 32: `splits` beyond the data's scan groups passed the dry run ("2 to run"); only loading the data
    under the split finds it, as `grid` and `synth --grid` do."""
    g = tmp_path / "grid.toml"
    g.write_text(DRY.format(results=tmp_path / "res", source="phantom", extra=PHANTOM + extra))
    for args in (["grid", str(g), "--dry-run"], ["grid", str(g)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and words in r.output and str(g) in r.output, (args, r.output)
    assert not (tmp_path / "res").exists()


def test_a_dry_run_refuses_1000_splits_of_the_real_data(tmp_path: Path) -> None:
    require_real_data()
    g = tmp_path / "grid.toml"
    g.write_text(DRY.format(results=tmp_path / "res", source=REAL_DATA, extra="splits = 1000"))
    r = runner.invoke(app, ["grid", str(g), "--dry-run"])
    assert r.exit_code == 2, r.output
    assert "[data] splits = 1000: more repeated subject splits than the data has scan groups (200)" in r.output
    assert not (tmp_path / "res").exists()


# Two `mriaug grid` workers on one results folder. (Until issue 23 in test_concurrency.py.)

@pytest.mark.timeout(300)
def test_two_grid_workers_train_each_run_once(tmp_path: Path) -> None:
    res = tmp_path / "results"
    g = write_grid(tmp_path / "g.toml", res, scenarios=["1", "2"], augmentations=["none", "hflip"], seeds=2,
                   epochs=2, n_train=240)
    data.load(grid.load(g).data)
    procs = [mriaug_process("grid", str(g), "--verbose") for _ in range(2)]
    outs = finish(procs)
    for code, so, se in outs:
        assert code == 0, so + se
    # Every training announces itself once ("N training images"), in whichever worker ran it.
    trainings = [line for _, _, se in outs for line in se.splitlines() if "training images" in line]
    runs = grid.load(g).runs
    assert len(trainings) == len(runs) == 8, "\n".join(trainings)
    assert all(any(line for line in t.splitlines()) for _, _, t in outs)
    assert min(sum("training images" in ln for ln in se.splitlines()) for _, _, se in outs) >= 1, "one worker idle"
    assert results.done_ids(res) == {r.run_id for r in runs}
    assert not list((res / ".locks").glob("*.lock"))


# --- the local scheduler `mriaug grid` runs (`mriaug.local`), against a fake engine --------------------------

class _Seen:
    """A `local.Progress` that records what a worker tells it."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def starting(self, unit) -> None:
        self.events.append(f"start {unit[0].seed}")

    def trained(self, unit) -> None:
        self.events.append(f"trained {len(unit)}")

    def waiting(self, busy: int) -> None:
        self.events.append(f"waiting {busy}")


def _specs(phantom_spec: data.DataSpec, n: int) -> list:
    from mriaug.plan import hparams
    from mriaug.plan.scenarios import SCENARIOS

    return [grid.make_spec("cnn", SCENARIOS["1"], "none", s, hparams.thesis("cnn"), phantom_spec) for s in range(n)]


def test_a_worker_comes_back_to_units_other_workers_held(tmp_path: Path, phantom_spec: data.DataSpec,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug import local
    from mriaug.engine import runtime
    from mriaug.store import locks

    a, b, c = _specs(phantom_spec, 3)
    held_once = {b.run_id}
    threads: list[int] = []
    sleeps: list[float] = []

    def train_unit(unit, results_dir, *, wait, **kw):
        assert wait is False  # a worker never waits on a run another holds: it goes on with the next
        if unit[0].run_id in held_once:
            held_once.discard(unit[0].run_id)
            raise locks.Busy(Path("x.lock"), {"host": "other", "pid": 1})
        return []

    monkeypatch.setattr(local, "train_unit", train_unit)
    monkeypatch.setattr(runtime, "use_cpu_threads", threads.append)
    monkeypatch.setattr(local.time, "sleep", sleeps.append)
    seen = _Seen()
    local.Worker(tmp_path, progress=seen, poll_s=0.25).run([[a], [b, c]])
    assert seen.events == ["start 0", "trained 1", "start 1", "waiting 1", "start 1", "trained 2"]
    assert sleeps == []  # a round that trained something goes straight to the next
    assert threads == [1, 1, 1]  # this worker alone on the machine: its lock is the only live one
    assert not list((tmp_path / ".workers").glob("*.lock"))  # its lock is gone when it ends


def test_a_worker_whose_units_are_all_held_sleeps_between_visits(tmp_path: Path, phantom_spec: data.DataSpec,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug import local
    from mriaug.store import locks

    (a,) = _specs(phantom_spec, 1)
    tries = iter([True, True, False])
    sleeps: list[float] = []

    def train_unit(unit, results_dir, **kw):
        if next(tries):
            raise locks.Busy(Path("x.lock"), {"host": "other", "pid": 1})
        return []

    monkeypatch.setattr(local, "train_unit", train_unit)
    monkeypatch.setattr(local.time, "sleep", sleeps.append)
    seen = _Seen()
    local.Worker(tmp_path, progress=seen, poll_s=0.25).run([[a]])
    assert sleeps == [0.25, 0.25]
    assert seen.events.count("waiting 1") == 1 and seen.events[-1] == "trained 1"


def test_a_failing_unit_is_named_in_the_error(tmp_path: Path, phantom_spec: data.DataSpec,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug import local

    a, b = _specs(phantom_spec, 2)

    def train_unit(unit, results_dir, **kw):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(local, "train_unit", train_unit)
    with pytest.raises(RuntimeError, match="out of memory") as err:
        local.Worker(tmp_path).run([[a, b]])
    assert err.value.__notes__ == [f"while training {a.label}, {b.label} [{a.run_id}]"]


def test_one_door_sends_a_run_and_a_seed_pack_to_the_engine(tmp_path: Path, phantom_spec: data.DataSpec,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug import local
    from mriaug.engine import train

    a, b = _specs(phantom_spec, 2)
    calls: list[tuple[list[int], bool]] = []
    monkeypatch.setattr(train, "run_unit", lambda specs, d, *, wait, **kw: calls.append(
        ([s.seed for s in specs], wait)) or [f"r{s.seed}" for s in specs])
    assert local.train_unit([a], tmp_path, wait=False) == ["r0"]
    assert local.train_unit([a, b], tmp_path) == ["r0", "r1"]
    assert calls == [([0], False), ([0, 1], True)]
    assert local.describe([a]) == a.label and local.describe([a, b]) == f"{a.label} +1 seeds"
