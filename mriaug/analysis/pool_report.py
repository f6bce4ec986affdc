"""A pool's report: real sources beside their synthetic variations per class (like thesis Fig. 2.2) and
numbers per class that say whether the pool is any good, written atomically next to the manifest as
`report.png` and `report.json`, each number with a plain-words verdict (`verdicts`).

Numbers per class: SSIM of each synthetic image to its source (torchmetrics, Gaussian window 11, sigma
1.5, the usual constants for 8-bit images; in batches, so memory stays bounded), the L1 distance
between the two 64-bin intensity histograms of an image and its source (0 = same histogram, 2 =
disjoint), the same histogram distance between the whole synthetic class and the real training images
of that class, and (all from `fidelity`, which explains the choices):
- KID on the features of a small CNN trained on the real data, real against synthetic beside real
  against real (the floor);
- memorisation: `near_copy_share`, the share of synthetic images closer to a training image than 95 in
  100 real held-out images are (or closer than a floor that catches copies whatever the held-out part);
- class fidelity: `class_fidelity`, the share of synthetic images the CNN (trained on the fit part)
  labels as their intended class, beside its recall on real held-out images of that class.
The held-out part (`held_out`) is the split's validation part, else its test part: images never
trained on and never a source of this pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import pools
from ..data import sources as data_mod
from ..data.classes import CLASSES
from ..errors import PoolError
from ..store import atomic

REPORT_PNG = "report.png"
REPORT_JSON = "report.json"


def ssim(a: np.ndarray, b: np.ndarray, batch: int = 64) -> np.ndarray:
    """SSIM per image pair of two (N, H, W) uint8 stacks (torchmetrics in float64; Gaussian window 11, sigma
    1.5), `batch` pairs at a time so memory stays bounded whatever the pool size."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    out = []
    k = min(11, a.shape[-1] - (1 - a.shape[-1] % 2))  # an odd window no larger than the image
    for i in range(0, len(a), batch):
        # In float64: float32 variances of 8-bit images are off by ~1e-2, which moves SSIM in its 4th decimal.
        x = torch.from_numpy(np.ascontiguousarray(a[i : i + batch])).double()[:, None]
        y = torch.from_numpy(np.ascontiguousarray(b[i : i + batch])).double()[:, None]
        s = structural_similarity_index_measure(x, y, kernel_size=k, sigma=1.5, data_range=255.0, reduction="none")
        out.append(torch.as_tensor(s).reshape(-1).double())
    return torch.cat(out).numpy() if out else np.zeros(0)


def histogram(images: np.ndarray, bins: int = 64) -> np.ndarray:
    h = np.histogram(images, bins=bins, range=(0, 256))[0].astype(np.float64)
    return h / max(h.sum(), 1.0)


def hist_distance(a: np.ndarray, b: np.ndarray, bins: int = 64) -> float:
    return float(np.abs(histogram(a, bins) - histogram(b, bins)).sum())


def held_out(pool: pools.Pool, dataset: data_mod.Dataset) -> tuple[str, np.ndarray, np.ndarray]:
    """The real images a pool's numbers are set against: (part name, images, labels). The validation rows
    when the split has them, else the test part; rows that are a source of this pool are left out (a
    pool made under another validation fraction may draw on them)."""
    if len(dataset.val_rows):
        rows = np.setdiff1d(dataset.val_rows, pool.sources)
        return "validation", dataset.train_x[rows], dataset.train_y[rows]
    return "test", dataset.test_x, dataset.test_y


def _shares_scans(part: str, dataset: data_mod.Dataset) -> bool:
    # The given split's test part is a random draw of slices: its images may come from training scans.
    return part == "test" and dataset.split.get("kind", "given") == "given"


def memorisation(pool: pools.Pool, dataset: data_mod.Dataset) -> dict[str, Any]:
    """Distances to the nearest training image (`fidelity.nearest` on `fidelity.pixel_features`) of every
    synthetic image and of every real held-out image, and the near-copy threshold drawn from the latter
    (`fidelity.near_copy_threshold`). Training images: the fit part, plus any validation row that is a
    source of this pool. Returns {"summary": ..., "per_class": {class: {...}}}."""
    from . import fidelity as fid

    ref_rows = np.union1d(np.flatnonzero(dataset.fit_mask), pool.sources)
    ref = fid.pixel_features(dataset.train_x[ref_rows])
    part, ho_x, ho_y = held_out(pool, dataset)
    ho_d = fid.nearest(fid.pixel_features(ho_x), ref)[0] if len(ho_x) else np.zeros(0)
    syn_d = fid.nearest(fid.pixel_features(pool.images), ref)[0] if len(pool.labels) else np.zeros(0)
    t = fid.near_copy_threshold(ho_d)
    summary = {"feature_space": f"{fid.PIXEL_SIDE}x{fid.PIXEL_SIDE} pixels, zero-mean and unit-norm",
               "training_images": int(len(ref_rows)), "held_out_part": part, "held_out_images": int(len(ho_d)),
               "held_out_shares_scans": _shares_scans(part, dataset), "percentile": fid.NEAR_PERCENTILE,
               "percentile_distance": float(np.percentile(ho_d, fid.NEAR_PERCENTILE)) if len(ho_d) else None,
               "floor": fid.NEAR_FLOOR, "threshold": t,
               "held_out_near_share": float((ho_d < t).mean()) if len(ho_d) else None,
               "held_out_distance_median": float(np.median(ho_d)) if len(ho_d) else None}
    per: dict[str, Any] = {}
    for c, name in enumerate(CLASSES):
        rows = pool.labels == c
        if not rows.any():
            continue
        d, hd = syn_d[rows], ho_d[ho_y == c]
        per[name] = {"near_copy_share": float((d < t).mean()), "nn_distance_median": float(np.median(d)),
                     "nn_distance_min": float(d.min()),
                     "held_out_nn_distance_median": float(np.median(hd)) if len(hd) else None,
                     "held_out_near_share": float((hd < t).mean()) if len(hd) else None}
    return {"summary": summary, "per_class": per}


def class_fidelity(pool: pools.Pool, dataset: data_mod.Dataset, net: Any) -> dict[str, Any]:
    """The CNN of `fidelity.feature_net` (trained on the fit part) labels the synthetic images, the real
    held-out images and the pool's source images. Per class: `class_fidelity` (share of synthetic images
    labelled as their intended class), `held_out_recall` and `sources_recall` (the same share on real
    held-out images of the class and on this pool's sources). Returns {"summary": ..., "per_class": ...}."""
    from . import fidelity as fid

    part, ho_x, ho_y = held_out(pool, dataset)
    syn_p = fid.predict(net, pool.images)
    src_p = fid.predict(net, dataset.train_x[pool.sources])
    ho_p = fid.predict(net, ho_x)
    recalls = [r for r in (fid.recall(ho_p, ho_y, k) for k in range(len(CLASSES))) if r is not None]
    summary = {"network": f"BasicCNN {fid.SIDE}x{fid.SIDE}, {fid.EPOCHS} epochs, class-weighted",
               "trained_on": "fit part", "training_images": int(dataset.fit_mask.sum()), "held_out_part": part,
               "held_out_images": int(len(ho_y)), "held_out_shares_scans": _shares_scans(part, dataset),
               "held_out_accuracy": float((ho_p == ho_y).mean()) if len(ho_y) else None,
               "held_out_balanced_accuracy": float(np.mean(recalls)) if recalls else None,
               "chance": 1.0 / len(CLASSES)}
    per: dict[str, Any] = {}
    for c, name in enumerate(CLASSES):
        rows = pool.labels == c
        if not rows.any():
            continue
        per[name] = {"class_fidelity": float((syn_p[rows] == c).mean()),
                     "held_out_recall": fid.recall(ho_p, ho_y, c), "held_out_class_images": int((ho_y == c).sum()),
                     "sources_recall": float((src_p[rows] == c).mean())}
    return {"summary": summary, "per_class": per}


def quality(pool: pools.Pool, dataset: data_mod.Dataset, kid: bool = True) -> dict[str, Any]:
    """Every number of the report but the figure: {"per_class": {class: {...}}, "memorisation": summary,
    "classifier": summary or None, "verdicts": [line, ...]}. `kid=False` leaves out what needs the
    trained CNN (KID and class fidelity)."""
    from . import fidelity as fid

    net = fid.feature_net(dataset) if kid else None
    mem = memorisation(pool, dataset)
    cls = class_fidelity(pool, dataset, net) if net is not None else None
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
            **mem["per_class"][name],
        }
        if net is not None and cls is not None:
            out[name].update(fid.kid_real_vs_synthetic(net, real, syn))
            out[name].update(cls["per_class"][name])
    rep = {"per_class": out, "memorisation": mem["summary"], "classifier": cls["summary"] if cls else None}
    rep["verdicts"] = verdicts(rep)
    return rep


def fidelity(pool: pools.Pool, dataset: data_mod.Dataset, kid: bool = True) -> dict[str, Any]:
    """The per-class numbers of `quality`."""
    return dict(quality(pool, dataset, kid)["per_class"])


# --- verdicts: each number in plain words, with its threshold ----------------------------------------------

KID_SIGMAS = 2.0  # KID above the floor by more than this many standard deviations: told apart from real
COPY_MOSTLY = 0.5  # a near-copy share from which the pool is called mostly copies


def kid_verdict(name: str, r: dict[str, Any]) -> str | None:
    syn, floor = r.get("kid_real_vs_synthetic"), r.get("kid_real_vs_real")
    if syn is None or floor is None:
        return None
    spread = KID_SIGMAS * float(np.hypot(r.get("kid_real_vs_synthetic_std", 0.0), r.get("kid_real_vs_real_std", 0.0)))
    head = (f"{name}: KID real vs synthetic {syn:.4f}, real vs real (the floor) {floor:.4f}; threshold: the floor "
            f"+ {KID_SIGMAS:g} standard deviations of the two estimates = {floor + spread:.4f}: ")
    if syn <= floor + spread:
        return head + "as close to the real images as a second real sample is (the feature CNN cannot tell them apart)"
    return head + "further from the real images than real images are from each other"


def expected_near_share(n: int, percentile: float) -> float:
    """The highest near-copy share a pool of n images that copies nothing would plausibly show: the
    percentile's share plus two binomial standard errors."""
    p = percentile / 100.0
    return p + 2.0 * float(np.sqrt(p * (1 - p) / max(n, 1)))


def memorisation_verdict(name: str, r: dict[str, Any], m: dict[str, Any]) -> str:
    share, t = r["near_copy_share"], m["threshold"]
    upper = expected_near_share(int(r["images"]), m["percentile"])
    head = (f"{name}: near-copies {share:.0%} of {r['images']} (nearest training image closer than {t:.3f}, the "
            f"{m['percentile']:g}th percentile of {m['held_out_images']} real {m['held_out_part']} images' distances, "
            f"at least {m['floor']:g}; median distance {r['nn_distance_median']:.3f} vs "
            f"{_num(m.get('held_out_distance_median'), 3)} for real held-out images): ")
    if share >= COPY_MOSTLY:
        return head + "mostly copies of training images, a privacy problem for patient data"
    if share > upper:
        return head + (f"more near-copies than a pool that copies nothing would show (up to {upper:.0%}); "
                       "look at them before sharing the pool")
    return head + f"no more near-copies than new real images give (up to {upper:.0%} expected)"


def class_fidelity_verdict(name: str, r: dict[str, Any], chance: float) -> str | None:
    q, p = r.get("class_fidelity"), r.get("held_out_recall")
    if q is None:
        return None
    head = (f"{name}: class fidelity {q:.2f} (share the real-data CNN labels {name}); its recall on real held-out "
            f"{name} images {_num(p, 2)} (n={r.get('held_out_class_images', 0)}), on this pool's sources "
            f"{r['sources_recall']:.2f}: ")
    if p is None:
        return head + "no real held-out image of this class to set it against, so class fidelity says little here"
    if p <= chance:
        return head + (f"the CNN does not recognise this class on new real images (recall at or below chance, "
                       f"{chance:.2f}), so class fidelity says little here")
    n_syn, n_ho = int(r["images"]), max(int(r.get("held_out_class_images", 0)), 1)
    tol = 2.0 * float(np.sqrt(q * (1 - q) / n_syn + p * (1 - p) / n_ho))
    if q >= p - tol:
        return head + (f"keeps its class (as recognisable as new real images; threshold: the held-out recall less "
                       f"two standard errors, {p - tol:.2f})")
    if q <= chance:
        return head + f"loses its class (labelled {name} no more often than chance, {chance:.2f})"
    return head + (f"less recognisable than new real images (below {p - tol:.2f}, the held-out recall less two "
                   "standard errors)")


def verdicts(report: dict[str, Any]) -> list[str]:
    """Plain-words lines for a report (as `quality` or `write` return it, or as read from report.json)."""
    lines = []
    m, c = report.get("memorisation"), report.get("classifier")
    if c:
        lines.append(f"classifier: {c['network']}, trained on the {c['trained_on']} ({c['training_images']} images); "
                     f"on {c['held_out_images']} real {c['held_out_part']} images accuracy "
                     f"{_num(c['held_out_accuracy'], 2)}, balanced accuracy {_num(c['held_out_balanced_accuracy'], 2)} "
                     f"(chance {c['chance']:.2f})")
    for name, r in report["per_class"].items():
        line = kid_verdict(name, r)
        if line:
            lines.append("KID " + line)
        if m:
            lines.append("memorisation " + memorisation_verdict(name, r, m))
        line = class_fidelity_verdict(name, r, c["chance"]) if c else None
        if line:
            lines.append("class " + line)
    for part in (m, c):
        if part and part.get("held_out_shares_scans"):
            lines.append("note: the held-out images are the given split's test part, which can share scans with "
                         "the training images; --data-option split=subject gives a patient-level reference")
            break
    return lines


def _num(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) else "—"


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
              "failures": len(pool.meta.get("failures", {}) or {}), **quality(pool, dataset, kid),
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
    def f(v: Any, w: int, digits: int = 4) -> str:
        return f"{v:>{w}.{digits}f}" if isinstance(v, int | float) else f"{'—':>{w}}"

    lines = [f"{'class':<20}{'images':>7}{'SSIM mean':>11}{'SSIM min':>10}{'hist L1':>9}{'class vs real':>15}"
             f"{'KID syn':>10}{'KID real':>10}{'near-copy':>11}{'class fid':>11}{'real recall':>13}"]
    for name, r in report["per_class"].items():
        lines.append(f"{name:<20}{r['images']:>7}{r['ssim_to_source_mean']:>11.3f}{r['ssim_to_source_min']:>10.3f}"
                     f"{r['hist_l1_to_source_mean']:>9.3f}{r['hist_l1_class_vs_real']:>15.3f}"
                     f"{f(r.get('kid_real_vs_synthetic'), 10)}{f(r.get('kid_real_vs_real'), 10)}"
                     f"{f(r.get('near_copy_share'), 11, 3)}{f(r.get('class_fidelity'), 11, 3)}"
                     f"{f(r.get('held_out_recall'), 13, 3)}")
    return "\n".join(lines)


def format_verdicts(report: dict[str, Any]) -> str:
    """The report's verdict lines (`verdicts`), one per number."""
    return "\n".join(report.get("verdicts") or verdicts(report))
