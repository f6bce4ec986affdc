"""`mriaug/engine/augment.py`: batched AutoAugment against torchvision's per-image AutoAugment(IMAGENET), the fixed op
count, and augmentation by behaviour (hflip, AutoAugment, never the test set)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from mriaug.data import sources as data
from mriaug.data.sources import DataSpec, load
from mriaug.engine import augment, batches
from mriaug.errors import SettingError
from mriaug.plan import augmentations, scenarios
from mriaug.plan.grid import make_spec
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one as execute


@pytest.fixture(autouse=True)
def _fresh_tables() -> None:
    # Built anew for each test: the builders of the cached policy table and kernels are tested too.
    augment.clear_caches()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    ds = load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
    x = torch.from_numpy(ds.train_x).unsqueeze(1).clone()
    x[0] = 7  # one value only: equalize and autocontrast leave it as it is
    x[1] = 0
    x[1, :, :5] = 255  # two values
    return x


@pytest.fixture(params=[False, True], ids=["index-groups", "masks"])
def path(request: pytest.FixtureRequest) -> Any:
    augment._FORCE_DENSE[0] = request.param
    yield request.param
    augment._FORCE_DENSE[0] = False


def _torchvision(img: torch.Tensor, v: augment.Variant) -> torch.Tensor:
    """torchvision's functional op, called as its AutoAugment calls it."""
    m, nearest = v.magnitude, InterpolationMode.NEAREST
    ops = {
        "Identity": lambda: img, "Color": lambda: TF.adjust_saturation(img, 1.0 + m),
        "Posterize": lambda: TF.posterize(img, int(m)), "Solarize": lambda: TF.solarize(img, 255.0 * m),
        "Invert": lambda: TF.invert(img), "Equalize": lambda: TF.equalize(img),
        "AutoContrast": lambda: TF.autocontrast(img), "Contrast": lambda: TF.adjust_contrast(img, 1.0 + m),
        "Sharpness": lambda: TF.adjust_sharpness(img, 1.0 + m),
        "Rotate": lambda: TF.rotate(img, angle=m, interpolation=nearest),
        "ShearX": lambda: TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0,
                                    shear=[math.degrees(math.atan(m)), 0.0], interpolation=nearest, center=[0, 0]),
    }
    return ops[v.op]()


def test_policy_table_is_torchvisions() -> None:
    ours = [tuple((op, p, b) for op, p, b in sub) for sub in augment.IMAGENET_POLICY]
    assert ours == v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)._policies


def test_every_operation_is_torchvisions_pixel_for_pixel(images: torch.Tensor, path: bool) -> None:
    x = images[:48]
    k = augment._kernels(32, 32, x.device)
    for i, v in enumerate(augment.table().variants):
        got = augment._stage(x.reshape(len(x), -1), torch.full((len(x),), i), k)
        expected = torch.stack([_torchvision(img, v) for img in x])
        assert torch.equal(got.view_as(x), expected), v
    # A batch mixing every variant: each image gets its own.
    mixed = torch.arange(len(x)) % len(augment.table().variants)
    got = augment._stage(x.reshape(len(x), -1), mixed, k).view_as(x)
    variants = augment.table().variants
    expected = torch.stack([_torchvision(img, variants[int(i)]) for img, i in zip(x, mixed, strict=True)])
    assert torch.equal(got, expected)


class _Recording(v2.AutoAugment):
    """torchvision's AutoAugment, recording the operations it draws instead of running them."""

    def __init__(self) -> None:
        super().__init__(v2.AutoAugmentPolicy.IMAGENET)
        self.drawn: list[tuple[str, float]] = []

    def _apply_image_or_video_transform(self, image: Any, transform_id: str, magnitude: float, *a: Any,
                                        **kw: Any) -> Any:
        self.drawn.append((transform_id, round(magnitude, 4)))
        return image


def _chi2_homogeneity(a: Counter, b: Counter) -> tuple[float, float]:
    """Chi-square statistic of two samples of categories, and its critical value at p = 1e-4
    (Wilson-Hilferty); categories expected fewer than 5 times are pooled."""
    na, nb = sum(a.values()), sum(b.values())
    cells, rare = [], [0, 0]
    for c in set(a) | set(b):
        if (a[c] + b[c]) * min(na, nb) / (na + nb) < 5:
            rare[0] += a[c]
            rare[1] += b[c]
        else:
            cells.append((a[c], b[c]))
    if sum(rare):
        cells.append((rare[0], rare[1]))
    stat = 0.0
    for x, y in cells:
        tot = x + y
        for obs, n in ((x, na), (y, nb)):
            exp = tot * n / (na + nb)
            stat += (obs - exp) ** 2 / exp
    df = len(cells) - 1
    z = 3.719  # one-sided normal quantile of 1e-4
    return stat, df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_operation_frequencies_match_torchvision() -> None:
    n = 20_000
    torch.manual_seed(0)
    rec = _Recording()
    tv_ops: Counter = Counter()
    tv_count: Counter = Counter()
    img = torch.zeros(1, 4, 4, dtype=torch.uint8)
    for _ in range(n):
        rec.drawn.clear()
        rec(img)
        tv_ops.update(rec.drawn)
        tv_count[len(rec.drawn)] += 1
    v1, v2_ = augment.draws(batches.image_keys(0, 0, torch.arange(n)))
    variants = augment.table().variants
    ours_ops: Counter = Counter()
    for v in torch.cat([v1, v2_]).tolist():
        if v:
            ours_ops[(variants[v].op, round(variants[v].magnitude, 4))] += 1
    ours_count = Counter(((v1 > 0).long() + (v2_ > 0).long()).tolist())
    assert set(ours_ops) == set(tv_ops)
    for ours, theirs in ((ours_ops, tv_ops), (ours_count, tv_count)):
        stat, critical = _chi2_homogeneity(ours, theirs)
        assert stat < critical, (stat, critical, ours, theirs)
    # The test can tell: draws that forgot the sign of the 30 degree rotations fail it.
    unsigned = Counter(tv_ops)
    unsigned[("Rotate", 30.0)] += unsigned.pop(("Rotate", -30.0))
    stat, critical = _chi2_homogeneity(ours_ops, unsigned)
    assert stat > critical


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def test_pixel_statistics_match_torchvision(images: torch.Tensor) -> None:
    reps = 10  # every phantom image augmented this many times by each side
    x = images.repeat(reps, 1, 1, 1)
    torch.manual_seed(1)
    policy = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    theirs = torch.stack([policy(img) for img in x]).float()
    ours = augment.get("autoaugment")(x, batches.image_keys(3, 0, torch.arange(len(x)))).float()
    n = len(x)
    critical = 1.949 * math.sqrt(2 / n)  # KS at p = 1e-3
    stats = {
        "mean": lambda t: t.mean((1, 2, 3)), "std": lambda t: t.std((1, 2, 3)),
        "zeros": lambda t: (t == 0).float().mean((1, 2, 3)), "bright": lambda t: (t > 200).float().mean((1, 2, 3)),
        "changed": lambda t: (t != x.float()).float().mean((1, 2, 3)),
    }
    for name, f in stats.items():
        d = _ks(f(ours).numpy(), f(theirs).numpy())
        assert d < critical, (name, d, critical)
    assert _ks(stats["mean"](ours).numpy(), stats["mean"](x.float()).numpy()) > critical  # it does augment


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["autoaugment", "hflip"])
def test_operation_count_does_not_grow_with_the_batch(images: torch.Tensor, path: bool, name: str) -> None:
    f = augment.get(name)
    counts = []
    for b, seed in ((8, 0), (1024, 1), (4096, 2)):
        x = images.repeat(18, 1, 1, 1)[:b]
        keys = batches.image_keys(seed, 0, torch.arange(b))
        f(x, keys)  # build the per-size constants (kernels, row offsets) first: counted is the steady state
        with _CountOps() as c:
            f(x, keys)
        counts.append(c.ops)
    # The same operations at 1024 and 4096 images (every kind of work drawn in both); fewer where a small
    # batch draws fewer kinds (the CPU path skips a kind no image drew), never more: a fixed bound.
    assert counts[1] == counts[2]
    assert sum(counts[0].values()) <= sum(counts[1].values()) < 400
    if path:  # masks (the GPU's path): every operation runs whatever was drawn
        assert counts[0] == counts[1]
    elif name == "autoaugment":  # the CPU's sorted path works only on the kinds drawn: 8 images draw fewer
        assert sum(counts[0].values()) < sum(counts[1].values())


def test_hflip_flips_half_by_key(images: torch.Tensor) -> None:
    keys = batches.image_keys(0, 0, torch.arange(len(images)))
    out = augment.get("hflip")(images, keys)
    pairs = list(zip(out, images, strict=True))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) and not torch.equal(o, i) for o, i in pairs])
    kept = torch.tensor([torch.equal(o, i) for o, i in pairs])
    assert bool((flipped | kept).all()) and 80 < int(flipped.sum()) < 160
    assert torch.equal(augment.get("hflip")(images[5:9], keys[5:9]), out[5:9])


def test_an_image_is_augmented_alike_in_any_batch(images: torch.Tensor) -> None:
    keys = batches.image_keys(0, 3, torch.arange(len(images)))
    whole = augment.get("autoaugment")(images, keys)
    picked = torch.tensor([17, 3, 200, 64])
    assert torch.equal(augment.get("autoaugment")(images[picked], keys[picked]), whole[picked])
    assert not torch.equal(augment.get("autoaugment")(images, batches.image_keys(0, 4, torch.arange(240))), whole)


@pytest.mark.parametrize("name", ["autoaugment", "hflip", "none"])
def test_an_epoch_augmented_ahead_is_the_epoch_augmented_batch_by_batch(images: torch.Tensor, name: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # What the GPU path does (the epoch's images in a few large calls) gives exactly the per-batch images.
    monkeypatch.setattr(augment, "AHEAD_PIXELS", 70 * 32 * 32)  # calls of 70 images: not a batch multiple
    f = augment.get(name)
    keys = batches.image_keys(2, 5, torch.arange(len(images)))
    order = batches.order(keys)
    calls = []

    def counted(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return f(x, k)

    ahead = augment.ahead(counted, images, order, keys[order])
    per_batch = torch.cat([f(images[order[i : i + 64]], keys[order[i : i + 64]]) for i in range(0, len(order), 64)])
    assert ahead.dtype == torch.uint8 and torch.equal(ahead, per_batch)
    assert calls == [70, 70, 70, 30]  # as few calls as AHEAD_PIXELS allows
    calls.clear()  # exactly one call's worth: one call, its result as it is
    assert torch.equal(augment.ahead(counted, images, order[:70], keys[order[:70]]), per_batch[:70])
    assert calls == [70]
    calls.clear()
    monkeypatch.setattr(augment, "AHEAD_PIXELS", 1)  # less than one image: one image per call
    assert torch.equal(augment.ahead(counted, images, order[:3], keys[order[:3]]), per_batch[:3])
    assert calls == [1, 1, 1]


def test_ahead_counts_the_pixels_of_oblong_images(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randint(0, 256, (100, 1, 32, 16), dtype=torch.uint8)
    keys = batches.image_keys(0, 0, torch.arange(100))
    monkeypatch.setattr(augment, "AHEAD_PIXELS", 40 * 32 * 16)
    calls: list[int] = []

    def counted(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return augment.get("hflip")(x, k)

    rows = torch.arange(100).flip(0)
    assert torch.equal(augment.ahead(counted, x, rows, keys[rows]), augment.get("hflip")(x[rows], keys[rows]))
    assert calls == [40, 40, 20]


def test_how_many_images_a_run_augments_per_go() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device name only: no GPU needed
    assert augment.CPU_CALL_PIXELS == 1 << 22
    # The CPU: AutoAugment for as many whole batches as 2^22 pixels hold, at least one, at most the epoch.
    assert augment.ahead_images(cpu, "autoaugment", 64, 128 * 128, 5120) == 256
    assert augment.ahead_images(cpu, "autoaugment", 64, 32 * 32, 5120) == 4096
    assert augment.ahead_images(cpu, "autoaugment", 32, 100 * 100, 5120) == 416  # 13 batches of 32
    assert augment.ahead_images(cpu, "autoaugment", 64, 512 * 512, 5120) == 64
    assert augment.ahead_images(cpu, "autoaugment", 64, 32 * 32, 1000) == 1000
    assert augment.ahead_images(cpu, "hflip", 64, 128 * 128, 5120) == 0
    assert augment.ahead_images(cpu, "none", 64, 128 * 128, 5120) == 0
    # A GPU: the whole epoch, whatever augments.
    assert augment.ahead_images(cuda, "autoaugment", 64, 128 * 128, 5120) == 5120
    assert augment.ahead_images(cuda, "hflip", 64, 256 * 256, 4999) == 4999
    assert augment.ahead_images(cuda, "none", 64, 128 * 128, 5120) == 0
    assert augment.runs_ahead(cuda, "autoaugment") and augment.runs_ahead(cuda, "hflip")
    assert not augment.runs_ahead(cuda, "none") and not augment.runs_ahead(cpu, "autoaugment")
    assert not augment.runs_ahead(cpu, "hflip")


def test_the_cpu_plans_two_tables_in_one_pass_only_where_a_histogram_is_needed() -> None:
    k = augment._kernels(32, 32, torch.device("cpu"))
    names = {(v.op, v.magnitude): i for i, v in enumerate(augment.table().variants)}
    ident, eq, auto = 0, names[("Equalize", 0.0)], names[("AutoContrast", 0.0)]
    post = next(i for (op, _), i in names.items() if op == "Posterize")
    sol = next(i for (op, _), i in names.items() if op == "Solarize")
    inv, rot = names[("Invert", 0.0)], next(i for (op, _), i in names.items() if op == "Rotate")
    sharp = next(i for (op, _), i in names.items() if op == "Sharpness")
    pairs = [(post, eq), (eq, eq), (eq, post), (inv, auto), (post, sol), (eq, ident), (ident, eq), (rot, eq),
             (eq, rot), (sharp, inv), (ident, ident), (sol, rot)]
    v1, v2 = torch.tensor([a for a, _ in pairs]), torch.tensor([b for _, b in pairs])
    (k1, k2), first = augment._work_per_row((v1, v2), k)
    sh = int(k.kind[sharp])
    assert sh >= 4
    # kinds: 0 nothing, 1 geometry, 2 fixed table, 3 histogram table, 4+ sharpness
    assert k1.tolist() == [0, 0, 0, 0, 2, 3, 0, 1, 3, sh, 0, 2]
    assert k2.tolist() == [3, 3, 3, 3, 2, 0, 3, 3, 1, 2, 0, 1]
    assert first is not None and first.tolist() == [post, eq, eq, inv, 0, 0, 0, 0, 0, 0, 0, 0]
    (only,), none = augment._work_per_row((v1,), k)
    assert none is None and only.tolist() == k.kind[v1].tolist()


def test_scratch_buffers_are_kept_per_name_dtype_and_thread() -> None:
    import threading

    k = augment._kernels(32, 32, torch.device("cpu"))
    a = k.scratch("t", (4, 10), torch.uint8)
    assert a.shape == (4, 10) and a.dtype == torch.uint8
    assert k.scratch("t", (4, 10), torch.uint8).data_ptr() == a.data_ptr()  # the same size again: kept
    assert k.scratch("t", (2, 5), torch.uint8).data_ptr() == a.data_ptr()  # smaller: a view of it
    b = k.scratch("t", (5, 10), torch.uint8)  # larger: a new one, kept from then on
    assert b.shape == (5, 10) and k.scratch("t", (4, 10), torch.uint8).data_ptr() == b.data_ptr()
    c = k.scratch("t", (4, 10), torch.int32)
    assert c.dtype == torch.int32 and c.data_ptr() != b.data_ptr()
    assert k.scratch("u", (4, 10), torch.int32).data_ptr() != c.data_ptr()
    other: list[int] = []
    t = threading.Thread(target=lambda: other.append(k.scratch("t", (4, 10), torch.int32).data_ptr()))
    t.start()
    t.join()
    assert other and other[0] != c.data_ptr()
    augment._FORCE_DENSE[0] = True  # the mask path (a GPU's) takes fresh tensors
    try:
        d = k.scratch("t", (4, 10), torch.int32)
        assert d.data_ptr() != c.data_ptr() and d.shape == (4, 10) and d.dtype == torch.int32
        assert k.scratch("t", (4, 10), torch.int32).data_ptr() != d.data_ptr()
    finally:
        augment._FORCE_DENSE[0] = False


def test_the_sorted_and_the_mask_paths_give_the_same_images(images: torch.Tensor) -> None:
    # The CPU sorts rows by kind of work; a GPU masks the whole batch: two implementations, one result.
    f = augment.get("autoaugment")
    for seed in range(3):
        keys = batches.image_keys(seed, 1, torch.arange(len(images)))
        sorted_path = f(images, keys)
        augment._FORCE_DENSE[0] = True
        try:
            masks = f(images, keys)
        finally:
            augment._FORCE_DENSE[0] = False
        assert sorted_path.shape == masks.shape == images.shape and torch.equal(sorted_path, masks)


def test_autoaugment_refuses_colour_batches(images: torch.Tensor) -> None:
    rgb = images[:4].repeat(1, 3, 1, 1)
    with pytest.raises(ValueError, match=r"grayscale batches \(B, 1, H, W\), got \(4, 3, 32, 32\)"):
        augment.get("autoaugment")(rgb, batches.image_keys(0, 0, torch.arange(4)))


def test_table_operations_are_torchvisions_on_crafted_histograms(path: bool) -> None:
    # Images whose histograms reach the corners of the table arithmetic: no zeros (equalize maps value 1 to 0),
    # a step of exactly 1 (PIL's equalize divides by it), a narrow range, a single value, two values.
    g = torch.Generator().manual_seed(5)
    step1 = torch.full((32 * 32,), 255, dtype=torch.uint8)
    step1[:300] = torch.randint(0, 255, (300,), generator=g, dtype=torch.uint8)
    crafted = torch.stack([
        torch.randint(1, 256, (32 * 32,), generator=g, dtype=torch.uint8),
        step1,
        torch.randint(100, 110, (32 * 32,), generator=g, dtype=torch.uint8),
        torch.full((32 * 32,), 9, dtype=torch.uint8),
        torch.where(torch.rand(32 * 32, generator=g) < 0.3, 3, 250).to(torch.uint8),
    ]).view(-1, 1, 32, 32)
    k = augment._kernels(32, 32, crafted.device)
    for i, v in enumerate(augment.table().variants):
        if v.op not in augment.PIXEL_OPS:
            continue
        got = augment._stage(crafted.reshape(len(crafted), -1), torch.full((len(crafted),), i), k)
        expected = torch.stack([_torchvision(img, v) for img in crafted])
        assert torch.equal(got.view_as(crafted), expected), v


def test_the_draws_of_known_keys_are_pinned() -> None:
    # Which operation an image gets is part of a run's reproducibility: these draws may not change silently
    # (a change means runs of earlier versions no longer reproduce; update the numbers and say so).
    v1, v2 = augment.draws(batches.image_keys(0, 0, torch.arange(48)))
    assert v1.tolist() == [11, 0, 0, 0, 0, 4, 0, 27, 6, 6, 0, 4, 0, 0, 0, 17, 0, 17, 1, 16, 0, 0, 0, 6,
                           30, 0, 1, 0, 17, 0, 9, 4, 6, 11, 4, 6, 18, 0, 0, 0, 6, 0, 0, 30, 0, 18, 6, 19]
    assert v2.tolist() == [6, 6, 6, 26, 0, 5, 6, 17, 0, 0, 15, 5, 6, 6, 0, 6, 0, 6, 0, 0, 0, 5, 0, 0,
                           6, 3, 0, 5, 6, 15, 23, 5, 0, 0, 0, 0, 21, 0, 15, 6, 6, 20, 0, 6, 0, 20, 0, 20]


def test_two_table_operations_in_one_pass_are_the_two_in_turn(images: torch.Tensor) -> None:
    # The CPU applies a row's two table operations in one pass, the second's histogram computed from the
    # first's: every ordered pair of table variants against torchvision applying them one after the other.
    variants = augment.table().variants
    pixel = [i for i, v in enumerate(variants) if v.op in augment.PIXEL_OPS]
    pairs = [(a, b) for a in pixel for b in pixel]
    x = images[torch.arange(len(pairs)) % 12]  # includes the one-value and the two-value images
    v1 = torch.tensor([a for a, _ in pairs])
    v2 = torch.tensor([b for _, b in pairs])
    k = augment._kernels(32, 32, x.device)
    got = augment._stages_sorted(x.reshape(len(x), -1), (v1, v2), k).view_as(x)
    expected = torch.stack([_torchvision(_torchvision(img, variants[a]), variants[b])
                            for img, (a, b) in zip(x, pairs, strict=True)])
    assert torch.equal(got, expected)


def test_sharpness_is_torchvisions_on_every_neighbourhood_sum() -> None:
    # The smoothing is computed in integers (round(sum / 13)) where torchvision convolves in float32 and rounds:
    # noise images reach every neighbourhood sum; both signs of every sharpness magnitude drawn.
    g = torch.Generator().manual_seed(11)
    noise = torch.randint(0, 256, (64, 1, 32, 32), generator=g, dtype=torch.uint8)
    noise[:8] = torch.randint(250, 256, (8, 1, 32, 32), generator=g, dtype=torch.uint8)  # sums near the top
    k = augment._kernels(32, 32, noise.device)
    sharp = [i for i, v in enumerate(augment.table().variants) if v.op == "Sharpness"]
    assert len(sharp) == 2
    for i in sharp:
        got = augment._stage(noise.reshape(len(noise), -1), torch.full((len(noise),), i), k).view_as(noise)
        expected = torch.stack([_torchvision(img, augment.table().variants[i]) for img in noise])
        assert torch.equal(got, expected), augment.table().variants[i]


# By behaviour, through `augment.get(name)`: what comes out, for which images, and what never goes in (the
# test set). (Until issue 23 in test_augment_behaviour.py.)

def _batch(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    # Random pixels: no image equals its own mirror image.
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)


def _keys(n: int, seed: int, epoch: int = 0) -> torch.Tensor:
    """The per-image keys a run with this seed draws from at this epoch (images 0..n-1)."""
    return batches.image_keys(seed, epoch, torch.arange(n))


def _mirrored(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per image: True where `out` is `x` mirrored left-right; every image must be one or the other."""
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all()), "hflip returned an image that is neither the input nor its mirror"
    return flipped


def test_hflip_mirrors_about_half_a_batch_left_to_right() -> None:
    x = _batch()
    out = augment.get("hflip")(x, _keys(len(x), 0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    flipped = _mirrored(x, out)
    assert 20 <= int(flipped.sum()) <= 44  # Binomial(64, 1/2): mean 32, sd 4
    assert not (out == x.flip(-2)).flatten(1).all(1).any(), "a vertical flip is not the thesis's augmentation"
    # Over many batches the share is one half.
    total = 0
    for seed in range(20):
        total += int(_mirrored(x, augment.get("hflip")(x, _keys(len(x), 100 + seed))).sum())
    assert 560 <= total <= 720  # 1280 draws: mean 640, sd 18
    assert torch.equal(x, _batch()), "the input batch is left as it was"


def test_hflip_draws_from_the_seed() -> None:
    x = _batch()
    a = augment.get("hflip")(x, _keys(len(x), 5))
    b = augment.get("hflip")(x, _keys(len(x), 5))
    c = augment.get("hflip")(x, _keys(len(x), 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_none_is_the_identity() -> None:
    x = _batch()
    assert torch.equal(augment.get("none")(x, _keys(len(x), 0)), x)


@pytest.fixture(scope="module")
def phantom_images() -> torch.Tensor:
    ds = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
    return torch.from_numpy(ds.train_x[:32]).unsqueeze(1)


def test_autoaugment_changes_images(phantom_images: torch.Tensor) -> None:
    out = augment.get("autoaugment")(phantom_images, _keys(len(phantom_images), 0))
    assert out.shape == phantom_images.shape and out.dtype == torch.uint8
    changed = (out != phantom_images).flatten(1).any(1)
    assert int(changed.sum()) >= 16, f"only {int(changed.sum())} of 32 images changed"
    # Not a mere mirror image either.
    assert not torch.equal(out, phantom_images.flip(-1))


def test_autoaugment_differs_per_image(phantom_images: torch.Tensor) -> None:
    # The same image 32 times: a policy drawn once per batch would give (at most) one distinct output.
    same = phantom_images[:1].repeat(32, 1, 1, 1)
    out = augment.get("autoaugment")(same, _keys(len(same), 1))
    distinct = {hashlib.sha256(o.numpy().tobytes()).hexdigest() for o in out}
    assert len(distinct) >= 8, f"{len(distinct)} distinct outputs for 32 draws"


def test_unknown_augmentation_is_named() -> None:
    with pytest.raises(SettingError, match=r"unknown augmentation 'vflip'; known: none, hflip, autoaugment"):
        augment.get("vflip")
    assert set(augmentations.LABELS) == set(augmentations.NAMES) == set(augment.AUGMENTATIONS)


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["hflip", "autoaugment"])
def test_the_test_set_never_passes_through_augmentation(name: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    ds = data.load(spec)
    seen: list[torch.Tensor] = []
    real_get = augment.get

    def spying_get(aug_name: str) -> Any:
        fn = real_get(aug_name)

        def spy(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            seen.append(x.detach().cpu().clone())
            return fn(x, *args, **kwargs)

        return spy

    monkeypatch.setattr(augment, "get", spying_get)
    run = make_spec("cnn", scenarios.SCENARIOS["2"], name, 0, tiny_hparams("cnn", epochs=2), spec)
    r = execute(run, tmp_path, log=lambda m: None)
    went_in = [_digest(img[0].numpy()) for batch in seen for img in batch]
    train = {_digest(img) for img in ds.train_x}
    test = {_digest(img) for img in ds.test_x}
    assert train.isdisjoint(test), "the check needs distinct train and test images"
    # Every image augmented is a kept training image, each once per epoch; no test image ever.
    assert r.selection is not None
    kept = [_digest(ds.train_x[i]) for i in r.selection["real_train_rows"]]
    assert sorted(went_in) == sorted(kept * 2)
    assert not set(went_in) & test
