"""Result files (`mriaug.store.results`) by hand: what a valid result holds, every way one is refused, non-finite
numbers, diverged runs, and the folder readers (issue 18); `RunResult`'s fields, its round trip and the
upgrade of older layouts (issue 19)."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mriaug import slurm
from mriaug.cli import app
from mriaug.errors import ResultError
from mriaug.plan import grid
from mriaug.store import results
from tests.slurm_helpers import write_grid


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


def _result(doc: dict[str, Any], folder: Path) -> results.RunResult:
    return results.RunResult.from_dict(doc, results.path_for(folder, doc["run_id"]))


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
    r = _result(_valid(), tmp_path)
    r.metrics.per_class = {"Mild_Demented": {"f1": float("nan")}}  # JSON has no NaN: written as null
    path = results.write(tmp_path, r)
    assert path == tmp_path / "abc123.json"
    text = path.read_text()
    assert text.endswith("}\n") and "NaN" not in text
    # Keys sorted, two spaces an indent: "counts" (written fifth) comes first.
    assert text.splitlines()[:3] == ["{", '  "counts": {', '    "real": {']
    back = results.read(path)
    assert back.metrics.per_class == {"Mild_Demented": {"f1": None}} and back.metrics.test_ce == 0.5
    assert json.loads(text) == back.to_dict() and back.schema == json.loads(text)["schema"] == results.SCHEMA == 2
    # Written again from what was read: the same file, byte for byte.
    assert results.write(tmp_path / "again", back).read_text() == text


def _full(run_id: str = "abc123") -> dict[str, Any]:
    """A result as train.run_unit writes it today (schema 2), every part present."""
    return {
        "schema": 2, "run_id": run_id,
        "spec": {"model": "cnn", "augmentation": "hflip", "seed": 3, "scenario": {"name": "3", "real": 1.0},
                 "hparams": {"epochs": 2, "lr": 0.002}, "data": {"source": "phantom", "options": {"n": 8}},
                 "pool": {"fingerprint": "pf"}},
        "metrics": {"test_ce": 0.5, "accuracy": 0.75, "balanced_accuracy": 0.625, "macro_f1": 0.25, "ece": 0.125,
                    "per_class": {"Mild_Demented": {"recall": 0.5, "precision": 1.0, "f1": 0.75, "support": 2}},
                    "confusion": [[1, 1], [0, 2]], "confusion_labels": ["Mild_Demented", "Non_Demented"]},
        "history": [{"epoch": 1, "steps": 4, "train_loss": 1.5, "val_ce": 1.25, "seconds": 0.5},
                    {"epoch": 2, "steps": 8, "train_loss": 1.0, "val_ce": 1.375, "seconds": 0.5}],
        "training": {"budget": "steps", "epochs": 2, "steps": 8, "select": "best_val", "selected_epoch": 1,
                     "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "precision": "fp32"},
        "validation": {"epoch": 1, "steps": 4, "train_loss": 1.5, "val_ce": 1.25, "seconds": 0.5},
        "counts": {"real": {"Mild_Demented": 3}, "synthetic": {"Mild_Demented": 2}, "test": {"Mild_Demented": 2},
                   "val": {"Mild_Demented": 1}},
        "selection": {"real_train_rows": [0, 4, 5], "pool_rows": [7, 1], "pool_sampling": "sources_first"},
        "data": {"fingerprint": "f", "source": {"source": "phantom", "options": {"n": 8}}, "resolution": 64,
                 "pool_fingerprint": "pf", "pool_path": "/pools/p", "pool_label": "mine",
                 "split": {"kind": "subject", "seed": 0}},
        "env": {"torch": "2.5", "device": "cpu"},
        "timings": {"data_s": 0.25, "train_s": 1.0, "total_s": 1.5, "train_images_per_s": 10.0,
                    "resumed_from_epoch": 0},
        "packed": {"how": "torch.func vmap", "pack": "p1", "size": 2, "seeds": [3, 4], "run_ids": [run_id, "x"]},
        "weights": "/r/weights/abc123.safetensors",
    }


def test_a_full_result_reads_into_fields_and_back_unchanged(tmp_path: Path) -> None:
    doc = _full()
    r = results.read(_write_raw(tmp_path, doc))
    assert isinstance(r, results.RunResult) and r.to_dict() == doc
    assert (r.run_id, r.model, r.seed, r.augmentation, r.scenario) == ("abc123", "cnn", 3, "hflip", "3")
    assert r.label == "cnn/s3/hflip/seed3" and r.hparams == {"epochs": 2, "lr": 0.002}
    assert r.data_spec == {"source": "phantom", "options": {"n": 8}} and r.train_s == 1.0
    assert r.status == "done" and not r.diverged and r.diverged_at_epoch is None and r.schema == 2
    assert r.metrics == results.Metrics(0.5, 0.75, 0.625, 0.25, doc["metrics"]["per_class"], [[1, 1], [0, 2]],
                                        0.125, ["Mild_Demented", "Non_Demented"])
    assert r.metrics.value("ece") == 0.125 and r.metrics.value("macro_f1") == 0.25
    assert r.metrics.recall("Mild_Demented") == 0.5 and r.metrics.recall("Non_Demented") is None
    assert r.data == results.DataInfo("f", {"source": "phantom", "options": {"n": 8}}, 64, "pf", "/pools/p", "mine",
                                      {"kind": "subject", "seed": 0})
    assert r.data.split_kind == "subject"
    assert r.counts == results.Counts({"Mild_Demented": 3}, {"Mild_Demented": 2}, {"Mild_Demented": 2},
                                      {"Mild_Demented": 1})
    assert r.training == results.Training("steps", 2, 8, "best_val", 1, "adamw", 0.002, 0.05, "fp32")
    assert r.packed == results.Packed("torch.func vmap", "p1", 2, [3, 4], ["abc123", "x"])
    assert r.validation == doc["history"][0] and r.selection == doc["selection"]
    assert r.weights == doc["weights"] and r.env == doc["env"] and r.timings == doc["timings"]
    # Keys a later mriaug adds survive a round trip, at the top and in every part.
    doc2 = _full()
    doc2.update(extra_top=1)
    for part in ("metrics", "data", "counts", "training", "packed"):
        doc2[part]["new_" + part] = [part]
    r2 = results.read(_write_raw(tmp_path, doc2))
    assert r2.to_dict() == doc2 and r2.extra == {"extra_top": 1} and r2.training is not None
    assert r2.training.extra == {"new_training": ["training"]} and r2.metrics.value("new_metrics") == ["metrics"]
    assert r2 != r and r == results.read(_write_raw(tmp_path, _full()))
    # Even a key named like the field that keeps them.
    doc3 = _full()
    doc3["metrics"]["extra"] = 1
    assert results.read(_write_raw(tmp_path, doc3)).to_dict() == doc3
    # A finished run without validation records its validation as null (not absent, as a diverged run's).
    doc4 = {**_full(), "validation": None}
    assert results.read(_write_raw(tmp_path, doc4)).to_dict() == doc4
    # Written from the object: the same JSON object again.
    assert json.loads(results.write(tmp_path / "w", r).read_text()) == doc


def test_a_diverged_result_reads_into_fields_and_back_unchanged(tmp_path: Path) -> None:
    doc = _valid()
    doc.update(schema=2, status="diverged", diverged_at_epoch=2, weights=None,
               metrics=dict.fromkeys(results.REQUIRED_METRICS),
               data={"fingerprint": "f", "source": None, "resolution": 64, "pool_fingerprint": None, "pool_path": None,
                     "pool_label": None, "split": {"kind": "given"}})
    r = results.read(_write_raw(tmp_path, doc))
    assert r.diverged and r.diverged_at_epoch == 2 and r.metrics == results.Metrics()
    assert r.training is None and r.validation is None and r.selection is None and r.packed is None
    assert r.counts.test is None and r.counts.val is None and r.data.pool_label is None
    assert r.to_dict() == doc  # no training, validation, selection or packed keys; metrics without ece
    assert r.metrics.value("test_ce") is None and r.metrics.recall("Mild_Demented") is None
    assert not results.read(_write_raw(tmp_path, _valid())).diverged


def test_schema_0_results_are_upgraded_on_read(tmp_path: Path) -> None:
    old = _valid()  # no schema, status, split, ece, training, weights
    del old["metrics"]["ece"]
    old["data"] = {"fingerprint": "f", "pool_path": "/pools/folder", "pool_name": "named"}
    r = results.read(_write_raw(tmp_path, old))
    assert r.schema == 0 and r.status == "done" and r.metrics.ece is None and r.weights is None
    assert r.data.pool_label == "named" and r.data.pool_path == "/pools/folder" and r.data.extra == {}
    assert r.data.split == {"kind": "given"} and r.data.source is None and r.training is None
    up = r.to_dict()
    assert up["schema"] == 2 and "pool_name" not in up["data"] and up["data"]["pool_label"] == "named"
    assert up["data"]["split"] == {"kind": "given"} and "ece" not in up["metrics"] and "training" not in up
    assert "validation" not in up and "status" not in up and up["weights"] is None
    # Read back from today's layout: the same result (only the version it was read from differs).
    again = results.read(results.write(tmp_path / "up", r))
    assert again.to_dict() == up and again.data == r.data and again.schema == 2
    # Where no label was recorded: the spec's pool table names the pool, else its folder; no pool, no label.
    by_spec = _valid()
    by_spec["spec"]["pool"] = {"name": "fromspec"}
    by_spec["data"] = {"pool_path": "/pools/folder"}
    assert results.read(_write_raw(tmp_path, by_spec)).data.pool_label == "fromspec"
    by_folder = _valid()
    by_folder["data"] = {"pool_path": "/pools/folder", "pool_label": None}
    assert results.read(_write_raw(tmp_path, by_folder)).data.pool_label == "folder"
    # A part made in code names its pool as a read one does: what is written is what the writer holds.
    assert results.DataInfo(pool_path="/pools/folder").pool_label == "folder"
    assert results.DataInfo(pool_path="/pools/folder", pool_label="x").pool_label == "x"
    assert results.DataInfo().pool_label is None
    numbered = _valid()
    numbered["data"] = {"pool_name": 7}
    assert results.read(_write_raw(tmp_path, numbered)).data.pool_label == "7"
    assert results.read(_write_raw(tmp_path, _valid())).data.pool_label is None
    # Parts of older or odd shapes: a split, source, per_class or count that is not an object counts as absent.
    odd = _valid()
    odd["data"].update(split="given", source="phantom")
    odd["metrics"]["per_class"] = []
    odd["counts"]["test"] = 5
    o = results.read(_write_raw(tmp_path, odd))
    assert o.data.split == {"kind": "given"} and o.data.source is None and o.metrics.per_class is None
    assert o.counts.test is None and "test" not in o.to_dict()["counts"]
    assert o.training is None and results.read(_write_raw(tmp_path, {**_valid(), "training": [1]})).training is None


def test_write_refuses_what_read_would_refuse(tmp_path: Path) -> None:
    r = results.read(_write_raw(tmp_path, _full()))
    r.metrics.test_ce = float("nan")  # written as null: a done run without its number
    with pytest.raises(ResultError, match=r"abc123\.json: 'metrics\.test_ce' is not a number \(None\)$"):
        results.write(tmp_path / "w", r)
    bad = _valid()
    bad["counts"]["real"]["Mild_Demented"] = -1
    with pytest.raises(ResultError, match=r"'counts\.real\.Mild_Demented' is not a count \(-1\)"):
        results.write(tmp_path / "w", _result(bad, tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_result_equals_only_a_result_with_the_same_fields(tmp_path: Path) -> None:
    # Results are read by field: equal to a result read from the same object, never to its JSON dict.
    doc = _full()
    r = results.read(_write_raw(tmp_path, doc))
    assert r == _result(doc, tmp_path) and r != doc and r != 5
    assert r != _result({**doc, "run_id": "x"}, tmp_path / "x")
    other = _result(doc, tmp_path)
    other.metrics.test_ce = 0.25
    assert r != other and r.metrics.test_ce == 0.5 and r.packed is not None and r.status == "done"
    with pytest.raises(ResultError, match=r"^x/abc123\.json: missing key 'metrics\.accuracy'$"):
        _result({**doc, "metrics": {"test_ce": 1.0}}, Path("x"))


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
    pattern = (f"^{path}: " + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
               .replace(".", r"\.") + "$")
    with pytest.raises(ResultError, match=pattern):
        results.read(path)
    with pytest.raises(ResultError, match=pattern):  # the object checked as the file is
        results.RunResult.from_dict(json.loads(path.read_text()), path)


def test_what_a_valid_result_may_leave_out_or_hold(tmp_path: Path) -> None:
    doc = _valid()
    del doc["metrics"]["ece"]  # results from before ECE
    doc["spec"]["hparams"].pop("epochs")
    doc["timings"].pop("train_s")
    doc["data"]["pool_fingerprint"] = None
    doc["spec"]["scenario"]["name"] = 3  # a number is a name too
    doc["counts"]["real"]["Mild_Demented"] = 0
    doc["spec"]["hparams"]["epochs"] = 2.0
    assert results.read(_write_raw(tmp_path, doc)).scenario == "3"
    assert results.read(_write_raw(tmp_path, doc)).spec["scenario"]["name"] == 3
    doc["status"] = "done"
    assert results.read(_write_raw(tmp_path, doc)).status == "done"
    # A diverged run: numbers may be null, its epoch is a number from 1.
    div = _valid()
    div.update(status="diverged", diverged_at_epoch=1)
    for key in ("test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece"):
        div["metrics"][key] = None
    back = results.read(_write_raw(tmp_path, div))
    assert back.diverged and back.diverged_at_epoch == 1 and back.metrics.ece is None
    assert not results.read(_write_raw(tmp_path, _valid())).diverged


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
    results.write(tmp_path, _result(_valid("r1"), tmp_path))
    results.write(tmp_path, _result(_valid("r2"), tmp_path))
    (tmp_path / "r3.json").write_text("{")
    bad_id = _valid("r4")
    bad_id["run_id"] = "r5"
    (tmp_path / "r4.json").write_text(json.dumps(bad_id))
    (tmp_path / "notes.txt").write_text("x")
    scanned = list(results.scan(tmp_path))
    assert [p.name for p, _ in scanned] == ["r1.json", "r2.json", "r3.json", "r4.json"]
    assert [isinstance(r, ResultError) for _, r in scanned] == [False, False, True, True]
    assert [r.run_id for _, r in scanned[:2] if isinstance(r, results.RunResult)] == ["r1", "r2"]
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
    r = results.read(_write_raw(tmp_path, copy.deepcopy(doc)))
    # Upgraded: the data part gains the keys the fixture leaves out, null (the split: the given one).
    assert r.to_dict() == {**doc, "schema": 2, "weights": None,
                           "data": {"fingerprint": "f", "source": None, "resolution": None, "pool_fingerprint": None,
                                    "pool_path": None, "pool_label": None, "split": {"kind": "given"}}}
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


# The readers meet bad files (was test_robustness.py, then test_results_bad_files.py).
runner = CliRunner()


def _spoil(folder: Path) -> tuple[Path, Path, Path]:
    good = sorted(folder.glob("*.json"))[0]
    binary = folder / "0000binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    doc = json.loads(good.read_text())
    doc["counts"]["real"] = {k: str(v) for k, v in doc["counts"]["real"].items()}
    doc["run_id"] = "0000strings"
    strings = folder / "0000strings.json"
    strings.write_text(json.dumps(doc))
    foreign = folder / "package.json"
    foreign.write_text(json.dumps({"name": "x", "version": "1.0"}))
    return binary, strings, foreign


def test_collect_grid_status_and_collector_skip_and_name_bad_files(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    bad = _spoil(res)
    r = runner.invoke(app, ["collect", str(res)])
    assert r.exit_code == 0, r.output
    for f in bad:
        assert f"skipped: {f}" in r.output
    assert "(n=1)" in r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    assert all(str(f) in r.output for f in bad)
    st = slurm.grid_status(grid.load(g))
    assert st.counts()["done"] == 1
    text = slurm.render_status(st)
    assert all(f.name in text for f in bad), text
    assert slurm.collect_task(str(res)) == 1


def test_result_reader_names_wrong_types(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    _, strings, _ = _spoil(res)
    with pytest.raises(results.ResultError, match=r"counts\.real\.Mild_Demented' is not a count"):
        results.read(strings)
    with pytest.raises(results.ResultError, match="binary"):
        results.read(res / "0000binary.json")
