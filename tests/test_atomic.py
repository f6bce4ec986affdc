from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mriaug import atomic


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
