"""Seeds of one grid cell trained together in one model (`[model.cnn] pack_seeds = S` in a grid).

The S networks are stacked with `torch.func.stack_module_state` and run as one with `vmap` over
`functional_call` (`randomness="different"`): one kernel launch per layer for all seeds, which is what makes
many-seed studies cheap on a GPU (8 seeds at 2.8-4.1x one run's images/s on an H200); on a CPU, where vmap's
grouped convolutions are slow, a pack is slower than separate runs (benchmarks/README.md).

Each seed is the run it would be on its own, in distribution and, as far as the draws go, exactly:
- initialisation: the network is built right after `torch.manual_seed(seed)`, as `train.execute` does;
- training set: `scenarios.mix(dataset, scenario, seed, pool)`, as for the separate run;
- batch order and augmentation: keyed by (seed, epoch, image identity) (`mriaug.batches`), the separate run's keys;
- every setting of a run: the steps budget (`train.epoch_batches`), a validation part and `best_val` (each seed
  keeps the weights of its own best validation epoch and is tested with them), weight decay (AdamW, element-wise
  like Adam, so one optimizer over the stacked parameters is S independent ones);
- divergence: a seed whose training loss stops being finite is written as diverged in that epoch and stops
  contributing; the others go on.
Only the arithmetic differs (grouped convolutions, another summation order), so the metrics are not bit
for bit those of separate runs. Each seed's result is written under its own run id (the id of the separate
run) with `"packed"` saying how it was trained. The pack checkpoints (paced like a run's) and resumes like a run.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from . import atomic, augment, batches, models, pools, results, scenarios, speed, train
from . import data as data_mod
from .classes import CLASSES
from .errors import PoolError, SettingError
from .grid import PACKABLE
from .metrics import classification_metrics
from .runtime import autocast_bf16, deterministic, environment, pick_device
from .spec import RunSpec

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_pack(specs: list[RunSpec]) -> None:
    """Runs can train together when they differ only in their seed and their model is packable."""
    if not specs:
        raise SettingError("a seed pack needs at least one run")
    first = specs[0].to_dict()
    first.pop("seed")
    for s in specs[1:]:
        d = s.to_dict()
        d.pop("seed")
        if d != first:
            raise SettingError(f"{s.label} cannot train in one pack with {specs[0].label}: they differ in more than "
                               "the seed")
    if specs[0].model not in PACKABLE:
        raise SettingError(f"model {specs[0].model}: only {', '.join(PACKABLE)} can train seeds together")
    if len({s.seed for s in specs}) != len(specs):
        raise SettingError(f"{specs[0].label}: a seed pack lists a seed twice")


def pack_id(specs: list[RunSpec]) -> str:
    return "pack-" + atomic.stable_hash([s.run_id for s in specs])


def execute(specs: list[RunSpec], results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
            log: Log = _stderr, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train the runs `specs` (one cell, several seeds) together; return their results in the same order.
    Runs that already have a result are read back and not trained again."""
    check_pack(specs)
    results_dir = Path(results_dir)
    done = results.done_ids_of(results_dir, [s.run_id for s in specs])
    todo = [s for s in specs if s.run_id not in done]
    if len(todo) == 1:
        train.execute(todo[0], results_dir, device=device, save_weights=save_weights, log=log, stop_after=stop_after)
    elif todo:
        _train_pack(todo, results_dir, device=device, save_weights=save_weights, log=log, stop_after=stop_after)
    return [results.read(results.path_for(results_dir, s.run_id)) for s in specs]


def _rows(ds: data_mod.Dataset, mix: scenarios.Mix) -> np.ndarray:
    """A run's training images as rows of [train split; pool], in `scenarios.training_arrays`'s order."""
    return np.concatenate([mix.real_index, len(ds.train_y) + mix.synthetic_index]).astype(np.int64)


def _train_pack(specs: list[RunSpec], results_dir: Path, *, device: str | None, save_weights: bool, log: Log,
                stop_after: int | None) -> None:
    t_start = time.perf_counter()
    s0, S = specs[0], len(specs)
    hp = s0.hparams
    dev = pick_device(device)
    ds = data_mod.load(s0.data)
    pool = pools.load(s0.pool, ds) if s0.scenario.needs_pool and s0.pool else None
    if pool is not None and pool.fingerprint != s0.pool_fingerprint:
        raise PoolError(f"pool {s0.pool} changed since run {s0.label} was planned (manifest {pool.fingerprint}, "
                        f"planned {s0.pool_fingerprint}); plan it again (`mriaug grid` / `mriaug submit`)")
    mixes = [scenarios.mix(ds, s.scenario, s.seed, pool) for s in specs]
    rows_np = [_rows(ds, m) for m in mixes]
    n = len(rows_np[0])
    if any(len(r) != n for r in rows_np):  # fixed per-class counts make this impossible; say so if it happens
        raise SettingError(f"{s0.label}: the seeds of this pack have training sets of different sizes; "
                           "train them without pack_seeds")
    # One copy of every candidate image on the device; each seed indexes its own rows.
    x_all_np = ds.train_x if pool is None else np.concatenate([ds.train_x, pool.images])
    y_all_np = ds.train_y if pool is None else np.concatenate([ds.train_y, pool.labels])
    x_all = train.to_device_uint8(x_all_np, hp.resolution, dev)
    y_all = torch.from_numpy(y_all_np).to(dev)
    rows = torch.from_numpy(np.stack(rows_np)).to(dev)  # (S, n)
    # Each seed's images by identity (real row, or pool line + offset): its keys are its separate run's.
    ids = torch.from_numpy(np.stack([batches.identities(m.real_index, m.synthetic_index) for m in mixes])).to(dev)
    x_test = train.to_device_uint8(ds.test_x, hp.resolution, dev)
    has_val = len(ds.val_rows) > 0
    train.check_selectable(s0, has_val)
    x_val = train.to_device_uint8(ds.train_x[ds.val_rows], hp.resolution, dev) if has_val else None
    y_val = ds.train_y[ds.val_rows]
    t_data = time.perf_counter() - t_start

    fast = speed.settings()
    deterministic(dev, fast.deterministic)
    nets = []
    for s in specs:
        torch.manual_seed(s.seed)  # the separate run's initialisation (train.execute seeds, then builds)
        nets.append(models.build(s.model, hp).to(dev))
    norm = models.normalization(nets[0])
    params, buffers = stack_module_state(nets)  # leaves: (S, ...) each, requires_grad
    base = copy.deepcopy(nets[0]).to("meta")
    del nets

    def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    fwd_train = vmap(one, in_dims=(0, 0, 0), randomness="different")
    fwd_test = vmap(one, in_dims=(0, 0, None), randomness="different")
    # The separate run's optimizer: each seed's slice of a stacked parameter is updated as its own run's.
    opt, opt_name = train.make_optimizer(list(params.values()), hp.lr, hp.weight_decay)
    use_bf16 = autocast_bf16(hp.precision, dev)  # bf16 only where the device has it natively
    aug = augment.get(s0.augmentation)
    aug_ahead = augment.runs_ahead(dev, s0.augmentation)
    pacer = speed.CheckpointPacer(fast.checkpoint)

    pid = pack_id(specs)
    ckpt_path = results.checkpoint_for(results_dir, pid)
    identity = {"run_ids": [s.run_id for s in specs], "data_fingerprint": ds.fingerprint,
                "pool_fingerprint": pool.fingerprint if pool else None}
    histories: list[list[dict[str, Any]]] = [[] for _ in specs]
    # Per seed, the epoch with the lowest validation loss and its weights (select = "best_val").
    best: list[dict[str, Any] | None] = [None] * S
    start_epoch = 0
    ckpt = train.load_checkpoint(ckpt_path, dev, identity, log, what="pack")
    if ckpt is not None:
        with torch.no_grad():
            for k, v in ckpt["params"].items():
                params[k].copy_(v)
        opt.load_state_dict(ckpt["optimizer"])
        histories, start_epoch, best = ckpt["histories"], ckpt["epoch"], ckpt.get("best") or [None] * S
        log(f"[{pid}] {s0.label} x{S} seeds: resumed from checkpoint at epoch {start_epoch}/{hp.epochs}")

    bs = hp.batch_size
    plan = train.epoch_batches(n, bs, hp.epochs, s0.budget, int(ds.fit_mask.sum()))
    epochs = len(plan)
    # pragma: no mutate start (log text)
    log(f"[{pid}] {s0.model}/s{s0.scenario.name}/{s0.augmentation}, seeds {[s.seed for s in specs]} trained together: "
        f"{n} training images each, {epochs} epochs on {dev}")
    # pragma: no mutate end
    t_train = 0.0
    y_test = torch.from_numpy(ds.test_y)
    metrics: list[dict[str, Any]] = []
    # A seed whose training loss stops being finite is written as diverged (as its separate run would be) and
    # stops contributing; the others go on. Its history says so, so a resumed pack knows it.
    alive = [not any(h.get("diverged") for h in histories[k]) for k in range(S)]
    alive_t = torch.tensor(alive, device=dev)
    for epoch in range(start_epoch, epochs):
        if not any(alive):
            break
        t0 = time.perf_counter()
        # Each seed's keys and batch order from (seed, epoch, image identity), as its separate run draws them.
        keys = torch.stack([batches.image_keys(s.seed, epoch, ids[k]) for k, s in enumerate(specs)])
        perm = torch.stack([batches.order(keys[k]) for k in range(S)])
        m = min(n, plan[epoch] * bs)  # the steps budget may cut the last pass short
        idx_all = torch.gather(rows, 1, perm)[:, :m]  # (S, m): rows of x_all in each seed's batch order
        keys_all = torch.gather(keys, 1, perm)[:, :m]
        total = torch.zeros(S, device=dev)
        # On a GPU every seed's epoch is augmented ahead in a few large calls (as in train.execute).
        ahead = (augment.ahead(aug, x_all, idx_all.flatten(), keys_all.flatten()).view(S, m, *x_all.shape[1:])
                 if aug_ahead else None)
        seen = 0
        for i in range(0, m, bs):
            idx = idx_all[:, i : i + bs]
            if ahead is not None:
                parts = ahead[:, i : i + bs]
            else:  # one batched call for every seed: each image's draws come from its own key
                kb = keys_all[:, i : i + bs]
                parts = aug(x_all.index_select(0, idx.flatten()), kb.flatten()).view(S, idx.shape[1], *x_all.shape[1:])
            xb = (parts.float() / 255.0 - norm[0]) / norm[1]  # (S, B, 1, R, R)
            yb = y_all[idx]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = fwd_train(params, buffers, xb)
            per_seed = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
            per_seed = per_seed.view(S, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            # Seeds share no parameter: each gets its own run's gradient; a diverged seed's none (NaN * 0 is NaN).
            torch.where(alive_t, per_seed, torch.zeros_like(per_seed)).sum().backward()
            opt.step()
            total += per_seed.detach() * idx.shape[1]
            seen += idx.shape[1]
        t_train += time.perf_counter() - t0
        train_loss = (total / max(seen, 1)).tolist()  # the one host sync of the epoch's training
        # Per-epoch numbers come from validation only: the test set is looked at once, at the end.
        val = ([classification_metrics(lg, y_val) if alive[k] and math.isfinite(train_loss[k]) else None
                for k, lg in enumerate(_predict(fwd_test, params, buffers, x_val, norm, use_bf16))]
               if x_val is not None else None)
        for k in range(S):
            if not alive[k]:
                continue
            if not math.isfinite(train_loss[k]):  # diverged in this epoch: recorded now, never trained again
                histories[k].append({"epoch": epoch + 1, "train_loss": None, "diverged": True})
                train.write_diverged(specs[k], results_dir, epoch + 1, histories[k], mixes[k], ds, pool, dev, t_start,
                                     log)
                alive[k] = False
                continue
            entry: dict[str, Any] = {"epoch": epoch + 1, "steps": sum(plan[: epoch + 1]), "train_loss": train_loss[k]}
            vm = val[k] if val is not None else None
            if vm is not None:
                entry.update(val_ce=vm["test_ce"], val_accuracy=vm["accuracy"],
                             val_balanced_accuracy=vm["balanced_accuracy"])
                old = best[k]
                if s0.select == "best_val" and (old is None or vm["test_ce"] < old["val_ce"]):
                    best[k] = {"epoch": epoch + 1, "val_ce": vm["test_ce"],
                               "params": {name: v[k].detach().clone() for name, v in params.items()}}
            entry["seconds"] = time.perf_counter() - t0
            histories[k].append(entry)
        alive_t = torch.tensor(alive, device=dev)
        # pragma: no mutate start (log text)
        log(f"[{pid}] epoch {epoch + 1}/{epochs} train_loss median {float(np.median(train_loss)):.4f} "
            f"({time.perf_counter() - t0:.1f}s)")
        # pragma: no mutate end
        train.checkpoint_epoch(ckpt_path, pacer, epoch + 1, epochs, stop_after, {
            "epoch": epoch + 1, "params": {k: v.detach() for k, v in params.items()}, "optimizer": opt.state_dict(),
            "histories": histories, "best": best, "threads": torch.get_num_threads(), "device": dev.type,
            **identity})
    del y_test
    # Each seed tested with the weights it selected: its best validation epoch's, or its last.
    selected = [int(b["epoch"]) if s0.select == "best_val" and b is not None else epochs for b in best]
    tested = {name: torch.stack([b["params"][name] if s0.select == "best_val" and b is not None else v[k]
                                 for k, b in enumerate(best)]) for name, v in params.items()}
    logits_test: list[Any] = list(_predict(fwd_test, tested, buffers, x_test, norm, use_bf16)) if any(alive) else []
    metrics = [classification_metrics(lg, ds.test_y) if alive[k] else {} for k, lg in enumerate(logits_test)]

    trained = sum(min(n, b * bs) for b in plan[start_epoch:])  # as train.execute counts them
    env = environment(dev)
    for k, spec in enumerate(specs):
        if not alive[k]:
            continue  # written as diverged in its epoch
        state = {name: v[k].detach().contiguous() for name, v in tested.items()}
        if save_weights:
            from safetensors.torch import save_file

            with atomic.atomic_path(results.weights_for(results_dir, spec.run_id)) as tmp:
                save_file(state, str(tmp))
        mix = mixes[k]
        result = {
            "schema": results.SCHEMA,
            "run_id": spec.run_id,
            "spec": spec.to_dict(),
            "metrics": metrics[k],
            "history": histories[k],
            # The keys a separate run records (train.execute).
            "training": {"budget": s0.budget, "epochs": epochs, "steps": sum(plan), "select": s0.select,
                         "selected_epoch": selected[k], "optimizer": opt_name, "lr": hp.lr,
                         "weight_decay": hp.weight_decay, "precision": "bf16" if use_bf16 else "fp32"},
            "validation": histories[k][selected[k] - 1] if has_val else None,
            "counts": {"real": mix.counts_real, "synthetic": mix.counts_synthetic, "test": ds.counts("test"),
                       "val": {name: int((y_val == c).sum()) for c, name in enumerate(CLASSES)}},
            "selection": {"real_train_rows": mix.real_index.tolist(), "pool_rows": mix.synthetic_index.tolist(),
                          "pool_sampling": mix.pool_sampling},
            "data": train.result_data(spec, ds, pool),
            "env": env,
            # Trained in one model with other seeds of its cell: same draws as its separate run, other arithmetic.
            "packed": {"how": "torch.func vmap (mriaug.seedpack)", "pack": pid, "size": S,
                       "seeds": [s.seed for s in specs], "run_ids": [s.run_id for s in specs]},
            "timings": {"data_s": t_data, "train_s": t_train, "total_s": time.perf_counter() - t_start,
                        # this run's images per second of the pack's time, and the pack's together
                        "train_images_per_s": trained / t_train if t_train else None,
                        "pack_images_per_s": S * trained / t_train if t_train else None,
                        "resumed_from_epoch": start_epoch},
            "weights": str(results.weights_for(results_dir, spec.run_id)) if save_weights else None,
        }
        results.write(results_dir, result)
    ckpt_path.unlink(missing_ok=True)
    ces = [m["test_ce"] for k, m in enumerate(metrics) if alive[k]] or [math.nan]
    log(f"[{pid}] done: {S} seeds, test_ce median {float(np.median(ces)):.4f}")  # pragma: no mutate


@torch.no_grad()
def _predict(fwd: Callable[..., torch.Tensor], params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
             x: torch.Tensor, norm: tuple[float, float], autocast: bool, batch: int = 256) -> np.ndarray:
    """(S, N, classes) logits of every seed on `x`, gathered on the device and copied to the host once."""
    out = []
    for i in range(0, len(x), batch):
        xb = (x[i : i + batch].float() / 255.0 - norm[0]) / norm[1]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(fwd(params, buffers, xb).float())
    return torch.cat(out, dim=1).cpu().numpy()
