"""Nothing lost under concurrency (issue 8): lock files on pools and runs, several `mriaug synth` on one
pool, several `mriaug grid` workers on one results folder, leftovers of killed writers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mriaug import data, grid, locks, pools, results, synth, train
from tests.fake_openai_server import FakeImageAPI
from tests.slurm_helpers import ROOT, write_grid

DATA = ["--data", "phantom", "-o", "n_train=240", "-o", "n_test=80", "-o", "size=32"]
SPEC = data.DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _mriaug(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from mriaug.cli import main; main()", *args], cwd=ROOT,
                            env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        so, se = p.communicate(timeout=timeout)
        out.append((p.returncode, so, se))
    return out


# --- the lock itself -------------------------------------------------------------------------------


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


# --- pools -----------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_three_concurrent_synth_runs_record_every_image(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    data.load(SPEC)  # the cache, warm before the processes race
    classes = ["Mild_Demented", "Moderate_Demented", "Very_Mild_Demented"]
    procs = [_mriaug("synth", *DATA, "--out", str(pool), "--generator", "transform", "--classes", c,
                     "--no-report", "-s", "flush_every=5") for c in classes]
    for code, so, se in _finish(procs):
        assert code == 0, so + se
    ds = data.load(SPEC)
    on_disk = sorted(str(p.relative_to(pool)) for p in pool.glob("images/*/*.png"))
    manifest = pools.read_manifest(pool)
    assert sorted(e["file"] for e in manifest) == on_disk
    expected = sum(int((ds.train_y == k).sum()) for k in (0, 1, 3))
    assert len(on_disk) == expected
    meta = pools.read_meta(pool)
    assert sorted(r["images"] for r in meta["runs"]) == sorted(int((ds.train_y == k).sum()) for k in (0, 1, 3))
    assert len(pools.load(pool, ds).entries) == expected
    assert not list(pool.rglob("*.tmp")) and not (pool / pools.LOCK).exists()


@pytest.mark.timeout(300)
def test_concurrent_openai_runs_add_up_their_spend(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    data.load(SPEC)
    key = "sk-test-concurrent-0123456789"
    with FakeImageAPI(key) as api:
        env = _env(OPENAI_API_KEY=key, OPENAI_BASE_URL=api.base_url)
        procs = [_mriaug("synth", *DATA, "--out", str(pool), "--generator", "openai", "--classes", c,
                         "--max-sources", "4", "--no-report", "-s", "endpoint=variation", "-s", "concurrency=2",
                         "-s", "flush_every=1", env=env)
                 for c in ("Mild_Demented", "Non_Demented")]
        for code, so, se in _finish(procs):
            assert code == 0, so + se
        billed = sum(1 for q in api.requests if q["status"] == 200)
    meta = pools.read_meta(pool)
    assert billed == 8
    # dall-e-2 variations report no token usage: both figures are the per-image price, summed over the runs.
    assert meta["spend_usd"] == pytest.approx(billed * 0.016)
    assert meta["spend_estimate_usd"] == pytest.approx(billed * 0.016)
    assert len(pools.read_manifest(pool)) == 8


def test_pool_spend_is_added_not_overwritten(tmp_path: Path) -> None:
    """Two writers that read the pool before either wrote (a lock taken over from a hung process):
    both runs' spend and images end up in the pool."""
    ds = data.load(SPEC)
    a = pools.PoolWriter(tmp_path, ds, "openai")
    b = pools.PoolWriter(tmp_path, ds, "openai")
    img = ds.train_x[0]
    a.add(img, 0, 0, "openai", {})
    a.set_run_spend(1.5)
    a.flush()
    b.add(img, 1, 0, "openai", {})
    b.set_run_spend(0.25)
    b.flush()
    b.set_run_spend(0.5)
    b.flush()
    assert pools.read_meta(tmp_path)["spend_usd"] == pytest.approx(2.0)
    assert {e["source_index"] for e in pools.read_manifest(tmp_path)} == {0, 1}


def test_next_pool_writer_removes_leftover_temp_files(tmp_path: Path) -> None:
    ds = data.load(SPEC)
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    left = [pool / "images" / "Mild_Demented" / ".000001_0.png.k1ll3d.tmp", pool / ".manifest.jsonl.x1.tmp",
            pool / ".pool.json.x2.tmp"]
    for f in left:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half an image")
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    assert not any(f.exists() for f in left)


# --- runs ------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_two_grid_workers_train_each_run_once(tmp_path: Path) -> None:
    res = tmp_path / "results"
    g = write_grid(tmp_path / "g.toml", res, scenarios=["1", "2"], augmentations=["none", "hflip"], seeds=2,
                   epochs=2, n_train=240)
    data.load(grid.load(g).data)
    procs = [_mriaug("grid", str(g), "--verbose") for _ in range(2)]
    outs = _finish(procs)
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


def test_a_run_held_by_a_live_worker_is_skipped_and_leftovers_go(tmp_path: Path) -> None:
    g = grid.load(write_grid(tmp_path / "g.toml", tmp_path / "res", n_train=240))
    spec = g.runs[0]
    with results.run_lock(g.results, spec.run_id):
        with pytest.raises(locks.Busy):
            train.execute(spec, g.results, wait=False, log=lambda m: None)
    # A checkpoint write killed half-way left its temporary file; the next holder of the lock removes it.
    tmp = results.checkpoint_for(g.results, spec.run_id).with_name(f".{spec.run_id}.pt.abc123.tmp")
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"\0" * 1000)
    other = tmp.with_name(".someotherrun.pt.abc123.tmp")
    other.write_bytes(b"\0")
    train.execute(spec, g.results, log=lambda m: None)
    assert not tmp.exists() and other.exists()
    assert results.path_for(g.results, spec.run_id).is_file()
