"""`mriaug synth` (the command; `mriaug.generators.synth` has test_synth.py): its options checked before anything runs.
(Until issue 23 in test_robustness.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data
from tests.conftest import finish, mriaug_env, mriaug_process
from tests.fake_openai_server import FakeImageAPI

runner = CliRunner()
D = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]


@pytest.mark.parametrize("args, match", [
    (["--max-cost", "-5"], "--max-cost must be a finite number of at least 0"),
    (["-s", "price_usd=-1"], "-s price_usd must be a finite number of at least 0"),
])
def test_costs_and_prices_are_not_negative(tmp_path: Path, args: list[str], match: str) -> None:
    r = runner.invoke(app, ["synth", *D, "--out", str(tmp_path / "p"), "--generator", "openai", "--dry-run", *args])
    assert r.exit_code == 2 and match in r.output, r.output


# Several `mriaug synth` processes on one pool: every image recorded, the spend added up. (Until issue 23 in
# test_concurrency.py.)

DATA = ["--data", "phantom", "-o", "n_train=240", "-o", "n_test=80", "-o", "size=32"]


SPEC = data.DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})


@pytest.mark.timeout(300)
def test_three_concurrent_synth_runs_record_every_image(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    data.load(SPEC)  # the cache, warm before the processes race
    classes = ["Mild_Demented", "Moderate_Demented", "Very_Mild_Demented"]
    procs = [mriaug_process("synth", *DATA, "--out", str(pool), "--generator", "transform", "--classes", c,
                     "--no-report", "-s", "flush_every=5") for c in classes]
    for code, so, se in finish(procs):
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
        env = mriaug_env(OPENAI_API_KEY=key, OPENAI_BASE_URL=api.base_url)
        procs = [mriaug_process("synth", *DATA, "--out", str(pool), "--generator", "openai", "--classes", c,
                         "--max-sources", "4", "--no-report", "-s", "endpoint=variation", "-s", "concurrency=2",
                         "-s", "flush_every=1", env=env)
                 for c in ("Mild_Demented", "Non_Demented")]
        for code, so, se in finish(procs):
            assert code == 0, so + se
        billed = sum(1 for q in api.requests if q["status"] == 200)
    meta = pools.read_meta(pool)
    assert billed == 8
    # dall-e-2 variations report no token usage: both figures are the per-image price, summed over the runs.
    assert meta["spend_usd"] == pytest.approx(billed * 0.016)
    assert meta["spend_estimate_usd"] == pytest.approx(billed * 0.016)
    assert len(pools.read_manifest(pool)) == 8


def test_a_rerun_of_a_finished_pool_keeps_its_report_and_a_changed_pool_is_scored_again(tmp_path: Path) -> None:
    # `make study` reruns every `synth` step; a pool with nothing new keeps its report (it took a minute per pool
    # on the real data), and a pool whose images changed after its report gets a new one.
    pool = tmp_path / "p"
    args = ["synth", *D, "--out", str(pool), "--generator", "transform", "--max-sources", "4"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = pool / "report.json"
    made = report.stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "(0 new)" in again.output and "kept" in again.output
    assert report.stat().st_mtime_ns == made
    more = runner.invoke(app, [*args[:-1], "6"])  # two more sources: the pool changed after its report
    assert more.exit_code == 0 and "(0 new)" not in more.output, more.output
    assert report.stat().st_mtime_ns != made
    made = report.stat().st_mtime_ns
    report.write_text(report.read_text().replace('"pool_fingerprint"', '"pool_fingerprint_"'))  # not its pool's
    third = runner.invoke(app, args)
    assert third.exit_code == 0, third.output
    assert "kept" not in third.output and report.stat().st_mtime_ns != made
