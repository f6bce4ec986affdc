"""A distribution distance between real and synthetic images that works offline: KID (torchmetrics) on the
features of a small CNN trained on the real training data (Inception weights cannot be fetched on compute
nodes, and ImageNet features say little about MRI slices).

The feature network is the thesis's basic CNN at 64x64, trained for a few epochs with a fixed seed and
cached per dataset fingerprint; its features are the 64 activations before the output layer. Per class,
KID of real against synthetic is reported beside KID of real against real (two random halves of the
class): the floor that finite samples give.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import atomic
from .. import data as data_mod
from ..models import BasicCNN

SIDE = 64
EPOCHS = 3
MAX_SUBSET = 100


class Features(nn.Module):
    """uint8 (N, H, W) images -> (N, 64) features of a trained BasicCNN."""

    def __init__(self, net: BasicCNN):
        super().__init__()
        self.net = net.eval()

    @staticmethod
    def prepare(images: np.ndarray) -> torch.Tensor:
        from ..train import to_device_uint8

        x = to_device_uint8(np.ascontiguousarray(images), SIDE, torch.device("cpu"))
        return (x.float() / 255.0 - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.classifier[:-1](self.net.features(x))


def _cache_path(dataset: data_mod.Dataset) -> Path:
    return data_mod.cache_root() / "kid-features" / f"{dataset.fingerprint}-cnn{SIDE}-e{EPOCHS}.safetensors"


def feature_net(dataset: data_mod.Dataset, seed: int = 0) -> Features:
    """The feature CNN of this dataset: read from the cache, or trained on its training split (then cached)."""
    from safetensors.torch import load_file, save_file

    net = BasicCNN(SIDE)
    path = _cache_path(dataset)
    if path.exists():
        net.load_state_dict(load_file(str(path)))
        return Features(net)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = BasicCNN(SIDE)
    x = Features.prepare(dataset.train_x)
    y = torch.from_numpy(dataset.train_y)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with atomic.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    return Features(net)


def kid(net: Features, a: np.ndarray, b: np.ndarray, subset_size: int, subsets: int = 100, seed: int = 0,
        batch: int = 256) -> tuple[float, float]:
    """KID (mean, std over subsets) of two image stacks, features computed `batch` images at a time."""
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # it warns that features are kept: 64 floats per image here
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=net, subsets=subsets, subset_size=subset_size)
    with torch.no_grad():
        for imgs, real in ((a, True), (b, False)):
            for i in range(0, len(imgs), batch):
                metric.update(Features.prepare(imgs[i : i + batch]), real=real)
        torch.manual_seed(seed)  # subsets are drawn with torch's generator
        mean, std = metric.compute()
    return float(mean), float(std)


def kid_real_vs_synthetic(net: Features, real: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """KID of one class: half of its real images against its synthetic ones, and against the other half."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    half_a, half_b = real[order[: len(real) // 2]], real[order[len(real) // 2 :]]
    size = min(MAX_SUBSET, len(half_a), len(half_b), len(synthetic))
    if size < 2:
        return {"kid_real_vs_synthetic": None, "kid_real_vs_real": None, "kid_subset_size": size}
    syn_mean, syn_std = kid(net, half_a, synthetic, size, seed=seed)
    real_mean, real_std = kid(net, half_a, half_b, size, seed=seed)
    return {"kid_real_vs_synthetic": syn_mean, "kid_real_vs_synthetic_std": syn_std,
            "kid_real_vs_real": real_mean, "kid_real_vs_real_std": real_std, "kid_subset_size": size}
