"""Locks that hold on cluster filesystems (NFS, Lustre), where `flock` may be a no-op or node-local.

A lock is a file created with O_CREAT | O_EXCL (atomic on NFSv3+ and Lustre) holding the holder's host,
pid and a random token. While held, a daemon thread refreshes the file's modification time (the heartbeat)
every `timeout / 6` seconds. A lock is stale, and the next process takes it over, when
- its holder ran on this host and that pid no longer exists (a killed process: taken over at once), or
- its heartbeat is older than `timeout` seconds (a holder on another node that died or lost its node).
The timeout is `MRIAUG_LOCK_TIMEOUT` seconds (default 300); nodes' clocks must agree to well within it.
A takeover renames the stale file aside (only one process's rename succeeds) and creates the lock anew;
a holder whose lock was taken over notices at its next heartbeat (`lost`).

Whoever takes a lock removes the temporary files (`.NAME.*.tmp`, see `mriaug.store.atomic`) that writers of the
locked thing left when they died: no live writer can be writing them while the lock is held.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MriaugError

DEFAULT_TIMEOUT_S = 300.0


def timeout_s() -> float:
    """Seconds without a heartbeat after which a lock is stale (`MRIAUG_LOCK_TIMEOUT`, default 300)."""
    raw = os.environ.get("MRIAUG_LOCK_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        from ..errors import SettingError

        raise SettingError(f"MRIAUG_LOCK_TIMEOUT={raw!r}: must be a positive number of seconds")
    return value


class Busy(MriaugError):
    """The lock is held by a live process (raised only when not waiting)."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        super().__init__(f"{path} is held by {describe(holder)}")
        self.path, self.holder = path, holder


def describe(holder: dict[str, Any]) -> str:
    since = holder.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {when})"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file plus its heartbeat age; None when there is no lock file."""
    try:
        st = os.stat(path)
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        text, st = "", os.stat(path)
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    if not isinstance(holder, dict):  # being written right now, or foreign: judged by its heartbeat alone
        holder = {}
    holder["age_s"] = time.time() - st.st_mtime
    return holder


def is_stale(holder: dict[str, Any], timeout: float) -> bool:
    if holder.get("host") == socket.gethostname() and "pid" in holder and not _pid_alive(holder["pid"]):
        return True
    return float(holder.get("age_s", 0.0)) > timeout


def live_holders(folder: Path, host: str | None = None) -> list[dict[str, Any]]:
    """The holders of the live locks in `folder` (of one host, if given): e.g. the workers on a results folder."""
    timeout = timeout_s()
    out = []
    for path in sorted(Path(folder).glob("*.lock")):
        holder = read_holder(path)
        if holder is not None and not is_stale(holder, timeout) and host in (None, holder.get("host")):
            out.append(holder)
    return out


class FileLock:
    """An O_EXCL lock file with a heartbeat; `cleanup` is called (with the lock held) after every acquisition."""

    def __init__(self, path: str | Path, *, cleanup: Callable[[], None] | None = None,
                 timeout: float | None = None):
        self.path = Path(path)
        self.cleanup = cleanup
        self.timeout = timeout_s() if timeout is None else timeout
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # --- taking and giving back -----------------------------------------------------------------

    def _create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                       "since": time.time()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _take_over(self, holder: dict[str, Any]) -> None:
        """Move a stale lock aside; a rename succeeds for one process only, the others find no file."""
        aside = self.path.with_name(f"{self.path.name}.stale.{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside) or {}
        if moved.get("token") != holder.get("token"):
            # Someone took it over and created a fresh lock in between: give theirs back.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def try_acquire(self) -> dict[str, Any] | None:
        """Take the lock if it is free or stale; else return its live holder."""
        for _ in range(20):
            if self._create():
                self._started()
                return None
            holder = read_holder(self.path)
            if holder is None:
                continue  # released just now
            if not is_stale(holder, self.timeout):
                return holder
            self._take_over(holder)
        holder = read_holder(self.path)
        return holder or {}

    def acquire(self, *, wait: bool = True, poll_s: float = 0.5,
                on_wait: Callable[[dict[str, Any]], None] | None = None) -> FileLock:
        """Take the lock; wait for a live holder (calling `on_wait` once) or raise `Busy` when not waiting."""
        told = False
        while True:
            holder = self.try_acquire()
            if holder is None:
                return self
            if not wait:
                raise Busy(self.path, holder)
            if on_wait and not told:
                on_wait(holder)
                told = True
            time.sleep(poll_s * (0.5 + (uuid.uuid4().int % 1000) / 1000))  # jitter: waiters do not move in step

    def _started(self) -> None:
        self.lost = False
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock:{self.path.name}", daemon=True)
        self._beat.start()
        if self.cleanup is not None:
            try:
                self.cleanup()
            except BaseException:
                self.release()
                raise

    def _heartbeat(self) -> None:
        interval = max(self.timeout / 6, 0.05)
        while not self._stop.wait(interval):
            if not self.held():
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError:
                self.lost = True
                return

    def held(self) -> bool:
        holder = read_holder(self.path)
        return bool(holder and holder.get("token") == self.token)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_leftovers(patterns: Iterable[tuple[Path, str]]) -> list[Path]:
    """Remove files matching (folder, glob) pairs: temporary files of writers that died (lock held)."""
    removed = []
    for folder, pattern in patterns:
        if not folder.is_dir():
            continue
        for p in folder.glob(pattern):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


@contextmanager
def held(path: str | Path, *, wait: bool = True, cleanup: Callable[[], None] | None = None,
         on_wait: Callable[[dict[str, Any]], None] | None = None) -> Iterator[FileLock]:
    lock = FileLock(path, cleanup=cleanup).acquire(wait=wait, on_wait=on_wait)
    try:
        yield lock
    finally:
        lock.release()
