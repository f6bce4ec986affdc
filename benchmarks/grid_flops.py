"""An ESTIMATE, not a measurement: the thesis grid's and the subject grid's GPU-hours from FLOP counts.

FLOPs per image are counted with `torch.utils.flop_counter.FlopCounterMode` on the networks mriaug builds
(the thesis's hyper-parameters: cnn 128 px, 10 epochs; ResNet-18 and ViT-B/16 256 px, 8 epochs); a training
image costs 3x its forward pass (forward + backward), every epoch also evaluates the test split (forward).
GPU time = FLOPs / (peak x utilisation) for the H100's dense bf16 peak at the utilisations given, plus a
per-task start-up. No GPU was available to measure any of it: replace the utilisation with measured
images/s when one is (`benchmarks/train_speed.py` runs on CUDA as is).

    .venv/bin/python benchmarks/grid_flops.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from mriaug.engine import models
from mriaug.plan import hparams

H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM, dense bf16 tensor cores (NVIDIA data sheet)
N_TRAIN, N_TEST = 5120, 1280
# Training images per run by thesis scenario (1: all; 2: 80% real; 3/4: + 20% synthetic of Mild and Moderate).
SCENARIO_IMAGES = {"1": 5120, "2": 4096, "3": 5120 + 145 + 10, "4": 4096 + 145 + 10}


def forward_flops(model: str) -> float:
    hp = hparams.resolve(model, {**hparams.THESIS[model], "pretrained": False})
    net = models.build(model, hp).eval()
    x = torch.zeros(1, 1, hp.resolution, hp.resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mfu", default="0.2,0.4", help="model FLOP utilisations to project at (comma-separated)")
    ap.add_argument("--startup-s", type=float, default=20.0, help="start-up per Slurm task (import, CUDA, data)")
    ap.add_argument("--runs-per-task", type=int, default=20)
    a = ap.parse_args()
    mfus = [float(m) for m in a.mfu.split(",")]
    print("ESTIMATE from FLOP counts (no GPU measured); H100 dense bf16 peak 989 TFLOP/s")
    print(f"{'model':<10}{'res':>5}{'epochs':>8}{'GFLOP fwd/img':>15}{'TFLOP/run (s1)':>16}")
    per_model = {}
    for m in hparams.MODELS:
        th = hparams.THESIS[m]
        f = forward_flops(m)
        run = {s: th["epochs"] * (3 * f * n + f * N_TEST) for s, n in SCENARIO_IMAGES.items()}
        per_model[m] = run
        print(f"{m:<10}{th['resolution']:>5}{th['epochs']:>8}{f / 1e9:>15.3f}{run['1'] / 1e12:>16.1f}")
    for name, seeds, splits in (("thesis grid (3 models x 4 scenarios x 3 augs x 20 seeds = 720 runs)", 20, 1),
                                ("subject grid (1,080 runs: the same x 30 seeds)", 30, 1)):
        total = sum(per_model[m][s] * 3 * seeds * splits for m in per_model for s in SCENARIO_IMAGES)
        runs = len(per_model) * len(SCENARIO_IMAGES) * 3 * seeds
        tasks = -(-runs // a.runs_per_task)
        print(name)
        for m in per_model:
            part = sum(per_model[m][s] * 3 * seeds for s in SCENARIO_IMAGES)
            print(f"  {m:<10}{part / 1e15:>9.2f} PFLOP  ({100 * part / total:.0f}%)")
        for mfu in mfus:
            compute_h = total / (H100_BF16_DENSE * mfu) / 3600
            print(f"  at {mfu:.0%} utilisation: {compute_h:.2f} H100-hours of compute; + start-up "
                  f"{tasks} tasks x {a.startup_s:.0f} s = {tasks * a.startup_s / 3600:.2f} h (runs_per_task = "
                  f"{a.runs_per_task}), or {runs * a.startup_s / 3600:.2f} h with one run per task")


if __name__ == "__main__":
    main()
