"""Augmentation policies by name, applied to a whole batch of uint8 images (B, 1, H, W) on its device.

Each policy is `f(images, keys)`: `keys` holds one int64 per image (`batches.image_keys`: a hash of the run's
seed, the epoch and the image's identity), and every random draw of an image comes from its own key. An image
is therefore augmented the same way whatever batch it lands in, in every scenario that contains it, and a run
resumed from a checkpoint draws exactly what an uninterrupted one would.

AutoAugment follows torchvision's `AutoAugment(AutoAugmentPolicy.IMAGENET)` on uint8 grayscale tensors:
each image draws one of the 25 sub-policies, each of its two operations applies with the sub-policy's
probability, signed magnitudes flip sign with probability 1/2, nearest interpolation and zero fill. The
operations run as whole-batch tensor operations, a fixed number per batch whatever its size:

- every operation that maps a pixel value to a pixel value (posterize, solarize, invert, equalize,
  autocontrast, contrast) is a per-image 256-entry lookup table: the tables of one stage are built from
  per-image histograms and applied with one gather;
- rotations and shears (nearest neighbour) are a per-image map of source pixels, precomputed once per image
  size from torchvision's own kernels and applied with one gather;
- sharpness is a 3x3 smoothing (in integers, exactly torchvision's rounded float convolution) and a blend.

On a GPU masks over the whole batch pick the rows of each operation (no host sync). The CPU instead sorts a
stage's rows by the kind of work they need and works on contiguous blocks in place: posterize, solarize and
invert as vectorised uint8 arithmetic, each histogram table built only for the rows that take it, and an
image with a table operation in both stages (one of them from its histogram) gets both in one pass over its
pixels; its transient buffers are kept between calls. Both paths give the same images, tested. `Color`
(saturation) leaves a grayscale image as it is, as in torchvision. torch and torchvision are imported on
first use, so grid files can be checked against these names without them.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..plan import augmentations
from . import batches

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

# torchvision's ImageNet policy (AutoAugment paper, table 9): ((op, probability, magnitude bin), (...)).
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)
SIGNED = {"ShearX", "Rotate", "Color", "Contrast", "Sharpness"}
class Work(enum.IntEnum):
    """What the CPU path does to a row in one stage; it sorts a stage's rows by it and works kind by kind."""

    NOTHING = 0  # Identity, Color (grayscale)
    GEOMETRY = 1  # rotate, shear
    FIXED_TABLE = 2  # posterize, solarize, invert: one table per variant
    HISTOGRAM_TABLE = 3  # equalize, autocontrast, contrast: a table from the image's own histogram
    SHARPEN = 4  # the first sharpness variant; the j-th is SHARPEN + j


PIXEL_OPS = {"Posterize", "Solarize", "Invert", "Equalize", "AutoContrast", "Contrast"}  # as lookup tables
GEOMETRIC = {"Rotate", "ShearX"}


def _magnitude(op: str, bin_: int) -> float:
    """torchvision's magnitude of bin `bin_` of 10 (images here are square: no width dependence)."""
    import torch

    if op == "Posterize":
        return float((8 - (torch.arange(10) / ((10 - 1) / 4))).round().int()[bin_])
    top = {"ShearX": 0.3, "Rotate": 30.0, "Color": 0.9, "Contrast": 0.9, "Sharpness": 0.9}
    if op == "Solarize":
        return float(torch.linspace(1.0, 0.0, 10)[bin_])
    return float(torch.linspace(0.0, top[op], 10)[bin_])


@dataclass(frozen=True)
class Variant:
    """One operation with one magnitude: what an image may get in one stage of its sub-policy."""

    op: str
    magnitude: float = 0.0


@dataclass(frozen=True)
class Table:
    """The policy as indices: variant 0 is the identity; `stage[s][k][neg]` the variant of stage s of
    sub-policy k with the sign drawn negative (neg=1) or not; `prob[s][k]` its probability."""

    variants: tuple[Variant, ...]
    stage: tuple[tuple[tuple[int, int], ...], ...]
    prob: tuple[tuple[float, ...], ...]


@functools.cache
def table() -> Table:
    variants: list[Variant] = [Variant("Identity")]

    def vid(v: Variant) -> int:
        if v not in variants:
            variants.append(v)
        return variants.index(v)

    stage: list[list[tuple[int, int]]] = [[], []]
    prob: list[list[float]] = [[], []]
    for sub in IMAGENET_POLICY:
        for s, (op, p, bin_) in enumerate(sub):
            m = _magnitude(op, bin_) if bin_ is not None else 0.0
            pos = vid(Variant(op, m))
            neg = vid(Variant(op, -m)) if op in SIGNED else pos
            stage[s].append((pos, neg))
            prob[s].append(p)
    return Table(tuple(variants), tuple(tuple(s) for s in stage), tuple(tuple(p) for p in prob))


def draws(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The variant of each image in stage 1 and stage 2 (0 where the operation does not apply)."""
    import torch

    bits = batches.draws_of(keys, (batches.POLICY, batches.APPLY1, batches.SIGN1, batches.APPLY2, batches.SIGN2))
    k = batches.below_of(bits[:, 0], len(IMAGENET_POLICY))
    u = batches.uniform_of(bits[:, 1:])
    out = []
    for s in range(2):
        ids, p = _policy_tensors(s, keys.device)
        # torchvision: applies when rand() <= p, negates when rand() <= 0.5 (float32 draws on the same grid).
        applies = u[:, 2 * s] <= p[k]
        neg = (u[:, 2 * s + 1] <= 0.5).long()
        out.append(torch.where(applies, ids[k, neg], 0))
    return out[0], out[1]


@functools.cache
def _policy_tensors(s: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage s as tensors: variant ids (25, 2) by sign, and probabilities (25,) in float32."""
    import torch

    t = table()
    return (torch.tensor(t.stage[s], dtype=torch.long, device=device),
            torch.tensor(t.prob[s], dtype=torch.float32, device=device))


class _Kernels:
    """Per-variant constants for one image size on one device."""

    def __init__(self, h: int, w: int, device: torch.device):
        import torch
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        t = table()
        self.h, self.w = h, w
        ramp = torch.arange(256, device=device)
        params = []
        geo_rows = [torch.arange(h * w, device=device)]
        geo_index = []
        # Source pixel of every output pixel, from torchvision's own kernels on an image of pixel numbers
        # (float, so no rounding): 0 marks a pixel from outside the image, filled with zeros.
        numbers = torch.arange(1, h * w + 1, dtype=torch.float32, device=device).view(1, 1, h, w)
        for v in t.variants:
            # The fixed tables as a mask (posterize: the top bits), a threshold and whether values at or above
            # it are inverted (solarize: torchvision's `img >= 255 * magnitude` in float; invert: threshold 0).
            mask, threshold, flip = 255, 0, 0
            if v.op == "Posterize":
                mask = ((1 << int(v.magnitude)) - 1) << (8 - int(v.magnitude))
            elif v.op == "Solarize":
                threshold, flip = int((ramp.float() < 255.0 * v.magnitude).sum()), 255
            elif v.op == "Invert":
                flip = 255
            params.append((mask, threshold, flip))
            if v.op in GEOMETRIC:
                if v.op == "Rotate":
                    src = TF.rotate(numbers, angle=v.magnitude, interpolation=InterpolationMode.NEAREST)
                else:
                    src = TF.affine(numbers, angle=0.0, translate=[0, 0], scale=1.0,
                                    shear=[math.degrees(math.atan(v.magnitude)), 0.0],
                                    interpolation=InterpolationMode.NEAREST, center=[0, 0])
                src = src.reshape(-1).long() - 1
                geo_rows.append(torch.where(src < 0, h * w, src))  # column h*w of the padded batch is zero
                geo_index.append(len(geo_rows) - 1)
            else:
                geo_index.append(0)
        ops = [v.op for v in t.variants]
        self.device = device
        self._scratch: dict[tuple[int, str], torch.Tensor] = {}
        self.fixed_params = torch.tensor(params, dtype=torch.uint8, device=device).t().contiguous()  # (3, V)
        # The same as tables (V, 256), for the paths that look values up: every variant's table of 0..255.
        self.static_lut = ramp.to(torch.uint8).expand(len(params), 256).clone()
        _fixed_tables(self.static_lut, torch.arange(len(params), device=device), self)
        self.geo = torch.stack(geo_rows).to(torch.int32)  # (G + 1, H*W); row 0 keeps every pixel
        self.geo_index = torch.tensor(geo_index, device=device)
        self.is_geo = torch.tensor([o in GEOMETRIC for o in ops], device=device)
        self.is_lut = torch.tensor([o in PIXEL_OPS for o in ops], device=device)
        # Data-dependent tables: which candidate table each variant takes (0: its static one).
        # (variant, factor): torchvision adjusts by 1 + magnitude.
        self.contrast = [(i, 1.0 + v.magnitude) for i, v in enumerate(t.variants) if v.op == "Contrast"]
        self.contrast_scaled = [ramp.to(torch.uint8).mul(factor) for _, factor in self.contrast]
        self.sharpness = [(i, 1.0 + v.magnitude) for i, v in enumerate(t.variants) if v.op == "Sharpness"]
        cand = [0] * len(ops)
        for i, o in enumerate(ops):
            cand[i] = {"Equalize": 1, "AutoContrast": 2}.get(o, 0)
        for j, (i, _) in enumerate(self.contrast):
            cand[i] = 3 + j
        self.candidate = torch.tensor(cand, device=device)
        self.candidates = 3 + len(self.contrast)
        self.ramp = ramp
        self.ramp_float = ramp.float()
        # Each variant's kind of work (`Work`), for the CPU path that sorts a stage's rows by it; the j-th
        # sharpness variant is Work.SHARPEN + j.
        sharp = {i: Work.SHARPEN + j for j, (i, _) in enumerate(self.sharpness)}
        kind = [Work.GEOMETRY if o in GEOMETRIC else sharp.get(i, Work.NOTHING) if o == "Sharpness" else
                (Work.HISTOGRAM_TABLE if c else Work.FIXED_TABLE) if o in PIXEL_OPS else Work.NOTHING
                for i, (o, c) in enumerate(zip(ops, cand, strict=True))]
        self.kind = torch.tensor([int(w) for w in kind], device=device)
        self.kinds = Work.SHARPEN + len(self.sharpness)

    def scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A transient buffer of the CPU path, kept between calls (per thread): allocating these megabytes
        anew each call made the allocator hand them back to the system and fault them in again, a tenth of
        the augmentation's time. Where the mask path runs (a GPU), a fresh tensor from its caching allocator."""
        import threading

        import torch

        if _dense(self.device):
            return torch.empty(shape, dtype=dtype, device=self.device)
        numel = math.prod(shape)
        key = (threading.get_ident(), name)
        buf = self._scratch.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = self._scratch[key] = torch.empty(numel, dtype=dtype, device=self.device)
        return buf[:numel].view(shape)


@functools.cache
def _kernels(h: int, w: int, device: torch.device) -> _Kernels:
    return _Kernels(h, w, device)


def _rows(sel: torch.Tensor, x: torch.Tensor, fn: Callable[..., torch.Tensor], *per_row: torch.Tensor
          ) -> torch.Tensor:
    """`fn` on the rows of `x` where `sel` holds, the other rows unchanged, as a mask over every row (no host
    sync; the CPU sorts rows instead, `_stages_sorted`). `per_row` tensors go to `fn` whole, like `x`."""
    import torch

    return torch.where(sel.view(-1, *([1] * (x.dim() - 1))), fn(x, *per_row), x)


_FORCE_DENSE: list[bool] = [False]  # tests run the mask path on the CPU


def _dense(device: torch.device) -> bool:
    return device.type != "cpu" or _FORCE_DENSE[0]


def _equalize_luts(hist: torch.Tensor, n: int, ramp: torch.Tensor) -> torch.Tensor:
    """PIL's equalisation (which torchvision follows) as one uint8 table per image, from its histogram: value p
    maps to (pixels below p + step // 2) // step, step = (pixels outside the last non-empty bin) // 255.
    `ramp`: 0..255 (int64), the table of an image with one value only, which stays as it is."""
    import torch

    cum = hist.cumsum(1)
    last = hist.gather(1, cum.argmax(1, keepdim=True))  # argmax: the first bin reaching the total
    step = (n - last) // 255
    lut = (cum - hist + step // 2) // step.clamp(min=1)
    return torch.where(step == 0, ramp, lut.clamp_(max=255)).to(torch.uint8)


def _autocontrast_luts(hist: torch.Tensor, ramp: torch.Tensor) -> torch.Tensor:
    """Each image's range stretched to 0..255 (torchvision's float32 arithmetic, truncated to uint8).
    `ramp`: 0..255 as float32."""
    import torch

    seen = (hist > 0).to(torch.uint8)
    minimum = seen.argmax(1, keepdim=True).float()
    maximum = (255 - seen.flip(1).argmax(1, keepdim=True)).float()
    flat = maximum == minimum
    inv_scale = torch.where(flat, 1.0, maximum.sub_(minimum).mul_(1.0 / 255))
    minimum = torch.where(flat, 0.0, minimum)
    return ramp.sub(minimum).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def _contrast_luts(mean: torch.Tensor, factor: float, scaled: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean (torchvision's `adjust_contrast` on one channel), as tables. `scaled`:
    the uint8 values 0..255 times `factor`, in float32 (built once per size)."""
    import torch

    return scaled.expand(len(mean), 256).add(mean, alpha=1.0 - factor).clamp_(0, 255).to(torch.uint8)


def _sharpen(flat: torch.Tensor, h: int, w: int, factor: float) -> torch.Tensor:
    """torchvision's `adjust_sharpness`: blend with a 3x3 smoothing (weights 1, centre 5, over 13), border pixels
    kept. The smoothing in integers: torchvision rounds its float convolution, and a sum over 13 is never within
    1/26 of a tie, so round(sum / 13) is exactly its result (the float 3x3 convolution was 2/3 of the time)."""
    import torch

    img = flat.view(-1, h, w)
    wide = img.to(torch.int16)  # 13 * 255 fits
    across = wide[:, :, :-2] + wide[:, :, 1:-1] + wide[:, :, 2:]
    total = across[:, :-2] + across[:, 1:-1] + across[:, 2:] + 4 * wide[:, 1:-1, 1:-1]
    blurred = torch.div(2 * total + 13, 26, rounding_mode="floor").to(torch.float32)
    out = img.to(torch.float32, copy=True)
    inner = out[:, 1:-1, 1:-1]
    inner.add_(blurred.sub_(inner), alpha=1.0 - factor)
    return out.clamp_(0, 255).to(torch.uint8).view(-1, h * w)


@functools.lru_cache(maxsize=512)
def _row_offsets(rows: int, stride: int, device: torch.device) -> torch.Tensor:
    """(rows, 1) int32: row r's offset r * stride, for addressing rows laid end to end (built once per size)."""
    import torch

    return (torch.arange(rows, dtype=torch.int32, device=device) * stride).view(-1, 1)


def _geometry(flat: torch.Tensor, g: torch.Tensor, k: _Kernels, out: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's pixels from the source positions of its map `g`; position n (past the row) reads zero.
    `out`: a contiguous (rows, n) tensor to write into (may be `flat` itself: the source is copied first)."""
    import torch

    rows, n = flat.shape
    padded = k.scratch("padded", (rows, n + 1), torch.uint8)
    padded[:, :n] = flat
    padded[:, n] = 0
    padded = padded.view(-1)
    where = torch.index_select(k.geo, 0, g, out=k.scratch("where", (rows, n), torch.int32))
    where += _row_offsets(rows, n + 1, flat.device)
    if out is not None:
        return torch.index_select(padded, 0, where.view(-1), out=out.view(-1)).view(rows, n)
    return padded.index_select(0, where.view(-1)).view(rows, n)


def _pixel_tables(flat: torch.Tensor, v: torch.Tensor, k: _Kernels, contrast: bool = True,
                  out: torch.Tensor | None = None, first: torch.Tensor | None = None, grouped: bool = False
                  ) -> torch.Tensor:
    """The pixel-value operations of variants `v` on rows `flat`: one 256-entry table per row. `out`: a
    contiguous (rows, n) tensor to write into (may be `flat` itself). `first`: a table operation per row
    (variant 0: none) to apply before `v` in the same pass over the pixels: a table of a table is a table,
    and the histogram after the first operation follows from the one before it, so this is exact.
    `grouped`: the rows come sorted by the kind of table `v` needs (`_Kernels.candidate`)."""
    import torch

    rows, n = flat.shape
    # Row r's pixel value p as the position r * 256 + p of the tables laid end to end (int32: half the
    # memory traffic of int64 indices, which is what these passes cost; uint8 + int32 is int32 in one pass).
    code = torch.add(flat, _row_offsets(rows, 256, flat.device), out=k.scratch("code", (rows, n), torch.int32))
    if _dense(flat.device):  # bincount would read its input's maximum back to the host
        hist = torch.zeros(rows * 256, dtype=torch.long, device=flat.device)
        hist.scatter_add_(0, code.view(-1).long(), hist.new_ones(1).expand(code.numel()))
    else:
        hist = torch.bincount(code.view(-1), minlength=rows * 256)
    hist = hist.view(rows, 256)
    if first is None:
        lut = _tables(hist, v, k, n, contrast, grouped)
    else:
        before = _tables(hist, first, k, n, contrast=False).long()
        # Pixels of value p become before[p]: the histogram of the result, without reading the pixels again.
        hist = torch.zeros_like(hist).scatter_add_(1, before, hist)
        lut = _tables(hist, v, k, n, contrast, grouped).gather(1, before)
    if out is not None:
        return torch.index_select(lut.view(-1), 0, code.view(-1), out=out.view(-1)).view(rows, n)
    return lut.view(-1).index_select(0, code.view(-1)).view(rows, n)


def _fixed_tables(block: torch.Tensor, v: torch.Tensor, k: _Kernels) -> None:
    """Posterize, solarize and invert on the rows `block` in place (the CPU's path): whole-row uint8 operations,
    vectorised, where a table lookup reads every pixel one at a time (a quarter of the time here). uint8
    comparisons are not vectorised, so "below the threshold" is min(max(y, t) - y, 1)."""
    import torch

    m, t, f = (p.view(-1, 1) for p in k.fixed_params[:, v])
    block &= m
    below = torch.maximum(block, t, out=k.scratch("below", block.shape, torch.uint8)).sub_(block).clamp_(max=1)
    block ^= f  # y ^ f ^ (below * f): y inverted (255 - y) where f = 255 unless y is below the threshold
    block ^= below.mul_(f)


def _tables(hist: torch.Tensor, v: torch.Tensor, k: _Kernels, n: int, contrast: bool, grouped: bool = False
            ) -> torch.Tensor:
    """The (rows, 256) uint8 table of each row's variant `v`, from the rows' histograms `hist` of `n` pixels.
    `contrast`: whether a variant may be a Contrast (the mask path builds only the candidates that may occur);
    `grouped`: the rows come sorted by candidate (`_Kernels.candidate`)."""
    import torch

    cand = k.candidate[v]
    if not _dense(hist.device):
        # The CPU builds only the tables some row takes (reading which costs nothing there).
        present = torch.bincount(cand).tolist()
        needed = [c for c, m in enumerate(present) if m]
        if len(needed) == 1:  # one kind of table for every row: no stacking and picking
            return _candidate(needed[0], hist, n, v, k)
        if grouped:  # each kind of table built for its own rows only
            ends = list(itertools.accumulate(present))
            return torch.cat([_candidate(c, hist[end - m : end], n, v[end - m : end], k)
                              for c, (m, end) in enumerate(zip(present, ends, strict=True)) if m])
        candidates = [_candidate(c, hist, n, v, k) if m else k.static_lut[v] for c, m in enumerate(present)]
    else:
        n_cand = k.candidates if contrast else 3  # the contrast tables only where the stage has a Contrast
        candidates = [_candidate(c, hist, n, v, k) for c in range(n_cand)]
    return torch.stack(candidates, 1)[torch.arange(len(hist), device=hist.device), cand]


def _candidate(c: int, hist: torch.Tensor, n: int, v: torch.Tensor, k: _Kernels) -> torch.Tensor:
    """Candidate table c of every row (`_Kernels.candidate`): 0 fixed, 1 equalize, 2 autocontrast, 3+ contrast."""
    import torch

    if c == 0:
        return k.static_lut[v]
    if c == 1:
        return _equalize_luts(hist, n, k.ramp)
    if c == 2:
        return _autocontrast_luts(hist, k.ramp_float)
    mean = (hist * k.ramp).sum(1, keepdim=True).to(torch.float32) / n
    return _contrast_luts(mean, k.contrast[c - 3][1], k.contrast_scaled[c - 3])


def _stage(flat: torch.Tensor, v: torch.Tensor, k: _Kernels, possible: frozenset[int] | None = None
           ) -> torch.Tensor:
    """One operation per image (variant `v`, 0 = none) on a flattened batch (B, H*W) of uint8. `possible`:
    the variants this stage can draw (None: any), so operations it never draws cost nothing."""
    if not _dense(flat.device):
        return _stages_sorted(flat, (v,), k)
    flat = _rows(k.is_geo[v], flat, lambda f, g: _geometry(f, g, k), k.geo_index[v])
    for i, factor in k.sharpness:
        if possible is None or i in possible:
            flat = _rows(v == i, flat, lambda f, factor=factor: _sharpen(f, k.h, k.w, factor))
    contrast = possible is None or any(i in possible for i, _ in k.contrast)
    return _rows(k.is_lut[v], flat, lambda f, vv: _pixel_tables(f, vv, k, contrast), v)


def _work_per_row(stages: tuple[torch.Tensor, ...], k: _Kernels) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The CPU path's work per row: each stage's kind of work (`_Kernels.kind`), and for two stages the first
    stage's variant of the rows that do it in the second stage's pass (0 elsewhere; None for one stage). A row
    with two table operations of which one needs the histogram does both in the second stage's histogram block;
    two fixed tables stay apart (each costs less than a histogram)."""
    import torch

    kinds = [k.kind[v] for v in stages]
    if len(stages) != 2:
        return kinds, None
    fixed, hist = Work.FIXED_TABLE, Work.HISTOGRAM_TABLE
    both = ((kinds[0] == fixed) | (kinds[0] == hist)) & ((kinds[1] == fixed) | (kinds[1] == hist))
    both &= (kinds[0] == hist) | (kinds[1] == hist)
    return ([torch.where(both, Work.NOTHING, kinds[0]), torch.where(both, hist, kinds[1])],
            torch.where(both, stages[0], 0))


def _stages_sorted(flat: torch.Tensor, stages: tuple[torch.Tensor, ...], k: _Kernels) -> torch.Tensor:
    """One or two stages (variants per row, in order) on the CPU: before each stage the rows are sorted by the
    kind of work their variant needs (one gather), each kind works on its contiguous block of rows in place, and
    the rows are put back once at the end (one more gather). Picking and writing back rows per operation
    cost more than the operations themselves here. The work per row is `_work_per_row`'s: a row with a table operation
    in both stages, one of them from its histogram, gets both in one pass, in the second stage's histogram block."""
    import torch

    rows = flat.shape[0]
    kinds, first = _work_per_row(stages, k)
    where = torch.arange(rows)  # the input row each row of `out` holds
    out = flat
    for s, v in enumerate(stages):
        kind = kinds[s][where]
        # By kind, and within a kind by the table it needs (for `_tables`: each table built on its own rows).
        order = torch.argsort((kinds[s] * k.candidates + k.candidate[v])[where], stable=True)
        sizes = torch.bincount(kind, minlength=k.kinds).tolist()  # on the CPU: no device to wait for
        # Into a buffer of this stage's own: the input is never written.
        out = torch.index_select(out, 0, order, out=k.scratch(f"stage{s}", flat.shape, torch.uint8))
        where = where[order]
        start = sizes[Work.NOTHING]  # rows with nothing to do stay as they are
        for work in range(Work.GEOMETRY, k.kinds):
            end = start + sizes[work]
            if end > start:
                block, rows_in = out[start:end], where[start:end]
                vb = v[rows_in]
                if work == Work.GEOMETRY:
                    _geometry(block, k.geo_index[vb], k, out=block)
                elif work == Work.FIXED_TABLE:
                    _fixed_tables(block, vb, k)
                elif work == Work.HISTOGRAM_TABLE:
                    _pixel_tables(block, vb, k, out=block, first=first[rows_in] if first is not None and s else None,
                                  grouped=True)
                else:
                    block.copy_(_sharpen(block, k.h, k.w, k.sharpness[work - Work.SHARPEN][1]))
            start = end
    # Back in input order; index_select with the inverse permutation, as index_copy_ copies one element at a
    # time on the CPU.
    return out.index_select(0, torch.argsort(where))


@functools.cache
def _possible(stage: int) -> frozenset[int]:
    return frozenset({0, *(i for pair in table().stage[stage] for i in pair)})


def _none(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    import torch

    flip = batches.uniform(keys, batches.HFLIP) < 0.5  # torchvision: flips when rand() < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _autoaug(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    import torch

    b, c, h, w = x.shape
    if c != 1:
        raise ValueError(f"autoaugment here takes grayscale batches (B, 1, H, W), got {tuple(x.shape)}")
    k = _kernels(h, w, x.device)
    v1, v2 = draws(keys)
    if not _dense(x.device):
        # One thread: these passes are too short to split, and splitting them was measured slower.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _stages_sorted(x.reshape(b, h * w), (v1, v2), k).view(b, 1, h, w)
        finally:
            torch.set_num_threads(threads)
    flat = _stage(x.reshape(b, h * w), v1, k, _possible(0))
    return _stage(flat, v2, k, _possible(1)).view(b, 1, h, w)


AUGMENTATIONS: dict[str, Augment] = {"none": _none, "hflip": _hflip, "autoaugment": _autoaug}
# The plan names the policies (`augmentations.NAMES`); every name has its implementation here, in that order.
assert tuple(AUGMENTATIONS) == augmentations.NAMES, "augment.AUGMENTATIONS and augmentations.NAMES differ"


# Pixels per call when a whole epoch is augmented ahead of its steps: large enough that the per-call cost of the
# fixed number of operations vanishes on a GPU, small enough that the transient int32/int64 copies stay a few GB.
AHEAD_PIXELS = 1 << 27


# On the CPU, AutoAugment's fixed cost per call (a few hundred small operations, half the time of a call of 64
# images at 128 px) is shared by several batches: calls of about this many pixels (256 images at 128 px) were
# measured fastest there, larger ones no faster (benchmarks/README.md, issue 12).
CPU_CALL_PIXELS = 1 << 22


def runs_ahead(device: torch.device, name: str) -> bool:
    """Whether a run augments its whole epoch ahead of the steps (`ahead`): on a GPU, where a few large calls
    replace a few hundred small launches per step."""
    return device.type == "cuda" and name != "none"


def ahead_images(device: torch.device, name: str, batch: int, image_pixels: int, total: int) -> int:
    """How many of an epoch's `total` images a run augments per go, ahead of their steps: all of them on a GPU
    (`runs_ahead`); on the CPU, AutoAugment for as many whole batches as `CPU_CALL_PIXELS` holds (at least one);
    0: each batch as it comes (nothing to share)."""
    if runs_ahead(device, name):
        return total
    if device.type == "cpu" and name == "autoaugment":
        return min(total, batch * max(1, CPU_CALL_PIXELS // (batch * image_pixels)))
    return 0


def ahead(aug: Augment, x: torch.Tensor, rows: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """`aug` on the images `x[rows]` (their keys `keys`, one per row), in as few calls as `AHEAD_PIXELS`
    allows. An image's result depends only on its pixels and its key, so this gives exactly what one call per
    batch gives; on a GPU it turns the per-batch operations of a whole epoch into a handful of launches."""
    import torch

    per_call = max(1, AHEAD_PIXELS // (x.shape[-1] * x.shape[-2]))
    # index_select: on the CPU `x[rows]` copies these uint8 images element by element, 20 times slower.
    if len(rows) <= per_call:  # one call: its result as it is, no copy
        return aug(x.index_select(0, rows), keys)
    out = torch.empty((len(rows), *x.shape[1:]), dtype=x.dtype, device=x.device)
    for i in range(0, len(rows), per_call):
        out[i : i + per_call] = aug(x.index_select(0, rows[i : i + per_call]), keys[i : i + per_call])
    return out


def clear_caches() -> None:
    """Forget the policy table and the per-size constants (tests rebuild them, so that what builds them is
    exercised by every test, e.g. under mutation testing, where the cache would outlive a changed builder)."""
    for f in (table, _policy_tensors, _kernels, _possible, _row_offsets):
        f.cache_clear()


def get(name: str) -> Augment:
    return AUGMENTATIONS[augmentations.check(name)]
