"""`mriaug.generators.transform`: variations near their own source, never copies, seeded. (Until issue 23 in
test_pools_scenarios.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mriaug.data import pools
from mriaug.data import sources as data


def test_transform_variations_are_near_their_own_source_and_never_copies(ds: data.Dataset, pool_dir: Path) -> None:
    p = pools.load(pool_dir, ds)
    img = p.images.astype(float)
    src = ds.train_x[p.sources].astype(float)
    per_image = np.abs(img - src).mean(axis=(1, 2))
    assert (per_image > 1).all(), "a variation is a copy of its source"
    # Tied to its input: on average a variation is closer to its own source than to the other sources of its
    # class (a variation of the wrong row would be as far from "its" source as from any: ratio about 1). The
    # phantom's subjects are runs of similar slices, so neighbouring sources are close too: 0.9, not lower.
    own, others = [], []
    for c in np.unique(p.labels):
        rows = np.flatnonzero(p.labels == c)
        d = np.abs(img[rows][:, None] - src[rows][None]).mean(axis=(2, 3))
        own += np.diag(d).tolist()
        others += d[~np.eye(len(rows), dtype=bool)].tolist()
    assert np.mean(own) < 0.9 * np.mean(others), (np.mean(own), np.mean(others))
    # Seeded per (seed, source, variation): the same settings remake an image, another seed does not.
    from mriaug import generators

    row = int(p.sources[0])
    a = generators.get("transform").variation(ds.train_x[row], row, 0)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a, p.images[0])
    b = generators.get("transform", seed=1).variation(ds.train_x[row], row, 0)  # type: ignore[attr-defined]
    assert not np.array_equal(a, b)
