"""`mriaug.slurm.tasks`: what a Slurm task runs, and jobs queued by an older mriaug. (Until issue 23 in
test_layout.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mriaug.data import sources as data
from mriaug.errors import SlurmError
from mriaug.plan import hparams


def test_jobs_queued_before_the_move_still_run_or_say_resubmit(phantom_spec: data.DataSpec) -> None:
    from mriaug.plan.grid import make_spec
    from mriaug.plan.scenarios import SCENARIOS
    from mriaug.slurm import CommandTask
    from mriaug.slurm.tasks import upgrade_spec

    spec = make_spec("cnn", SCENARIOS["1"], "none", 0, hparams.thesis("cnn"), phantom_spec)
    old = replace(spec)
    object.__setattr__(old, "hparams", spec.hparams.to_dict())  # as a pickled spec of the old layout holds it
    assert upgrade_spec(old).run_id == spec.run_id
    with pytest.raises(SlurmError, match="submitted by an older version of mriaug; submit it again"):
        CommandTask.__new__(CommandTask)(["synth", "--out", "x"])


def _fake_engine(monkeypatch: pytest.MonkeyPatch, fail: set[str] | None = None) -> list[list[str]]:
    """`local.train_unit` (the one call tasks make into the engine) recording the units it is given."""
    from types import SimpleNamespace

    from mriaug import local

    calls: list[list[str]] = []

    def train_unit(unit, results_dir, **kw):
        calls.append([s.label for s in unit])
        if fail and unit[0].label in fail:
            raise RuntimeError("out of memory")
        return [SimpleNamespace(run_id=s.run_id, metrics=SimpleNamespace(test_ce=0.5)) for s in unit]

    monkeypatch.setattr(local, "train_unit", train_unit)
    return calls


def test_one_task_class_runs_the_arrays_of_both_earlier_ones(phantom_spec: data.DataSpec, tmp_path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    from mriaug.plan.grid import make_spec
    from mriaug.plan.scenarios import SCENARIOS
    from mriaug.slurm import PackTask, RunTask, TrainTask

    calls = _fake_engine(monkeypatch)
    a, b = (make_spec("cnn", SCENARIOS["1"], "none", s, hparams.thesis("cnn"), phantom_spec) for s in (0, 1))
    assert RunTask is TrainTask and PackTask is TrainTask
    # A job queued as a `RunTask` by an earlier mriaug: its pickle names that class and hands it one spec.
    old = pickle.dumps(TrainTask(), protocol=0).replace(b"\nTrainTask\n", b"\nRunTask\n")
    task = pickle.loads(old)
    assert type(task) is TrainTask
    assert task(a, str(tmp_path)) == [{"run_id": a.run_id, "test_ce": 0.5}]
    # As `PackTask`s were: units, each trained whole.
    assert TrainTask()([[a], [b]], str(tmp_path)) == [{"run_id": s.run_id, "test_ce": 0.5} for s in (a, b)]
    assert calls == [[a.label], [a.label], [b.label]]


def test_a_failing_unit_is_recorded_and_the_task_goes_on(phantom_spec: data.DataSpec, tmp_path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from mriaug.plan.grid import make_spec
    from mriaug.plan.scenarios import SCENARIOS
    from mriaug.slurm import TrainTask
    from mriaug.slurm.paths import failure_path

    a, b = (make_spec("cnn", SCENARIOS["1"], "none", s, hparams.thesis("cnn"), phantom_spec) for s in (0, 1))
    calls = _fake_engine(monkeypatch, fail={a.label})
    with pytest.raises(SlurmError, match=r"1 of the task's 2 runs failed \(cnn/s1/none/seed0\)"):
        TrainTask()([[a], [b]], str(tmp_path))
    assert calls == [[a.label], [b.label]]  # the next unit still trained
    record = json.loads(failure_path(str(tmp_path), a.run_id).read_text())
    assert record["error"] == "RuntimeError: out of memory" and record["label"] == a.label
    assert not failure_path(str(tmp_path), b.run_id).exists()
