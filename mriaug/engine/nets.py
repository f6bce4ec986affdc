"""The networks one training unit holds: S >= 1 seeds of one grid cell (`train.run_unit`).

One seed is a plain module (`Single`): exactly the arithmetic of a run trained alone, so resume and the CPU
thread count keep their bit-for-bit promises. Several seeds are stacked with `torch.func.stack_module_state`
and run as one with `vmap` over `functional_call` (`Stacked`): one kernel launch per layer for all seeds, which
is what makes many-seed studies cheap on a GPU (8 cnn seeds at 2.8-4.1x one run's images/s on an H200); on a
CPU, where vmap's grouped convolutions are slow, a pack is slower than separate runs (benchmarks/README.md).
Each seed's slice of a stacked parameter is its own network: nothing is shared, so each seed's gradient is the
one its separate run would compute, in another summation order.

Both give the engine the same few operations, on batches shaped (S, B, ...): training losses per seed,
predictions per seed, a seed's weights (to select and to save), and a state to checkpoint.

Randomness inside a network (dropout, drop-path) draws from torch's generator, which the engine seeds per epoch
from (seed, epoch) for a run of its own. Under vmap the S seeds would share that one generator's draws (torch has
no per-seed generator for a vmapped dropout), so a seed would not draw what its separate run draws: `build`
refuses to stack a network with such a layer, naming it. No packable model has one today (the cnn has no
dropout; the ViT's rates are 0), so this refuses nothing the study trains.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ..data.classes import NUM_CLASSES
from ..errors import SettingError
from ..plan import hparams
from ..plan.hparams import HParams
from . import models, speed

Weights = dict[str, torch.Tensor]


class Nets(Protocol):
    size: int
    norm: tuple[float, float]

    def parameters(self) -> list[torch.Tensor]: ...
    def train(self) -> None: ...
    def losses(self, xb: torch.Tensor, yb: torch.Tensor, autocast: bool,
               weight: torch.Tensor | None = None) -> torch.Tensor: ...
    def predict(self, x: torch.Tensor, autocast: bool, batch: int = 256) -> np.ndarray: ...
    def weights(self, k: int) -> Weights: ...
    def select(self, chosen: list[Weights | None]) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def load_state(self, state: dict[str, Any]) -> None: ...


def _normalized(x: torch.Tensor, norm: tuple[float, float]) -> torch.Tensor:
    return (x.float() / 255.0 - norm[0]) / norm[1]


@torch.no_grad()
def _in_batches(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, norm: tuple[float, float],
                autocast: bool, batch: int) -> np.ndarray:
    """(S, N, classes) logits of `forward` on `x`, gathered on the device and copied to the host once."""
    out = []
    for i in range(0, len(x), batch):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(forward(_normalized(x[i : i + batch], norm)).float())
    return torch.cat(out, dim=1).cpu().numpy()


class Single:
    """One seed in a plain module (optionally channels-last and torch.compile'd, as `speed` settles)."""

    size = 1

    def __init__(self, model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]):
        self.model, self.forward = model, forward
        self.norm = models.normalization(model)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def train(self) -> None:
        self.model.train()

    def losses(self, xb: torch.Tensor, yb: torch.Tensor, autocast: bool,
               weight: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's mean cross-entropy, weighted per class when `weight` (S, classes) is given."""
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = self.forward(_normalized(xb[0], self.norm)).float()
        return F.cross_entropy(logits, yb[0], weight=None if weight is None else weight[0]).unsqueeze(0)

    def predict(self, x: torch.Tensor, autocast: bool, batch: int = 256) -> np.ndarray:
        self.model.eval()
        return _in_batches(lambda xb: self.model(xb).unsqueeze(0), x, self.norm, autocast, batch)

    def weights(self, k: int) -> Weights:
        return {name: v.detach().clone() for name, v in self.model.state_dict().items()}

    def select(self, chosen: list[Weights | None]) -> None:
        if chosen[0] is not None:
            self.model.load_state_dict(chosen[0])

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict()}  # references: building a checkpoint copies nothing

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])


class Stacked:
    """S seeds stacked: parameters and buffers (S, ...) each, run with `vmap` (`randomness="different"`)."""

    def __init__(self, nets: list[torch.nn.Module]):
        self.size = len(nets)
        self.norm = models.normalization(nets[0])
        self.params, self.buffers = stack_module_state(nets)  # leaves (S, ...), params require grad
        self.base = copy.deepcopy(nets[0]).to("meta")  # the architecture only; weights come from the stack

        def one(p: Weights, b: Weights, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))

        self._fwd_train = vmap(one, in_dims=(0, 0, 0), randomness="different")
        self._fwd_test = vmap(one, in_dims=(0, 0, None), randomness="different")

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self) -> None:
        self.base.train()

    def losses(self, xb: torch.Tensor, yb: torch.Tensor, autocast: bool,
               weight: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = self._fwd_train(self.params, self.buffers, _normalized(xb, self.norm))
        per_image = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none").view(self.size, -1)
        if weight is None:
            return per_image.mean(1)
        w = torch.gather(weight, 1, yb)  # each image's class weight in its seed's run: F.cross_entropy's weighted mean
        return (per_image * w).sum(1) / w.sum(1)

    def predict(self, x: torch.Tensor, autocast: bool, batch: int = 256) -> np.ndarray:
        self.base.eval()
        return _in_batches(lambda xb: self._fwd_test(self.params, self.buffers, xb), x, self.norm, autocast, batch)

    def weights(self, k: int) -> Weights:
        return {name: v[k].detach().clone() for name, v in {**self.params, **self.buffers}.items()}

    def select(self, chosen: list[Weights | None]) -> None:
        with torch.no_grad():
            for name, v in {**self.params, **self.buffers}.items():
                for k, w in enumerate(chosen):
                    if w is not None:
                        v[k].copy_(w[name])

    def state(self) -> dict[str, Any]:
        return {"params": {k: v.detach() for k, v in self.params.items()}, "buffers": self.buffers}

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for part, mine in (("params", self.params), ("buffers", self.buffers)):
                for k, v in state[part].items():
                    mine[k].copy_(v)


def stochastic_layers(net: torch.nn.Module) -> list[str]:
    """The layers of `net` that draw random numbers in training: dropout of any kind with a rate above 0, and
    timm's drop-path (stochastic depth) with one above 0."""
    out = []
    for name, layer in net.named_modules():
        rate = layer.p if isinstance(layer, torch.nn.modules.dropout._DropoutNd) else getattr(layer, "drop_prob", 0)
        if isinstance(rate, int | float) and rate > 0:
            out.append(f"{name} ({type(layer).__name__} {rate:g})")
    return out


def build(model: str, hp: HParams, seeds: list[int], dev: torch.device, fast: speed.Speed,
          num_classes: int = NUM_CLASSES) -> Nets:
    """The unit's networks, each initialised right after `torch.manual_seed(seed)` as its separate run is.
    Several seeds are stacked unless the network draws inside itself (see the module's docstring)."""
    nets = []
    for seed in seeds:
        torch.manual_seed(seed)
        nets.append(models.build(model, hp, num_classes).to(dev))
    if len(nets) > 1:
        drawing = stochastic_layers(nets[0])
        if drawing:
            raise SettingError(f"model {model}: seeds that draw inside the network cannot train together (their "
                               f"draws would not be their separate runs'): {', '.join(drawing[:3])}"
                               f"{' ...' if len(drawing) > 3 else ''}; set its rates to 0 or train without "
                               "pack_seeds")
        return Stacked(nets)
    net = nets[0]
    if fast.channels_last_for(dev.type, hparams.MODELS[model].channels_last):
        net = net.to(memory_format=torch.channels_last)
    return Single(net, speed.compiled(net) if fast.compile else net)
