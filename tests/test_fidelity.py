"""Pool fidelity from libraries: batched SSIM (torchmetrics) and KID on features of a CNN trained on the real data."""

from __future__ import annotations

import numpy as np

from mriaug import data
from mriaug.analysis import fidelity, pool_report


def test_ssim_in_batches_equals_one_batch() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (10, 32, 32), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    assert np.allclose(pool_report.ssim(a, b, batch=3), pool_report.ssim(a, b, batch=64))


def test_kid_sees_a_shifted_distribution_above_the_real_floor() -> None:
    ds = data.load(data.DataSpec("phantom", {"n_train": 320, "n_test": 40, "size": 32}))
    net = fidelity.feature_net(ds)
    real = ds.train_x[ds.train_y == 2]  # Non_Demented, the largest class
    copies = real.copy()
    darker = (real // 3).astype(np.uint8)
    same = fidelity.kid_real_vs_synthetic(net, real, copies)
    off = fidelity.kid_real_vs_synthetic(net, real, darker)
    assert off["kid_real_vs_synthetic"] > 5 * max(off["kid_real_vs_real"], 1e-4)
    assert same["kid_real_vs_real"] == off["kid_real_vs_real"]  # the floor does not depend on the synthetic set
    assert fidelity._cache_path(ds).exists()  # trained once, then read from the cache
