"""The training engine: a unit of 1..S runs of one grid cell that differ only in seed (with several subject
splits, seeds of one split) is set up once, trained in one epoch loop, validated every epoch, tested once at the
end, and written as one JSON result per run. `run_unit` is its one entry, for the local scheduler
(`mriaug.local`) and Slurm tasks (`mriaug.slurm.tasks`) alike. One run trains a plain module
(`mriaug.engine.nets.Single`); a seed pack (`[model.X] pack_seeds = S`, `mriaug.engine.seedpack`) trains S stacked
networks under `vmap` (`nets.Stacked`).

Data sits on the device as uint8 tensors at the model's resolution; augmentation runs on the whole
batch on the device; the forward pass uses bf16 autocast where asked and native; the device is read back once
per epoch (the summed losses and the evaluation logits). Batch order and augmentation draws come from
(seed, epoch, image identity) (`batches`), so the images two scenarios share are drawn alike and a packed seed
draws what its separate run draws. Epochs end with an atomic checkpoint (`checkpoints.Store`, paced by
`checkpoints.Schedule`), and every epoch reseeds from (seed, epoch), so a run resumed after preemption gives
exactly the metrics of an uninterrupted one.

Reading order: `run_unit` (locks, results already there) -> `fit` (the loop) -> `prepare` (a `Unit`: data,
networks, optimizer), `train_epoch`, `record_epoch` (each seed's `SeedState`), `test_and_write`, `write_result`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import pools
from ..data import sources as data_mod
from ..errors import PoolError, SettingError
from ..plan import scenarios
from ..plan.spec import RunSpec
from ..store import atomic, locks, results
from . import augment, batches, checkpoints, seedpack, speed
from . import nets as nets_mod
from .checkpoints import Interrupted as Interrupted
from .metrics import classification_metrics, scan_metrics, weighted_ce
from .runtime import autocast_bf16, deterministic, environment, pick_device

Log = Callable[[str], None]
# cuBLAS needs this before CUDA starts to be deterministic (see `runtime.deterministic`).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# The checkpoint layout of the one engine; older checkpoints (a run's or a pack's own) are set aside, never resumed.
CHECKPOINT_LAYOUT = 3  # 3: a seed's best epoch is kept by "val_loss" (the weighted loss under class weights)


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)  # pragma: no mutate


# --- the entry ---------------------------------------------------------------------------------------------


def run_unit(specs: list[RunSpec], results_dir: str | Path, *, device: str | None = None,
             save_weights: bool = False, log: Log = log_to_stderr, stop_after: int | None = None,
             wait: bool = True) -> list[results.RunResult]:
    """Train a unit (one run, or S runs of one cell that differ only in seed) under its runs' locks and return
    their results in the order of `specs`. Runs that already have a result are read back, not trained again.
    A run another live process holds is waited for, or with wait=False raises `locks.Busy` (no lock of the
    unit is kept then), so several workers on one results folder split the work and train each run once."""
    seedpack.check_pack(specs)
    results_dir = Path(results_dir)
    with ExitStack() as held:
        for spec in sorted(specs, key=lambda s: s.run_id):  # one order for every worker: no two wait on each other
            held.enter_context(results.run_lock(results_dir, spec.run_id, wait=wait, on_wait=_waiting(spec, log)))
        # A killed writer of a pack's checkpoint leaves a temporary file the runs' own locks do not name.
        locks.remove_leftovers([(results_dir / ".checkpoints", f".{unit_id(specs)}.pt.*.tmp")])
        t_start = time.perf_counter()
        out = {s.run_id: r for s in specs if (r := read_finished(s, results_dir, log)) is not None}
        todo = [s for s in specs if s.run_id not in out]
        # A pack whose checkpoint exists resumes whole (its finished seeds, e.g. diverged ones, no longer train);
        # otherwise only what is left trains, as a smaller unit.
        to_train = specs if results.checkpoint_for(results_dir, unit_id(specs)).exists() else todo
        if todo:
            out.update(fit(to_train, set(out), results_dir, device=device, save_weights=save_weights, log=log,
                           stop_after=stop_after, t_start=t_start))
        return [out[s.run_id] for s in specs]


def _waiting(spec: RunSpec, log: Log) -> Callable[[dict[str, Any]], None]:
    def waiting(holder: dict[str, Any]) -> None:
        # pragma: no mutate start (log text)
        log(f"[{spec.run_id}] {spec.label}: being trained by {locks.describe(holder)}; waiting for its result")
        # pragma: no mutate end

    return waiting


def read_finished(spec: RunSpec, results_dir: Path, log: Log) -> results.RunResult | None:
    """The run's result if it has a usable one; an unusable one (cut short, corrupted) is set aside."""
    out = results.path_for(results_dir, spec.run_id)
    if not out.exists():
        return None
    try:
        return results.read(out)
    except results.ResultError as e:
        checkpoints.set_aside(out, str(e), log)
        return None


def unit_id(specs: list[RunSpec]) -> str:
    """A unit's name in logs and its checkpoint's: the run id of one run, a hash of the run ids of a pack."""
    return specs[0].run_id if len(specs) == 1 else "pack-" + atomic.stable_hash([s.run_id for s in specs])


# --- the loop ----------------------------------------------------------------------------------------------


@dataclass
class Best:
    """A seed's best validation epoch so far (select = "best_val"): its validation loss and weights."""

    epoch: int
    val_loss: float
    weights: nets_mod.Weights


@dataclass
class SeedState:
    """What the loop knows of one seed of the unit: its history (one entry per epoch), its best epoch, and
    whether it still trains (not finished before, not diverged)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: Best | None = None
    alive: bool = True
    pretrain_history: list[dict[str, Any]] = field(default_factory=list)  # a scenario with `pretrain`: its epochs

    @property
    def diverged_at(self) -> int | None:
        """The epoch in which the seed's training loss stopped being finite (its history's last entry; an epoch
        of the pretraining where it diverged there, which the result's pretraining history shows)."""
        last = (self.history or self.pretrain_history or [{}])[-1]
        return int(last["epoch"]) if last.get("diverged") else None


def fit(specs: list[RunSpec], finished_ids: set[str], results_dir: Path, *, device: str | None,
        save_weights: bool, log: Log, stop_after: int | None, t_start: float) -> dict[str, results.RunResult]:
    """Train the unit `specs` (resuming from its checkpoint), validate every epoch, record a diverged seed as
    diverged while the others go on, test once, and write one result per run not in `finished_ids`."""
    unit = prepare(specs, device=device, t_start=t_start)
    # Epochs are counted over both phases: a scenario with `pretrain` first trains P epochs on its synthetic images
    # (`pretrain_epoch`), then its own; a checkpoint's epoch is one of this count, so either phase resumes.
    pre_epochs = unit.pre_epochs
    epochs = pre_epochs + len(unit.steps_per_epoch)
    store = checkpoints.Store(results.checkpoint_for(results_dir, unit.name), unit.identity,
                              "run" if len(specs) == 1 else "pack",  # pragma: no mutate (the log's word)
                              checkpoints.Schedule(speed.settings().checkpoint))
    seeds, start_epoch = resume(unit, store, finished_ids, log)
    env = environment(unit.dev)  # once per unit (it asks git for the commit), after a resume has set the threads
    _log_start(unit, log)
    written: dict[str, results.RunResult] = {}
    t_train = 0.0
    for step_epoch in range(start_epoch, epochs):
        if not any(s.alive for s in seeds):
            break
        t0 = time.perf_counter()
        alive = torch.tensor([s.alive for s in seeds], device=unit.dev)
        if step_epoch < pre_epochs:
            pre_loss = pretrain_epoch(unit, step_epoch, alive)
            t_train += time.perf_counter() - t0
            diverged = record_epoch(unit, seeds, step_epoch, pre_loss, t0, pretrain=True)
            _log_epoch(unit, step_epoch, seeds, log, pretraining=True)
        else:
            epoch = step_epoch - pre_epochs
            if epoch == 0 and pre_epochs:
                # Fine-tuning starts from the pretrained weights with a fresh optimizer: Adam's moments describe
                # the synthetic images' gradients, and a fresh start is what a run resumed here would rebuild.
                unit.optimizer, _ = make_optimizer(unit.nets.parameters(), unit.first.hparams.lr,
                                                   unit.first.hparams.weight_decay)
            train_loss = train_epoch(unit, epoch, alive)
            t_train += time.perf_counter() - t0
            diverged = record_epoch(unit, seeds, epoch, train_loss, t0)
            _log_epoch(unit, epoch, seeds, log)
        for index in diverged:
            written[specs[index].run_id] = write_result(unit, index, seeds[index], results_dir, env, t_start)
            log(f"[{specs[index].run_id}] diverged: non-finite training loss in epoch {step_epoch + 1}; recorded as "
                "diverged")  # pragma: no mutate
        if any(s.alive for s in seeds):  # a unit whose every seed diverged has nothing to resume
            store.after_epoch(step_epoch + 1, epochs, stop_after,
                              partial(checkpoint_state, unit, seeds, step_epoch + 1))
    written.update(test_and_write(unit, seeds, results_dir, env, t_start, save_weights=save_weights, log=log,
                                  timings=_timings(unit, start_epoch, t_train)))
    store.remove()
    return written


def resume(unit: Unit, store: checkpoints.Store, finished_ids: set[str], log: Log) -> tuple[list[SeedState], int]:
    """Each seed's state and the first epoch to train: from the unit's checkpoint where there is a usable one
    (networks and optimizer loaded), else fresh. A seed with a result, or whose history says it diverged, is
    no longer alive."""
    seeds = [SeedState() for _ in unit.specs]
    start_epoch = 0
    ckpt = store.load(unit.dev, log)
    if ckpt is not None:
        unit.nets.load_state(ckpt["nets"])
        unit.optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch = ckpt["epoch"]
        pre = ckpt.get("pretrain_histories") or [[] for _ in unit.specs]
        seeds = [SeedState(history, Best(**best) if best is not None else None, pretrain_history=pre_history)
                 for history, best, pre_history in zip(ckpt["histories"], ckpt["best"], pre, strict=True)]
        # pragma: no mutate start (log text)
        log(f"[{unit.name}] {_label(unit.specs)}: resumed from checkpoint at epoch {start_epoch}/"
            f"{unit.pre_epochs + len(unit.steps_per_epoch)}")
        # pragma: no mutate end
    for spec, seed in zip(unit.specs, seeds, strict=True):
        seed.alive = spec.run_id not in finished_ids and not any(h.get("diverged")
                                                                 for h in (*seed.pretrain_history, *seed.history))
    return seeds, start_epoch


def checkpoint_state(unit: Unit, seeds: list[SeedState], done: int) -> dict[str, Any]:
    """What a checkpoint after epoch `done` holds besides the unit's identity (state dicts hold references,
    so building it costs nothing)."""
    return {"epoch": done, "nets": unit.nets.state(), "optimizer": unit.optimizer.state_dict(),
            "histories": [s.history for s in seeds],
            "best": [None if s.best is None else {"epoch": s.best.epoch, "val_loss": s.best.val_loss,
                                                  "weights": s.best.weights} for s in seeds],
            "threads": torch.get_num_threads(), "device": unit.dev.type, "hparams": unit.first.hparams.to_dict(),
            **({"pretrain_histories": [s.pretrain_history for s in seeds]} if unit.pretraining else {})}


def record_epoch(unit: Unit, seeds: list[SeedState], epoch: int, train_loss: list[float], t0: float, *,
                 pretrain: bool = False) -> list[int]:
    """The bookkeeping after an epoch: each live seed's history entry (with its validation numbers, which come
    from the validation part only: the test set is looked at once, at the end) and best epoch. A seed whose
    training loss is not finite is marked diverged (its further epochs and metrics would mean nothing, so it
    stops contributing; its history says so, so a resumed unit knows it). Returns the seeds that diverged.

    `pretrain`: an epoch of the pretraining, into each seed's pretraining history, with validation numbers to see
    what the synthetic images taught; nothing is selected on them (the tested weights are always fine-tuned ones)."""
    if pretrain:
        assert unit.pretraining is not None
    steps_per_epoch = unit.pretraining.steps_per_epoch if unit.pretraining and pretrain else unit.steps_per_epoch
    left = any(s.alive and math.isfinite(v) for s, v in zip(seeds, train_loss, strict=True))
    val_logits = unit.nets.predict(unit.x_val, unit.bf16) if unit.x_val is not None and left else None
    diverged = []
    for index, seed in enumerate(seeds):
        if not seed.alive:
            continue
        history = seed.pretrain_history if pretrain else seed.history
        if not math.isfinite(train_loss[index]):
            history.append({"epoch": epoch + 1, "train_loss": None, "diverged": True})
            seed.alive = False
            diverged.append(index)
            continue
        entry: dict[str, Any] = {"epoch": epoch + 1, "steps": sum(steps_per_epoch[: epoch + 1]),
                                 "train_loss": train_loss[index]}
        if val_logits is not None:
            loss = _validate(unit, index, val_logits[index], entry)
            if not pretrain and unit.first.select == "best_val" and (seed.best is None or loss < seed.best.val_loss):
                seed.best = Best(epoch + 1, loss, unit.nets.weights(index))
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
    return diverged


def _validate(unit: Unit, index: int, logits: np.ndarray, entry: dict[str, Any]) -> float:
    """Seed `index`'s validation numbers into its history `entry`; returns the loss selection scores: the
    loss that is trained, class-weighted where the training loss is."""
    scores = classification_metrics(logits, unit.y_val, unit.ds.classes)
    entry.update(val_ce=scores["test_ce"], val_accuracy=scores["accuracy"],
                 val_balanced_accuracy=scores["balanced_accuracy"])
    if unit.class_weight is None:
        return float(scores["test_ce"])
    entry["val_loss"] = weighted_ce(logits, unit.y_val, unit.class_weight[index].cpu().numpy())
    return float(entry["val_loss"])


def test_and_write(unit: Unit, seeds: list[SeedState], results_dir: Path, env: dict[str, Any], t_start: float, *,
                   save_weights: bool, log: Log, timings: dict[str, Any]) -> dict[str, results.RunResult]:
    """Test each live seed once, with the weights it selected (its best validation epoch's, or its last), and
    write its result (and weights where asked)."""
    unit.nets.select([s.best.weights if s.best is not None else None for s in seeds])
    live = [index for index, s in enumerate(seeds) if s.alive]
    if not live:
        return {}
    test_logits = unit.nets.predict(unit.x_test, unit.bf16)  # the test set's one look
    written = {}
    for index in live:
        spec = unit.specs[index]
        if save_weights:
            from safetensors.torch import save_file

            with atomic.atomic_path(results.weights_for(results_dir, spec.run_id)) as tmp:
                save_file({name: v.contiguous() for name, v in unit.nets.weights(index).items()}, str(tmp))
        r = write_result(unit, index, seeds[index], results_dir, env, t_start,
                         metrics=test_metrics(unit, test_logits[index]), timings=timings, save_weights=save_weights)
        written[spec.run_id] = r
        # pragma: no mutate start (log text)
        log(f"[{spec.run_id}] done: test_ce={r.metrics.test_ce:.4f} accuracy={r.metrics.accuracy:.3f}")
        # pragma: no mutate end
    return written


def test_metrics(unit: Unit, logits: np.ndarray) -> results.Metrics:
    """A seed's test metrics: per image, and per whole scan where the data knows its scans."""
    out = classification_metrics(logits, unit.ds.test_y, unit.ds.classes)
    if unit.ds.test_groups is not None:
        out.update(scan_metrics(logits, unit.ds.test_y, unit.ds.test_groups))
    return results.Metrics(**out)


def _timings(unit: Unit, start_epoch: int, t_train: float) -> dict[str, Any]:
    """The training's share of a result's timings (the same for every seed of the unit)."""
    batch, pre = unit.first.hparams.batch_size, unit.pretraining
    trained = sum(min(unit.n_train, b * batch) for b in unit.steps_per_epoch[max(0, start_epoch - unit.pre_epochs):])
    if pre is not None:  # start_epoch counts the pretraining's epochs first (`fit`)
        trained += sum(min(pre.n_train, b * batch) for b in pre.steps_per_epoch[start_epoch:])
    packed = len(unit.specs) > 1
    return {"train_s": t_train, "train_images_per_s": trained / t_train if t_train else None,
            **({"pack_images_per_s": len(unit.specs) * trained / t_train if t_train else None} if packed else {}),
            "resumed_from_epoch": start_epoch}


# --- the unit: data, networks and optimizer, set up once ---------------------------------------------------


# Pretraining epochs draw their batch order and augmentation under epoch keys of their own (`batches.image_keys`):
# a pool image also in the scenario's mix is not drawn alike in epoch e of both phases.
PRETRAIN_KEYS = 1 << 20


@dataclass
class Phase:
    """What one phase of a unit trains on: its images on the device, each seed's rows of them and their
    identities, the steps of each epoch, the loss weights; `keys` offsets the epoch its draws are keyed by."""

    images: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor  # (S, n)
    ids: torch.Tensor  # (S, n)
    steps_per_epoch: list[int]
    class_weight: torch.Tensor | None
    keys: int = 0

    @property
    def n_train(self) -> int:
        return int(self.rows.shape[1])


@dataclass
class Pretraining(Phase):
    """The pretraining phase of a scenario with `pretrain`: its pool and each seed's draw from it."""

    pool: pools.Pool | None = None
    mixes: list[scenarios.Mix] = field(default_factory=list)


@dataclass
class Unit:
    """What a unit of S seeds trains on and with, set up once: the data on the device, each seed's rows of it
    and image identities, the networks and their optimizer (and, for a scenario with `pretrain`, its pretraining's
    images)."""

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
    pretraining: Pretraining | None = None

    @property
    def first(self) -> RunSpec:
        return self.specs[0]

    @property
    def pre_epochs(self) -> int:
        return len(self.pretraining.steps_per_epoch) if self.pretraining else 0

    @property
    def main(self) -> Phase:
        """The scenario's own training as a phase (references to the unit's tensors)."""
        return Phase(self.images, self.labels, self.rows, self.ids, self.steps_per_epoch, self.class_weight)

    @property
    def n_train(self) -> int:
        """Training images per seed (every seed of a unit has as many)."""
        return int(self.rows.shape[1])


def prepare(specs: list[RunSpec], *, device: str | None, t_start: float) -> Unit:
    """Load the data and pool, draw each seed's training set, put it on the device, build networks and optimizer."""
    first, hp, dev = specs[0], specs[0].hparams, pick_device(device)
    ds = data_mod.load(first.data)
    pool = pools.load(first.pool, ds) if first.scenario.needs_pool and first.pool else None
    if pool is not None and pool.fingerprint != first.pool_fingerprint:
        raise PoolError(
            f"pool {first.pool} changed since run {first.label} was planned (manifest {pool.fingerprint}, planned "
            f"{first.pool_fingerprint}); plan it again (`mriaug grid` / `mriaug submit`) to train on the new pool"
        )
    mixes = [scenarios.mix(ds, s.scenario, s.seed, pool) for s in specs]
    x_np, y_np, rows_np = training_rows(first, ds, pool, mixes)
    check_selectable(first, has_val=len(ds.val_rows) > 0)
    ids = np.stack([batches.identities(m.real_index, m.synthetic_index) for m in mixes])
    images, labels = to_device_uint8(x_np, hp.resolution, dev), torch.from_numpy(y_np).to(dev)
    x_test = to_device_uint8(ds.test_x, hp.resolution, dev)
    x_val = to_device_uint8(ds.train_x[ds.val_rows], hp.resolution, dev) if len(ds.val_rows) else None
    data_seconds = time.perf_counter() - t_start  # the data's time, before networks are built
    speed_settings = speed.settings()
    deterministic(dev, speed_settings.deterministic)
    nets = nets_mod.build(first.model, hp, [s.seed for s in specs], dev, speed_settings, len(ds.classes))
    optimizer, optimizer_name = make_optimizer(nets.parameters(), hp.lr, hp.weight_decay)
    weights = [class_weights(y_np[r], len(ds.classes)) for r in rows_np] if hp.class_weight == "balanced" else None
    pre = prepare_pretraining(specs, ds, dev)
    return Unit(
        specs=specs, name=unit_id(specs), dev=dev, ds=ds, pool=pool, mixes=mixes, images=images, labels=labels,
        rows=torch.from_numpy(np.stack(rows_np)).to(dev), ids=torch.from_numpy(ids).to(dev),
        x_test=x_test, x_val=x_val, y_val=ds.train_y[ds.val_rows],
        steps_per_epoch=steps_per_epoch(len(rows_np[0]), hp.batch_size, hp.epochs, first.budget,
                                        int(ds.fit_mask.sum())),
        nets=nets, optimizer=optimizer, optimizer_name=optimizer_name, bf16=autocast_bf16(hp.precision, dev),
        class_weight=None if weights is None else torch.tensor(np.stack(weights), dtype=torch.float32, device=dev),
        identity=checkpoint_identity(specs, ds, pool, mixes, pre), data_seconds=data_seconds, pretraining=pre,
    )


def prepare_pretraining(specs: list[RunSpec], ds: data_mod.Dataset, dev: torch.device) -> Pretraining | None:
    """The pretraining of a scenario with `pretrain`: each seed's synthetic images (`scenarios.pretrain_mix`) on
    the device, E passes of ceil(N / batch) steps, each seed's loss weights from its own pretraining labels."""
    first, hp = specs[0], specs[0].hparams
    pre = first.scenario.pretrain
    if pre is None:
        return None
    if first.pretrain_pool is None:
        raise SettingError(f"{first.label}: scenario {first.scenario.name} pretrains but the run names no pool folder "
                           "to pretrain on (plan it from a grid whose [pool] table names it)")
    pool = pools.load(first.pretrain_pool, ds)
    if pool.fingerprint != first.pretrain_fingerprint:
        raise PoolError(f"pretraining pool {first.pretrain_pool} changed since run {first.label} was planned "
                        f"(manifest {pool.fingerprint}, planned {first.pretrain_fingerprint}); plan it again "
                        "(`mriaug grid` / `mriaug submit`) to pretrain on the new pool")
    mixes = [scenarios.pretrain_mix(ds, s.scenario, s.seed, pool) for s in specs]
    x_np, y_np, rows_np = training_rows(first, ds, pool, mixes)
    ids = np.stack([batches.identities(m.real_index, m.synthetic_index) for m in mixes])
    weights = [class_weights(y_np[r], len(ds.classes)) for r in rows_np] if hp.class_weight == "balanced" else None
    return Pretraining(
        images=to_device_uint8(x_np, hp.resolution, dev), labels=torch.from_numpy(y_np).to(dev),
        rows=torch.from_numpy(np.stack(rows_np)).to(dev), ids=torch.from_numpy(ids).to(dev),
        steps_per_epoch=pre.steps_per_epoch(hp.batch_size),
        class_weight=None if weights is None else torch.tensor(np.stack(weights), dtype=torch.float32, device=dev),
        keys=PRETRAIN_KEYS, pool=pool, mixes=mixes)


def training_rows(first: RunSpec, ds: data_mod.Dataset, pool: pools.Pool | None, mixes: list[scenarios.Mix]
                  ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The images some seed trains on, each once (real, then pool lines), their labels, and each seed's training
    images as rows of them: its real rows, then its pool lines (the layout `batches.identities` names)."""
    # A seed's training images as rows of [training split; pool].
    rows = [np.concatenate([m.real_index, len(ds.train_y) + m.synthetic_index]).astype(np.int64) for m in mixes]
    if len({len(r) for r in rows}) > 1:  # fixed per-class counts make this impossible; say so if it happens
        raise SettingError(f"{first.label}: the seeds of this pack have training sets of different sizes; "
                           "train them without pack_seeds")
    used = np.unique(np.concatenate(rows))
    n_real = int(np.searchsorted(used, len(ds.train_y)))
    lines = used[n_real:] - len(ds.train_y)  # pool lines
    x = np.concatenate([ds.train_x[used[:n_real]], *([pool.images[lines]] if pool else [])])
    y = np.concatenate([ds.train_y[used[:n_real]], *([pool.labels[lines]] if pool else [])])
    return x, y, [np.searchsorted(used, r) for r in rows]  # rows: positions in x


def checkpoint_identity(specs: list[RunSpec], ds: data_mod.Dataset, pool: pools.Pool | None,
                        mixes: list[scenarios.Mix], pre: Pretraining | None = None) -> dict[str, Any]:
    """What a unit's checkpoint must have been made from to be resumed: the layout, runs, data, pool and rows (and
    a pretraining's pool and lines, only where there is one: other checkpoints keep their identity)."""
    out = {"layout": CHECKPOINT_LAYOUT, "run_ids": [s.run_id for s in specs], "data_fingerprint": ds.fingerprint,
           "pool_fingerprint": pool.fingerprint if pool else None,
           "selection": atomic.stable_hash([[m.real_index.tolist(), m.synthetic_index.tolist()] for m in mixes])}
    if pre is not None and pre.pool is not None:
        out["pretrain"] = {"pool_fingerprint": pre.pool.fingerprint,
                           "selection": atomic.stable_hash([m.synthetic_index.tolist() for m in pre.mixes])}
    return out


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


def steps_per_epoch(n: int, batch_size: int, epochs: int, budget: str, n_scenario1: int) -> list[int]:
    """Optimizer steps of each epoch. "epochs": every epoch a full pass over the run's n images (the thesis).
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


# --- one epoch ---------------------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds CUDA: initialisation and dropout draw from torch (order and augmentation
    # draw from `batches` keys instead; a pack has no layer that draws, `nets.build` refuses one)


def train_epoch(unit: Unit, epoch: int, alive: torch.Tensor) -> list[float]:
    """One epoch of every seed on its scenario's training set (`train_pass`)."""
    return train_pass(unit, unit.main, epoch, alive)


def pretrain_epoch(unit: Unit, epoch: int, alive: torch.Tensor) -> list[float]:
    """One epoch of every seed on its pretraining images (`train_pass`)."""
    assert unit.pretraining is not None
    return train_pass(unit, unit.pretraining, epoch, alive)


def train_pass(unit: Unit, phase: Phase, epoch: int, alive: torch.Tensor) -> list[float]:
    """One epoch of every seed on `phase`: its own batch order and augmentation draws, keyed by (seed, epoch,
    image), as its separate run draws them. Returns each seed's mean training loss (non-finite: it diverged)."""
    first, batch_size, n_seeds = unit.first, unit.first.hparams.batch_size, len(unit.specs)
    key_epoch = phase.keys + epoch
    _seed_everything(first.seed * 100_003 + key_epoch + 1)
    unit.nets.train()
    keys = torch.stack([batches.image_keys(s.seed, key_epoch, phase.ids[index])
                        for index, s in enumerate(unit.specs)])
    perm = torch.stack([batches.order(keys[index]) for index in range(n_seeds)])
    images_this_epoch = min(phase.n_train, phase.steps_per_epoch[epoch] * batch_size)  # a steps budget may cut it
    rows = torch.gather(phase.rows, 1, perm)[:, :images_this_epoch]  # (S, m): rows of `images` in batch order
    keys = torch.gather(keys, 1, perm)[:, :images_this_epoch]
    aug = augment.get(first.augmentation)
    image_shape = phase.images.shape[1:]
    # Augmentation runs ahead of the steps, `span` images per seed at a time (the whole epoch on a GPU: a handful
    # of launches instead of a few hundred per step; a few batches on the CPU): the same images, as each depends
    # only on its key.
    span = augment.ahead_images(unit.dev, first.augmentation, batch_size, image_shape[-2] * image_shape[-1],
                                images_this_epoch)
    augmented = phase.images[:0]
    total = torch.zeros(n_seeds, dtype=torch.float64, device=unit.dev)  # summed on the device: no sync per step
    seen = 0
    for start in range(0, images_this_epoch, batch_size):
        batch_rows, batch_keys = rows[:, start : start + batch_size], keys[:, start : start + batch_size]
        if span and start % span == 0:
            chunk = slice(start, min(start + span, images_this_epoch))
            augmented = augment.ahead(aug, phase.images, rows[:, chunk].flatten(), keys[:, chunk].flatten())
            augmented = augmented.view(n_seeds, -1, *image_shape)
        xb = (augmented[:, start % span : start % span + batch_size] if span
              else aug(phase.images.index_select(0, batch_rows.flatten()), batch_keys.flatten()))
        losses = unit.nets.losses(xb.view(*batch_rows.shape, *image_shape), phase.labels[batch_rows], unit.bf16,
                                  phase.class_weight)
        unit.optimizer.zero_grad(set_to_none=True)
        # Seeds share no parameter: each gets its own run's gradient, a diverged seed none.
        torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
        unit.optimizer.step()
        total += losses.detach() * batch_rows.shape[1]
        seen += batch_rows.shape[1]
    return (total / max(seen, 1)).tolist()  # the epoch's one sync


# --- the result --------------------------------------------------------------------------------------------


def write_result(unit: Unit, index: int, seed: SeedState, results_dir: Path, env: dict[str, Any], t_start: float,
                 *, metrics: results.Metrics | None = None, timings: dict[str, Any] | None = None,
                 save_weights: bool = False) -> results.RunResult:
    """Seed `index`'s result, finished (tested: `metrics`) or diverged (its metrics null), written atomically."""
    spec, mix = unit.specs[index], unit.mixes[index]
    diverged_at = seed.diverged_at
    selected = None if diverged_at is not None else seed.best.epoch if seed.best else len(unit.steps_per_epoch)
    result = results.RunResult(
        run_id=spec.run_id, spec=spec.to_dict(), metrics=metrics or results.Metrics(),
        data=result_data(spec, unit.ds, unit.pool),
        counts=results.Counts(real=mix.counts_real, synthetic=mix.counts_synthetic, test=unit.ds.counts("test"),
                              val={name: int((unit.y_val == c).sum()) for c, name in enumerate(unit.ds.classes)}),
        history=seed.history, env=env,
        timings={"data_s": unit.data_seconds, **(timings or {}), "total_s": time.perf_counter() - t_start,
                 "speed": speed.settings().to_dict()},
        status="done" if diverged_at is None else "diverged", diverged_at_epoch=diverged_at,
        training=None if selected is None else result_training(unit, index, selected),
        validation=seed.history[selected - 1] if selected is not None and unit.x_val is not None else None,
        selection={"real_train_rows": mix.real_index.tolist(), "pool_rows": mix.synthetic_index.tolist(),
                   "pool_sampling": mix.pool_sampling},
        packed=result_packed(unit),
        weights=str(results.weights_for(results_dir, spec.run_id)) if save_weights else None,
        pretraining=result_pretraining(unit, index, seed),
    )
    results.write(results_dir, result)
    return result


def result_training(unit: Unit, index: int, selected: int) -> results.Training:
    """How a finished seed was trained: budget, length, selection, optimizer and precision as they ran."""
    spec, hp = unit.specs[index], unit.first.hparams
    return results.Training(
        budget=spec.budget, epochs=len(unit.steps_per_epoch), steps=sum(unit.steps_per_epoch), select=spec.select,
        selected_epoch=selected, optimizer=unit.optimizer_name, lr=hp.lr, weight_decay=hp.weight_decay,
        precision="bf16" if unit.bf16 else "fp32",
        class_weights=(None if unit.class_weight is None
                       else dict(zip(unit.ds.classes, unit.class_weight[index].tolist(), strict=True))))


def result_pretraining(unit: Unit, index: int, seed: SeedState) -> results.Pretraining | None:
    """A seed's pretraining record: which pool (name, folder, content), how many images and steps, its draw."""
    pre, spec = unit.pretraining, unit.specs[index]
    if pre is None or pre.pool is None or spec.scenario.pretrain is None:
        return None
    mix = pre.mixes[index]
    return results.Pretraining(
        pool=spec.scenario.pretrain.pool, pool_path=str(pre.pool.path), pool_fingerprint=pre.pool.fingerprint,
        images=pre.n_train, epochs=len(pre.steps_per_epoch), steps=sum(pre.steps_per_epoch),
        counts=mix.counts_synthetic, pool_rows=mix.synthetic_index.tolist(), pool_sampling=mix.pool_sampling,
        history=seed.pretrain_history)


def result_packed(unit: Unit) -> results.Packed | None:
    """A packed seed's record: trained in one model with the other seeds of its cell, its separate run's draws."""
    if len(unit.specs) == 1:
        return None
    return results.Packed(how="torch.func vmap (mriaug.engine.nets)", pack=unit.name, size=len(unit.specs),
                          seeds=[s.seed for s in unit.specs], run_ids=[s.run_id for s in unit.specs])


def result_data(spec: RunSpec, ds: data_mod.Dataset, pool: pools.Pool | None) -> results.DataInfo:
    """Which data, split and pool the run used (collect keeps settings apart by it)."""
    return results.DataInfo(fingerprint=ds.fingerprint, source=ds.source, resolution=ds.resolution,
                            pool_fingerprint=pool.fingerprint if pool else None,
                            pool_path=str(pool.path) if pool else None,
                            # None when the grid names no pool: `DataInfo` gives the folder's name then, as tables do
                            pool_label=spec.pool_label if pool else None,
                            split=ds.split)


# --- log lines ---------------------------------------------------------------------------------------------
# pragma: no mutate start (log text)


def _label(specs: list[RunSpec]) -> str:
    first = specs[0]
    if len(specs) == 1:
        return first.label
    seeds = [s.seed for s in specs]
    return f"{first.model}/s{first.scenario.name}/{first.augmentation}, seeds {seeds} trained together"


def _log_start(unit: Unit, log: Log) -> None:
    epochs, steps = len(unit.steps_per_epoch), sum(unit.steps_per_epoch)
    log(f"[{unit.name}] {_label(unit.specs)}: {unit.n_train} training images "
        f"({sum(unit.mixes[0].counts_synthetic.values())} synthetic), {len(unit.ds.val_rows)} validation, {epochs} "
        f"epochs ({steps} steps, budget {unit.first.budget}) on {unit.dev}"
        + (f", after {unit.pre_epochs} pretraining epochs on {unit.pretraining.n_train} synthetic images"
           if unit.pretraining else ""))


def _log_epoch(unit: Unit, epoch: int, seeds: list[SeedState], log: Log, *, pretraining: bool = False) -> None:
    """One progress line per epoch (a Slurm log's view of the run): a run's numbers, or a pack's medians."""
    histories = [s.pretrain_history if pretraining else s.history for s in seeds if s.alive]
    now = [h[-1] for h in histories if h and h[-1]["epoch"] == epoch + 1]
    if not now:
        return
    if pretraining:
        assert unit.pretraining is not None
        log(f"[{unit.name}] pretraining epoch {epoch + 1}/{unit.pre_epochs} train_loss"
            f"{'' if len(seeds) == 1 else ' median'}={float(np.median([e['train_loss'] for e in now])):.4f} "
            f"({now[0]['seconds']:.1f}s)")
        return
    what = "" if len(seeds) == 1 else " median"
    shown = f" train_loss{what}={float(np.median([e['train_loss'] for e in now])):.4f}"
    if "val_ce" in now[0]:
        shown += (f" val_ce{what}={float(np.median([e['val_ce'] for e in now])):.4f}"
                  f" val_acc{what}={float(np.median([e['val_accuracy'] for e in now])):.3f}")
    log(f"[{unit.name}] epoch {epoch + 1}/{len(unit.steps_per_epoch)}{shown} ({now[0]['seconds']:.1f}s)")


# pragma: no mutate end
