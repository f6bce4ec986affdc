"""One run: mix the training set, train, evaluate, write the JSON result.

Data sits on the device as uint8 tensors at the model's resolution; augmentation runs per image on
the batch; the forward pass uses bf16 autocast where asked. Every epoch ends with an atomic
checkpoint, and every epoch reseeds from (seed, epoch), so a run resumed after preemption gives
exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import atomic, augment, locks, models, pools, results, scenarios
from . import data as data_mod
from .errors import PoolError
from .metrics import classification_metrics
from .runtime import deterministic, environment, pick_device
from .spec import RunSpec

Log = Callable[[str], None]
# cuBLAS needs this before CUDA starts to be deterministic (see `runtime.deterministic`).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class Interrupted(RuntimeError):
    """Raised by `stop_after` (tests and benchmarks simulate a preemption with it)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def to_device_uint8(x: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 1, R, R) uint8 on the device, resized once for the whole run."""
    t = torch.from_numpy(x).unsqueeze(1).to(device)
    if t.shape[-1] == resolution:
        return t
    out = torch.empty((t.shape[0], 1, resolution, resolution), dtype=torch.uint8, device=device)
    for i in range(0, t.shape[0], 1024):
        chunk = F.interpolate(t[i : i + 1024].float(), size=(resolution, resolution), mode="bilinear",
                              antialias=True, align_corners=False)
        out[i : i + 1024] = chunk.round().clamp(0, 255).to(torch.uint8)
    return out


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds CUDA; augmentation, shuffling and dropout all draw from torch


def _set_aside(path: Path, why: str, log: Log) -> None:
    """Keep an unusable file for inspection, out of the way of the run that replaces it."""
    aside = path.with_name(path.name + ".bad")
    os.replace(path, aside)
    log(f"{path}: {why}; moved to {aside.name}, starting this run afresh")


def _load_checkpoint(path: Path, dev: torch.device, expect: dict[str, Any], log: Log) -> dict[str, Any] | None:
    """The checkpoint of this run if it is usable: readable, and made from the same data and selection."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location=dev, weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several types
        _set_aside(path, f"unreadable checkpoint ({type(e).__name__}: {e})", log)
        return None
    for key, value in expect.items():
        if ckpt.get(key) != value:
            _set_aside(path, f"checkpoint made with another {key} ({ckpt.get(key)} != {value})", log)
            return None
    if dev.type == "cpu" and ckpt.get("threads") not in (None, torch.get_num_threads()):
        # Float sums depend on the thread count: resume with the count the run started with.
        log(f"resuming with {ckpt['threads']} threads as the run started (not {torch.get_num_threads()})")
        torch.set_num_threads(int(ckpt["threads"]))
    return ckpt


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, norm: tuple[float, float], autocast: bool,
            batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = (x[i : i + batch].float() / 255.0 - norm[0]) / norm[1]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(model(xb).float().cpu())
    return torch.cat(out).numpy()


def execute(spec: RunSpec, results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
            log: Log = _stderr, stop_after: int | None = None, wait: bool = True) -> dict[str, Any]:
    """Train and evaluate one run under its run lock; return its result (read back if it already exists).
    A run another live process is training is waited for (then read back), or with wait=False raises
    `locks.Busy`, so several workers on one results folder split the work and train each run once."""
    run_id = spec.run_id

    def waiting(holder: dict[str, Any]) -> None:
        log(f"[{run_id}] {spec.label}: being trained by {locks.describe(holder)}; waiting for its result")

    with results.run_lock(results_dir, run_id, wait=wait, on_wait=waiting):
        return _execute(spec, results_dir, device=device, save_weights=save_weights, log=log, stop_after=stop_after)


def _diverged(spec: RunSpec, results_dir: Path, epoch: int, history: list[dict[str, Any]], mix: scenarios.Mix,
              ds: data_mod.Dataset, pool: pools.Pool | None, dev: torch.device, t_start: float, log: Log
              ) -> dict[str, Any]:
    """A non-finite training loss: stop, and record the run as diverged (its metrics null) so tables count it."""
    result = {
        "schema": results.SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), "status": "diverged",
        "diverged_at_epoch": epoch, "metrics": dict.fromkeys(results.REQUIRED_METRICS), "history": history,
        "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": ds.counts("test")},
        "data": {"fingerprint": ds.fingerprint, "source": ds.source, "resolution": ds.resolution,
                 "pool_fingerprint": pool.fingerprint if pool else None,
                 "pool_path": str(pool.path) if pool else None},
        "env": environment(dev), "timings": {"total_s": time.perf_counter() - t_start}, "weights": None,
    }
    results.write(results_dir, result)
    results.checkpoint_for(results_dir, spec.run_id).unlink(missing_ok=True)
    log(f"[{spec.run_id}] diverged: non-finite training loss in epoch {epoch}; recorded as diverged")
    return result


def _execute(spec: RunSpec, results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
             log: Log = _stderr, stop_after: int | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    results_dir = Path(results_dir)
    run_id = spec.run_id
    out = results.path_for(results_dir, run_id)
    if out.exists():
        try:
            return results.read(out)
        except results.ResultError as e:
            _set_aside(out, str(e), log)
    hp = spec.hparams
    dev = pick_device(device)
    ds = data_mod.load(spec.data)
    pool = pools.load(spec.pool, ds) if spec.scenario.needs_pool and spec.pool else None
    if pool is not None and pool.fingerprint != spec.pool_fingerprint:
        raise PoolError(
            f"pool {spec.pool} changed since run {spec.label} was planned (manifest {pool.fingerprint}, planned "
            f"{spec.pool_fingerprint}); plan it again (`mriaug grid` / `mriaug submit`) to train on the new pool"
        )
    mix = scenarios.mix(ds, spec.scenario, spec.seed, pool)
    x_np, y_np = scenarios.training_arrays(ds, mix, pool)
    res = hp.resolution
    x_train = to_device_uint8(x_np, res, dev)
    y_train = torch.from_numpy(y_np).to(dev)
    x_test = to_device_uint8(ds.test_x, res, dev)
    t_data = time.perf_counter() - t_start

    deterministic(dev)
    _seed_everything(spec.seed)
    model = models.build(spec.model, hp).to(dev)
    if dev.type == "cpu" and spec.model != "vit":
        model = model.to(memory_format=torch.channels_last)
    norm = models.normalization(model)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    use_bf16 = hp.precision == "bf16"
    aug = augment.get(spec.augmentation)

    ckpt_path = results.checkpoint_for(results_dir, run_id)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    identity = {"data_fingerprint": ds.fingerprint, "pool_fingerprint": pool.fingerprint if pool else None,
                "selection": atomic.stable_hash([mix.real_index.tolist(), mix.synthetic_index.tolist()])}
    ckpt = _load_checkpoint(ckpt_path, dev, identity, log)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        log(f"[{run_id}] {spec.label}: resumed from checkpoint at epoch {start_epoch}/{hp.epochs}")

    n, bs, epochs = len(y_train), hp.batch_size, hp.epochs
    log(f"[{run_id}] {spec.label}: {n} training images ({sum(mix.counts_synthetic.values())} synthetic), "
        f"{epochs} epochs on {dev}")
    t_train = 0.0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        _seed_everything(spec.seed * 100_003 + epoch + 1)
        model.train()
        perm = torch.randperm(n).to(dev)
        total, seen = 0.0, 0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = (aug(x_train[idx]).float() / 255.0 - norm[0]) / norm[1]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(xb).float(), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if not math.isfinite(total):
                break
        if not math.isfinite(total):  # diverged: further epochs and the metrics would mean nothing
            history.append({"epoch": epoch + 1, "train_loss": None, "diverged": True})
            return _diverged(spec, results_dir, epoch + 1, history, mix, ds, pool, dev, t_start, log)
        t_train += time.perf_counter() - t0
        logits = predict(model, x_test, norm, use_bf16)
        metrics = classification_metrics(logits, ds.test_y)
        history.append({"epoch": epoch + 1, "train_loss": total / max(seen, 1), "test_ce": metrics["test_ce"],
                        "test_accuracy": metrics["accuracy"], "seconds": time.perf_counter() - t0})
        log(f"[{run_id}] epoch {epoch + 1}/{epochs} train_loss={total / max(seen, 1):.4f} "
            f"test_ce={metrics['test_ce']:.4f} acc={metrics['accuracy']:.3f} ({time.perf_counter() - t0:.1f}s)")
        if epoch + 1 < epochs:
            with atomic.atomic_path(ckpt_path) as tmp:
                torch.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "history": history, "threads": torch.get_num_threads(), "device": dev.type,
                            "hparams": hp.to_dict(), **identity}, tmp)
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
            raise Interrupted(f"stopped after epoch {epoch + 1} as asked")

    # `metrics` are those of the last epoch's evaluation (the loop runs at least once: epochs >= 1).
    if save_weights:
        from safetensors.torch import save_file

        with atomic.atomic_path(results.weights_for(results_dir, run_id)) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    trained = (epochs - start_epoch) * n
    result = {
        "schema": results.SCHEMA,
        "run_id": run_id,
        "spec": spec.to_dict(),
        "metrics": metrics,
        "history": history,
        "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": ds.counts("test")},
        "selection": {"real_train_rows": mix.real_index.tolist(), "pool_rows": mix.synthetic_index.tolist()},
        "data": {"fingerprint": ds.fingerprint, "source": ds.source, "resolution": ds.resolution,
                 "pool_fingerprint": pool.fingerprint if pool else None,
                 "pool_path": str(pool.path) if pool else None},
        "env": environment(dev),
        "timings": {"data_s": t_data, "train_s": t_train, "total_s": time.perf_counter() - t_start,
                    "train_images_per_s": trained / t_train if t_train else None,
                    "resumed_from_epoch": start_epoch},
        "weights": str(results.weights_for(results_dir, run_id)) if save_weights else None,
    }
    results.write(results_dir, result)
    ckpt_path.unlink(missing_ok=True)
    log(f"[{run_id}] done: test_ce={metrics['test_ce']:.4f} accuracy={metrics['accuracy']:.3f}")
    return result
