"""Hyper-parameters of one run, typed and resolved once: the model's defaults <- a grid's [model.NAME]
table <- command-line overrides (a `None` override is dropped, so the layer below applies).

Each model card's defaults are the thesis's settings (ch. 5): `mriaug run`'s defaults, and what a grid trains
for a model it lists without a [model.NAME] table. The registry is keyed by the
model names of grid files and tables; `mriaug.engine.models` builds the networks for the same names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import SettingError


@dataclass(frozen=True)
class HParams:
    arch: str
    resolution: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    precision: str = "bf16"
    pretrained: bool = False
    weights: str | None = None
    # "balanced": the training loss weights each class by the inverse of its frequency in the run's own training
    # images (`train.class_weights`); "none" is the thesis's plain cross-entropy.
    class_weight: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """The mapping stored in run specs (its hash is part of the run id), keys sorted. A setting added after
        results were published is left out at its default, so the run ids of every earlier grid stay."""
        out = asdict(self)
        if out["class_weight"] == "none":
            del out["class_weight"]
        return dict(sorted(out.items()))


KEYS = tuple(f.name for f in fields(HParams))
PRECISIONS = ("bf16", "fp32")
CLASS_WEIGHTS = ("none", "balanced")  # scikit-learn's names
MAX_RESOLUTION = 1024


@dataclass(frozen=True)
class Throughput:
    """A model's training speed as measured on one device, with where it was measured: what `mriaug plan`
    estimates device-hours from (an estimate: the figure holds for the setting it names)."""

    images_per_s: float
    device: str
    resolution: int
    precision: str
    source: str


@dataclass(frozen=True)
class ModelCard:
    """What a model name means before any network is built: its defaults and input constraints."""

    name: str
    defaults: HParams
    resolution_multiple: int = 1  # pooling or patch size the input side must be a multiple of
    takes_weights: bool = True  # whether a pretrained weights file can apply
    # Whether seeds of one cell can train together in one model (`pack_seeds`, `mriaug.engine.seedpack`), and why not.
    packs: bool = False
    no_pack_reason: str = ""
    channels_last: bool = False  # whether channels-last memory pays (convolutions; `speed.Speed.channels_last_for`)
    gpu: Throughput | None = None  # measured GPU training throughput, where one was measured

    @property
    def pretrained_by_default(self) -> bool:
        return self.defaults.pretrained


def _h200(images_per_s: float, resolution: int) -> Throughput:
    """A figure of the one GPU measurement so far: the real data, no augmentation, one run at the thesis's epochs
    trained the way a Slurm task trains it."""
    return Throughput(images_per_s, "NVIDIA H200", resolution, "bf16", "benchmarks/README.md (issue 12, \"Per model "
                      "at the thesis settings\"): benchmarks/grid_hours.py, 2026-11-26")


# The cards' defaults are the thesis's settings (ch. 5): a grid without a [model.NAME] table and `mriaug run`
# train what the thesis trained; a grid's table overrides what it names.
MODELS: dict[str, ModelCard] = {
    c.name: c
    for c in (
        # Thesis basic CNN, from scratch, 128x128 grayscale; two 2x2 poolings.
        ModelCard("cnn", HParams("basic-cnn", 128, epochs=10, batch_size=64, lr=1e-3), 4, takes_weights=False,
                  packs=True, channels_last=True, gpu=_h200(13854, 128)),
        # ImageNet-1k ResNet-18, every layer fine-tuned.
        ModelCard("resnet18", HParams("resnet18.tv_in1k", 256, epochs=8, batch_size=64, lr=1e-4, pretrained=True),
                  no_pack_reason="its batch norm updates running statistics in place, which vmap over stacked "
                  "per-seed buffers does not do", channels_last=True, gpu=_h200(3938, 256)),
        # ViT-B/16, every layer fine-tuned, AdamW (decoupled weight decay), position embeddings resized to the
        # input; 16x16 patches.
        ModelCard("vit", HParams("vit_base_patch16_224.augreg2_in21k_ft_in1k", 256, epochs=8, batch_size=64,
                                 lr=3e-5, weight_decay=0.05, pretrained=True), 16, packs=True,
                  gpu=_h200(1204, 256)),
    )
}


class HParamError(SettingError):
    """One bad hyper-parameter; `key` lets a grid reader point at the line."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def packable() -> tuple[str, ...]:
    """The models whose cards say their seeds can train together."""
    return tuple(name for name, c in MODELS.items() if c.packs)


def card(model: str) -> ModelCard:
    try:
        return MODELS[model]
    except KeyError:
        raise SettingError(f"unknown model {model!r}; known: {', '.join(MODELS)}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def problems(model: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for every bad hyper-parameter; empty when all are usable."""
    bad = [(k, "unknown hyper-parameter; known: " + ", ".join(sorted(KEYS))) for k in values if k not in KEYS]
    for key in ("epochs", "batch_size", "resolution"):
        if not _is_int(values.get(key)) or values[key] <= 0:
            bad.append((key, f"must be a positive integer, got {values.get(key)!r}"))
    mult = card(model).resolution_multiple
    res = values.get("resolution")
    if isinstance(res, int) and res > MAX_RESOLUTION:  # beyond any MRI slice here, and a sure way to run out of memory
        bad.append(("resolution", f"must be at most {MAX_RESOLUTION}, got {res}"))
    if mult > 1 and isinstance(res, int) and not isinstance(res, bool) and res % mult:
        bad.append(("resolution", f"must be a multiple of {mult} for model {model}, got {res}"))
    for key, lo in (("lr", 0.0), ("weight_decay", None)):
        v = values.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
                v <= lo if lo is not None else v < 0):
            bad.append((key, f"must be a {'positive' if lo is not None else 'non-negative'} finite number, got {v!r}"))
    if not isinstance(values.get("pretrained"), bool):
        bad.append(("pretrained", f"must be true or false, got {values.get('pretrained')!r}"))
    if values.get("weights") is not None and not isinstance(values["weights"], str):
        bad.append(("weights", "must be the path of a .safetensors file"))
    elif values.get("weights") is not None and not card(model).takes_weights:
        bad.append(("weights", f"model {model} is trained from scratch and takes no pretrained weights file"))
    if values.get("precision") not in PRECISIONS:
        bad.append(("precision", f"must be 'bf16' or 'fp32', got {values.get('precision')!r}"))
    if values.get("class_weight", "none") not in CLASS_WEIGHTS:
        bad.append(("class_weight", f"must be 'none' or 'balanced', got {values.get('class_weight')!r}"))
    if not isinstance(values.get("arch"), str) or not values["arch"]:
        bad.append(("arch", "must name an architecture (a timm model name)"))
    return bad


def resolve(model: str, table: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> HParams:
    """The model's defaults, then a grid's table, then overrides (None values dropped); checked once."""
    values = {**card(model).defaults.to_dict(), **(table or {})}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key, problem in problems(model, values):
        raise HParamError(key, problem)
    return replace(card(model).defaults, **{**values, "lr": float(values["lr"]),
                                            "weight_decay": float(values["weight_decay"])})


def thesis(model: str) -> HParams:
    """The thesis's hyper-parameters of a model (`mriaug run` without --grid): its card's defaults."""
    return resolve(model)


def from_dict(model: str, values: dict[str, Any] | HParams) -> HParams:
    """HParams from a stored mapping (a result's or a checkpoint's), checked like any other."""
    if isinstance(values, HParams):
        return values
    return resolve(model, {k: v for k, v in values.items()})
