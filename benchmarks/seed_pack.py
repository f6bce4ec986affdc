"""Seeds trained together (`pack_seeds`: the one engine with stacked networks) against separate runs, measured
in one run.

One separate run and one pack of S seeds of the same cell train on the same images, each in a child process of
its own so that its peak memory (resident set, `ru_maxrss`) is its own; the figure is training images per
second (the results' `train_s`: augmentation, forward, backward and optimizer steps, without data loading,
validation and testing). The pack's combined rate counts every seed's images. Repeats alternate separate and
packed so that a busy machine slows both alike; the medians are printed.

    .venv/bin/python benchmarks/seed_pack.py --data ../shared/data/alzheimer_mri --seeds 8 --aug none
    # the subject grid's settings (jobs/study-cpu.toml: subject split with validation, steps budget, best_val,
    # AdamW at weight decay 0.05), 64 px fp32 as the CPU study trains:
    .venv/bin/python benchmarks/seed_pack.py --data ../shared/data/alzheimer_mri --subject --size 64 \\
        --precision fp32 --fraction 1 --seeds 4
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _specs(a: argparse.Namespace) -> list:
    from mriaug.data.sources import DataSpec
    from mriaug.plan import hparams, scenarios
    from mriaug.plan.grid import make_spec

    opts: dict = {"n_train": 5120, "n_test": 256, "size": a.size} if a.data == "phantom" else {"size": a.size}
    if a.subject:
        opts.update(split="subject", val_fraction=0.1, test_fraction=0.2)
    hp = hparams.resolve("cnn", {"epochs": a.epochs, "resolution": a.size, "precision": a.precision,
                                 "weight_decay": 0.05 if a.subject else 0.0})
    scen = scenarios.custom("bench", real_fraction=a.fraction)
    extra = {"budget": "steps", "select": "best_val"} if a.subject else {}
    return [make_spec("cnn", scen, a.aug, s, hp, DataSpec(a.data, opts), **extra) for s in range(a.seeds)]


def child(a: argparse.Namespace) -> None:
    """One measurement: a warm-up run (imports, caches), then the separate run or the pack; prints JSON."""
    from mriaug.engine import train

    specs = _specs(a)
    quiet = lambda m: None  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        train.run_unit(_specs(argparse.Namespace(**{**vars(a), "seeds": 1, "epochs": 1}))[:1], d, log=quiet)
    with tempfile.TemporaryDirectory() as d:
        if a.child == "separate":
            (r,) = train.run_unit(specs[:1], d, log=quiet)
            rate = r.timings["train_images_per_s"]
        else:
            rs = train.run_unit(specs, d, log=quiet)
            r, rate = rs[0], rs[0].timings["pack_images_per_s"]
    print(json.dumps({"rate": rate, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "images": sum(r.counts.real.values()), "threads": r.env.get("threads"),
                      "precision": r.training.precision if r.training else None, "device": r.env.get("device")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="phantom", help="data source (default: phantom at --size)")
    ap.add_argument("--size", type=int, default=128, help="phantom side / model resolution")
    ap.add_argument("--fraction", type=float, default=0.2, help="share of the training split each run keeps")
    ap.add_argument("--seeds", type=int, default=8, help="seeds in the pack")
    ap.add_argument("--aug", default="none", help="none | hflip | autoaugment")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="alternating separate/packed measurements")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--subject", action="store_true",
                    help="the subject grid's settings: subject split, validation, steps budget, best_val, AdamW")
    ap.add_argument("--child", choices=["separate", "packed"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    out: dict[str, list[dict]] = {"separate": [], "packed": []}
    for _ in range(a.repeats):
        for kind in out:
            p = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", kind], check=True,
                               capture_output=True, text=True)
            out[kind].append(json.loads(p.stdout.strip().splitlines()[-1]))
    sep, packed = out["separate"], out["packed"]
    s, p = (statistics.median(m["rate"] for m in ms) for ms in (sep, packed))
    rs, rp = (statistics.median(m["rss_mib"] for m in ms) for ms in (sep, packed))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"data {a.data}: cnn at {a.size}x{a.size}, {sep[0]['images']} training images per run, aug={a.aug}, "
          f"{sep[0]['precision']}{', subject settings' if a.subject else ''}, threads={sep[0]['threads']}, "
          f"device={sep[0]['device']} ({cpu}), {time.strftime('%Y-%m-%d %H:%M')}")
    shown = {k: ", ".join(f"{m['rate']:.0f}" for m in ms) for k, ms in out.items()}
    print(f"separate run:      {s:8.0f} img/s   peak RSS {rs:6.0f} MiB (measurements: {shown['separate']})")
    print(f"{a.seeds} seeds packed:   {p:8.0f} img/s combined, {p / a.seeds:.0f} per seed, peak RSS {rp:6.0f} MiB "
          f"(measurements: {shown['packed']})")
    print(f"ratio packed/separate: {p / s:.2f}x images/s, {rp / rs:.2f}x memory")


if __name__ == "__main__":
    main()
