"""Result files (`mriaug.results`) by hand: what a valid result holds, every way one is refused, non-finite
numbers, diverged runs, and the folder readers (issue 18)."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mriaug import results
from mriaug.errors import ResultError


def _valid(run_id: str = "abc123") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "spec": {"model": "cnn", "augmentation": "none", "seed": 0, "scenario": {"name": "1"},
                 "hparams": {"epochs": 2}},
        "metrics": {"test_ce": 0.5, "accuracy": 0.75, "balanced_accuracy": 0.5, "macro_f1": 0.25, "per_class": {},
                    "confusion": [], "ece": 0.125},
        "history": [], "counts": {"real": {"Mild_Demented": 3}, "synthetic": {}}, "data": {"fingerprint": "f"},
        "env": {}, "timings": {"train_s": 1.5},
    }


def _write_raw(folder: Path, doc: Any, name: str = "abc123") -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_paths() -> None:
    assert results.path_for("r", "x1") == Path("r/x1.json")
    assert results.checkpoint_for("r", "x1") == Path("r/.checkpoints/x1.pt")
    assert results.weights_for("r", "x1") == Path("r/weights/x1.safetensors")
    assert results.lock_for("r", "x1") == Path("r/.locks/x1.lock")


def test_finite_replaces_nan_and_infinity_everywhere() -> None:
    doc = {"a": float("nan"), "b": [1.0, float("inf"), (float("-inf"), 2)], "c": {"d": 3, "e": "nan"}, "f": None}
    assert results.finite(doc) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": 3, "e": "nan"}, "f": None}
    assert results.finite(0.5) == 0.5 and results.finite(True) is True


def test_write_then_read_back(tmp_path: Path) -> None:
    r = _valid()
    r["metrics"]["per_class"] = {"Mild_Demented": {"f1": float("nan")}}
    path = results.write(tmp_path, r)
    assert path == tmp_path / "abc123.json"
    text = path.read_text()
    assert text.endswith("}\n") and "NaN" not in text
    # Keys sorted, two spaces an indent: "counts" (written fifth) comes first.
    assert text.splitlines()[:3] == ["{", '  "counts": {', '    "real": {']
    back = results.read(path)
    assert back["metrics"]["per_class"]["Mild_Demented"]["f1"] is None and back["metrics"]["test_ce"] == 0.5
    assert json.loads(text) == back


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("spec"), "missing or malformed key 'spec'"),
    (lambda d: d.update(history={}), "missing or malformed key 'history'"),
    (lambda d: d.update(timings=[]), "missing or malformed key 'timings'"),
    (lambda d: d.update(run_id=7), "missing or malformed key 'run_id'"),
    (lambda d: d["metrics"].pop("confusion"), "missing key 'metrics.confusion'"),
    (lambda d: d["metrics"].pop("per_class"), "missing key 'metrics.per_class'"),
    (lambda d: d.update(status="running"), "'status' is 'running', not one of done, diverged"),
    (lambda d: d["metrics"].update(test_ce="0.5"), "'metrics.test_ce' is not a number ('0.5')"),
    (lambda d: d["metrics"].update(accuracy=True), "'metrics.accuracy' is not a number (True)"),
    (lambda d: d["metrics"].update(macro_f1=None), "'metrics.macro_f1' is not a number (None)"),
    (lambda d: d["metrics"].update(ece=None), "'metrics.ece' is not a number (None)"),
    (lambda d: d.update(status="diverged"), "a diverged run without 'diverged_at_epoch'"),
    (lambda d: d.update(status="diverged", diverged_at_epoch=0), "a diverged run without 'diverged_at_epoch'"),
    (lambda d: d.update(status="diverged", diverged_at_epoch="2"), "a diverged run without 'diverged_at_epoch'"),
    (lambda d: d["spec"].pop("model"), "missing or malformed key 'spec.model'"),
    (lambda d: d["spec"].update(seed="0"), "missing or malformed key 'spec.seed'"),
    (lambda d: d["spec"].update(augmentation=None), "missing or malformed key 'spec.augmentation'"),
    (lambda d: d["spec"].update(hparams=[]), "missing or malformed key 'spec.hparams'"),
    (lambda d: d["spec"].update(scenario="1"), "missing or malformed key 'spec.scenario'"),
    (lambda d: d["spec"].update(scenario={}), "missing key 'spec.scenario.name'"),
    (lambda d: d["spec"].update(scenario={"name": True}), "'spec.scenario.name' is not a name (True)"),
    (lambda d: d["spec"].update(scenario={"name": 1.5}), "'spec.scenario.name' is not a name (1.5)"),
    (lambda d: d["counts"].pop("real"), "missing or malformed key 'counts.real'"),
    (lambda d: d["counts"].update(synthetic=[]), "missing or malformed key 'counts.synthetic'"),
    (lambda d: d["counts"]["real"].update(Mild_Demented=-1), "'counts.real.Mild_Demented' is not a count (-1)"),
    (lambda d: d["counts"]["synthetic"].update(X=1.0), "'counts.synthetic.X' is not a count (1.0)"),
    (lambda d: d["counts"]["real"].update(Y=True), "'counts.real.Y' is not a count (True)"),
    (lambda d: d["spec"]["hparams"].update(epochs="2"), "'spec.hparams.epochs' is not a number ('2')"),
    (lambda d: d["data"].update(fingerprint=5), "'data.fingerprint' is not a string"),
    (lambda d: d["data"].update(pool_fingerprint=["p"]), "'data.pool_fingerprint' is not a string"),
    (lambda d: d["timings"].update(train_s="1"), "'timings.train_s' is not a number ('1')"),
    (lambda d: d.update(run_id="other"), "file name does not match its run_id other"),
])
def test_every_malformed_part_is_named(tmp_path: Path, change: Any, message: str) -> None:
    doc = _valid()
    change(doc)
    path = _write_raw(tmp_path, doc)
    with pytest.raises(ResultError, match=f"^{path}: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        results.read(path)


def test_what_a_valid_result_may_leave_out_or_hold(tmp_path: Path) -> None:
    doc = _valid()
    del doc["metrics"]["ece"]  # results from before ECE
    doc["spec"]["hparams"].pop("epochs")
    doc["timings"].pop("train_s")
    doc["data"]["pool_fingerprint"] = None
    doc["spec"]["scenario"]["name"] = 3  # a number is a name too
    doc["counts"]["real"]["Mild_Demented"] = 0
    doc["spec"]["hparams"]["epochs"] = 2.0
    assert results.read(_write_raw(tmp_path, doc))["spec"]["scenario"]["name"] == 3
    doc["status"] = "done"
    assert results.read(_write_raw(tmp_path, doc))["status"] == "done"
    # A diverged run: numbers may be null, its epoch is a number from 1.
    div = _valid()
    div.update(status="diverged", diverged_at_epoch=1)
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece"):
        div["metrics"][key] = None
    back = results.read(_write_raw(tmp_path, div))
    assert results.is_diverged(back) and not results.is_diverged(_valid()) and not results.is_diverged({})


@pytest.mark.parametrize(("text", "message"), [
    ('{"run_id": "abc123", ', r"not valid JSON \(line 1: Expecting property name"),
    ('{"test_ce": NaN}', r"not valid JSON \(NaN is not a JSON number\)"),
    ('{"test_ce": Infinity}', r"not valid JSON \(Infinity is not a JSON number\)"),
    ("[1, 2]", "expected a JSON object"),
])
def test_unreadable_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "abc123.json"
    path.write_text(text)
    with pytest.raises(ResultError, match=f"^{path}: {message}"):
        results.read(path)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "abc123.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ResultError, match="not a text file"):
        results.read(path)
    with pytest.raises(ResultError, match="cannot read"):
        results.read(tmp_path / "nothing.json")


def test_folder_readers(tmp_path: Path) -> None:
    results.write(tmp_path, _valid("r1"))
    results.write(tmp_path, _valid("r2"))
    (tmp_path / "r3.json").write_text("{")
    bad_id = _valid("r4")
    bad_id["run_id"] = "r5"
    (tmp_path / "r4.json").write_text(json.dumps(bad_id))
    (tmp_path / "notes.txt").write_text("x")
    scanned = list(results.scan(tmp_path))
    assert [p.name for p, _ in scanned] == ["r1.json", "r2.json", "r3.json", "r4.json"]
    assert [isinstance(r, ResultError) for _, r in scanned] == [False, False, True, True]
    assert results.done_ids(tmp_path) == {"r1", "r2"}
    assert results.done_ids_of(tmp_path, ["r3", "r2", "r4", "r9", "r1"]) == {"r1", "r2"}
    assert results.done_ids(tmp_path / "none") == set()


def test_run_lock_removes_the_leftovers_of_this_run_only(tmp_path: Path) -> None:
    (tmp_path / ".checkpoints").mkdir()
    (tmp_path / "weights").mkdir()
    leftovers = [tmp_path / ".checkpoints" / ".r1.pt.a.tmp", tmp_path / "weights" / ".r1.safetensors.b.tmp",
                 tmp_path / ".r1.json.c.tmp"]
    kept = [tmp_path / ".checkpoints" / ".r2.pt.a.tmp", tmp_path / ".r2.json.c.tmp", tmp_path / "r1.json"]
    for p in leftovers + kept:
        p.write_text("")
    with results.run_lock(tmp_path, "r1", wait=False) as lock:
        assert lock.held() and lock.path == tmp_path / ".locks" / "r1.lock"
        assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)
        with pytest.raises(results.locks.Busy):
            with results.run_lock(tmp_path, "r1", wait=False):
                pass
    assert not (tmp_path / ".locks" / "r1.lock").exists()


def test_the_valid_fixture_is_valid(tmp_path: Path) -> None:
    doc = _valid()
    assert results.read(_write_raw(tmp_path, copy.deepcopy(doc))) == doc
    assert math.isfinite(doc["metrics"]["test_ce"])


def test_run_lock_waits_for_a_live_holder(tmp_path: Path) -> None:
    import threading

    first = results.run_lock(tmp_path, "r1", wait=False)
    first.__enter__()
    told: list[dict] = []
    got: list[bool] = []

    def waiter() -> None:
        with results.run_lock(tmp_path, "r1", on_wait=told.append) as lock:  # waits by default
            got.append(lock.held())

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.5)
    assert not got and len(told) == 1 and told[0]["pid"] == os.getpid()
    first.__exit__(None, None, None)
    t.join(20)
    assert got == [True]
