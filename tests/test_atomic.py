from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mriaug.store import atomic


def test_written_files_follow_the_umask_not_owner_only(tmp_path: Path) -> None:
    atomic.write_json(tmp_path / "r.json", {"a": 1})
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o666 & ~mask


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    atomic.write_text(tmp_path / "t.txt", "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(tmp_path / "t.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert (tmp_path / "t.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_ids_are_a_hash_of_the_content_whatever_the_key_order() -> None:
    from mriaug.store import ids

    # Known answers: the SHA-256 of '{"a":"x","b":[1,2]}'; changing how ids are made would retrain every run.
    assert ids.content_hash({"b": [1, 2], "a": "x"}) == "721ef82f2d6c0997"
    assert ids.content_hash({"a": "x", "b": [1, 2]}, 24) == "721ef82f2d6c0997bffb7a8a"
    assert ids.run_id({"a": "x", "b": [1, 2]}) == "721ef82f2d6c0997"
    assert ids.content_hash({"path": Path("p")}) == ids.content_hash({"path": "p"})  # what is not JSON, as text
    assert atomic.stable_hash is ids.content_hash  # the old name, for the modules that still use it
