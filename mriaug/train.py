"""The training engine: a unit of S >= 1 runs of one grid cell that differ only in seed (with several subject
splits, seeds of one split) is set up once, trained in one epoch loop, validated every epoch, tested once at the
end, and written as one JSON result per run. S = 1 trains a plain module (`mriaug.nets.Single`); a seed pack
(`[model.X] pack_seeds = S`, `mriaug.seedpack`) trains S stacked networks under `vmap` (`nets.Stacked`).

Data sits on the device as uint8 tensors at the model's resolution; augmentation runs on the whole
batch on the device; the forward pass uses bf16 autocast where asked and native; the device is read back once
per epoch (the summed losses and the evaluation logits). Batch order and augmentation draws come from
(seed, epoch, image identity) (`batches`), so the images two scenarios share are drawn alike and a packed seed
draws what its separate run draws. Epochs end with an atomic checkpoint (paced by `speed.CheckpointPacer`), and
every epoch reseeds from (seed, epoch), so a run resumed after preemption gives exactly the metrics of an
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import atomic, augment, batches, locks, pools, results, scenarios, speed
from . import data as data_mod
from . import nets as nets_mod
from .errors import PoolError, SettingError
from .metrics import classification_metrics, scan_metrics, weighted_ce
from .runtime import autocast_bf16, deterministic, environment, pick_device
from .spec import RunSpec

Log = Callable[[str], None]
# cuBLAS needs this before CUDA starts to be deterministic (see `runtime.deterministic`).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class Interrupted(RuntimeError):
    """Raised by `stop_after` (tests and benchmarks simulate a preemption with it)."""


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)  # pragma: no mutate


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


def _set_aside(path: Path, why: str, log: Log, what: str = "run") -> None:  # pragma: no mutate (log word)
    """Keep an unusable file for inspection, out of the way of the run that replaces it."""
    aside = path.with_name(path.name + ".bad")
    os.replace(path, aside)
    log(f"{path}: {why}; moved to {aside.name}, starting this {what} afresh")


def load_checkpoint(path: Path, dev: torch.device, expect: dict[str, Any], log: Log,
                    what: str = "run") -> dict[str, Any] | None:  # pragma: no mutate (the log's word)
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


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights of a run's training labels: n / (C * n_c) for each of the C classes
    present (so a balanced set weighs every class 1), 0 for a class the run does not train on."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    out = np.zeros(num_classes)
    out[present] = len(labels) / (present.sum() * counts[present])
    return out


def check_selectable(spec: RunSpec, has_val: bool) -> None:
    """select = 'best_val' needs a validation part to select on."""
    if spec.select == "best_val" and not has_val:
        raise SettingError(f"{spec.label}: select = 'best_val' needs a validation part; set the data option "
                           "val_fraction (e.g. -o val_fraction=0.1) or select = 'last'")


def unit_id(specs: list[RunSpec]) -> str:
    """A unit's name in logs and its checkpoint's: the run id of one run, a hash of the run ids of a pack."""
    return specs[0].run_id if len(specs) == 1 else "pack-" + atomic.stable_hash([s.run_id for s in specs])


def execute(spec: RunSpec, results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
            log: Log = log_to_stderr, stop_after: int | None = None, wait: bool = True) -> results.RunResult:
    """Train and evaluate one run under its run lock; return its result (read back if it already exists).
    A run another live process is training is waited for (then read back), or with wait=False raises
    `locks.Busy`, so several workers on one results folder split the work and train each run once."""
    run_id = spec.run_id  # pragma: no mutate (the waiting message's text only)

    def waiting(holder: dict[str, Any]) -> None:
        # pragma: no mutate start (log text)
        log(f"[{run_id}] {spec.label}: being trained by {locks.describe(holder)}; waiting for its result")
        # pragma: no mutate end

    with results.run_lock(results_dir, run_id, wait=wait, on_wait=waiting):
        return train_unit([spec], results_dir, device=device, save_weights=save_weights, log=log,
                          stop_after=stop_after)[0]


def finished(spec: RunSpec, results_dir: Path, log: Log) -> results.RunResult | None:
    """The run's result if it has a usable one; an unusable one (cut short, corrupted) is set aside."""
    out = results.path_for(results_dir, spec.run_id)
    if not out.exists():
        return None
    try:
        return results.read(out)
    except results.ResultError as e:
        _set_aside(out, str(e), log)
        return None


def result_data(spec: RunSpec, ds: data_mod.Dataset, pool: pools.Pool | None) -> dict[str, Any]:
    """The `data` part of a result: which data, split and pool the run used (collect keeps settings apart by it)."""
    return {"fingerprint": ds.fingerprint, "source": ds.source, "resolution": ds.resolution,
            "pool_fingerprint": pool.fingerprint if pool else None,
            "pool_path": str(pool.path) if pool else None,
            # None when the grid names no pool: `RunResult` gives the folder's name then, as tables do
            "pool_label": spec.pool_label if pool else None,
            "split": ds.split}


@dataclass
class Unit:
    """What a unit of S seeds trains on and with, set up once: the data on the device, each seed's rows of it
    and image identities, the networks and their optimizer."""

    specs: list[RunSpec]
    name: str  # in logs and the checkpoint's file name (`unit_id`)
    dev: torch.device
    ds: data_mod.Dataset
    pool: pools.Pool | None
    mixes: list[scenarios.Mix]
    images: torch.Tensor  # every image some seed trains on, once: real, then synthetic (uint8, on the device)
    labels: torch.Tensor
    rows: torch.Tensor  # (S, n): each seed's training images as rows of `images`: real ones, then synthetic
    ids: torch.Tensor  # (S, n): their identities, which key the batch order and augmentation (`batches`)
    x_test: torch.Tensor
    x_val: torch.Tensor | None
    y_val: np.ndarray
    steps_per_epoch: list[int]
    nets: nets_mod.Nets
    optimizer: torch.optim.Optimizer
    optimizer_name: str
    bf16: bool
    class_weight: torch.Tensor | None  # (S, classes): each seed's loss weights under class_weight = "balanced"
    identity: dict[str, Any]  # what a checkpoint must have been made from to resume this unit
    data_seconds: float

    @property
    def first(self) -> RunSpec:
        return self.specs[0]

    @property
    def n(self) -> int:
        return int(self.rows.shape[1])


def prepare(specs: list[RunSpec], *, device: str | None, t_start: float) -> Unit:
    """Load the data and pool, draw each seed's training set, put it on the device, build networks and optimizer."""
    s0 = specs[0]
    hp = s0.hparams
    dev = pick_device(device)
    ds = data_mod.load(s0.data)
    pool = pools.load(s0.pool, ds) if s0.scenario.needs_pool and s0.pool else None
    if pool is not None and pool.fingerprint != s0.pool_fingerprint:
        raise PoolError(
            f"pool {s0.pool} changed since run {s0.label} was planned (manifest {pool.fingerprint}, planned "
            f"{s0.pool_fingerprint}); plan it again (`mriaug grid` / `mriaug submit`) to train on the new pool"
        )
    mixes = [scenarios.mix(ds, s.scenario, s.seed, pool) for s in specs]
    # A seed's training images as rows of [training split; pool]: its real rows, then its pool lines (the layout
    # `batches.identities` names). Only the rows some seed trains on go to the device, each once.
    rows_np = [np.concatenate([m.real_index, len(ds.train_y) + m.synthetic_index]).astype(np.int64) for m in mixes]
    if len({len(r) for r in rows_np}) > 1:  # fixed per-class counts make this impossible; say so if it happens
        raise SettingError(f"{s0.label}: the seeds of this pack have training sets of different sizes; "
                           "train them without pack_seeds")
    used = np.unique(np.concatenate(rows_np))
    n_real = int(np.searchsorted(used, len(ds.train_y)))
    lines = used[n_real:] - len(ds.train_y)  # pool lines
    x_np = np.concatenate([ds.train_x[used[:n_real]], *([pool.images[lines]] if pool else [])])
    y_np = np.concatenate([ds.train_y[used[:n_real]], *([pool.labels[lines]] if pool else [])])
    rows_np = [np.searchsorted(used, r) for r in rows_np]  # positions in `images`
    has_val = len(ds.val_rows) > 0
    check_selectable(s0, has_val)
    ids = np.stack([batches.identities(m.real_index, m.synthetic_index) for m in mixes])
    images, labels = to_device_uint8(x_np, hp.resolution, dev), torch.from_numpy(y_np).to(dev)
    x_test = to_device_uint8(ds.test_x, hp.resolution, dev)
    x_val = to_device_uint8(ds.train_x[ds.val_rows], hp.resolution, dev) if has_val else None
    data_seconds = time.perf_counter() - t_start  # the data's time, before networks are built
    speed_settings = speed.settings()
    deterministic(dev, speed_settings.deterministic)
    nets = nets_mod.build(s0.model, hp, [s.seed for s in specs], dev, speed_settings, len(ds.classes))
    optimizer, optimizer_name = make_optimizer(nets.parameters(), hp.lr, hp.weight_decay)
    n = len(rows_np[0])
    return Unit(
        specs=specs, name=unit_id(specs), dev=dev, ds=ds, pool=pool, mixes=mixes, images=images, labels=labels,
        rows=torch.from_numpy(np.stack(rows_np)).to(dev), ids=torch.from_numpy(ids).to(dev),
        x_test=x_test, x_val=x_val, y_val=ds.train_y[ds.val_rows],
        steps_per_epoch=epoch_batches(n, hp.batch_size, hp.epochs, s0.budget, int(ds.fit_mask.sum())),
        nets=nets, optimizer=optimizer, optimizer_name=optimizer_name, bf16=autocast_bf16(hp.precision, dev),
        class_weight=(torch.tensor(np.stack([class_weights(y_np[r], len(ds.classes)) for r in rows_np]),
                                   dtype=torch.float32, device=dev) if hp.class_weight == "balanced" else None),
        identity={"layout": CHECKPOINT_LAYOUT, "run_ids": [s.run_id for s in specs], "data_fingerprint": ds.fingerprint,
                  "pool_fingerprint": pool.fingerprint if pool else None,
                  "selection": atomic.stable_hash([[m.real_index.tolist(), m.synthetic_index.tolist()]
                                                   for m in mixes])},
        data_seconds=data_seconds,
    )


# The checkpoint layout of the one engine; older checkpoints (a run's or a pack's own) are set aside, never resumed.
CHECKPOINT_LAYOUT = 3  # 3: a seed's best epoch is kept by "val_loss" (the weighted loss under class weights)


def train_epoch(u: Unit, epoch: int, alive: torch.Tensor) -> list[float]:
    """One epoch of every seed: its own batch order and augmentation draws, keyed by (seed, epoch, image), as its
    separate run draws them. Returns each seed's mean training loss (non-finite: it diverged)."""
    s0, bs = u.first, u.first.hparams.batch_size
    _seed_everything(s0.seed * 100_003 + epoch + 1)
    u.nets.train()
    keys = torch.stack([batches.image_keys(s.seed, epoch, u.ids[k]) for k, s in enumerate(u.specs)])
    perm = torch.stack([batches.order(keys[k]) for k in range(len(u.specs))])
    images_this_epoch = min(u.n, u.steps_per_epoch[epoch] * bs)  # the steps budget may cut the last pass short
    rows = torch.gather(u.rows, 1, perm)[:, :images_this_epoch]  # (S, m): rows of `images` in batch order
    keys = torch.gather(keys, 1, perm)[:, :images_this_epoch]
    aug = augment.get(s0.augmentation)
    # Augmentation runs ahead of the steps, `span` images per seed at a time (the whole epoch on a GPU: a handful
    # of launches instead of a few hundred per step; a few batches on the CPU): the same images, as each depends
    # only on its key.
    span = augment.ahead_images(u.dev, s0.augmentation, bs, u.images.shape[-2] * u.images.shape[-1],
                                images_this_epoch)
    augmented = u.images[:0]
    total = torch.zeros(len(u.specs), dtype=torch.float64, device=u.dev)  # summed on the device: no sync per step
    seen = 0
    for i in range(0, images_this_epoch, bs):
        idx = rows[:, i : i + bs]
        if span and i % span == 0:
            chunk = slice(i, min(i + span, images_this_epoch))
            augmented = augment.ahead(aug, u.images, rows[:, chunk].flatten(), keys[:, chunk].flatten())
            augmented = augmented.view(len(u.specs), -1, *u.images.shape[1:])
        xb = (augmented[:, i % span : i % span + bs] if span
              else aug(u.images.index_select(0, idx.flatten()), keys[:, i : i + bs].flatten()))
        losses = u.nets.losses(xb.view(*idx.shape, *u.images.shape[1:]), u.labels[idx], u.bf16, u.class_weight)
        u.optimizer.zero_grad(set_to_none=True)
        # Seeds share no parameter: each gets its own run's gradient, a diverged seed none.
        torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
        u.optimizer.step()
        total += losses.detach() * idx.shape[1]
        seen += idx.shape[1]
    return (total / max(seen, 1)).tolist()  # the epoch's one sync


def train_unit(specs: list[RunSpec], results_dir: str | Path, *, device: str | None = None,
               save_weights: bool = False, log: Log = log_to_stderr, stop_after: int | None = None
               ) -> list[results.RunResult]:
    """Train S >= 1 runs of one cell that differ only in seed together (the one training engine): validate every
    epoch, keep each seed's best validation weights (select = "best_val"), record a diverged seed as diverged
    while the others go on, checkpoint and resume, test once, write one result per run. Runs that already have
    a result are read back and not trained again. Returns the results in the order of `specs`."""
    t_start = time.perf_counter()
    results_dir = Path(results_dir)
    out: dict[str, results.RunResult] = {}
    for s in specs:
        r = finished(s, results_dir, log)
        if r is not None:
            out[s.run_id] = r
    todo = [s for s in specs if s.run_id not in out]
    # A pack whose checkpoint exists resumes whole (its finished seeds, e.g. diverged ones, no longer train);
    # otherwise only what is left trains, as a smaller unit.
    unit = specs if results.checkpoint_for(results_dir, unit_id(specs)).exists() else todo
    if todo:
        out.update(_train(unit, set(out), results_dir, device=device, save_weights=save_weights, log=log,
                          stop_after=stop_after, t_start=t_start))
    return [out[s.run_id] for s in specs]


def _train(specs: list[RunSpec], finished_ids: set[str], results_dir: Path, *, device: str | None,
           save_weights: bool, log: Log, stop_after: int | None, t_start: float) -> dict[str, results.RunResult]:
    u = prepare(specs, device=device, t_start=t_start)
    s0, S = u.first, len(specs)
    epochs = len(u.steps_per_epoch)
    ckpt_path = results.checkpoint_for(results_dir, u.name)
    pacer = speed.CheckpointPacer(speed.settings().checkpoint)
    histories: list[list[dict[str, Any]]] = [[] for _ in specs]
    best: list[dict[str, Any] | None] = [None] * S  # per seed: the epoch with the lowest validation loss, its weights
    start_epoch = 0
    ckpt = load_checkpoint(ckpt_path, u.dev, u.identity, log, what="run" if S == 1 else "pack")  # pragma: no mutate
    if ckpt is not None:
        u.nets.load_state(ckpt["nets"])
        u.optimizer.load_state_dict(ckpt["optimizer"])
        histories, start_epoch, best = ckpt["histories"], ckpt["epoch"], ckpt["best"]
        log(f"[{u.name}] {_label(specs)}: resumed from checkpoint at epoch {start_epoch}/{epochs}")
    env = environment(u.dev)  # once per unit (it asks git for the commit), after a resume has set the threads
    # pragma: no mutate start (log text)
    log(f"[{u.name}] {_label(specs)}: {u.n} training images ({sum(u.mixes[0].counts_synthetic.values())} "
        f"synthetic), {len(u.ds.val_rows)} validation, {epochs} epochs ({sum(u.steps_per_epoch)} steps, budget "
        f"{s0.budget}) on {u.dev}")
    # pragma: no mutate end
    written: dict[str, results.RunResult] = {}
    # A seed whose training loss stops being finite is written as diverged (its further epochs and metrics would
    # mean nothing) and stops contributing; the others go on. Its history says so, so a resumed unit knows it.
    alive = [s.run_id not in finished_ids and not any(h.get("diverged") for h in histories[k])
             for k, s in enumerate(specs)]
    t_train = 0.0
    for epoch in range(start_epoch, epochs):
        if not any(alive):
            break
        t0 = time.perf_counter()
        train_loss = train_epoch(u, epoch, torch.tensor(alive, device=u.dev))
        t_train += time.perf_counter() - t0
        # Per-epoch numbers come from validation only: the test set is looked at once, at the end.
        left = any(a and math.isfinite(v) for a, v in zip(alive, train_loss, strict=True))
        val_logits = u.nets.predict(u.x_val, u.bf16) if u.x_val is not None and left else None
        for k, spec in enumerate(specs):
            if not alive[k]:
                continue
            if not math.isfinite(train_loss[k]):
                histories[k].append({"epoch": epoch + 1, "train_loss": None, "diverged": True})
                alive[k] = False
                written[spec.run_id] = _write(u, k, results_dir, histories[k], t_start, env, diverged_at=epoch + 1)
                log(f"[{spec.run_id}] diverged: non-finite training loss in epoch {epoch + 1}; recorded as diverged")
                continue
            entry: dict[str, Any] = {"epoch": epoch + 1, "steps": sum(u.steps_per_epoch[: epoch + 1]),
                                     "train_loss": train_loss[k]}
            if val_logits is not None:
                vm = classification_metrics(val_logits[k], u.y_val, u.ds.classes)
                entry.update(val_ce=vm["test_ce"], val_accuracy=vm["accuracy"],
                             val_balanced_accuracy=vm["balanced_accuracy"])
                # Selection scores the loss that is trained: class-weighted where the training loss is.
                loss = vm["test_ce"]
                if u.class_weight is not None:
                    loss = entry["val_loss"] = weighted_ce(val_logits[k], u.y_val, u.class_weight[k].cpu().numpy())
                old = best[k]
                if s0.select == "best_val" and (old is None or loss < old["val_loss"]):
                    best[k] = {"epoch": epoch + 1, "val_loss": loss, "weights": u.nets.weights(k)}
            entry["seconds"] = time.perf_counter() - t0
            histories[k].append(entry)
        _log_epoch(u, epoch, epochs, histories, alive, log)
        if not any(alive):
            break
        checkpoint_epoch(ckpt_path, pacer, epoch + 1, epochs, stop_after, {
            "epoch": epoch + 1, "nets": u.nets.state(), "optimizer": u.optimizer.state_dict(),
            "histories": histories, "best": best, "threads": torch.get_num_threads(), "device": u.dev.type,
            "hparams": s0.hparams.to_dict(), **u.identity})

    # Each seed tested with the weights it selected: its best validation epoch's, or its last.
    chosen = best  # filled only under select = "best_val"
    u.nets.select([c["weights"] if c is not None else None for c in chosen])
    selected = [int(c["epoch"]) if c is not None else epochs for c in chosen]
    trained = sum(min(u.n, b * s0.hparams.batch_size) for b in u.steps_per_epoch[start_epoch:])
    live = [k for k in range(S) if alive[k]]
    test_logits = u.nets.predict(u.x_test, u.bf16) if live else None  # the test set's one look
    for k in live:
        assert test_logits is not None  # predicted whenever a seed is left
        spec = specs[k]
        if save_weights:
            from safetensors.torch import save_file

            with atomic.atomic_path(results.weights_for(results_dir, spec.run_id)) as tmp:
                save_file({name: v.contiguous() for name, v in u.nets.weights(k).items()}, str(tmp))
        written[spec.run_id] = _write(
            u, k, results_dir, histories[k], t_start, env, metrics=test_metrics(u, test_logits[k]),
            selected=selected[k],
            timings={"train_s": t_train, "train_images_per_s": trained / t_train if t_train else None,
                     **({"pack_images_per_s": S * trained / t_train if t_train else None} if S > 1 else {}),
                     "resumed_from_epoch": start_epoch},
            save_weights=save_weights)
        metrics = written[spec.run_id].metrics
        log(f"[{spec.run_id}] done: test_ce={metrics.test_ce:.4f} accuracy={metrics.accuracy:.3f}")  # pragma: no mutate
    ckpt_path.unlink(missing_ok=True)
    return written


def test_metrics(u: Unit, logits: np.ndarray) -> dict[str, Any]:
    """A seed's test metrics: per image, and per whole scan where the data knows its scans."""
    out = classification_metrics(logits, u.ds.test_y, u.ds.classes)
    if u.ds.test_groups is not None:
        out.update(scan_metrics(logits, u.ds.test_y, u.ds.test_groups))
    return out


def _label(specs: list[RunSpec]) -> str:
    # pragma: no mutate start (log text)
    s0 = specs[0]
    if len(specs) == 1:
        return s0.label
    return f"{s0.model}/s{s0.scenario.name}/{s0.augmentation}, seeds {[s.seed for s in specs]} trained together"
    # pragma: no mutate end


def _log_epoch(u: Unit, epoch: int, epochs: int, histories: list[list[dict[str, Any]]], alive: list[bool],
               log: Log) -> None:
    """One progress line per epoch (a Slurm log's view of the run): a run's numbers, or a pack's medians."""
    # pragma: no mutate start (log text)
    now = [h[-1] for h, a in zip(histories, alive, strict=True) if a and h and h[-1]["epoch"] == epoch + 1]
    if not now:
        return
    what = "" if len(histories) == 1 else " median"
    shown = f" train_loss{what}={float(np.median([e['train_loss'] for e in now])):.4f}"
    if "val_ce" in now[0]:
        shown += (f" val_ce{what}={float(np.median([e['val_ce'] for e in now])):.4f}"
                  f" val_acc{what}={float(np.median([e['val_accuracy'] for e in now])):.3f}")
    log(f"[{u.name}] epoch {epoch + 1}/{epochs}{shown} ({now[0]['seconds']:.1f}s)")
    # pragma: no mutate end


def _write(u: Unit, k: int, results_dir: Path, history: list[dict[str, Any]], t_start: float, env: dict[str, Any], *,
           diverged_at: int | None = None, metrics: dict[str, Any] | None = None, selected: int | None = None,
           timings: dict[str, Any] | None = None, save_weights: bool = False) -> results.RunResult:
    """Seed k's result, finished or diverged (its metrics null), written atomically."""
    spec, mix, hp = u.specs[k], u.mixes[k], u.first.hparams
    result: dict[str, Any] = {
        "schema": results.SCHEMA, "run_id": spec.run_id, "spec": spec.to_dict(),
        "metrics": metrics if metrics is not None else dict.fromkeys(results.REQUIRED_METRICS),
        "history": history,
        "training": {"budget": spec.budget, "epochs": len(u.steps_per_epoch), "steps": sum(u.steps_per_epoch),
                     "select": spec.select, "selected_epoch": selected, "optimizer": u.optimizer_name, "lr": hp.lr,
                     "weight_decay": hp.weight_decay, "precision": "bf16" if u.bf16 else "fp32",
                     **({"class_weights": dict(zip(u.ds.classes, u.class_weight[k].tolist(), strict=True))}
                        if u.class_weight is not None else {})},
        "validation": history[selected - 1] if selected is not None and u.x_val is not None else None,
        "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": u.ds.counts("test"),
                   "val": {name: int((u.y_val == c).sum()) for c, name in enumerate(u.ds.classes)}},
        "selection": {"real_train_rows": mix.real_index.tolist(), "pool_rows": mix.synthetic_index.tolist(),
                      "pool_sampling": mix.pool_sampling},
        "data": result_data(spec, u.ds, u.pool),
        "env": env,
        "timings": {"data_s": u.data_seconds, **(timings or {}), "total_s": time.perf_counter() - t_start,
                    "speed": speed.settings().to_dict()},
        "weights": str(results.weights_for(results_dir, spec.run_id)) if save_weights else None,
    }
    if diverged_at is not None:
        result.update(status="diverged", diverged_at_epoch=diverged_at, training=None, validation=None)
    if len(u.specs) > 1:  # trained in one model with other seeds of its cell: its separate run's draws
        result["packed"] = {"how": "torch.func vmap (mriaug.nets)", "pack": u.name, "size": len(u.specs),
                            "seeds": [s.seed for s in u.specs], "run_ids": [s.run_id for s in u.specs]}
    typed = results.RunResult.from_dict(result, results.path_for(results_dir, spec.run_id))
    results.write(results_dir, typed)
    return typed
