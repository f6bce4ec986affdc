"""`mriaug.engine.checkpoints.Store` by hand: a unit's one checkpoint file saved when due (or when told to stop), loaded
only when made from the same identity, set aside otherwise; the CPU thread count it started with restored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mriaug.engine import checkpoints

CPU = torch.device("cpu")


def _store(tmp_path: Path, policy: str = "epoch", **identity: object) -> checkpoints.Store:
    return checkpoints.Store(tmp_path / ".checkpoints" / "u1.pt", {"layout": 3, "run_ids": ["a", "b"], **identity},
                             "pack", checkpoints.Schedule(policy))


def test_a_saved_checkpoint_loads_back_with_its_identity(tmp_path: Path) -> None:
    store, lines = _store(tmp_path), []
    assert store.load(CPU, lines.append) is None and lines == []  # nothing saved yet
    store.after_epoch(1, 3, None, lambda: {"epoch": 1, "w": torch.ones(2), "threads": torch.get_num_threads()})
    ckpt = store.load(CPU, lines.append)
    assert ckpt is not None and ckpt["epoch"] == 1 and torch.equal(ckpt["w"], torch.ones(2))
    assert ckpt["layout"] == 3 and ckpt["run_ids"] == ["a", "b"] and lines == []
    store.remove()
    assert not store.path.exists()
    store.remove()  # removing what is not there is fine


def test_nothing_is_saved_after_the_last_epoch_and_stop_after_saves_then_raises(tmp_path: Path) -> None:
    store, asked = _store(tmp_path, policy="auto"), []

    def state() -> dict[str, object]:
        asked.append(1)
        return {"epoch": len(asked)}

    store.after_epoch(3, 3, None, state)  # the unit is finished: no checkpoint
    assert not store.path.exists() and asked == []
    store.after_epoch(1, 3, None, state)  # the first save is always due
    assert store.path.exists() and asked == [1]
    store.schedule.cost = 1e9  # the next save is not due for a long while ...
    store.after_epoch(2, 3, None, state)
    assert asked == [1]
    with pytest.raises(checkpoints.Interrupted, match="^stopped after epoch 2 as asked$"):
        store.after_epoch(2, 3, 2, state)  # ... unless the unit is told to stop here
    assert asked == [1, 1] and torch.load(store.path, weights_only=True)["epoch"] == 2
    assert not list(store.path.parent.glob("*.tmp"))  # written atomically


def test_a_checkpoint_of_another_identity_or_unreadable_is_set_aside(tmp_path: Path) -> None:
    old = _store(tmp_path, layout=2)
    old.after_epoch(1, 3, None, lambda: {"epoch": 1})
    store, lines = _store(tmp_path), []
    assert store.load(CPU, lines.append) is None
    aside = store.path.with_name("u1.pt.bad")
    assert lines == [f"{store.path}: checkpoint made with another layout (2 != 3); moved to u1.pt.bad, starting "
                     "this pack afresh"]
    assert aside.exists() and not store.path.exists()
    store.path.write_bytes(b"cut short")
    lines.clear()
    assert store.load(CPU, lines.append) is None and not store.path.exists()
    assert lines[0].startswith(f"{store.path}: unreadable checkpoint (") and lines[0].endswith(
        "moved to u1.pt.bad, starting this pack afresh")


def test_the_thread_count_the_unit_started_with_is_restored(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    store, lines = _store(tmp_path), []
    try:
        store.after_epoch(1, 3, None, lambda: {"epoch": 1, "threads": 1})
        torch.set_num_threads(2)
        assert store.load(CPU, lines.append) is not None
        assert torch.get_num_threads() == 1 and lines == ["resuming with 1 threads as the pack started (not 2)"]
        lines.clear()
        assert store.load(CPU, lines.append) is not None and lines == []  # already so: nothing said
    finally:
        torch.set_num_threads(threads)


def test_set_aside_keeps_the_file_beside_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "r1.json"
    bad.write_text("{")
    lines: list[str] = []
    checkpoints.set_aside(bad, "not valid JSON", lines.append)
    assert (tmp_path / "r1.json.bad").read_text() == "{" and not bad.exists()
    assert lines == [f"{bad}: not valid JSON; moved to r1.json.bad, starting this run afresh"]
