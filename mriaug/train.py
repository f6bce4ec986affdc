"""One run: mix the training set, train, validate every epoch, test once at the end, write the JSON result.

Data sits on the device as uint8 tensors at the model's resolution; augmentation runs on the whole
batch on the device; the forward pass uses bf16 autocast where asked; the device is read back once per
epoch (the summed loss and the evaluation logits). Batch order and augmentation draws come from
(seed, epoch, image identity) (`batches`), so the images two scenarios share are drawn alike. Every
epoch ends with an atomic checkpoint, and every epoch reseeds from (seed, epoch), so a run resumed after
preemption gives exactly the metrics of an uninterrupted one.
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

from . import atomic, augment, batches, locks, models, pools, results, scenarios, speed
from . import data as data_mod
from .classes import CLASSES
from .errors import PoolError, SettingError
from .metrics import classification_metrics
from .runtime import autocast_bf16, deterministic, environment, pick_device
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
    torch.manual_seed(seed)  # also seeds CUDA: initialisation and dropout draw from torch (order and augmentation
    # draw from `batches` keys instead)


def _set_aside(path: Path, why: str, log: Log, what: str = "run") -> None:
    """Keep an unusable file for inspection, out of the way of the run that replaces it."""
    aside = path.with_name(path.name + ".bad")
    os.replace(path, aside)
    log(f"{path}: {why}; moved to {aside.name}, starting this {what} afresh")


def load_checkpoint(path: Path, dev: torch.device, expect: dict[str, Any], log: Log,
                    what: str = "run") -> dict[str, Any] | None:
    """The checkpoint of this run (or seed pack) if it is usable: readable, and made from the same `expect`
    identity (data, selection, ...); an unusable one is set aside."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location=dev, weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch raises several types
        _set_aside(path, f"unreadable checkpoint ({type(e).__name__}: {e})", log, what)
        return None
    for key, value in expect.items():
        if ckpt.get(key) != value:
            _set_aside(path, f"checkpoint made with another {key} ({ckpt.get(key)} != {value})", log, what)
            return None
    if dev.type == "cpu" and ckpt.get("threads") not in (None, torch.get_num_threads()):
        # Float sums depend on the thread count: resume with the count the run started with.
        log(f"resuming with {ckpt['threads']} threads as the {what} started (not {torch.get_num_threads()})")
        torch.set_num_threads(int(ckpt["threads"]))
    return dict(ckpt)


def checkpoint_epoch(path: Path, pacer: speed.CheckpointPacer, done: int, epochs: int, stop_after: int | None,
                     state: dict[str, Any]) -> None:
    """After epoch `done` of `epochs`: save the resume checkpoint `state` (state dicts hold references, so
    building it costs nothing) atomically when the pacer says it is due or the run is to stop here
    (`stop_after`, which then raises `Interrupted`)."""
    if done >= epochs:
        return
    stopping = stop_after is not None and done >= stop_after
    if stopping or pacer.due():
        started = time.perf_counter()
        with atomic.atomic_path(path) as tmp:
            torch.save(state, tmp)
        pacer.saved(started)
    if stopping:
        raise Interrupted(f"stopped after epoch {done} as asked")


def epoch_batches(n: int, batch_size: int, epochs: int, budget: str, n_scenario1: int) -> list[int]:
    """Optimizer steps per epoch. "epochs": every epoch a full pass over the run's n images (the thesis).
    "steps": the steps scenario 1 takes in `epochs` full passes over its n_scenario1 images, spent in passes
    over this run's images, the last one cut short where the budget ends."""
    per_epoch = math.ceil(n / batch_size)
    if budget == "epochs":
        return [per_epoch] * epochs
    total = epochs * math.ceil(n_scenario1 / batch_size)
    return [per_epoch] * (total // per_epoch) + ([total % per_epoch] if total % per_epoch else [])


def make_optimizer(model: torch.nn.Module | list[torch.Tensor], lr: float, weight_decay: float
                   ) -> tuple[torch.optim.Optimizer, str]:
    """Adam, or AdamW (decoupled decay) whenever there is weight decay: Adam's L2 penalty is rescaled by its
    per-weight step sizes and drags pretrained weights toward zero. Both are element-wise, so over a seed pack's
    stacked parameters (a list of tensors) they are one optimizer per seed."""
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else model
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay), "adamw"
    return torch.optim.Adam(params, lr=lr), "adam"


def check_selectable(spec: RunSpec, has_val: bool) -> None:
    """select = 'best_val' needs a validation part to select on."""
    if spec.select == "best_val" and not has_val:
        raise SettingError(f"{spec.label}: select = 'best_val' needs a validation part; set the data option "
                           "val_fraction (e.g. -o val_fraction=0.1) or select = 'last'")


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, norm: tuple[float, float], autocast: bool,
            batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = (x[i : i + batch].float() / 255.0 - norm[0]) / norm[1]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(model(xb).float())
    return torch.cat(out).cpu().numpy()  # one copy to the host


def execute(spec: RunSpec, results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
            log: Log = _stderr, stop_after: int | None = None, wait: bool = True) -> dict[str, Any]:
    """Train and evaluate one run under its run lock; return its result (read back if it already exists).
    A run another live process is training is waited for (then read back), or with wait=False raises
    `locks.Busy`, so several workers on one results folder split the work and train each run once."""
    run_id = spec.run_id  # pragma: no mutate (the waiting message's text only)

    def waiting(holder: dict[str, Any]) -> None:
        # pragma: no mutate start (log text)
        log(f"[{run_id}] {spec.label}: being trained by {locks.describe(holder)}; waiting for its result")
        # pragma: no mutate end

    with results.run_lock(results_dir, run_id, wait=wait, on_wait=waiting):
        return _execute(spec, results_dir, device=device, save_weights=save_weights, log=log, stop_after=stop_after)


def result_data(spec: RunSpec, ds: data_mod.Dataset, pool: pools.Pool | None) -> dict[str, Any]:
    """The `data` part of a result: which data, split and pool the run used (collect keeps settings apart by it)."""
    return {"fingerprint": ds.fingerprint, "source": ds.source, "resolution": ds.resolution,
            "pool_fingerprint": pool.fingerprint if pool else None,
            "pool_path": str(pool.path) if pool else None, "pool_label": spec.pool_label if pool else None,
            "split": ds.split}


def write_diverged(spec: RunSpec, results_dir: Path, epoch: int, history: list[dict[str, Any]], mix: scenarios.Mix,
                   ds: data_mod.Dataset, pool: pools.Pool | None, dev: torch.device, t_start: float, log: Log
                   ) -> dict[str, Any]:
    """A non-finite training loss: stop, and record the run as diverged (its metrics null) so tables count it."""
    result = {
        "schema": results.SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(), "status": "diverged",
        "diverged_at_epoch": epoch, "metrics": dict.fromkeys(results.REQUIRED_METRICS), "history": history,
        "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": ds.counts("test")},
        "data": result_data(spec, ds, pool),
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
    ids = torch.from_numpy(batches.identities(mix.real_index, mix.synthetic_index)).to(dev)
    x_test = to_device_uint8(ds.test_x, res, dev)
    has_val = len(ds.val_rows) > 0
    check_selectable(spec, has_val)
    x_val = to_device_uint8(ds.train_x[ds.val_rows], res, dev) if has_val else None
    y_val = ds.train_y[ds.val_rows]
    t_data = time.perf_counter() - t_start

    fast = speed.settings()
    deterministic(dev, fast.deterministic)
    _seed_everything(spec.seed)
    model = models.build(spec.model, hp).to(dev)
    if fast.channels_last_for(dev.type, spec.model):
        model = model.to(memory_format=torch.channels_last)
    forward = speed.compiled(model) if fast.compile else model
    norm = models.normalization(model)
    opt, opt_name = make_optimizer(model, hp.lr, hp.weight_decay)
    use_bf16 = autocast_bf16(hp.precision, dev)  # bf16 only where the device has it natively
    aug = augment.get(spec.augmentation)
    pacer = speed.CheckpointPacer(fast.checkpoint)

    n, bs = len(y_train), hp.batch_size
    plan = epoch_batches(n, bs, hp.epochs, spec.budget, int(ds.fit_mask.sum()))
    epochs = len(plan)
    ckpt_path = results.checkpoint_for(results_dir, run_id)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best: dict[str, Any] | None = None  # the epoch with the lowest validation loss, and its weights
    identity = {"data_fingerprint": ds.fingerprint, "pool_fingerprint": pool.fingerprint if pool else None,
                "selection": atomic.stable_hash([mix.real_index.tolist(), mix.synthetic_index.tolist()])}
    ckpt = load_checkpoint(ckpt_path, dev, identity, log)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history, start_epoch, best = ckpt["history"], ckpt["epoch"], ckpt.get("best")
        log(f"[{run_id}] {spec.label}: resumed from checkpoint at epoch {start_epoch}/{epochs}")

    # pragma: no mutate start (log text)
    log(f"[{run_id}] {spec.label}: {n} training images ({sum(mix.counts_synthetic.values())} synthetic), "
        f"{len(ds.val_rows)} validation, {epochs} epochs ({sum(plan)} steps, budget {spec.budget}) on {dev}")
    # pragma: no mutate end
    t_train = 0.0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        _seed_everything(spec.seed * 100_003 + epoch + 1)
        model.train()
        keys = batches.image_keys(spec.seed, epoch, ids)
        perm = batches.order(keys)
        m = min(n, plan[epoch] * bs)
        # Augmentation runs ahead of the steps, `span` images at a time (the whole epoch on a GPU: a handful of
        # launches instead of a few hundred per step; a few batches on the CPU): the same images, as each
        # depends only on its key.
        span = augment.ahead_images(dev, spec.augmentation, bs, x_train.shape[-2] * x_train.shape[-1], m)
        ahead = x_train[:0]
        loss_sum, seen = torch.zeros((), dtype=torch.float64, device=dev), 0
        for i in range(0, m, bs):
            idx = perm[i : i + bs]
            if span and i % span == 0:
                chunk = perm[i : min(i + span, m)]
                ahead = augment.ahead(aug, x_train, chunk, keys[chunk])
            # index_select: `x_train[idx]` copies uint8 images element by element on the CPU (20x slower).
            raw = ahead[i % span : i % span + bs] if span else aug(x_train.index_select(0, idx), keys[idx])
            xb = (raw.float() / 255.0 - norm[0]) / norm[1]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(forward(xb).float(), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)  # summed on the device: no sync per step
            seen += len(idx)
        total = float(loss_sum)  # the epoch's one sync; a non-finite sum means some step diverged
        if not math.isfinite(total):  # diverged: further epochs and the metrics would mean nothing
            history.append({"epoch": epoch + 1, "train_loss": None, "diverged": True})
            return write_diverged(spec, results_dir, epoch + 1, history, mix, ds, pool, dev, t_start, log)
        t_train += time.perf_counter() - t0
        # Per-epoch numbers come from validation only: the test set is looked at once, at the end.
        entry: dict[str, Any] = {"epoch": epoch + 1, "steps": sum(plan[: epoch + 1]),
                                 "train_loss": total / max(seen, 1)}
        shown = ""
        if x_val is not None:
            vm = classification_metrics(predict(model, x_val, norm, use_bf16), y_val)
            entry.update(val_ce=vm["test_ce"], val_accuracy=vm["accuracy"],
                         val_balanced_accuracy=vm["balanced_accuracy"])
            shown = f" val_ce={vm['test_ce']:.4f} val_acc={vm['accuracy']:.3f}"  # pragma: no mutate
            if spec.select == "best_val" and (best is None or vm["test_ce"] < best["val_ce"]):
                best = {"epoch": epoch + 1, "val_ce": vm["test_ce"],
                        "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        # pragma: no mutate start (log text)
        log(f"[{run_id}] epoch {epoch + 1}/{epochs} train_loss={entry['train_loss']:.4f}{shown} "
            f"({entry['seconds']:.1f}s)")
        # pragma: no mutate end
        checkpoint_epoch(ckpt_path, pacer, epoch + 1, epochs, stop_after, {
            "epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history,
            "threads": torch.get_num_threads(), "device": dev.type, "hparams": hp.to_dict(), "best": best,
            **identity})

    selected = epochs
    if spec.select == "best_val" and best is not None:
        model.load_state_dict(best["model"])
        selected = int(best["epoch"])
    metrics = classification_metrics(predict(model, x_test, norm, use_bf16), ds.test_y)
    if save_weights:
        from safetensors.torch import save_file

        with atomic.atomic_path(results.weights_for(results_dir, run_id)) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    trained = sum(min(n, b * bs) for b in plan[start_epoch:])
    result = {
        "schema": results.SCHEMA,
        "run_id": run_id,
        "spec": spec.to_dict(),
        "metrics": metrics,
        "history": history,
        "training": {"budget": spec.budget, "epochs": epochs, "steps": sum(plan), "select": spec.select,
                     "selected_epoch": selected, "optimizer": opt_name, "lr": hp.lr, "weight_decay": hp.weight_decay,
                     "precision": "bf16" if use_bf16 else "fp32"},
        "validation": history[selected - 1] if has_val else None,
        "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": ds.counts("test"),
                   "val": {name: int((y_val == k).sum()) for k, name in enumerate(CLASSES)}},
        "selection": {"real_train_rows": mix.real_index.tolist(), "pool_rows": mix.synthetic_index.tolist(),
                      "pool_sampling": mix.pool_sampling},
        "data": result_data(spec, ds, pool),
        "env": environment(dev),
        "timings": {"data_s": t_data, "train_s": t_train, "total_s": time.perf_counter() - t_start,
                    "train_images_per_s": trained / t_train if t_train else None,
                    "resumed_from_epoch": start_epoch, "speed": fast.to_dict()},
        "weights": str(results.weights_for(results_dir, run_id)) if save_weights else None,
    }
    results.write(results_dir, result)
    ckpt_path.unlink(missing_ok=True)
    log(f"[{run_id}] done: test_ce={metrics['test_ce']:.4f} accuracy={metrics['accuracy']:.3f}")  # pragma: no mutate
    return result
