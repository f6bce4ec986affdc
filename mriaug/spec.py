"""The full definition of one run; its hash is the run id, so the same run is never trained twice."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .data import DataSpec
from .scenarios import Scenario

# Hyper-parameters every model entry has; grid files override them per model.
DEFAULT_HPARAMS: dict[str, Any] = {
    "epochs": 8, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0,
    "precision": "bf16", "pretrained": False, "weights": None,
}
HPARAM_KEYS = set(DEFAULT_HPARAMS) | {"arch", "resolution"}
# Patch or pooling sizes the resolution must be a multiple of.
RESOLUTION_MULTIPLE = {"cnn": 4, "vit": 16}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_hparams(model: str, hp: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for every bad hyper-parameter; empty when all are usable."""
    bad = [(k, "unknown hyper-parameter; known: " + ", ".join(sorted(HPARAM_KEYS))) for k in hp if k not in HPARAM_KEYS]
    for key in ("epochs", "batch_size", "resolution"):
        if not _is_int(hp.get(key)) or hp[key] <= 0:
            bad.append((key, f"must be a positive integer, got {hp.get(key)!r}"))
    mult = RESOLUTION_MULTIPLE.get(model)
    if mult and _is_int(hp.get("resolution")) and hp["resolution"] % mult:
        bad.append(("resolution", f"must be a multiple of {mult} for model {model}, got {hp['resolution']}"))
    for key, lo in (("lr", 0.0), ("weight_decay", -1e-12)):
        v = hp.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > lo:
            bad.append((key, f"must be a {'positive' if lo == 0 else 'non-negative'} number, got {v!r}"))
    if not isinstance(hp.get("pretrained"), bool):
        bad.append(("pretrained", f"must be true or false, got {hp.get('pretrained')!r}"))
    if hp.get("weights") is not None and not isinstance(hp["weights"], str):
        bad.append(("weights", "must be the path of a .safetensors file"))
    if hp.get("precision") not in ("bf16", "fp32"):
        bad.append(("precision", f"must be 'bf16' or 'fp32', got {hp.get('precision')!r}"))
    if not isinstance(hp.get("arch"), str) or not hp["arch"]:
        bad.append(("arch", "must name an architecture (a timm model name)"))
    return bad


@functools.lru_cache(maxsize=256)
def _manifest_hash(path: str, mtime_ns: int, size: int) -> str:
    return atomic.sha256_file(path)[:16]


def read_pool_fingerprint(pool: str | None) -> str | None:
    """What a pool holds (the hash of its manifest, as `pools.load` computes it); None when it has none yet."""
    if pool is None:
        return None
    manifest = Path(pool) / "manifest.jsonl"
    try:
        st = os.stat(manifest)
    except OSError:
        return None
    return _manifest_hash(str(manifest), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class RunSpec:
    model: str
    scenario: Scenario
    augmentation: str
    seed: int
    hparams: dict[str, Any]
    data: DataSpec = field(default_factory=DataSpec)
    pool: str | None = None
    # The pool's content when the run was planned: read once here, so a pool extended while runs wait
    # in a queue does not change their ids (train.execute refuses a pool that changed since).
    pool_fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.pool_fingerprint is None and self.scenario.needs_pool:
            object.__setattr__(self, "pool_fingerprint", read_pool_fingerprint(self.pool))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scenario": self.scenario.to_dict(),
            "augmentation": self.augmentation,
            "seed": self.seed,
            "hparams": dict(sorted(self.hparams.items())),
            "data": self.data.describe(),
            # A pool only matters to runs that draw from it, and then by what it holds, not where it lies:
            # extending or re-making a pool gives new runs; moving it does not.
            "pool": {"fingerprint": self.pool_fingerprint} if self.scenario.needs_pool else None,
        }

    @property
    def run_id(self) -> str:
        return atomic.stable_hash(self.to_dict())

    @property
    def label(self) -> str:
        return f"{self.model}/s{self.scenario.name}/{self.augmentation}/seed{self.seed}"
