"""Common random numbers: every random draw of a training image comes from (seed, epoch, image identity).

An image's identity is its row in the train split, or its pool line plus `POOL_OFFSET`; the same image in
two scenarios of one seed therefore gets the same key in every epoch, hence the same augmentation draws and
the same place relative to the other shared images in the batch order (the order is a sort by a hashed key).
The hash is splitmix64's finaliser on int64 tensors, computed where the data lives (no host round trip) and
depending on nothing but its inputs, so a resumed run draws exactly what an uninterrupted one would.

torch is imported on first use, like `augment`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

POOL_OFFSET = 1 << 40  # pool line l has identity POOL_OFFSET + l: never a train row
_MASK = (1 << 64) - 1


def _signed(v: int) -> int:
    """A 64-bit pattern as the int64 value torch stores for it."""
    v &= _MASK
    return v - (1 << 64) if v >> 63 else v


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)

# Draw streams of one image key: each purpose hashes the key with its own counter.
ORDER, HFLIP, POLICY, APPLY1, SIGN1, APPLY2, SIGN2 = range(7)


def identities(real_rows: np.ndarray, pool_rows: np.ndarray) -> np.ndarray:
    """Identities of a run's training images in the engine's order (`train.prepare`): real rows, then pool."""
    return np.concatenate([np.asarray(real_rows, np.int64), np.asarray(pool_rows, np.int64) + POOL_OFFSET])


def mix64_int(z: int) -> int:
    """splitmix64's finaliser on a Python int (the reference the tensor version is tested against)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return _signed(z ^ (z >> 31))


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    # torch's >> on int64 shifts the sign in; a logical shift masks it out.
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser, elementwise on an int64 tensor (multiplication wraps modulo 2**64)."""
    z = (z ^ _srl(z, 30)) * _M1
    z = (z ^ _srl(z, 27)) * _M2
    return z ^ _srl(z, 31)


def image_keys(seed: int, epoch: int, ids: torch.Tensor) -> torch.Tensor:
    """One int64 key per image of an epoch: a hash of (seed, epoch, identity)."""
    base = mix64_int(mix64_int(seed) + _GOLDEN * (epoch + 1))
    return mix64(ids * _GOLDEN + base)


def draw(keys: torch.Tensor, stream: int) -> torch.Tensor:
    """64 random bits per key for one purpose (`ORDER`, `HFLIP`, ...), independent across purposes."""
    return mix64(keys + _signed(_GOLDEN * (stream + 1)))


def draws_of(keys: torch.Tensor, streams: tuple[int, ...]) -> torch.Tensor:
    """`draw` for several streams at once: (len(keys), len(streams)), the same bits in fewer operations."""
    import torch

    offsets = torch.tensor([_signed(_GOLDEN * (s + 1)) for s in streams], dtype=torch.int64, device=keys.device)
    return mix64(keys.unsqueeze(1) + offsets)


def uniform(keys: torch.Tensor, stream: int) -> torch.Tensor:
    """float32 in [0, 1) on the grid k / 2**24, like `torch.rand`, so `u <= p` has torch's probabilities."""
    return uniform_of(draw(keys, stream))


def below(keys: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """A uniform integer in [0, n) per key (multiply-shift on 31 bits; bias below n / 2**31)."""
    return below_of(draw(keys, stream), n)


def uniform_of(bits: torch.Tensor) -> torch.Tensor:
    """`uniform` from 64 drawn bits."""
    return _srl(bits, 40).to(_float32()) * (1.0 / (1 << 24))


def below_of(bits: torch.Tensor, n: int) -> torch.Tensor:
    """`below` from 64 drawn bits."""
    return (_srl(bits, 33) * n) >> 31


def order(keys: torch.Tensor) -> torch.Tensor:
    """The epoch's batch order: positions sorted by each image's hashed key (a uniform permutation)."""
    import torch

    return torch.argsort(draw(keys, ORDER), stable=True)


def _float32() -> torch.dtype:
    import torch

    return torch.float32
