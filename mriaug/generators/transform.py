"""`transform`: a cheap local generator, a random elastic + affine deformation of the source plus
intensity jitter. No model and no network, so smoke grids and tests can run scenarios 3-6."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..data.pools import PoolWriter
from .base import run_locally, seed_for


class TransformGenerator:
    name = "transform"

    def __init__(self, seed: int = 0, max_rotation_deg: float = 8.0, elastic_alpha: float = 0.03,
                 contrast: float = 0.1, flush_every: int = 200):
        checks.seed(seed, "transform generator: seed")
        checks.positive_int(flush_every, "transform generator: flush_every")
        checks.number(max_rotation_deg, "transform generator: max_rotation_deg", lo=0.0, hi=180.0)
        checks.number(elastic_alpha, "transform generator: elastic_alpha", lo=0.0)
        checks.number(contrast, "transform generator: contrast", lo=0.0, hi=1.0)
        self.seed, self.max_rot, self.alpha, self.contrast = seed, max_rotation_deg, elastic_alpha, contrast
        self.flush_every = flush_every

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed, "max_rotation_deg": self.max_rot, "elastic_alpha": self.alpha,
                "contrast": self.contrast}

    def variation(self, image: np.ndarray, source_index: int, variation: int) -> np.ndarray:
        # Seeded per (seed, source, variation) so a resumed or re-made pool has the same images.
        g = torch.Generator().manual_seed(seed_for(self.seed, source_index, variation))
        h, w = image.shape
        x = torch.from_numpy(image).float()[None, None] / 255.0
        u = lambda lo, hi: float(torch.empty(1).uniform_(lo, hi, generator=g))  # noqa: E731
        ang = math.radians(u(-self.max_rot, self.max_rot))
        s = u(0.94, 1.06)
        theta = torch.tensor([[math.cos(ang) / s, -math.sin(ang) / s, u(-0.04, 0.04)],
                              [math.sin(ang) / s, math.cos(ang) / s, u(-0.04, 0.04)]])[None]
        grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False)
        # Smooth random displacement: coarse noise upsampled, a cheap elastic field.
        coarse = torch.randn((1, 2, 6, 6), generator=g) * self.alpha
        disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
        out = F.grid_sample(x, grid + disp, mode="bilinear", padding_mode="zeros", align_corners=False)
        gamma = u(0.85, 1.15)
        out = out.clamp(0, 1) ** gamma * u(1 - self.contrast, 1 + self.contrast)
        out = out + torch.randn(out.shape, generator=g) * 0.01
        return (out.clamp(0, 1) * 255).round().to(torch.uint8)[0, 0].numpy()

    def run(self, writer: PoolWriter, todo: Iterable[tuple[int, int]],
            progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        return run_locally(writer, todo, progress, self.name, self.params(), self.variation, self.flush_every)
