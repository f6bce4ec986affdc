"""`phantom`: procedurally generated axial brain-like slices whose classes differ the way dementia
stages do (enlarged ventricles, widened sulci, thinner cortex), so everything runs with no download."""

from __future__ import annotations

import numpy as np

# Train counts of Falah/Alzheimer_MRI (thesis Table 2.1): the imbalance the study is about.
REAL_TRAIN_COUNTS = (724, 49, 2566, 1781)
REAL_TEST_COUNTS = (172, 15, 634, 459)
# Atrophy severity by class index: Non < Very mild < Mild < Moderate.
SEVERITY = (0.62, 1.0, 0.0, 0.3)


def class_counts(total: int, proportions: tuple[int, ...] = REAL_TRAIN_COUNTS) -> list[int]:
    """Split `total` over the classes in the real proportions; every class gets at least 2 images."""
    raw = np.asarray(proportions, dtype=float) / sum(proportions) * total
    counts = np.maximum(np.floor(raw).astype(int), 2)
    # Hand the remainder to the classes with the largest fractional parts.
    for i in np.argsort(-(raw - np.floor(raw))):
        if counts.sum() >= total:
            break
        counts[i] += 1
    return counts.tolist()


def _render(sev: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    n = sev.shape[0]
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    theta = rng.uniform(-0.2, 0.2, (n,)).astype(np.float32)[:, None, None]
    scale = rng.uniform(0.9, 1.05, (n,)).astype(np.float32)[:, None, None]
    dx, dy = (rng.uniform(-0.05, 0.05, (2, n)).astype(np.float32)[:, :, None, None])
    x = (np.cos(theta) * xx + np.sin(theta) * yy - dx) / scale
    y = (-np.sin(theta) * xx + np.cos(theta) * yy - dy) / scale

    brain_r = np.sqrt((x / 0.72) ** 2 + (y / 0.88) ** 2)
    img = np.zeros((n, size, size), np.float32)
    s = sev[:, None, None]
    cortex = 0.2 - 0.09 * s
    img = np.where(brain_r < 1.0, 0.55, img)                       # grey matter
    img = np.where(brain_r < 1.0 - cortex, 0.82, img)              # white matter
    # Sulci: dark radial clefts that open up with atrophy.
    phi = np.arctan2(y, x)
    phase = rng.uniform(0, 2 * np.pi, (n,)).astype(np.float32)[:, None, None]
    width = 0.05 + 0.25 * s
    sulci = (np.cos(14 * phi + phase) > 1 - width) & (brain_r > 0.82 - 0.12 * s) & (brain_r < 1.0)
    img = np.where(sulci, 0.12, img)
    # Lateral ventricles: two dark ellipses that grow with atrophy.
    vx, vy = 0.07 + 0.08 * s, 0.2 + 0.1 * s
    for side in (-1.0, 1.0):
        r = np.sqrt(((x - side * (0.1 + 0.04 * s)) / vx) ** 2 + ((y + 0.05) / vy) ** 2)
        img = np.where(r < 1.0, 0.08, img)
    # Mild blur (scanner PSF) and noise, then quantise like the JPEGs of the real set.
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    img = np.sum([p[:, i : i + size, j : j + size] for i in range(3) for j in range(3)], axis=0) / 9.0
    img = img * rng.uniform(0.85, 1.15, (n,)).astype(np.float32)[:, None, None]
    img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def generate(counts: list[int], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size) uint8 and labels (N,) for the given per-class counts."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(c, k, dtype=np.int64) for k, c in enumerate(counts)])
    rng.shuffle(labels)
    sev = np.asarray(SEVERITY, np.float32)[labels] + rng.normal(0, 0.08, labels.size).astype(np.float32)
    sev = np.clip(sev, 0.0, 1.2)
    chunks = [_render(sev[i : i + 512], rng, size) for i in range(0, labels.size, 512)]
    return np.concatenate(chunks), labels
