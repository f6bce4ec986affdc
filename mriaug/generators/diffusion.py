"""`diffusion`: a local class-conditional diffusion model; no image leaves the site, no paid API.

Model: a diffusers `UNet2DModel` (1 channel, `num_class_embeds` = 4 classes) trained with the DDPM
noise-prediction loss on the training images a pool may use: the train split, restricted to some
classes and/or to the real images one run keeps (`kept_for=SCENARIO:SEED`) so that the model never
sees a dropped image. `mriaug synth train-diffusion` trains it; the checkpoint (weights, EMA weights,
optimiser, step) is written atomically every `checkpoint_every` steps, and a rerun resumes from it
(every step draws its batch, noise and timesteps from a generator seeded by (seed, step), so a
resumed run follows the same path as an uninterrupted one).

Generation (SDEdit): the source image is noised to `strength` of the way along the DDIM schedule and
denoised with its class label; strength 0 returns the source, 1 ignores it. Noise is seeded per
(seed, source, variation), so a resumed pool gets the same images.

Cost (measured figures and the commands: benchmarks/README.md, "Diffusion generator"). The default model,
block_out_channels (32, 64, 128, 256), 2 ResNet layers per block, self-attention at the coarsest level, 128x128
input, has 15.5M parameters and costs 67.5 GFLOP per training image (forward + backward, torch's
FlopCounterMode): the GPU configuration, not measured on a GPU yet. The configuration the CPU study trains
(jobs/study.sh: 64x64, channels (16, 32, 64), 1 layer per block, batch 16, fp32) runs at 45-55 images/s on 2 CPU
cores, 800 steps in about 4.6 minutes per split.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..data.classes import CLASSES, NUM_CLASSES, class_index
from ..data.kept_for import KeptFor
from ..data.pools import PoolWriter
from ..data.sources import Dataset
from ..engine.runtime import pick_device
from ..errors import PoolError
from ..plan.scenarios import kept_for_rows
from ..store import atomic
from .base import seed_for

CHECKPOINT = "checkpoint.pt"
INFO = "diffusion.json"
DEFAULT_CHANNELS = (32, 64, 128, 256)
# What `trained_on` records of a model that learnt from the split's training part only (no validation row);
# models trained before this was recorded may have seen validation images, and pools.saw_validation says so.
TRAINED_PART = "fit"


class DiffusionError(PoolError):
    pass


def unet_config(resolution: int, channels: tuple[int, ...] = DEFAULT_CHANNELS, layers_per_block: int = 2,
                attention: bool = True) -> dict[str, Any]:
    """A `UNet2DModel` config; self-attention only on the coarsest level (16x16 at 128 px), where it is cheap."""
    n = len(channels)
    if resolution % 2 ** (n - 1):
        raise DiffusionError(f"diffusion: resolution {resolution} must be divisible by {2 ** (n - 1)} "
                             f"for {n} UNet levels (channels {channels})")
    attn = [attention and i == n - 1 and n > 2 for i in range(n)]
    groups = math.gcd(*channels, 32)
    return {
        "sample_size": resolution, "in_channels": 1, "out_channels": 1, "layers_per_block": layers_per_block,
        "block_out_channels": list(channels), "norm_num_groups": groups, "num_class_embeds": NUM_CLASSES,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
    }


def _noise(seed: int, chunk: list[tuple[int, int]], shape: tuple[int, ...]) -> torch.Tensor:
    """One noise image per (source, variation), each from its own generator, so an image does not
    depend on the batch it was made in."""
    return torch.cat([torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed_for(seed, s, v)))
                      for s, v in chunk])


def _to_model_range(x_uint8: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, R, R) float in [-1, 1]."""
    x = x_uint8.unsqueeze(1).float() / 127.5 - 1.0
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x


def _to_uint8(x: torch.Tensor, resolution: int) -> np.ndarray:
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu().numpy()


def training_rows(dataset: Dataset, classes: list[str] | None = None,
                  kept_for: KeptFor | None = None) -> np.ndarray:
    """Train rows the model may learn from: the training part only (never a validation or test image), and
    only kept ones when asked."""
    labels = [class_index(c) for c in classes] if classes else list(range(NUM_CLASSES))
    rows = np.flatnonzero(np.isin(dataset.train_y, labels) & dataset.fit_mask)
    if kept_for is not None:
        rows = rows[np.isin(rows, kept_for_rows(dataset, kept_for))]
    if len(rows) == 0:
        raise DiffusionError("diffusion: no training images left for the chosen classes / kept set")
    return rows


def _check_settings(steps: int, batch_size: int, checkpoint_every: int, seed: int, ema_decay: float,
                    precision: str) -> None:
    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DiffusionError(f"diffusion: {name} must be a whole number of at least 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DiffusionError(f"diffusion: seed must be a whole number of at least 0, got {seed!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise DiffusionError(f"diffusion: ema_decay {ema_decay} must be in [0, 1)")
    if precision not in ("fp32", "bf16"):
        raise DiffusionError(f"diffusion: precision {precision!r} must be fp32 or bf16")


def _build(config: dict[str, Any], seed: int, lr: float, dev: torch.device) -> tuple[Any, Any, torch.optim.Optimizer]:
    """The model (seeded), its EMA copy and the optimiser."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        model = UNet2DModel(**config).to(dev)
    ema = UNet2DModel(**config).to(dev)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    return model, ema, opt


def _resume(ckpt_path: Path, ident: dict[str, Any], model: Any, ema: Any, opt: torch.optim.Optimizer,
            dev: torch.device, steps: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The info to go on from: the checkpoint's at `ckpt_path` (its weights and optimiser loaded), or a fresh
    one when there is none. A checkpoint trained with other settings is refused."""
    if not ckpt_path.exists():
        return {**ident, "step": 0, "history": [], "train_seconds": 0.0}
    ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
    old = json.loads(ck["ident"])
    for k, v in ident.items():
        if json.dumps(old.get(k), sort_keys=True) != json.dumps(v, sort_keys=True):
            raise DiffusionError(f"{ckpt_path}: was trained with {k}={old.get(k)!r}, this run asks for {v!r}; "
                                 "use another --out or the same settings to resume")
    model.load_state_dict(ck["model"])
    ema.load_state_dict(ck["ema"])
    opt.load_state_dict(ck["optimizer"])
    info: dict[str, Any] = json.loads(ck["info"])
    log(f"diffusion: resumed {ckpt_path} at step {info['step']}/{steps}")
    return info


def _train_step(model: Any, ema: Any, opt: torch.optim.Optimizer, sched: Any, x_all: torch.Tensor,
                y_all: torch.Tensor, dev: torch.device, *, step: int, seed: int, batch_size: int, res: int,
                precision: str, ema_decay: float) -> torch.Tensor:
    """One DDPM step on a batch, noise and timesteps drawn from a generator seeded by (seed, step), then the
    EMA update; returns the loss."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(0, len(x_all), (batch_size,), generator=g).to(dev)
    x0 = _to_model_range(x_all[idx], res)
    noise = torch.randn(x0.shape, generator=g).to(dev)
    t = torch.randint(0, sched.config.num_train_timesteps, (batch_size,), generator=g).to(dev)
    xt = sched.add_noise(x0, noise, t)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        pred = model(xt, t, class_labels=y_all[idx]).sample
    loss = F.mse_loss(pred.float(), noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        # EMA warm-up: early on the average would be mostly the random initialisation.
        d = min(ema_decay, (1 + step) / (10 + step))
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - d)
    return loss


def _rows_ident(rows: np.ndarray, classes: list[str] | None, kept_for: KeptFor | None) -> dict[str, Any]:
    """The identity keys of the images a model learns from."""
    return {"rows_sha256": atomic.sha256_bytes(rows.astype(np.int64).tobytes()), "n_rows": int(len(rows)),
            "classes": classes, "kept_for": kept_for.pair() if kept_for else None}


def _save(out: Path, model: Any, ema: Any, opt: torch.optim.Optimizer, ident: dict[str, Any], info: dict[str, Any],
          config: dict[str, Any]) -> None:
    """The checkpoint (weights, EMA weights, optimiser, identity, info) and diffusion.json, each atomically."""
    blob = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "ident": json.dumps(ident), "info": json.dumps(info), "unet": json.dumps(config)}
    with atomic.atomic_path(out / CHECKPOINT) as tmp:
        torch.save(blob, tmp)
    atomic.write_json(out / INFO, info)


class _Window:
    """The loss and speed of the steps since the last checkpoint."""

    def __init__(self) -> None:
        self.t0, self.loss, self.n = time.perf_counter(), 0.0, 0

    def add(self, loss: float) -> None:
        self.loss += loss
        self.n += 1

    def close(self, info: dict[str, Any], step: int, batch_size: int) -> None:
        """Book the window in `info` (its time, mean loss and images per second) and start the next one."""
        dt = time.perf_counter() - self.t0
        info["train_seconds"] += dt
        info["history"].append({"step": step, "loss": self.loss / self.n,
                                "images_per_s": self.n * batch_size / dt if dt else None})
        self.t0, self.loss, self.n = time.perf_counter(), 0.0, 0


def train(dataset: Dataset, out: str | Path, *, steps: int, batch_size: int = 64, lr: float = 2e-4,
          resolution: int | None = None, channels: tuple[int, ...] = DEFAULT_CHANNELS, layers_per_block: int = 2,
          attention: bool = True, classes: list[str] | None = None, kept_for: KeptFor | None = None,
          seed: int = 0, checkpoint_every: int = 500, ema_decay: float = 0.999, precision: str = "bf16",
          device: str | None = None, progress_bar: bool = True, log: Callable[[str], None] = print,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume training) to `steps` steps; returns the info written to `diffusion.json`."""
    from diffusers import DDPMScheduler
    from tqdm import tqdm

    _check_settings(steps, batch_size, checkpoint_every, seed, ema_decay, precision)
    out = Path(out)
    dev = pick_device(device)
    res = int(resolution or dataset.resolution)
    rows = training_rows(dataset, classes, kept_for)
    config = unet_config(res, tuple(channels), layers_per_block, attention)
    ident = {"data_fingerprint": dataset.fingerprint, "data_source": dataset.source, "unet": config,
             **_rows_ident(rows, classes, kept_for), "seed": seed, "trained_part": TRAINED_PART,
             "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "precision": precision}

    model, ema, opt = _build(config, seed, lr, dev)
    sched = DDPMScheduler(num_train_timesteps=1000)
    ckpt_path = out / CHECKPOINT
    info = _resume(ckpt_path, ident, model, ema, opt, dev, steps, log)

    x_all = torch.from_numpy(dataset.train_x[rows]).to(dev)
    y_all = torch.from_numpy(dataset.train_y[rows].astype(np.int64)).to(dev)

    start = int(info["step"])
    model.train()
    window = _Window()
    with tqdm(total=steps, initial=start, desc="train-diffusion", unit="step", disable=not progress_bar) as bar:
        for step in range(start, steps):
            loss = _train_step(model, ema, opt, sched, x_all, y_all, dev, step=step, seed=seed,
                               batch_size=batch_size, res=res, precision=precision, ema_decay=ema_decay)
            window.add(float(loss.detach()))
            info["step"] = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            last = step + 1 == steps
            if (step + 1) % checkpoint_every == 0 or last or (stop_after is not None and step + 1 >= stop_after):
                window.close(info, step + 1, batch_size)
                _save(out, model, ema, opt, ident, info, config)
                if stop_after is not None and step + 1 >= stop_after and not last:
                    return info
    if start >= steps:
        log(f"diffusion: {ckpt_path} is already trained to step {start} (asked {steps})")
    return info


class DiffusionGenerator:
    name = "diffusion"

    def __init__(self, checkpoint: str, strength: float = 0.5, steps: int = 50, seed: int = 0,
                 batch_size: int = 16, device: str | None = None, use_ema: bool = True, flush_every: int = 100):
        checks.number(strength, "diffusion generator: strength", lo=0.0, hi=1.0, lo_open=True)
        for name, value in (("steps", steps), ("batch_size", batch_size), ("flush_every", flush_every)):
            checks.positive_int(value, f"diffusion generator: {name}")
        checks.seed(seed, "diffusion generator: seed")
        self.checkpoint = Path(checkpoint)
        if self.checkpoint.is_dir():
            self.checkpoint = self.checkpoint / CHECKPOINT
        if not self.checkpoint.exists():
            raise DiffusionError(f"diffusion generator: no checkpoint at {self.checkpoint}; "
                             "train one with `mriaug synth train-diffusion --out DIR`")
        self.strength, self.steps, self.seed = float(strength), int(steps), int(seed)
        self.batch_size, self.device, self.use_ema, self.flush_every = int(batch_size), device, use_ema, flush_every
        self._ck: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._ck is None:
            self._ck = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        return self._ck

    def params(self) -> dict[str, Any]:
        info = json.loads(self._load()["info"])
        return {"checkpoint": str(self.checkpoint), "trained_steps": info["step"], "kept_for": info["kept_for"],
                "trained_rows": info["n_rows"], "rows_sha256": info["rows_sha256"], "strength": self.strength,
                "steps": self.steps, "seed": self.seed, "scheduler": "ddim", "ema": self.use_ema}

    def trained_on(self) -> dict[str, Any]:
        """The rows the model learnt from, recorded per run in pool.json (`trained_on`): a run that drops
        real images must not use variations from a model that saw them."""
        ident = json.loads(self._load()["ident"])
        return {"kept_for": ident["kept_for"], "classes": ident["classes"], "n_rows": ident["n_rows"],
                "rows_sha256": ident["rows_sha256"], "data_fingerprint": ident["data_fingerprint"],
                "trained_part": ident.get("trained_part")}

    def run(self, writer: PoolWriter, todo: Iterable[tuple[int, int]],
            progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        from diffusers import DDIMScheduler, UNet2DModel

        ck = self._load()
        ident = json.loads(ck["ident"])
        if ident["data_fingerprint"] != writer.dataset.fingerprint:
            raise DiffusionError(f"{self.checkpoint}: trained on dataset {ident['data_fingerprint']}, but the pool's "
                                 f"dataset is {writer.dataset.fingerprint}")
        # This run's kept set, not the pool's (which earlier runs decide). A model that saw rows outside
        # it (another kept set, or all rows) would leak images the run drops into its variations.
        run_kept = writer.run.get("kept_for")
        if run_kept is not None and ident["kept_for"] != [run_kept["scenario"], run_kept["seed"]]:
            seen = "every train row" if ident["kept_for"] is None else f"the kept set of {ident['kept_for']}"
            raise DiffusionError(f"{self.checkpoint}: trained on {seen}, but this pool run is for the kept set of "
                                 f"{run_kept['scenario']}:{run_kept['seed']}; train a model with "
                                 f"`mriaug synth train-diffusion --kept-for {run_kept['scenario']}:{run_kept['seed']}`")
        config = json.loads(ck["unet"])
        dev = pick_device(self.device)
        model = UNet2DModel(**config).to(dev).eval()
        model.load_state_dict(ck["ema" if self.use_ema else "model"])
        sched = DDIMScheduler(num_train_timesteps=1000)
        sched.set_timesteps(self.steps)
        ts = sched.timesteps[self.steps - max(1, round(self.steps * self.strength)):]
        res_model, res_out = int(config["sample_size"]), writer.dataset.resolution
        todo = list(todo)
        n = 0
        params = {**self.params()}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            src = np.array([s for s, _ in chunk])
            x0 = _to_model_range(torch.from_numpy(writer.dataset.train_x[src]), res_model).to(dev)
            labels = torch.from_numpy(writer.dataset.train_y[src].astype(np.int64)).to(dev)
            noise = _noise(self.seed, chunk, tuple(x0.shape[1:])).to(dev)
            x = sched.add_noise(x0, noise, ts[:1].repeat(len(chunk)).to(dev))
            with torch.no_grad():
                for t in ts:
                    eps = model(x, t.to(dev), class_labels=labels).sample
                    x = sched.step(eps, t, x).prev_sample
            for (s, v), img in zip(chunk, _to_uint8(x.float().cpu(), res_out), strict=True):
                writer.add(img, s, v, self.name, {**params, "variation": v})
                n += 1
                progress(1)
            if n % self.flush_every < len(chunk):
                writer.flush()
        writer.flush()
        return {"generated": n, "failed": {}}


__all__ = ["CLASSES", "DiffusionGenerator", "train", "training_rows", "unet_config"]
