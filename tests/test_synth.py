"""`mriaug.generators.synth`: making a pool, resuming it, and extending it only with the same generator and settings.
(Until issue 23 in test_pools_scenarios.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data.pools import PoolError
from mriaug.errors import MriaugError
from mriaug.generators import synth


def test_transform_pool_is_valid_and_resumable(ds: data.Dataset, pool_dir: Path) -> None:
    p = pools.load(pool_dir, ds)
    n_mild_mod = ds.counts("train")["Mild_Demented"] + ds.counts("train")["Moderate_Demented"]
    assert len(p.labels) == n_mild_mod
    assert (ds.train_y[p.sources] == p.labels).all()
    assert p.images.shape[1:] == ds.train_x.shape[1:]
    # Variations differ from their sources but stay close.
    diff = np.abs(p.images.astype(int) - ds.train_x[p.sources].astype(int)).mean()
    assert 1 < diff < 60
    before = (pool_dir / pools.MANIFEST).read_bytes()
    summary = synth.make_pool(ds, pool_dir, "transform", classes=["Mild_Demented", "Moderate_Demented"],
                              progress_bar=False)
    assert summary["generated"] == 0
    assert (pool_dir / pools.MANIFEST).read_bytes() == before


def test_extending_a_pool_with_another_generator_or_settings_is_refused(ds: data.Dataset, pool_dir: Path) -> None:
    before = (pool_dir / pools.MANIFEST).read_bytes()
    with pytest.raises(PoolError, match=r"already holds train row \d+ \(variation 0\) made by transform with "
                                        r"\{'seed': 0\}; this run asks for transform with \{'seed': 5"):
        synth.make_pool(ds, pool_dir, "transform", classes=["Mild_Demented"], options={"seed": 5},
                        progress_bar=False)
    with pytest.raises(PoolError, match=r"made by transform; this run asks for openai"):
        synth.make_pool(ds, pool_dir, "openai", classes=["Mild_Demented"], dry_run=True, progress_bar=False)
    assert (pool_dir / pools.MANIFEST).read_bytes() == before
    # The same settings extend it; other settings may add other sources.
    s = synth.make_pool(ds, pool_dir, "transform", classes=["Very_Mild_Demented"], max_sources=2, progress_bar=False)
    assert s["generated"] == 2
    s = synth.make_pool(ds, pool_dir, "transform", classes=["Non_Demented"], max_sources=2, options={"seed": 5},
                        progress_bar=False)
    assert s["generated"] == 2


def test_generator_settings_of_the_wrong_type_are_named(ds: data.Dataset, tmp_path: Path) -> None:
    with pytest.raises(MriaugError, match="generator transform: setting max_rotation_deg must be a number, got 'abc'"):
        synth.make_pool(ds, tmp_path / "p", "transform", options={"max_rotation_deg": "abc"}, progress_bar=False)
    assert not (tmp_path / "p" / pools.MANIFEST).exists()
