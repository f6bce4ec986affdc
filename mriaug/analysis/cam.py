"""Grad-CAM of real images beside their synthetic variations (thesis ch. 3, Figs 3.1-3.4), with numbers.

Maps come from `pytorch-grad-cam` on a run's trained weights (kept with `--save-weights`); the layer and,
for the ViT, the token-to-grid reshape come from the model registry (`mriaug.engine.models`). Per class, over
the pairs (real source, its variation in the pool):

- `pearson`: correlation of the two maps (same pixel grid), 1 = the model looks at the same places;
- `iou`: intersection over union of their top-20% regions;
- `road`: ROAD combined score (`pytorch_grad_cam.metrics.road.ROADCombined`, on the class probability) of
  the maps, a faithfulness check: higher = removing what the map marks changes the prediction more than
  removing what it leaves out;
- `seed_stability` (given several runs of one cell): mean Pearson correlation of one real image's maps
  from runs of different seeds.

Classes are the source's own (`--classes`): under a data option `merge` a Moderate source is still a Moderate
source, drawn from the pool by its real image's class, and its maps show the task class it joined (Mild).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import pools
from ..data import sources as data_mod
from ..data.classes import CLASSES, class_index
from ..engine import models
from ..errors import PoolError, ResultError, SettingError, UnknownClassError, WeightsError
from ..plan import hparams
from ..store import atomic, results

CAM_JSON = "cam.json"
DEFAULT_CLASSES = ("Moderate_Demented", "Non_Demented")
TOP_FRACTION = 0.2  # the "region" the IoU compares: each map's top 20% of pixels


def _methods() -> dict[str, Callable[..., Any]]:
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}


METHODS = ("gradcam", "gradcam++", "eigencam")


@dataclass
class CamModel:
    """A trained network with what Grad-CAM needs: its layer, reshape, input normalisation and side."""

    name: str
    net: nn.Module
    layer: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor] | None
    norm: tuple[float, float]
    resolution: int

    @classmethod
    def of(cls, name: str, net: nn.Module, resolution: int) -> CamModel:
        e = models.entry(name)
        net = net.float().eval()
        return cls(name, net, e.gradcam_layer(net), e.gradcam_reshape(net), models.normalization(net), resolution)

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W) uint8 -> the normalised (N, 1, R, R) float batch the network was trained on."""
        from ..engine.train import to_device_uint8

        x = to_device_uint8(np.ascontiguousarray(images), self.resolution, torch.device("cpu"))
        return (x.float() / 255.0 - self.norm[0]) / self.norm[1]

    @torch.no_grad()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return torch.softmax(self.net(self.inputs(images)), dim=1).numpy()


def maps(cm: CamModel, images: np.ndarray, targets: Sequence[int], method: str = "gradcam",
         batch: int = 32) -> np.ndarray:
    """Maps (N, R, R) in [0, 1] for each image and its target class index, at the network's input size."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise SettingError(f"--method {method!r}: unknown; choose one of {', '.join(METHODS)}")
    out = []
    with _methods()[method](model=cm.net, target_layers=[cm.layer], reshape_transform=cm.reshape) as cam:
        for i in range(0, len(images), batch):
            x = cm.inputs(images[i : i + batch])
            t = [ClassifierOutputTarget(int(k)) for k in targets[i : i + batch]]
            out.append(np.asarray(cam(input_tensor=x, targets=t), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, cm.resolution, cm.resolution), np.float32)


def flat(m: np.ndarray) -> bool:
    """A map with nothing marked (the class has no positive evidence in the image)."""
    return bool(np.ptp(m) <= 1e-6)


def _one_flat(a: np.ndarray, b: np.ndarray) -> float | None:
    """Agreement when a map is flat: 0 if only one is (one marks evidence, the other none), NaN if both are
    (nothing to compare); None when neither is."""
    fa, fb = flat(a), flat(b)
    if fa and fb:
        return float("nan")
    return 0.0 if fa or fb else None


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two maps (0 when only one is flat, NaN when both are)."""
    if (v := _one_flat(a, b)) is not None:
        return v
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def top_region(m: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """The map's top `fraction` of pixels (ties at the threshold included), counting only pixels with some
    evidence: a map that is zero on most of the image has a smaller top region, not the whole image."""
    k = max(1, int(round(fraction * m.size)))
    threshold = np.partition(m.ravel(), m.size - k)[m.size - k]
    return (m >= threshold) & (m > m.min())


def iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the two maps' top regions (0 when only one is flat, NaN when both are)."""
    if (v := _one_flat(a, b)) is not None:
        return v
    ra, rb = top_region(a, fraction), top_region(b, fraction)
    union = np.logical_or(ra, rb).sum()
    return float(np.logical_and(ra, rb).sum() / union) if union else 0.0


def mass_in(m: np.ndarray, region: np.ndarray) -> float:
    """Share of a map's total mass inside a boolean region."""
    total = float(m.sum())
    return float(m[region].sum()) / total if total > 0 else 0.0


def road(cm: CamModel, images: np.ndarray, cams: np.ndarray, targets: Sequence[int],
         percentiles: Sequence[int] = (10, 30, 50, 70, 90)) -> np.ndarray:
    """ROAD combined score per image (pytorch_grad_cam.metrics), on the target class's probability."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    if not len(images):
        return np.zeros(0, np.float32)
    metric = ROADCombined(percentiles=list(percentiles))
    torch.manual_seed(0)  # the imputer adds noise: the same maps give the same score
    x = cm.inputs(images)
    t = [ClassifierOutputSoftmaxTarget(int(k)) for k in targets]
    return np.asarray(metric(x, cams, t, cm.net), dtype=np.float32).reshape(-1)


# --- runs and pools ------------------------------------------------------------------------------


@dataclass
class Run:
    path: Path
    result: results.RunResult
    cam_model: CamModel
    dataset: data_mod.Dataset

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def label(self) -> str:
        return self.result.label

    @property
    def cell(self) -> tuple[Any, ...]:
        """Runs of one cell differ only in their seed."""
        spec = {k: v for k, v in self.result.spec.items() if k != "seed"}
        return (atomic.stable_hash(spec),)


def cell_name(r: results.RunResult) -> str:
    """A cell as cam.json and the report name it: model/scenario/augmentation as run labels have it, then the
    pool the scenario mixed in and the one it pretrained on (two grids may give one scenario name other pools)."""
    parts = [f"{r.model}/s{r.scenario}/{r.augmentation}"]
    if r.data.pool_label:
        parts.append(f"pool {r.data.pool_label}")
    if (pre := r.pretraining) is not None:
        parts.append(f"pretrained on {pre.pool} ({pre.images} images, {pre.epochs} epoch"
                     f"{'' if pre.epochs == 1 else 's'})")
    return ", ".join(parts)


def weights_file(path: Path, result: results.RunResult) -> Path:
    candidates = [Path(result.weights)] if result.weights else []
    # Results and their weights move together (a copied results folder): look beside the result too.
    candidates.append(results.weights_for(path.parent, result.run_id))
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsError(f"{path}: run {result.run_id} kept no weights ({candidates[-1]} missing); train it with "
                       "`mriaug run ... --save-weights` (or save_weights = true in its grid) to make Grad-CAM maps")


def load_run(path: str | Path, datasets: dict[str, data_mod.Dataset] | None = None) -> Run:
    """A run's result, its trained network (from its kept weights) and its dataset."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ResultError(f"{path}: no such result file (give the run's JSON, e.g. results/runs/RUN_ID.json)")
    r = results.read(path)
    wfile = weights_file(path, r)
    ds_spec = data_mod.DataSpec(r.data_spec["source"], dict(r.data_spec.get("options") or {}))
    key = atomic.stable_hash(ds_spec.describe())
    cache = datasets if datasets is not None else {}
    if key not in cache:
        cache[key] = data_mod.load(ds_spec)
    hp = hparams.from_dict(r.model, r.hparams)
    # The kept weights replace any pretrained start: build the bare network (no cache or file needed), with one
    # output per task class (fewer than four after a merge).
    net = models.build(r.model, dataclasses.replace(hp, pretrained=False, weights=None), len(cache[key].classes))
    try:
        net.load_state_dict(load_file(str(wfile)))
    except Exception as e:  # a foreign or truncated file: safetensors and torch raise several types
        lines = str(e).strip().splitlines()
        raise WeightsError(f"{wfile}: cannot load into {r.model} of run {r.run_id} ({type(e).__name__}: "
                           f"{' '.join(x.strip() for x in lines[:3])[:300]})") from e
    return Run(path, r, CamModel.of(r.model, net, hp.resolution), cache[key])


@dataclass
class Pairs:
    """Real sources and one variation of each from a pool, per class."""

    label: int
    sources: np.ndarray  # train rows
    rows: np.ndarray  # pool rows
    real: np.ndarray  # (n, H, W) uint8
    synthetic: np.ndarray


def pick_pairs(pool: pools.Pool, dataset: data_mod.Dataset, label: int, n: int, seed: int = 0,
               among: np.ndarray | None = None) -> Pairs:
    """Up to `n` pool rows of task label `label` (or the rows `among` marks), one per real source."""
    rows = np.flatnonzero(pool.labels == label if among is None else among)
    _, first = np.unique(pool.sources[rows], return_index=True)  # one variation per source
    rows = rows[first]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(rows, min(n, len(rows)), replace=False)) if len(rows) else rows
    src = pool.sources[pick].astype(np.int64)
    return Pairs(label, src, pick, dataset.train_x[src], pool.images[pick])


# --- panels --------------------------------------------------------------------------------------


def _resize(images: np.ndarray, side: int) -> np.ndarray:
    from ..engine.train import to_device_uint8

    return to_device_uint8(np.ascontiguousarray(images), side, torch.device("cpu"))[:, 0].numpy()


def panel(real: np.ndarray, real_maps: np.ndarray, syn: np.ndarray, syn_maps: np.ndarray, title: str,
          notes: Sequence[str]) -> bytes:
    """PNG: a row per pair: real image, its overlay, the variation, its overlay (maps at the image's size)."""
    from .plots import png, pyplot

    plt = pyplot()
    side = real_maps.shape[-1]
    real, syn = _resize(real, side), _resize(syn, side)
    n = len(real)
    fig, axes = plt.subplots(max(n, 1), 4, figsize=(8.0, 2.1 * max(n, 1) + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    heads = ("real", "real + Grad-CAM", "variation", "variation + Grad-CAM")
    for i in range(n):
        for j, (img, m) in enumerate(((real[i], None), (real[i], real_maps[i]), (syn[i], None), (syn[i], syn_maps[i]))):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            if m is not None:
                ax.imshow(m, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
        axes[i, 0].text(-0.06, 0.5, notes[i], transform=axes[i, 0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png(fig)


# --- the command ---------------------------------------------------------------------------------


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, median, sd over the defined values (NaN = a flat map, left out and counted separately)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": None, "median": None, "sd": None}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def pool_name(path: str | Path) -> str:
    """A pool as captions name it: its folder, with its grid pool's for a split's folder (split-0 alone says
    nothing)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.name.startswith("split-") else path.name


def split_folder(pool_path: Path, dataset: data_mod.Dataset) -> Path:
    """The pool folder for `dataset`'s split: the folder given, or, for a grid's pool that holds one folder per
    split (POOL/split-SEED, see `mriaug.plan.grid.pool_dir`), the one of the runs' split."""
    if (pool_path / pools.MANIFEST).exists() or not any(pool_path.glob("split-*")):
        return pool_path
    seed = dataset.split.get("seed")
    folder = pool_path / f"split-{seed}"
    if not folder.is_dir():
        have = ", ".join(sorted(p.name for p in pool_path.glob("split-*")))
        raise PoolError(f"--pool {pool_path}: holds one folder per split ({have}), none for the runs' split (split "
                        f"seed {seed}); give the folder made from that split's training part")
    return folder


def source_classes(pool: pools.Pool, dataset: data_mod.Dataset, spec: data_mod.DataSpec) -> np.ndarray:
    """The source's own class (an index into CLASSES) of each pool row's real image. Without a merge that is the
    row's label; with one the label names only the task class, so the same split without the merge tells."""
    if dataset.unmerged_fingerprint is None:
        return pool.labels
    plain = data_mod.load(spec.unmerged())
    if plain.fingerprint != dataset.unmerged_fingerprint:
        raise PoolError(f"the runs' data {dataset.fingerprint} without its merge is {plain.fingerprint}, not "
                        f"{dataset.unmerged_fingerprint} as when they ran: the source changed since")
    return plain.train_y[pool.sources]


@dataclass
class _Inputs:
    runs: list[Run]
    dataset: data_mod.Dataset
    pool: pools.Pool
    pool_path: Path  # the folder read (a grid's pool: its split's folder)
    source: np.ndarray  # each pool row's source class (index into CLASSES)
    present: list[int]  # the asked source classes the pool holds variations of


def _load_inputs(result_files: Sequence[str | Path], pool_path: str | Path, method: str,
                 classes: Sequence[str] | None) -> _Inputs:
    """The runs (of one dataset), their dataset, the pool and the asked classes it holds variations of."""
    if method not in METHODS:
        raise SettingError(f"--method {method!r}: unknown; choose one of {', '.join(METHODS)}")
    if not result_files:
        raise SettingError("give at least one run result (RESULT_JSON)")
    datasets: dict[str, data_mod.Dataset] = {}
    runs = [load_run(p, datasets) for p in result_files]
    fps = {r.dataset.fingerprint for r in runs}
    if len(fps) > 1:
        raise SettingError(f"the runs use {len(fps)} different datasets (with repeated splits: seeds of different "
                           "splits); give runs of one dataset (its pool's)")
    dataset = runs[0].dataset
    if not Path(pool_path).is_dir():
        raise PoolError(f"--pool {pool_path}: no such pool folder (make one with `mriaug synth --out {pool_path}`)")
    folder = split_folder(Path(pool_path), dataset)
    pool = pools.load(folder, dataset)
    spec = runs[0].result.data_spec
    source = source_classes(pool, dataset, data_mod.DataSpec(spec["source"], dict(spec.get("options") or {})))
    try:
        labels = [class_index(c) for c in (classes or DEFAULT_CLASSES)]
    except UnknownClassError as e:
        raise UnknownClassError(f"--classes: {e}; name the source's classes (a merged class by its members)") from e
    present = [k for k in labels if (source == k).any()]
    if not present:
        raise PoolError(f"--pool {folder}: no variations of {', '.join(CLASSES[k] for k in labels)} sources; choose "
                        f"--classes among those it holds ({', '.join(CLASSES[k] for k in sorted(set(source)))})")
    return _Inputs(runs, dataset, pool, folder, source, present)


@dataclass
class _Agreement:
    """One run's maps of one class's pairs, and how far the real and synthetic maps agree."""

    real: np.ndarray  # the real images' maps
    synthetic: np.ndarray  # their variations'
    pearson: list[float]
    iou: list[float]
    road: np.ndarray  # ROAD of the first `n_road` real images, then of as many variations
    n_road: int
    p_real: np.ndarray  # the target's probability on each real image
    p_synthetic: np.ndarray


def _agreement(cm: CamModel, p: Pairs, tk: list[int], method: str, road_images: int) -> _Agreement:
    mr, ms = maps(cm, p.real, tk, method), maps(cm, p.synthetic, tk, method)
    pr = [pearson(a, b) for a, b in zip(mr, ms, strict=True)]
    io_ = [iou(a, b) for a, b in zip(mr, ms, strict=True)]
    nr = min(road_images, len(p.sources))
    rd = np.concatenate([road(cm, p.real[:nr], mr[:nr], tk[:nr]), road(cm, p.synthetic[:nr], ms[:nr], tk[:nr])])
    prob_r = cm.probabilities(p.real)[:, tk[0]] if len(p.real) else np.zeros(0)
    prob_s = cm.probabilities(p.synthetic)[:, tk[0]] if len(p.synthetic) else np.zeros(0)
    return _Agreement(mr, ms, pr, io_, rd, nr, prob_r, prob_s)


def _write_panel(out: Path, run: Run, name: str, tname: str, method: str, pool_path: str | Path, p: Pairs,
                 a: _Agreement, panel_pairs: int) -> dict[str, Any]:
    """The PNG of the first `panel_pairs` pairs of one class, with its entry in cam.json's `panels`."""
    png_name = f"panels/{run.run_id}_{name}.png"
    np_ = min(panel_pairs, len(p.sources))
    notes = [f"#{int(s)}  r={r:.2f} IoU={i:.2f}" for s, r, i in zip(p.sources[:np_], a.pearson, a.iou, strict=False)]
    atomic.write_bytes(out / png_name, panel(
        p.real[:np_], a.real[:np_], p.synthetic[:np_], a.synthetic[:np_],
        f"{run.label}: {method}, target {tname}; {name} sources from {pool_name(pool_path)}", notes))
    return {"run_id": run.run_id, "class": name, "file": png_name, "pairs": np_}


def _class_entry(p: Pairs, a: _Agreement, tname: str) -> dict[str, Any]:
    """One run's numbers for one class in cam.json."""
    pr, io_, rd, nr = a.pearson, a.iou, a.road, a.n_road
    return {
        "pairs": len(p.sources), "target": tname,
        "pearson": _summary(pr)["mean"], "pearson_median": _summary(pr)["median"],
        "pearson_sd": _summary(pr)["sd"],
        "iou": _summary(io_)["mean"], "iou_median": _summary(io_)["median"], "iou_sd": _summary(io_)["sd"],
        "flat_maps": int(sum(flat(m) for m in a.real) + sum(flat(m) for m in a.synthetic)),
        "road": _summary(rd.tolist())["mean"], "road_real": _summary(rd[:nr].tolist())["mean"],
        "road_synthetic": _summary(rd[nr:].tolist())["mean"], "road_images": int(len(rd)),
        "p_target_real": _summary(a.p_real.tolist())["mean"],
        "p_target_synthetic": _summary(a.p_synthetic.tolist())["mean"],
        "sources": [int(s) for s in p.sources], "pool_rows": [int(r) for r in p.rows],
        "pearson_per_pair": [_num(v) for v in pr], "iou_per_pair": [_num(v) for v in io_],
    }


# Means over every run's images beside the agreement: what ROAD and the model's confidence say of the real
# images against their variations (a variation the model no longer sees as its class explains a low agreement).
_POOLED_MEANS = ("road_real", "road_synthetic", "p_target_real", "p_target_synthetic")


def _all_runs(pooled: dict[int, dict[str, list[float]]], chosen: dict[int, Pairs], n_runs: int,
              per_run: dict[str, Any]) -> dict[str, Any]:
    """Per class, the numbers of every run's pairs together, and the flat maps of all runs."""
    per_class_all = {CLASSES[k]: {"pairs": len(chosen[k].sources), "runs": n_runs,
                                  "pearson": _summary(v["pearson"])["mean"], "pearson_sd": _summary(v["pearson"])["sd"],
                                  "iou": _summary(v["iou"])["mean"], "iou_sd": _summary(v["iou"])["sd"],
                                  "road": _summary(v["road"])["mean"],
                                  **{key: _summary(v[key])["mean"] for key in _POOLED_MEANS}}
                     for k, v in pooled.items()}
    flat_total: dict[str, int] = {}
    for v in per_run.values():
        for name, c in v["per_class"].items():
            flat_total[name] = flat_total.get(name, 0) + c["flat_maps"]
    for name, c in per_class_all.items():
        c["flat_maps"] = flat_total.get(name, 0)
    return per_class_all


def run_cam(result_files: Sequence[str | Path], pool_path: str | Path, out: str | Path, *, method: str = "gradcam",
            classes: Sequence[str] | None = None, target: str | None = None, pairs: int = 8, panel_pairs: int = 4,
            road_images: int = 4, seed: int = 0, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """`mriaug cam`: maps, panels (PNG) and DIR/cam.json for each run over the pool's pairs."""
    inp = _load_inputs(result_files, pool_path, method, classes)
    runs, dataset, pool = inp.runs, inp.dataset, inp.pool
    out = Path(out)
    target_k = dataset.label(target) if target else None
    # Keyed by source class; each is drawn by its real image's class and scored on the task class it became.
    task = {k: dataset.class_map[k] for k in inp.present}
    chosen = {k: pick_pairs(pool, dataset, task[k], pairs, seed, among=inp.source == k) for k in inp.present}

    per_run: dict[str, Any] = {}
    real_maps: dict[str, dict[int, np.ndarray]] = {}
    pooled: dict[int, dict[str, list[float]]] = {k: {key: [] for key in ("pearson", "iou", "road", *_POOLED_MEANS)}
                                                 for k in inp.present}
    panels: list[dict[str, Any]] = []
    for run in runs:
        cm = run.cam_model
        log(f"{run.label} [{run.run_id}]: {method} maps")
        per_class: dict[str, Any] = {}
        real_maps[run.run_id] = {}
        for k, p in chosen.items():
            tk = [target_k if target_k is not None else task[k]] * len(p.sources)
            a = _agreement(cm, p, tk, method, road_images)
            real_maps[run.run_id][k] = a.real
            pooled[k]["pearson"] += a.pearson
            pooled[k]["iou"] += a.iou
            pooled[k]["road"] += a.road.tolist()
            pooled[k]["road_real"] += a.road[: a.n_road].tolist()
            pooled[k]["road_synthetic"] += a.road[a.n_road:].tolist()
            pooled[k]["p_target_real"] += a.p_real.tolist()
            pooled[k]["p_target_synthetic"] += a.p_synthetic.tolist()
            name = CLASSES[k]
            tname = dataset.classes[tk[0]]
            panels.append(_write_panel(out, run, name, tname, method, inp.pool_path, p, a, panel_pairs))
            per_class[name] = {**_class_entry(p, a, tname), "task_class": dataset.classes[task[k]]}
        per_run[run.run_id] = {"label": run.label, "result": str(run.path), "per_class": per_class}

    per_class_all = _all_runs(pooled, chosen, len(runs), per_run)
    for k in inp.present:
        per_class_all[CLASSES[k]]["task_class"] = dataset.classes[task[k]]
    report = {
        "method": method, "target": target or "true class", "top_fraction": TOP_FRACTION,
        "pool": str(inp.pool_path), "pool_fingerprint": pool.fingerprint, "data_fingerprint": dataset.fingerprint,
        "split": {k: dataset.split[k] for k in ("kind", "seed", "splits") if k in dataset.split},
        "classes": list(dataset.classes),
        "runs": [{"run_id": r.run_id, "label": r.label, "result": str(r.path), "seed": r.result.seed,
                  "cell": cell_name(r.result)} for r in runs],
        "cells": cells(runs, pool.fingerprint),
        "per_class": per_class_all, "per_run": per_run,
        "seed_stability": seed_stability(runs, real_maps), "panels": panels,
    }
    atomic.write_json(out / CAM_JSON, report)
    return report


def _groups(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs by cell, in the order first given."""
    out: dict[tuple[Any, ...], list[Run]] = {}
    for r in runs:
        out.setdefault(r.cell, []).append(r)
    return list(out.values())


def cells(runs: Sequence[Run], pool_fingerprint: str) -> list[dict[str, Any]]:
    """What each cell among the runs is (cam.json's `cells`): its name, scenario, the pool it mixed in and the
    one it pretrained on, its seeds, and whether its runs trained on the very pool whose images the maps compare
    (then the variations are no new images to them)."""
    out = []
    for group in _groups(runs):
        r = group[0].result
        pre = r.pretraining
        seen = pool_fingerprint in {r.data.pool_fingerprint, pre.pool_fingerprint if pre else None}
        out.append({"name": cell_name(r), "model": r.model, "scenario": r.scenario, "augmentation": r.augmentation,
                    "pool": r.data.pool_label,
                    "pretraining": None if pre is None else {"pool": pre.pool, "pool_path": pre.pool_path,
                                                             "images": pre.images, "epochs": pre.epochs},
                    "seeds": sorted(x.result.seed for x in group), "run_ids": [x.run_id for x in group],
                    "trained_on_pool": seen})
    return out


def seed_stability(runs: Sequence[Run], real_maps: dict[str, dict[int, np.ndarray]]) -> dict[str, Any]:
    """Per cell with several runs, per class: mean Pearson correlation of a real image's maps across seeds."""
    out: dict[str, Any] = {}
    for group in _groups(runs):
        if len(group) < 2:
            continue
        cell = cell_name(group[0].result)
        per_class: dict[str, Any] = {}
        for k in real_maps[group[0].run_id]:
            vals = [pearson(a, b)
                    for i, ri in enumerate(group) for rj in group[i + 1:]
                    for a, b in zip(real_maps[ri.run_id][k], real_maps[rj.run_id][k], strict=True)]
            per_class[CLASSES[k]] = {"pearson": _summary(vals)["mean"], "pearson_sd": _summary(vals)["sd"],
                                     "runs": len(group), "images": int(len(real_maps[group[0].run_id][k]))}
        out[cell] = {"seeds": sorted(r.result.seed for r in group), "per_class": per_class}
    return out
