"""Speed settings of the training loop that leave the study unchanged (not part of a run's id), read from
the environment so a Slurm profile's `[env]` table sets them for every job:

- `MRIAUG_CHANNELS_LAST` = `auto` (default) | `1` | `0`: convolutional models (cnn, resnet18) in the
  channels_last memory format. `auto` uses it on the CPU, where it was measured faster (benchmarks/README.md),
  and not on CUDA until measured there; `1` forces it on CUDA too. The ViT never uses it (no convolutions
  past its patch embedding).
- `MRIAUG_COMPILE` = `0` (default) | `1`: the training forward pass through `torch.compile` (the weights,
  checkpoints and evaluation stay those of the plain module). Compilation costs tens of seconds per run
  and process; measured on the CPU in benchmarks/README.md.
- `MRIAUG_CHECKPOINT` = `auto` (default) | `epoch`: when a run saves its resume checkpoint. `epoch`: after every
  epoch. `auto`: after the first epoch, then whenever the time since the last save is at least ten times what
  that save took, so checkpoints cost at most about a tenth of a run (a ViT-B checkpoint with its Adam state
  is 1 GB: saving it every epoch took a quarter of a GPU run) and a preemption loses little more than that.
  A run stopped on purpose (`stop_after`) always saves first.
- `MRIAUG_DETERMINISTIC` = `1` (default) | `0`: cuDNN/cuBLAS deterministic algorithms on CUDA, which makes a
  resumed GPU run identical to an uninterrupted one; `0` lets cuDNN pick the fastest kernels instead (runs then
  differ from one another in the last bits). Measured in benchmarks/README.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SettingError
from .checkpoints import Schedule

if TYPE_CHECKING:
    import torch

def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SettingError(f"environment variable {name}={os.environ[name]!r}: must be one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Speed:
    channels_last: str = "auto"
    compile: bool = False
    checkpoint: str = "auto"
    deterministic: bool = True

    def channels_last_for(self, device_type: str, card_says: bool) -> bool:
        """Channels-last memory for a model whose card says it pays (convolutions: `ModelCard.channels_last`):
        on the CPU by default, everywhere with MRIAUG_CHANNELS_LAST=1, nowhere with 0."""
        if not card_says or self.channels_last == "0":
            return False
        return self.channels_last == "1" or device_type == "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings() -> Speed:
    """The settings of this process, checked (a bad value names the variable)."""
    return Speed(channels_last=_choice("MRIAUG_CHANNELS_LAST", ("auto", "1", "0"), "auto"),
                 compile=_choice("MRIAUG_COMPILE", ("0", "1"), "0") == "1",
                 checkpoint=_choice("MRIAUG_CHECKPOINT", ("auto", "epoch"), "auto"),
                 deterministic=_choice("MRIAUG_DETERMINISTIC", ("1", "0"), "1") == "1")


# The old name of `checkpoints.Schedule` (checkpoint timing is no speed setting), for train.py until it moves.
CheckpointPacer = Schedule


def compiled(model: torch.nn.Module) -> Any:
    """`model` through torch.compile: the compiled callable shares the module's parameters."""
    import torch

    return torch.compile(model)
