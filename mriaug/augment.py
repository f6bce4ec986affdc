"""Augmentation policies by name, applied per image to a batch of uint8 tensors (B, 1, H, W).

Randomness comes from torch's global generator, which the training loop reseeds at every epoch,
so a run resumed from a checkpoint draws exactly what an uninterrupted one would. torch is imported
on first use, so grid files can be checked against these names without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import SettingError

if TYPE_CHECKING:
    import torch

Augment = Callable[["torch.Tensor"], "torch.Tensor"]


def _none(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    import torch

    flip = torch.rand(x.shape[0], device="cpu") < 0.5
    flip = flip.to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@functools.cache
def _autoaugment_policy() -> Any:
    from torchvision.transforms import v2

    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)


def _autoaug(x: torch.Tensor) -> torch.Tensor:
    import torch

    policy = _autoaugment_policy()
    # torchvision draws one policy per call, so call it per image to keep augmentation per image.
    return torch.stack([policy(img) for img in x])


AUGMENTATIONS: dict[str, Augment] = {"none": _none, "hflip": _hflip, "autoaugment": _autoaug}
# Column headers of the thesis tables.
LABELS = {"none": "No Augmentation", "hflip": "Random Horizontal Augment", "autoaugment": "AutoAugment"}


def get(name: str) -> Augment:
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        raise SettingError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}") from None
