"""`phantom`: procedurally generated axial brain-like slices whose classes differ the way dementia
stages do (enlarged ventricles, widened sulci, thinner cortex), so everything runs with no download.

Like the real data, every subject contributes a run of consecutive slices (`slices` per subject, fewer
for small classes, never fewer than two subjects per class): the head's pose, size, contrast, sulcal
pattern and atrophy are the subject's; the cross-section and the ventricles change smoothly from slice
to slice. The given train / test split is a random split of slices, as in the real set, so every
subject has slices on both sides; `generate_subjects` returns the ground-truth subject of every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Train counts of Falah/Alzheimer_MRI (thesis Table 2.1): the imbalance the study is about.
REAL_TRAIN_COUNTS = (724, 49, 2566, 1781)
REAL_TEST_COUNTS = (172, 15, 634, 459)
# Atrophy severity by class index: Non < Very mild < Mild < Moderate.
SEVERITY = (0.62, 1.0, 0.0, 0.3)
# Slice spacing in units of the head's half-height: a 32-slice run covers the middle of the brain.
SLICE_STEP = 0.025
# Pixel noise (of a 0..1 range): low, as in the real JPEGs, where neighbouring slices differ by anatomy, not noise.
NOISE = 0.01


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


def _soft(inside: np.ndarray, edge: float) -> np.ndarray:
    """A mask with soft edges from a signed distance-like field (> 0 inside): images change smoothly with
    the anatomy, so neighbouring slices are close and slices two apart twice as far."""
    return 1.0 / (1.0 + np.exp(-np.clip(inside / edge, -30, 30)))


def _render(sev: np.ndarray, pose: np.ndarray, z: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Images of slices: `sev` atrophy, `pose` rows (theta, scale, dx, dy, sulcal phase, gain, sulci count,
    ramp x, ramp y), `z` the slice's height (0 = the middle of the brain)."""
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    col = lambda a: a.astype(np.float32)[:, None, None]  # noqa: E731
    theta, dx, dy, phase, gain = col(pose[:, 0]), col(pose[:, 2]), col(pose[:, 3]), col(pose[:, 4]), col(pose[:, 5])
    folds = col(pose[:, 6])
    # The axial cross-section of an ellipsoidal head narrows away from the middle.
    zc = col(z)
    scale = col(pose[:, 1]) * np.sqrt(np.clip(1.0 - zc**2, 0.2, 1.0))
    x = (np.cos(theta) * xx + np.sin(theta) * yy - dx) / scale
    y = (-np.sin(theta) * xx + np.cos(theta) * yy - dy) / scale
    edge = 0.05  # in image half-widths, the same at every size: a boundary moves smoothly between slices

    brain_r = np.sqrt((x / 0.72) ** 2 + (y / 0.88) ** 2)
    s = col(sev)
    cortex = 0.2 - 0.09 * s
    brain = _soft(1.0 - brain_r, edge)
    img = 0.55 * brain                                              # grey matter
    img = img + 0.27 * _soft(1.0 - cortex - brain_r, edge)          # white matter
    # Sulci: dark radial clefts that open up with atrophy; their pattern turns slowly with height.
    phi = np.arctan2(y, x)
    width = 0.05 + 0.25 * s
    cleft = _soft(np.cos(folds * phi + phase + 2.0 * zc) - (1 - width), 0.15) * _soft(brain_r - 0.82 + 0.12 * s, edge)
    img = img * (1 - cleft * brain) + 0.12 * cleft * brain
    # Lateral ventricles: two dark ellipses that grow with atrophy and shrink away from the middle slice.
    reach = np.clip(1.0 - (zc / 0.7) ** 2, 0.05, 1.0)
    vx, vy = (0.07 + 0.08 * s) * reach, (0.2 + 0.1 * s) * reach
    for side in (-1.0, 1.0):
        r = np.sqrt(((x - side * (0.1 + 0.04 * s)) / vx) ** 2 + ((y + 0.05) / vy) ** 2)
        v = _soft(1.0 - r, 0.15)
        img = img * (1 - v) + 0.08 * v
    # Coil sensitivity: a smooth brightness ramp of the subject's own direction and strength.
    img = img * gain * (1.0 + col(pose[:, 7]) * xx + col(pose[:, 8]) * yy)
    # Per-pixel noise grows with the size so that it is the same once an image is shrunk to 32x32.
    img = img + rng.normal(0, NOISE * max(size, 32) / 32, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _subject_sizes(total: int, slices: int) -> list[int]:
    """Run lengths of a class's subjects: about `slices` each, at least two subjects of at least two slices."""
    n = max(2, min(total // 2, int(round(total / slices))))
    return [len(a) for a in np.array_split(np.arange(total), n)]


@dataclass
class Subjects:
    train_x: np.ndarray
    train_y: np.ndarray
    train_subject: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_subject: np.ndarray


def generate_subjects(train_counts: list[int], test_counts: list[int], size: int, seed: int,
                      slices: int = 32) -> Subjects:
    """Subjects of runs of consecutive slices per class, then a random slice-level train / test split
    with the given per-class counts (each list's order is shuffled, like the real set's)."""
    rng = np.random.default_rng(seed)
    labels, subject, z = [], [], []
    n_subjects = 0
    for k, (a, b) in enumerate(zip(train_counts, test_counts, strict=True)):
        for length in _subject_sizes(a + b, slices):
            half = SLICE_STEP * (length - 1) / 2
            z0 = rng.uniform(-0.35 + half, 0.35 - half) if half < 0.35 else 0.0
            z += list(z0 - half + SLICE_STEP * np.arange(length))
            labels += [k] * length
            subject += [n_subjects] * length
            n_subjects += 1
    y = np.asarray(labels, np.int64)
    subj = np.asarray(subject, np.int64)
    # Per subject: atrophy, and pose (theta, scale, dx, dy, sulcal phase, gain, sulci count, brightness ramp).
    sev_s = np.clip(np.asarray(SEVERITY, np.float32)[np.bincount(subj, y).astype(int) // np.bincount(subj)]
                    + rng.normal(0, 0.08, n_subjects), 0.0, 1.2)
    pose_s = np.stack([rng.uniform(-0.2, 0.2, n_subjects), rng.uniform(0.9, 1.05, n_subjects),
                       rng.uniform(-0.05, 0.05, n_subjects), rng.uniform(-0.05, 0.05, n_subjects),
                       rng.uniform(0, 2 * np.pi, n_subjects), rng.uniform(0.85, 1.15, n_subjects),
                       rng.integers(10, 19, n_subjects), rng.uniform(-0.3, 0.3, n_subjects),
                       rng.uniform(-0.3, 0.3, n_subjects)], axis=1)
    zs = np.asarray(z, np.float32)
    images = np.concatenate([_render(sev_s[subj[i : i + 512]], pose_s[subj[i : i + 512]], zs[i : i + 512], rng, size)
                             for i in range(0, len(y), 512)])
    train = np.zeros(len(y), bool)
    for k, a in enumerate(train_counts):
        train[rng.choice(np.flatnonzero(y == k), a, replace=False)] = True
    tr, te = rng.permutation(np.flatnonzero(train)), rng.permutation(np.flatnonzero(~train))
    return Subjects(images[tr], y[tr], subj[tr], images[te], y[te], subj[te])


def volumes(labels: list[int], participant: list[int], size: int, depth: int, seed: int) -> np.ndarray:
    """One (depth, size, size) uint8 volume per scan, axial slices bottom to top, for `mriaug.data.bids` to write
    as a BIDS folder: scan i shows participant `participant[i]` with class `labels[i]`. A participant's scans
    share the head's anatomy and pose, each a little moved (the head repositioned in the scanner) and its
    atrophy a little further on (a later visit); slices are `SLICE_STEP` apart, as in the slice phantom."""
    rng = np.random.default_rng([seed, 0xB1D5])
    ids = sorted(set(participant))
    n = len(ids)
    cls = {p: k for p, k in zip(participant, labels, strict=True)}
    sev_p = np.clip(np.asarray([SEVERITY[cls[p]] for p in ids], np.float32) + rng.normal(0, 0.08, n), 0.0, 1.2)
    pose_p = np.stack([rng.uniform(-0.2, 0.2, n), rng.uniform(0.9, 1.05, n), rng.uniform(-0.05, 0.05, n),
                       rng.uniform(-0.05, 0.05, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(0.85, 1.15, n),
                       rng.integers(10, 19, n), rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n)], axis=1)
    z = (SLICE_STEP * (np.arange(depth) - (depth - 1) / 2)).astype(np.float32)
    out = np.zeros((len(labels), depth, size, size), np.uint8)
    visit = dict.fromkeys(ids, 0)
    for i, p in enumerate(participant):
        j = ids.index(p)
        pose = pose_p[j].copy()
        if visit[p]:  # a later session: moved by a little, atrophy a little further on
            pose[:4] += rng.normal(0, [0.03, 0.01, 0.01, 0.01])
        sev = np.full(depth, sev_p[j] + 0.05 * visit[p], np.float32)
        out[i] = _render(sev, np.repeat(pose[None], depth, axis=0), z, rng, size)
        visit[p] += 1
    return out
