"""`mriaug/generators/copy.py`: the copy control's pool holds exact copies of its sources. (Until issue 23 in
test_controls.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.generators import synth


def test_copy_pool_holds_exact_copies(ds: data.Dataset, tmp_path: Path) -> None:
    synth.make_pool(ds, tmp_path / "copy", "copy", classes=["Moderate_Demented"], progress_bar=False)
    p = pools.load(tmp_path / "copy", ds)
    assert len(p.labels) == ds.counts("train")["Moderate_Demented"]
    np.testing.assert_array_equal(p.images, ds.train_x[p.sources])
