"""Augmentation policies by name, applied per image to a batch of uint8 tensors (B, 1, H, W).

Randomness comes from torch's global generator, which the training loop reseeds at every epoch,
so a run resumed from a checkpoint draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

Augment = Callable[[torch.Tensor], torch.Tensor]


def _none(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device="cpu") < 0.5
    flip = flip.to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


_autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


def _autoaug(x: torch.Tensor) -> torch.Tensor:
    # torchvision draws one policy per call, so call it per image to keep augmentation per image.
    return torch.stack([_autoaugment(img) for img in x])


AUGMENTATIONS: dict[str, Augment] = {"none": _none, "hflip": _hflip, "autoaugment": _autoaug}
# Column headers of the thesis tables.
LABELS = {"none": "No Augmentation", "hflip": "Random Horizontal Augment", "autoaugment": "AutoAugment"}


def get(name: str) -> Augment:
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}") from None
