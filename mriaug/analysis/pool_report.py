"""A pool's report: real sources beside their synthetic variations per class (like thesis Fig. 2.2) and
simple fidelity numbers per class, written atomically next to the manifest as `report.png` and
`report.json`.

Numbers per class: SSIM of each synthetic image to its source (torchmetrics, Gaussian window 11, sigma
1.5, the usual constants for 8-bit images; in batches, so memory stays bounded), the L1 distance
between the two 64-bin intensity histograms of an image and its source (0 = same histogram, 2 =
disjoint), the same histogram distance between the whole synthetic class and the real training images
of that class, and KID (`fidelity`) on the features of a small CNN trained on the real data, real
against synthetic and real against real (the floor).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import atomic, pools
from .. import data as data_mod
from ..classes import CLASSES
from ..errors import PoolError

REPORT_PNG = "report.png"
REPORT_JSON = "report.json"


def ssim(a: np.ndarray, b: np.ndarray, batch: int = 64) -> np.ndarray:
    """SSIM per image pair of two (N, H, W) uint8 stacks (torchmetrics; Gaussian window 11, sigma 1.5),
    `batch` pairs at a time so memory stays bounded whatever the pool size."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    out = []
    k = min(11, a.shape[-1] - (1 - a.shape[-1] % 2))  # an odd window no larger than the image
    for i in range(0, len(a), batch):
        x = torch.from_numpy(np.ascontiguousarray(a[i : i + batch])).float()[:, None]
        y = torch.from_numpy(np.ascontiguousarray(b[i : i + batch])).float()[:, None]
        s = structural_similarity_index_measure(x, y, kernel_size=k, sigma=1.5, data_range=255.0, reduction="none")
        out.append(torch.as_tensor(s).reshape(-1).double())
    return torch.cat(out).numpy() if out else np.zeros(0)


def histogram(images: np.ndarray, bins: int = 64) -> np.ndarray:
    h = np.histogram(images, bins=bins, range=(0, 256))[0].astype(np.float64)
    return h / max(h.sum(), 1.0)


def hist_distance(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    return float(np.abs(histogram(a, bins) - histogram(b, bins)).sum())


def fidelity(pool: pools.Pool, dataset: data_mod.Dataset, kid: bool = True) -> dict[str, Any]:
    from . import fidelity as fid

    net = fid.feature_net(dataset) if kid else None
    out: dict[str, Any] = {}
    for c, name in enumerate(CLASSES):
        rows = np.flatnonzero(pool.labels == c)
        if not len(rows):
            continue
        syn = pool.images[rows]
        src = dataset.train_x[pool.sources[rows]]
        s = ssim(syn, src)
        hd = np.array([hist_distance(a, b) for a, b in zip(syn, src, strict=True)])
        real = dataset.train_x[dataset.train_y == c]
        out[name] = {
            "images": int(len(rows)), "sources": int(len(np.unique(pool.sources[rows]))),
            "ssim_to_source_mean": float(s.mean()), "ssim_to_source_median": float(np.median(s)),
            "ssim_to_source_min": float(s.min()),
            "hist_l1_to_source_mean": float(hd.mean()),
            "hist_l1_class_vs_real": hist_distance(syn, real),
            "mean_intensity_synthetic": float(syn.mean()), "mean_intensity_real": float(real.mean()),
        }
        if net is not None:
            out[name].update(fid.kid_real_vs_synthetic(net, real, syn))
    return out


def figure(pool: pools.Pool, dataset: data_mod.Dataset, per_class: int = 4, seed: int = 0) -> bytes:
    """PNG: for each class in the pool, a row of real sources above a row of their variations."""
    from .plots import png, pyplot

    plt = pyplot()
    classes = [c for c in range(len(CLASSES)) if (pool.labels == c).any()]
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2 * max(len(classes), 1), per_class, figsize=(1.8 * per_class, 3.5 * max(len(classes), 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, c in enumerate(classes):
        rows = np.flatnonzero(pool.labels == c)
        # One variation per shown source, sources drawn at random so the figure is not cherry-picked.
        _, first = np.unique(pool.sources[rows], return_index=True)
        pick = rng.choice(rows[first], min(per_class, len(first)), replace=False)
        for j, k in enumerate(pick):
            src = int(pool.sources[k])
            axes[2 * r, j].imshow(dataset.train_x[src], cmap="gray", vmin=0, vmax=255)
            axes[2 * r, j].set_title(f"real #{src}", fontsize=7)
            axes[2 * r + 1, j].imshow(pool.images[k], cmap="gray", vmin=0, vmax=255)
            axes[2 * r + 1, j].set_title(f"synthetic v{pool.entries[k].get('variation', 0)}", fontsize=7)
        axes[2 * r, 0].text(-0.1, 0.0, CLASSES[c], transform=axes[2 * r, 0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=9)
    gen = pool.meta.get("generator", "?")
    fig.suptitle(f"{pool.path.name}: real sources (upper rows) and {gen} variations (lower rows)", fontsize=9)
    fig.tight_layout()
    return png(fig)


def dataset_of(path: str | Path) -> data_mod.Dataset:
    """The dataset a pool was made from, as recorded in its pool.json."""
    path = Path(path)
    if not path.is_dir():
        raise PoolError(f"pool folder {path} does not exist; make the pool with `mriaug synth --out {path}`")
    meta_file = path / pools.META
    if not meta_file.exists():
        raise PoolError(f"{meta_file}: missing; pass --data to say which dataset the pool belongs to")
    src = pools.read_meta(path).get("data_source") or {}
    if not isinstance(src, dict) or "source" not in src:
        raise PoolError(f"{meta_file}: no data_source recorded; pass --data")
    return data_mod.load(data_mod.DataSpec(src["source"], dict(src.get("options") or {})))


def write(path: str | Path, dataset: data_mod.Dataset | None = None, per_class: int = 4, kid: bool = True
          ) -> dict[str, Any]:
    path = Path(path)
    dataset = dataset or dataset_of(path)
    pool = pools.load(path, dataset)
    report = {"pool": str(path), "pool_fingerprint": pool.fingerprint, "images": int(len(pool.labels)),
              "generator": pool.meta.get("generator"),
              "generators": sorted({str(e["generator"]) for e in pool.entries}),
              "spend_usd": pool.meta.get("spend_usd", 0.0),
              "spend_estimate_usd": pool.meta.get("spend_estimate_usd", pool.meta.get("spend_usd", 0.0)),
              "tokens": pool.meta.get("tokens") or {}, "provenance": provenance(pool),
              "failures": len(pool.meta.get("failures", {}) or {}), "per_class": fidelity(pool, dataset, kid),
              "figure": REPORT_PNG}
    if len(pool.labels):
        atomic.write_bytes(path / REPORT_PNG, figure(pool, dataset, per_class))
    else:
        report["figure"] = None
    atomic.write_json(path / REPORT_JSON, report)
    return report


# The request settings that tell how an image was made; prices are left out (they do not shape images).
PROVENANCE_KEYS = ("endpoint", "model", "model_answered", "size", "quality", "output_format", "prompt")


def provenance(pool: pools.Pool) -> list[dict[str, Any]]:
    """Pool lines grouped by generator and request settings (`PROVENANCE_KEYS`, those a line has), with
    the number of images and of distinct requests (by the server's request id, where it gave one)."""
    groups: dict[str, dict[str, Any]] = {}
    for e in pool.entries:
        p = e.get("params") or {}
        ident = {"generator": e["generator"], **{k: p[k] for k in PROVENANCE_KEYS if k in p}}
        g = groups.setdefault(json.dumps(ident, sort_keys=True), {**ident, "images": 0, "request_ids": set()})
        g["images"] += 1
        rid = (p.get("request") or {}).get("id")
        if rid:
            g["request_ids"].add(rid)
    out = []
    for g in groups.values():
        ids = g.pop("request_ids")
        out.append({**g, "requests": len(ids) or None})
    return out


def format_provenance(report: dict[str, Any]) -> str:
    """How the pool's images were made, one line per group of `provenance`, then the spend."""
    lines = []
    for g in report.get("provenance", []):
        parts = [f"{g['images']} image(s) by {g['generator']}"]
        if "endpoint" in g:
            parts.append(f"endpoint {g['endpoint']}")
        if "model" in g:
            answered = g.get("model_answered")
            parts.append(f"model {g['model']} (answered: {answered or 'not said'})")
        parts += [f"{k} {g[k]}" for k in ("size", "quality", "output_format") if g.get(k)]
        if g.get("requests"):
            parts.append(f"{g['requests']} request(s)")
        if g.get("prompt"):
            prompt = g["prompt"] if len(g["prompt"]) <= 70 else g["prompt"][:67] + "..."
            parts.append(f"prompt {prompt!r}")
        lines.append("made: " + ", ".join(parts))
    if report.get("spend_usd") or report.get("spend_estimate_usd"):
        tokens = report.get("tokens") or {}
        tok = ", ".join(f"{k} {v}" for k, v in sorted(tokens.items())) or "none reported"
        lines.append(f"spend: ${report['spend_usd']:.4f} usage-based, ${report['spend_estimate_usd']:.4f} estimate; "
                     f"tokens: {tok}")
    return "\n".join(lines)


def format_table(report: dict[str, Any]) -> str:
    def f(v: Any, w: int) -> str:
        return f"{v:>{w}.4f}" if isinstance(v, float) else f"{'—':>{w}}"

    lines = [f"{'class':<20}{'images':>7}{'SSIM mean':>11}{'SSIM min':>10}{'hist L1':>9}{'class vs real':>15}"
             f"{'KID syn':>10}{'KID real':>10}"]
    for name, r in report["per_class"].items():
        lines.append(f"{name:<20}{r['images']:>7}{r['ssim_to_source_mean']:>11.3f}{r['ssim_to_source_min']:>10.3f}"
                     f"{r['hist_l1_to_source_mean']:>9.3f}{r['hist_l1_class_vs_real']:>15.3f}"
                     f"{f(r.get('kid_real_vs_synthetic'), 10)}{f(r.get('kid_real_vs_real'), 10)}")
    return "\n".join(lines)
