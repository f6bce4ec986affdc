"""Numbers that say whether a synthetic pool is any good, computed offline from the real data alone.

**KID** (torchmetrics) on the features of a small CNN trained on the real training data (Inception
weights cannot be fetched on compute nodes, and ImageNet features say little about MRI slices). Per
class, KID of real against synthetic is reported beside KID of real against real (two disjoint random
halves of the class): the floor that finite samples give.

**Class fidelity**: the same CNN is a classifier; it labels the synthetic images, and the share it
labels as their intended class is set beside its recall on real images it never saw (the validation
part, else the test part) and on the pool's own source images. The feature network is the thesis's
basic CNN at 64x64, trained for `EPOCHS` epochs on the split's fit part only (training rows less
validation, so its validation numbers are honest), with class-weighted cross-entropy (without it the
rare classes, 49 Moderate images of 5,120, would almost never be predicted and their class fidelity
would say nothing), a fixed seed, and cached per dataset and split; its features are the 64
activations before the output layer.

**Memorisation**: every image's distance to its nearest training image (fit part), in the space of
32x32 box-downsampled pixels made zero-mean and unit-norm (`pixel_features`). Why this space: it needs
no training and no download, a copy sits at exactly 0, a brightness or contrast change (which does not
anonymise a scan) drops out, and it is the space in which `mriaug.data.splits` finds the slices of one scan,
so "near" means "as close as slices of the same scan are". A trained network's features would call
two patients' similar slices near (they are built to ignore what makes an image individual). In this
space the squared distance is 2(1 - r), r the correlation of the two images' pixels (0 = same picture,
up to brightness and contrast; about 1.4 = unrelated).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import sources as data_mod
from ..data import splits
from ..data.classes import CLASSES
from ..engine.models import BasicCNN
from ..store import atomic

SIDE = 64
EPOCHS = 5
MAX_SUBSET = 100
# Memorisation: the pixel space's side, and the rule for a near-copy (see `near_copy_threshold`).
PIXEL_SIDE = 32
NEAR_PERCENTILE = 5.0
NEAR_FLOOR = 0.02  # correlation r >= 0.9998 after brightness and contrast are taken out: the same picture


class Features(nn.Module):
    """uint8 (N, H, W) images -> (N, 64) features of a trained BasicCNN; `logits` gives its class scores."""

    def __init__(self, net: BasicCNN):
        super().__init__()
        self.net = net.eval()

    @staticmethod
    def prepare(images: np.ndarray) -> torch.Tensor:
        from ..engine.train import to_device_uint8

        x = to_device_uint8(np.ascontiguousarray(images), SIDE, torch.device("cpu"))
        return (x.float() / 255.0 - 0.5) / 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.classifier[:-1](self.net.features(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _cache_path(dataset: data_mod.Dataset) -> Path:
    # The split's fingerprint too: the data fingerprint of a subject split leaves validation out, and the
    # network must not have seen the validation rows it is scored on.
    split_fp = str(dataset.split.get("fingerprint") or "given")
    return (data_mod.cache_root() / "kid-features"
            / f"{dataset.fingerprint}-{split_fp}-cnn{SIDE}-e{EPOCHS}-balanced.safetensors")


def class_weights(y: np.ndarray, classes: int = len(CLASSES)) -> torch.Tensor:
    """Cross-entropy weights n / (k * n_c) over the k classes present (1 for an image of an average
    class); 0 for an absent class."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.from_numpy(w).float()


def feature_net(dataset: data_mod.Dataset, seed: int = 0) -> Features:
    """The feature CNN of this dataset and split: read from the cache, or trained on the fit part
    (training rows less validation), then cached."""
    from safetensors.torch import load_file, save_file

    net = BasicCNN(SIDE)
    path = _cache_path(dataset)
    if path.exists():
        net.load_state_dict(load_file(str(path)))
        return Features(net)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = BasicCNN(SIDE)
    fit = dataset.fit_mask
    x = Features.prepare(dataset.train_x[fit])
    y_np = dataset.train_y[fit]
    y = torch.from_numpy(y_np)
    weight = class_weights(y_np)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with atomic.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    return Features(net.eval())


def kid(net: nn.Module, a: np.ndarray, b: np.ndarray, subset_size: int, subsets: int = 100, seed: int = 0,
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


def halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of range(n) (the first gets the smaller half when n is odd)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def kid_real_vs_synthetic(net: nn.Module, real: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """KID of one class: half of its real images against its synthetic ones, and against the other half."""
    a, b = halves(len(real), seed)
    half_a, half_b = real[a], real[b]
    size = min(MAX_SUBSET, len(half_a), len(half_b), len(synthetic))
    if size < 2:
        return {"kid_real_vs_synthetic": None, "kid_real_vs_real": None, "kid_subset_size": size}
    syn_mean, syn_std = kid(net, half_a, synthetic, size, seed=seed)
    real_mean, real_std = kid(net, half_a, half_b, size, seed=seed)
    return {"kid_real_vs_synthetic": syn_mean, "kid_real_vs_synthetic_std": syn_std,
            "kid_real_vs_real": real_mean, "kid_real_vs_real_std": real_std, "kid_subset_size": size}


# --- class fidelity ------------------------------------------------------------------------------------------


def predict(net: Features, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The class index the network gives each (N, H, W) uint8 image."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(net.logits(Features.prepare(images[i : i + batch])).argmax(dim=1).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def recall(pred: np.ndarray, y: np.ndarray, label: int) -> float | None:
    """Share of the images of class `label` predicted as `label`; None when there is none."""
    rows = y == label
    return float((pred[rows] == label).mean()) if rows.any() else None


# --- memorisation --------------------------------------------------------------------------------------------


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, 32*32) float64: box-downsampled, zero-mean, unit-norm pixel rows."""
    return splits.features(np.ascontiguousarray(images), PIXEL_SIDE).astype(np.float64)


def nearest(query: np.ndarray, reference: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `query`, the Euclidean distance to its nearest row of `reference` and that row's
    index. The nearest row is found by the matrix product; its distance is then taken directly from
    the difference, so an exact copy is at exactly 0."""
    if not len(reference):
        raise ValueError("nearest: the reference set is empty")
    ref_sq = (reference**2).sum(axis=1)
    index = np.zeros(len(query), np.int64)
    for i in range(0, len(query), block):
        q = query[i : i + block]
        d2 = (q**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * (q @ reference.T)
        index[i : i + block] = d2.argmin(axis=1)
    dist = np.sqrt(((query - reference[index]) ** 2).sum(axis=1))
    return dist, index


def near_copy_threshold(held_out_distances: np.ndarray) -> float:
    """The distance below which a synthetic image counts as a near-copy of a training image: the
    `NEAR_PERCENTILE`th percentile (5th) of the distances from real held-out images (other scans, never a
    source) to their nearest training image, and never less than `NEAR_FLOOR` (so that copies are caught
    even when the held-out part holds duplicates of training images). A synthetic image under it is
    closer to a training image than 95 in 100 new real images are: a generator that does not copy
    gives about 5% of such images, a copying one up to 100%."""
    if not len(held_out_distances):
        return NEAR_FLOOR
    return max(float(np.percentile(held_out_distances, NEAR_PERCENTILE)), NEAR_FLOOR)
