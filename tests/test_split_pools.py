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
