"""The run and pool lock (`mriaug.store.locks`) by hand: who counts as a live holder, the timeout setting, what a
lock file holds, and that a live holder's lock is never taken (issue 18); then in use: a second holder waits,
stale locks are taken over, a run held by a live worker is skipped, a worker beside another live one takes half
the cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from mriaug import local
from mriaug.engine import runtime, train
from mriaug.errors import SettingError
from mriaug.plan import grid
from mriaug.store import locks, results
from tests.slurm_helpers import write_grid

HOST = socket.gethostname()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MRIAUG_LOCK_TIMEOUT", raising=False)
    assert locks.timeout_s() == 300.0 == locks.DEFAULT_TIMEOUT_S
    monkeypatch.setenv("MRIAUG_LOCK_TIMEOUT", "12.5")
    assert locks.timeout_s() == 12.5
    monkeypatch.setenv("MRIAUG_LOCK_TIMEOUT", "0.5")
    assert locks.timeout_s() == 0.5
    monkeypatch.setenv("MRIAUG_LOCK_TIMEOUT", "12.5")
    assert locks.FileLock("x.lock").timeout == 12.5 and locks.FileLock("x.lock", timeout=3).timeout == 3
    for bad in ("0", "-1", "nan", "inf", "soon", ""):
        monkeypatch.setenv("MRIAUG_LOCK_TIMEOUT", bad)
        with pytest.raises(SettingError, match=f"MRIAUG_LOCK_TIMEOUT={bad!r}: must be a positive number"):
            locks.timeout_s()


def test_is_stale_by_hand() -> None:
    dead = _dead_pid()
    here = {"host": HOST, "pid": os.getpid(), "age_s": 0.0}
    assert not locks.is_stale(here, 10)  # this process: alive
    assert not locks.is_stale({**here, "age_s": 10.0}, 10)  # a heartbeat exactly the timeout old: still held
    assert locks.is_stale({**here, "age_s": 10.5}, 10)  # older: stale, whoever held it
    assert locks.is_stale({**here, "pid": dead}, 10)  # a dead process on this host: at once
    # On another host the pid means nothing here: judged by the heartbeat alone.
    assert not locks.is_stale({"host": "node-elsewhere", "pid": dead, "age_s": 9.0}, 10)
    assert locks.is_stale({"host": "node-elsewhere", "pid": os.getpid(), "age_s": 11.0}, 10)
    # No pid (a file being written) or no age: fresh until the timeout passes.
    assert not locks.is_stale({"host": HOST, "age_s": 1.0}, 10)
    assert not locks.is_stale({}, 10) and locks.is_stale({"age_s": 10.01}, 10)
    assert not locks.is_stale({}, 0.5)  # no age read: taken as fresh, even under a short timeout


def test_pid_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe is signal 0: a live child with SIGHUP's default action (which would end it) is still there after.
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGHUP, "
                              "signal.SIG_DFL); print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        assert locks._pid_alive(child.pid) and locks._pid_alive(os.getpid())
        time.sleep(0.2)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    assert not locks._pid_alive(_dead_pid())
    for bad in (0, -1, "123", None, 1.0):
        assert not locks._pid_alive(bad)

    def not_yours(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(locks.os, "kill", not_yours)  # another user's process: alive
    assert locks._pid_alive(4242)


def test_read_holder_of_odd_files(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    assert locks.read_holder(path) is None
    path.write_text(json.dumps({"host": "h", "pid": 7, "token": "t"}))
    old = time.time() - 50
    os.utime(path, (old, old))
    h = locks.read_holder(path)
    assert h is not None and h["pid"] == 7 and h["token"] == "t" and 49 < h["age_s"] < 60
    for text in ("", "{half", "[1, 2]", "12"):  # being written, or foreign: no holder, only its age
        path.write_text(text)
        h = locks.read_holder(path)
        assert h is not None and set(h) == {"age_s"} and h["age_s"] < 5
    path.write_bytes(b"\xff\xfe\x00")
    assert set(locks.read_holder(path) or {"x": 1}) == {"age_s"}


def test_describe() -> None:
    since = time.mktime((2026, 12, 2, 9, 30, 5, 0, 0, -1))
    assert locks.describe({"pid": 42, "host": "n1", "since": since}) == "pid 42 on n1 (since 09:30:05)"
    assert locks.describe({}) == "pid ? on ? (since ?)"
    assert locks.describe({"pid": 1, "host": "n", "since": "soon"}) == "pid 1 on n (since ?)"


def test_a_live_holders_lock_is_never_taken(tmp_path: Path) -> None:
    # A holder in another live process on this host, with a fresh heartbeat: every try gives it back, the file
    # is untouched, nothing is left aside.
    path = tmp_path / "x.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        content = json.dumps({"host": HOST, "pid": sleeper.pid, "token": "theirs", "since": time.time()})
        path.write_text(content)
        lock = locks.FileLock(path, timeout=30)
        for _ in range(3):
            holder = lock.try_acquire()
            assert holder is not None and holder["token"] == "theirs" and holder["pid"] == sleeper.pid
        with pytest.raises(locks.Busy) as err:
            lock.acquire(wait=False)
        assert err.value.holder["token"] == "theirs" and err.value.path == path
        assert f"pid {sleeper.pid} on {HOST}" in str(err.value)
        assert path.read_text() == content and not lock.held()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]
    finally:
        sleeper.kill()
        sleeper.wait()
    # The same file once its process is gone: taken at once, and the lock file is now ours.
    lock = locks.FileLock(path, timeout=30)
    assert lock.try_acquire() is None and lock.held()
    mine = json.loads(path.read_text())
    assert mine["token"] == lock.token and mine["pid"] == os.getpid() and mine["host"] == HOST
    assert abs(mine["since"] - time.time()) < 30
    lock.release()
    assert not path.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_waiter_is_told_once_and_takes_the_lock_when_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first = locks.FileLock(path, timeout=30).acquire()
    told: list[dict] = []
    got: list[locks.FileLock] = []
    waiter = threading.Thread(target=lambda: got.append(locks.FileLock(path, timeout=30).acquire(
        poll_s=0.05, on_wait=told.append)))
    waiter.start()
    time.sleep(0.5)  # ten polls or so: still waiting, told once
    assert not got and len(told) == 1 and told[0]["token"] == first.token
    first.release()
    waiter.join(10)
    assert got and got[0].held() and len(told) == 1
    got[0].release()


def test_the_heartbeat_refreshes_and_a_taken_lock_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock = locks.FileLock(path, timeout=0.6).acquire()  # beats every 0.1 s
    old = time.time() - 100
    os.utime(path, (old, old))
    time.sleep(0.5)
    assert locks.read_holder(path)["age_s"] < 0.4 and not lock.lost  # type: ignore[index]
    path.unlink()
    path.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "token": "other"}))
    time.sleep(0.5)
    assert lock.lost and not lock.held()
    lock.release()
    assert json.loads(path.read_text())["token"] == "other"  # not removed: it is not this lock's


def test_take_over_gives_back_a_lock_someone_else_made_in_between(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    # We judged the holder with token "old" stale, but the file now holds "fresh" (another process took it over
    # and made its own): the rename moves theirs aside; it is linked back and ours is not made.
    path.write_text(json.dumps({"host": "n", "pid": 1, "token": "fresh"}))
    lock = locks.FileLock(path, timeout=30)
    lock._take_over({"token": "old"})
    assert json.loads(path.read_text())["token"] == "fresh"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]
    # The holder judged stale is the one in the file: moved aside and gone.
    lock._take_over({"token": "fresh"})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    lock._take_over({"token": "fresh"})  # nothing there any more: nothing happens


def test_cleanup_runs_with_the_lock_and_a_failing_one_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    seen: list[bool] = []
    lock = locks.FileLock(path, timeout=30, cleanup=lambda: seen.append(path.exists()))
    with lock:
        assert seen == [True] and lock.held()
    assert not path.exists()

    def boom() -> None:
        raise OSError("cannot clean")

    with pytest.raises(OSError, match="cannot clean"):
        locks.FileLock(path, timeout=30, cleanup=boom).acquire()
    assert not path.exists()  # released again


def test_remove_leftovers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".r1.json.x.tmp").write_text("")
    (tmp_path / "a" / ".r1.json.y.tmp").write_text("")
    (tmp_path / "a" / "r1.json").write_text("{}")
    (tmp_path / "a" / ".r1.json.d.tmp").mkdir()  # a folder is never removed
    removed = locks.remove_leftovers([(tmp_path / "missing", "*"), (tmp_path / "a", ".r1.json.*.tmp")])
    assert sorted(p.name for p in removed) == [".r1.json.x.tmp", ".r1.json.y.tmp"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".r1.json.d.tmp", "r1.json"]


def test_held_context(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with locks.held(path, wait=False) as lock:
        assert lock.held() and path.exists()
        with pytest.raises(locks.Busy):
            with locks.held(path, wait=False):
                pass
        assert lock.held()
    assert not path.exists()


def test_a_new_lock_its_file_and_its_heartbeat_thread(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.lock"  # folders made as needed
    lock = locks.FileLock(path, timeout=30)
    assert lock.lost is False and not lock.held()
    other = locks.FileLock(path, timeout=30)
    assert other.token != lock.token and len(lock.token) == 32
    old = os.umask(0o022)
    try:
        lock.acquire()
    finally:
        os.umask(old)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o644
        assert lock.lost is False and lock.held() and not other.held()
        assert lock._beat is not None and lock._beat.daemon and lock._beat.name == "lock:x.lock"
    finally:
        lock.release()
    # Releasing again, or a lock never taken, does nothing (and removes no one else's file).
    lock.release()
    lock.acquire()
    other.release()
    assert lock.held()
    lock.release()


def test_a_heartbeat_that_cannot_touch_the_file_marks_the_lock_lost(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lock = locks.FileLock(tmp_path / "x.lock", timeout=0.3).acquire()  # beats every 0.05 s

    def refused(*a: object, **k: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(locks.os, "utime", refused)
    for _ in range(100):
        if lock.lost:
            break
        time.sleep(0.02)
    assert lock.lost is True and lock.held()  # still its file, but no longer kept fresh
    lock.release()


def test_try_acquire_gives_up_after_20_takeovers_that_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "token": "stuck"}))
    old = time.time() - 100
    os.utime(path, (old, old))
    tries: list[str] = []
    monkeypatch.setattr(locks.FileLock, "_take_over", lambda self, holder: tries.append(holder["token"]))
    holder = locks.FileLock(path, timeout=30).try_acquire()
    assert tries == ["stuck"] * 20
    assert holder is not None and holder["token"] == "stuck"  # judged by the caller: not taken


def test_a_lock_released_between_two_looks_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first create fails (the holder's file is there), then the file is gone before it is read: try again.
    path = tmp_path / "x.lock"
    real = locks.FileLock._create
    calls: list[int] = []

    def first_fails(self: locks.FileLock) -> bool:
        calls.append(1)
        return False if len(calls) == 1 else real(self)

    monkeypatch.setattr(locks.FileLock, "_create", first_fails)
    lock = locks.FileLock(path, timeout=30)
    assert lock.try_acquire() is None and lock.held() and len(calls) == 2
    lock.release()


# In use, across processes and threads. (Until issue 23 in test_concurrency.py.)

def test_lock_excludes_a_second_holder_and_gives_way_when_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first = locks.FileLock(path, timeout=5).acquire()
    holder = json.loads(path.read_text())
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    with pytest.raises(locks.Busy, match="held by pid"):
        locks.FileLock(path, timeout=5).acquire(wait=False)
    first.release()
    assert not path.exists()
    with locks.held(path, wait=False) as second:
        assert second.held()


def test_stale_locks_are_taken_over_and_the_old_holder_notices(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    # A holder on this host whose process is gone: taken over at once.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "token": "a"}))
    lock = locks.FileLock(path, timeout=60)
    assert lock.try_acquire() is None and lock.held()
    lock.release()
    # A holder on another node: alive while its heartbeat is fresh, stale once it is older than the timeout.
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "token": "b"}))
    assert locks.FileLock(path, timeout=60).try_acquire()["host"] == "node-elsewhere"
    old = time.time() - 120
    os.utime(path, (old, old))
    taker = locks.FileLock(path, timeout=60)
    assert taker.try_acquire() is None and taker.held()
    taker.release()
    # A live holder's heartbeat keeps its lock fresh past the timeout; one whose lock was taken notices.
    a = locks.FileLock(path, timeout=0.6).acquire()
    time.sleep(1.0)
    assert locks.FileLock(path, timeout=0.6).try_acquire() is not None  # still held: heartbeat
    os.utime(path, (old, old))
    a._stop.set()  # its heartbeat stops, as if the process hung: the lock goes stale
    a._beat.join()
    b = locks.FileLock(path, timeout=0.6)
    assert b.try_acquire() is None
    assert not a.held() and b.held()
    a.release()  # gives back nothing that is not its own
    assert b.held()
    b.release()


def test_a_run_held_by_a_live_worker_is_skipped_and_leftovers_go(tmp_path: Path) -> None:
    g = grid.load(write_grid(tmp_path / "g.toml", tmp_path / "res", n_train=240))
    spec = g.runs[0]
    with results.run_lock(g.results, spec.run_id):
        with pytest.raises(locks.Busy):
            train.run_unit([spec], g.results, wait=False, log=lambda m: None)
    # A checkpoint write killed half-way left its temporary file; the next holder of the lock removes it.
    tmp = results.checkpoint_for(g.results, spec.run_id).with_name(f".{spec.run_id}.pt.abc123.tmp")
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"\0" * 1000)
    other = tmp.with_name(".someotherrun.pt.abc123.tmp")
    other.write_bytes(b"\0")
    train.run_unit([spec], g.results, log=lambda m: None)
    assert not tmp.exists() and other.exists()
    assert results.path_for(g.results, spec.run_id).is_file()


def test_live_holders_count_the_live_workers_of_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / ".workers"
    with locks.held(folder / "a.lock", wait=False), locks.held(folder / "b.lock", wait=False):
        live = locks.live_holders(folder, socket.gethostname())
        assert len(live) == 2 and {h["pid"] for h in live} == {os.getpid()}
        assert locks.live_holders(folder, "another-host") == []
        # a dead process's lock (a pid that cannot exist) is not a live worker
        (folder / "c.lock").write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname(), "token": "x"}))
        assert len(locks.live_holders(folder)) == 2
    assert locks.live_holders(folder) == []


def test_a_worker_beside_another_live_worker_trains_on_its_share_of_the_cores(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Two workers of one results folder on one machine split its cores (each taking them all would make both
    # slower than one alone); what a run trained with is in its result (env.threads).
    g = grid.load(write_grid(tmp_path / "g.toml", tmp_path / "res", seeds=2, n_train=160))
    a, b = g.runs[:2]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # else the user's thread count wins over the share
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)  # a 4-core machine, whatever this one has
    before = torch.get_num_threads()
    try:
        with locks.held(Path(g.results) / ".workers" / "another-worker.lock", wait=False):
            local.Worker(Path(g.results), log=lambda m: None).run([[a]])
        local.Worker(Path(g.results), log=lambda m: None).run([[b]])  # alone again: every core
    finally:
        torch.set_num_threads(before)
    assert results.read(results.path_for(g.results, a.run_id)).env["threads"] == 2
    assert results.read(results.path_for(g.results, b.run_id)).env["threads"] == 4
