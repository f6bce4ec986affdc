"""Atomic writes: a reader sees the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from . import ids


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which would race with writer threads.
_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _MODE)  # mkstemp makes files owner-only; results and pools are shared with the lab
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(path: str | os.PathLike[str], mode: str, fill: Callable[[IO[Any]], object]) -> None:
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        fill(fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    _write(path, "wb", lambda fh: fh.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    _write(path, "w", lambda fh: fh.write(text))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Ids are made in `mriaug.store.ids`; this name stays for the modules that have not moved to it yet.
stable_hash = ids.content_hash
