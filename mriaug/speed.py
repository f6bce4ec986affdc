"""Speed settings of the training loop that leave the study unchanged (not part of a run's id), read from
the environment so a Slurm profile's `[env]` table sets them for every job:

- `MRIAUG_CHANNELS_LAST` = `auto` (default) | `1` | `0`: convolutional models (cnn, resnet18) in the
  channels_last memory format. `auto` uses it on the CPU, where it was measured faster (benchmarks/README.md),
  and not on CUDA until measured there; `1` forces it on CUDA too. The ViT never uses it (no convolutions
  past its patch embedding).
- `MRIAUG_COMPILE` = `0` (default) | `1`: the training forward pass through `torch.compile` (the weights,
  checkpoints and evaluation stay those of the plain module). Compilation costs tens of seconds per run
  and process; measured on the CPU in benchmarks/README.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import SettingError

if TYPE_CHECKING:
    import torch

CONV_MODELS = ("cnn", "resnet18")


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SettingError(f"environment variable {name}={os.environ[name]!r}: must be one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Speed:
    channels_last: str = "auto"
    compile: bool = False

    def channels_last_for(self, device_type: str, model: str) -> bool:
        if model not in CONV_MODELS or self.channels_last == "0":
            return False
        return self.channels_last == "1" or device_type == "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings() -> Speed:
    """The settings of this process, checked (a bad value names the variable)."""
    return Speed(channels_last=_choice("MRIAUG_CHANNELS_LAST", ("auto", "1", "0"), "auto"),
                 compile=_choice("MRIAUG_COMPILE", ("0", "1"), "0") == "1")


def compiled(model: torch.nn.Module) -> Any:
    """`model` through torch.compile: the compiled callable shares the module's parameters."""
    import torch

    return torch.compile(model)
