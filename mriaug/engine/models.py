"""Models by name: the thesis's basic CNN, and timm's ResNet-18 and ViT with one input channel.

Pretrained weights load from the local Hugging Face cache (filled by `mriaug prefetch`) or from a
local file (`weights = "path/to/model.safetensors"`); nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.classes import NUM_CLASSES
from ..errors import SettingError, WeightsError
from ..plan.hparams import MODELS as CARDS
from ..plan.hparams import HParams, ModelCard, card


class BasicCNN(nn.Module):
    """Thesis ch. 5: two conv + ReLU + 2x2 max-pool blocks, then a fully connected net with two hidden
    layers and 4 outputs."""

    def __init__(self, resolution: int = 128, channels: tuple[int, int] = (16, 32),
                 hidden: tuple[int, int] = (128, 64), num_classes: int = NUM_CLASSES):
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = resolution // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden[0]), nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(inplace=True),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class ModelEntry:
    """How to build the network of a model name (its defaults live in `hparams.MODELS`)."""

    name: str
    build: Callable[[HParams, int], nn.Module]  # (hyper-parameters, number of classes)
    gradcam_layer: Callable[[Any], nn.Module]  # the network as built by `build` -> its Grad-CAM layer
    # The network -> how to turn its Grad-CAM layer's output into (B, C, H, W); None for conv layers.
    gradcam_reshape: Callable[[Any], Callable[[torch.Tensor], torch.Tensor] | None] = lambda m: None

    @property
    def card(self) -> ModelCard:
        return card(self.name)


def _timm(hp: HParams, num_classes: int = NUM_CLASSES, **extra: Any) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = dict(num_classes=num_classes, in_chans=1, **extra)
    weights = hp.weights
    pretrained = bool(hp.pretrained) or bool(weights)
    if weights:
        if not Path(weights).is_file():
            raise WeightsError(f"weights file {weights} does not exist (model setting 'weights')")
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
    try:
        return timm.create_model(hp.arch, pretrained=pretrained, **kwargs)
    except Exception as e:
        if pretrained and not weights and ("LocalEntryNotFound" in type(e).__name__ or "offline" in str(e).lower()
                                            or isinstance(e, OSError)):
            raise WeightsError(
                f"pretrained weights for {hp.arch!r} are not in the local cache ({type(e).__name__}). "
                f"Run `mriaug prefetch --grid GRID` (or `--model NAME`) on a machine with internet (same HF_HOME "
                "as the jobs), or set "
                "'weights' to a local .safetensors file, or pretrained = false."
            ) from e
        raise


def _cnn(hp: HParams, num_classes: int = NUM_CLASSES) -> nn.Module:
    if hp.pretrained:
        raise SettingError("model cnn is trained from scratch: set pretrained = false")
    return BasicCNN(hp.resolution, num_classes=num_classes)


def _vit(hp: HParams, num_classes: int = NUM_CLASSES) -> nn.Module:
    return _timm(hp, num_classes, img_size=hp.resolution)


def vit_token_grid(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ViT block's tokens (B, prefix + H*W, C) -> (B, C, H, W) on the model's own patch grid (16x16 for
    16-pixel patches at 256 px; pytorch-grad-cam's examples assume 14x14, the grid of 224 px)."""
    gh, gw = (int(v) for v in model.patch_embed.grid_size)
    prefix = int(getattr(model, "num_prefix_tokens", 1))

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, prefix:, :]
        if grid.shape[1] != gh * gw:
            raise ValueError(f"ViT has {grid.shape[1]} patch tokens, expected {gh}x{gw}")
        return grid.reshape(tokens.shape[0], gh, gw, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


# Keyed by the names of grid files and tables, the same keys as `hparams.MODELS`.
MODELS: dict[str, ModelEntry] = {
    "cnn": ModelEntry("cnn", _cnn, lambda m: m.features[3]),
    "resnet18": ModelEntry("resnet18", _timm, lambda m: m.layer4[-1]),
    "vit": ModelEntry("vit", _vit, lambda m: m.blocks[-1].norm1, vit_token_grid),
}
assert MODELS.keys() == CARDS.keys(), "every model card needs a builder"


def entry(name: str) -> ModelEntry:
    card(name)  # names the known models when `name` is not one
    return MODELS[name]


def build(name: str, hp: HParams, num_classes: int = NUM_CLASSES) -> nn.Module:
    """The network of model `name` with `num_classes` outputs (fewer than four after a data option `merge`)."""
    return entry(name).build(hp, num_classes)


def normalization(model: nn.Module) -> tuple[float, float]:
    """Grayscale mean/std: the average of the pretrained RGB statistics, 0.5/0.5 otherwise."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean", (0.5,)), cfg.get("std", (0.5,))
    return float(sum(mean) / len(mean)), float(sum(std) / len(std))


def prefetch(arch: str) -> str:
    """Download an architecture's pretrained weights into the Hugging Face cache runs read."""
    import timm

    timm.create_model(arch, pretrained=True, num_classes=NUM_CLASSES, in_chans=1)
    return arch
