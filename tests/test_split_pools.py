"""Repeated subject splits (`[data] splits = K`) with a pool: seed s trains on split s mod K and draws from that
split's own pool folder (POOL/split-SEED), and its result records that folder's content (issue 26)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mriaug.cli import app
from mriaug.data import pools
from mriaug.store import results

GRID = """name = "kpool"
results = "{results}"
models = ["cnn"]
scenarios = ["3"]
augmentations = ["none"]
seeds = 3

[pool]
copy = "{pool}"

[data]
source = "phantom"
n_train = 240
n_test = 80
size = 32
split = "subject"
splits = 2
split_seed = 10

[model.cnn]
epochs = 1
resolution = 32
"""


def test_each_seed_records_its_own_splits_pool(tmp_path: Path) -> None:
    g = tmp_path / "g.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "pool"))
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--grid", str(g), "--generator", "copy", "--classes",
                            "Mild_Demented,Moderate_Demented", "--no-report"])
    assert r.exit_code == 0, r.output
    folders = {k: tmp_path / "pool" / f"split-{10 + k}" for k in (0, 1)}
    fps = {k: pools.manifest_fingerprint(f) for k, f in folders.items()}
    assert None not in fps.values() and fps[0] != fps[1]  # each split's pool is its own training part's
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    done = sorted((results.read(p) for p in (tmp_path / "res").glob("*.json")), key=lambda d: d.seed)
    assert [d.seed for d in done] == [0, 1, 2]
    # seed s on split 10 + s mod 2, with that split's pool: 0 -> split-10, 1 -> split-11, 2 -> split-10
    for d in done:
        k = d.seed % 2
        assert d.data.split["seed"] == 10 + k
        assert d.data.pool_fingerprint == fps[k], d.seed
        assert Path(str(d.data.pool_path)).resolve() == folders[k].resolve()
    assert done[0].data.fingerprint == done[2].data.fingerprint != done[1].data.fingerprint


def test_one_splits_pool_made_alone_and_missing_pools_named_with_their_commands(tmp_path: Path) -> None:
    """Issue 32: `synth --grid` always made every split's pool; `grid --only ID` with a pool missing said only "no
    run id starts with ..."; the dry run did not say which pools were missing."""
    import shutil

    from mriaug.plan import grid as grid_mod

    g = tmp_path / "g.toml"
    g.write_text(GRID.format(results=tmp_path / "res", pool=tmp_path / "pool"))
    runner = CliRunner()
    folders = [tmp_path / "pool" / f"split-{10 + k}" for k in (0, 1)]
    r = runner.invoke(app, ["grid", str(g), "--dry-run"])
    assert r.exit_code == 0 and "2 pool folder(s) not made yet" in r.output, r.output
    assert f"mriaug synth --out {folders[1]} --data phantom" in r.output and "`--split 1` on" in r.output
    make = ["synth", "--grid", str(g), "--generator", "copy", "--classes", "Mild_Demented,Moderate_Demented",
            "--no-report"]
    r = runner.invoke(app, [*make, "--split", "1"])
    assert r.exit_code == 0, r.output
    assert (folders[1] / "manifest.jsonl").exists() and not folders[0].exists()
    r = runner.invoke(app, ["grid", str(g), "--dry-run"])
    assert "1 pool folder(s) not made yet" in r.output and f"--out {folders[0]} " in r.output, r.output
    for bad, words in ((["--split", "2"], "--split 2: the grid"), (["--split", "-1"], "--split -1: the grid")):
        r = runner.invoke(app, [*make, *bad])
        assert r.exit_code == 2 and words in r.output and "numbered 0..1" in r.output, r.output
    r = runner.invoke(app, ["synth", "--out", str(tmp_path / "p"), "--split", "0"])
    assert r.exit_code == 2 and "--split 0: picks one of a grid's repeated splits; pass --grid" in r.output
    # A published id of a run on split 0 (seed 0), rerun where that split's pool is not made yet: the command.
    assert runner.invoke(app, [*make, "--split", "0"]).exit_code == 0
    published = grid_mod.load(g).runs[0].run_id
    shutil.rmtree(folders[0])
    r = runner.invoke(app, ["grid", str(g), "--only", published[:12]])
    assert r.exit_code == 2 and f"mriaug synth --out {folders[0]} --data phantom" in r.output, r.output
    assert "1 of the grid's pool folders are not made yet" in r.output
    assert not (tmp_path / "res").exists()
