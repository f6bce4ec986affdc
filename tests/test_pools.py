"""`mriaug.data.pools`: a pool's manifest checked line by line, a cut or missing pool, a pool of another dataset.
(Until issue 23 in test_pools_scenarios.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data.pools import PoolError
from mriaug.data.sources import DataSpec
from mriaug.generators import synth
from mriaug.store import results

SPEC = DataSpec("phantom", {"n_train": 80, "n_test": 40, "size": 32})


def _rewrite(pool_dir: Path, edit) -> None:  # type: ignore[no-untyped-def]
    mf = pool_dir / pools.MANIFEST
    lines = [json.loads(line) for line in mf.read_text().splitlines()]
    edit(lines)
    mf.write_text("".join(json.dumps(e) + "\n" for e in lines))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[1].update(source_index=10**6), r"line 2: source_index 1000000 is not a row of the train split"),
        (lambda ls: ls[0].update({"class": "Severe"}), r"line 1: unknown class 'Severe'"),
        (lambda ls: ls[2].update(sha256="0" * 64), r"line 3: sha256 .* does not match"),
        (lambda ls: ls[0].update(file="images/nope.png"), r"line 1: image file .*nope.png is missing"),
        (lambda ls: ls[0].update(file="../../etc/passwd"), r"line 1: file '../../etc/passwd' must be a path inside"),
        (lambda ls: ls[0].update(file=None), r"line 1: file None must be a path inside the pool folder"),
        (lambda ls: ls[0].update(file="images"), r"line 1: image file .*images is missing"),
        (lambda ls: ls[0].update({"class": "Non_Demented"}),
         r"line 1: source train row \d+ is (Mild|Moderate)_Demented, but the image is labelled Non_Demented"),
    ],
)
def test_pool_validation_names_the_line(ds: data.Dataset, pool_dir: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    _rewrite(pool_dir, edit)
    with pytest.raises(PoolError, match=message):
        pools.load(pool_dir, ds)


def test_pool_cut_in_half_and_missing(ds: data.Dataset, pool_dir: Path, tmp_path: Path) -> None:
    mf = pool_dir / pools.MANIFEST
    mf.write_text(mf.read_text()[:-30])
    with pytest.raises(PoolError, match=r"manifest.jsonl, line \d+: not valid JSON"):
        pools.load(pool_dir, ds)
    with pytest.raises(PoolError, match="no such folder"):
        pools.load(tmp_path / "missing", ds)


def test_pool_from_other_dataset_is_refused(pool_dir: Path) -> None:
    other = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32, "seed": 9}))
    with pytest.raises(PoolError, match="was made from dataset"):
        pools.load(pool_dir, other)


def test_pool_images_of_another_size_are_refused(tmp_path: Path) -> None:
    ds = data.load(SPEC)
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    entries = pools.read_manifest(pool)
    f = pool / entries[0]["file"]
    big = Image.open(f).resize((64, 64))
    big.save(f)
    lines = []
    for e in entries:
        e.pop("_line")
        if e["file"] == entries[0]["file"]:
            e["sha256"] = results.atomic.sha256_file(f)
        lines.append(json.dumps(e))
    (pool / pools.MANIFEST).write_text("\n".join(lines) + "\n")
    with pytest.raises(PoolError, match=r"line 1: image .* is 64x64, but the dataset's images are 32x32"):
        pools.load(pool, ds)


# Writers: spend added, not overwritten; leftovers of killed writers removed. (Until issue 23 in
# test_concurrency.py.)

def test_pool_spend_is_added_not_overwritten(tmp_path: Path) -> None:
    """Two writers that read the pool before either wrote (a lock taken over from a hung process):
    both runs' spend and images end up in the pool."""
    ds = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
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
    ds = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    left = [pool / "images" / "Mild_Demented" / ".000001_0.png.k1ll3d.tmp", pool / ".manifest.jsonl.x1.tmp",
            pool / ".pool.json.x2.tmp"]
    for f in left:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half an image")
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    assert not any(f.exists() for f in left)


def test_a_missing_pools_message_gives_the_command_that_makes_exactly_it(tmp_path: Path) -> None:
    import shlex

    from typer.testing import CliRunner

    from mriaug.cli import app

    # One of a grid's repeated subject splits, its classes merged: the command names the source and every option
    # that shapes the training part (the merge left out: pools are made for the source's own classes).
    spec = DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32, "slices": 8, "split": "subject",
                                "splits": 2, "split_seed": 11, "merge": {"Moderate_Demented": "Mild_Demented"}})
    ds = data.load(spec)
    missing = tmp_path / "pools" / "p" / "split-11"
    command = (f"mriaug synth --out {missing} --data phantom -o n_test=80 -o n_train=160 -o seed=0 -o size=32 "
               "-o slices=8 -o split=subject -o split_seed=11 -o splits=2 -o test_fraction=0.2 -o val_fraction=0.1")
    with pytest.raises(PoolError) as e:
        pools.load(missing, ds)
    assert str(e.value) == (f"pool {missing}: no such folder; create it from this data with `{command}` (or, for a "
                            "grid's pools, `mriaug synth --grid GRID`)")
    # Run as given (classes limited, to be quick), it makes the pool this run's data loads.
    r = CliRunner().invoke(app, [*shlex.split(command)[1:], "--classes", "Mild_Demented", "--no-report"])
    assert r.exit_code == 0, r.output
    assert len(pools.load(missing, ds).labels) > 0
