"""Pool quality per CPU-minute of diffusion training (issue 37): snapshots of one split's class-conditional
diffusion model after a number of training steps, each sampled into a small pool with the study's sampler
(`mriaug synth --generator diffusion`'s library path, `generators.synth.make_pool`: strength 0.5, 20 DDIM steps,
every class) in a temporary folder, and scored per class with the pool report's own numbers
(`analysis.pool_report.quality`: KID against real training images beside the real-vs-real floor, class fidelity
beside the feature CNN's recall on real held-out images, near-copy share and nearest-training-image distance).

Each snapshot is a `mriaug synth train-diffusion` output folder (checkpoint.pt and diffusion.json, whose
train_seconds and step give the training time). The data is the grid's split as `synth --grid --split` loads it
(the source's own classes: pools are made before a grid's merge). Prints one table: a row per snapshot and class.
The feature CNN of the report is trained once, in a temporary cache (the study's cache is left as it is).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diffusion_steps.py models/bench-diffusion-steps/split-0-{200,400,800}
        [--grid jobs/study-cpu.toml] [--split 0] [--max-sources 40] [--per-source 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# The study's sampler (jobs/study.sh: STRENGTH, SAMPLE_STEPS).
STRENGTH = 0.5
SAMPLE_STEPS = 20


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = {f for line in info.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{name} (bf16: {', '.join(native) if native else 'not native'})"


def snapshot(folder: Path, ds: Any, max_sources: int, per_source: int) -> dict[str, Any]:
    """One snapshot's training record, its pool's sampling seconds and the pool report's numbers."""
    from mriaug.analysis import pool_report
    from mriaug.data import pools
    from mriaug.generators import synth

    info = json.loads((folder / "diffusion.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pool"
        t0 = time.perf_counter()
        made = synth.make_pool(ds, out, "diffusion", classes=None, per_source=per_source, max_sources=max_sources,
                               options={"checkpoint": str(folder), "strength": STRENGTH, "steps": SAMPLE_STEPS},
                               progress_bar=False)
        sample_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = pool_report.quality(pools.load(out, ds), ds)
        report_s = time.perf_counter() - t0
    return {"folder": str(folder), "steps": info["step"], "train_s": info["train_seconds"],
            "images": made["pool_size"], "sample_s": sample_s, "report_s": report_s, "report": report}


def _n(v: Any, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("steps", "train min", "sample s", "class", "images", "KID syn", "± sd", "KID real", "± sd",
            "class fid", "real recall", "near-copy", "NN dist", "held-out NN")
    lines = [head]
    for s in rows:
        for i, (name, r) in enumerate(s["report"]["per_class"].items()):
            first = i == 0
            lines.append((str(s["steps"]) if first else "", f"{s['train_s'] / 60:.1f}" if first else "",
                          f"{s['sample_s']:.0f}" if first else "", name, str(r["images"]),
                          _n(r.get("kid_real_vs_synthetic"), 4), _n(r.get("kid_real_vs_synthetic_std"), 4),
                          _n(r.get("kid_real_vs_real"), 4), _n(r.get("kid_real_vs_real_std"), 4),
                          _n(r.get("class_fidelity"), 3), _n(r.get("held_out_recall"), 3),
                          _n(r.get("near_copy_share"), 3), _n(r.get("nn_distance_median"), 3),
                          _n(r.get("held_out_nn_distance_median"), 3)))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) if i == 3 else v.rjust(w) for i, (v, w) in enumerate(zip(x, widths,
                                                                                                 strict=True)))
                     for x in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshots", nargs="+", type=Path, help="train-diffusion output folders of one split")
    ap.add_argument("--grid", type=Path, default=Path("jobs/study-cpu.toml"))
    ap.add_argument("--split", type=int, default=0)
    ap.add_argument("--max-sources", type=int, default=40, help="sources per class")
    ap.add_argument("--per-source", type=int, default=1, help="variations per source")
    a = ap.parse_args()
    from mriaug.data import sources

    with tempfile.TemporaryDirectory() as cache:
        # The pool report's feature CNN is cached per split (kid-features/); train this run's in a cache of its own,
        # the data's entries linked, so that the study's reports never take a network this benchmark trained.
        real = sources.cache_root()
        for entry in real.iterdir() if real.is_dir() else []:
            if entry.name != "kid-features":
                (Path(cache) / entry.name).symlink_to(entry)
        os.environ["MRIAUG_CACHE"] = cache
        run(a)


def run(a: argparse.Namespace) -> None:
    import torch

    from mriaug.data import sources
    from mriaug.plan.grid import load

    g = load(a.grid)
    d = (g.split_data or [g.data])[a.split]
    ds = sources.load(d.unmerged())  # as `mriaug synth --grid` loads it
    print(f"{datetime.date.today()}; CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"grid {a.grid}, split {a.split} (data {ds.fingerprint}); per snapshot a pool of at most {a.max_sources} "
          f"sources per class x {a.per_source}, diffusion strength {STRENGTH}, {SAMPLE_STEPS} DDIM steps")
    rows = []
    for folder in sorted(a.snapshots, key=lambda f: json.loads((f / "diffusion.json").read_text())["step"]):
        rows.append(snapshot(folder, ds, a.max_sources, a.per_source))
        s = rows[-1]
        print(f"  {folder}: {s['steps']} steps, {s['images']} images sampled in {s['sample_s']:.0f} s, "
              f"pool report {s['report_s']:.0f} s" + (" (training the feature CNN first)" if len(rows) == 1 else ""),
              flush=True)
    c = rows[0]["report"]["classifier"]
    print(f"feature CNN (KID features, class fidelity): {c['network']}, held-out {c['held_out_part']} part "
          f"({c['held_out_images']} images), balanced accuracy {c['held_out_balanced_accuracy']:.3f}")
    print("train min: diffusion.json's train_seconds / 60 (wall, as trained); sample s: the pool's sampling; KID "
          "real: the real-vs-real floor at the same subset size; NN dist: median distance to the nearest training "
          "image (held-out NN: of real held-out images of the class)")
    print(table(rows))


if __name__ == "__main__":
    main()
