"""Training throughput of the diffusion generator's UNet on this machine: the CPU study's configuration
(jobs/study.sh: 64x64, channels 16,32,64, 1 layer per block, no attention on the coarsest level) against the default
full-size one (128x128, 32,64,128,256, 2 layers, attention) as the reference, fp32 and bf16 autocast, one process.
Prints the CPU (and whether it has native bf16), the threads, images/s and the ratio to the reference.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/diffusion_speed.py [--steps 6] [--batch 16]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F


def cpu() -> str:
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = {f for line in info.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{name} (bf16: {', '.join(native) if native else 'emulated'})"


def images_per_s(config: dict, batch: int, steps: int, bf16: bool) -> float:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    model = UNet2DModel(**config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    side = int(config["sample_size"])
    x = torch.randn(batch, 1, side, side)
    y = torch.randint(0, 4, (batch,))
    t = torch.randint(0, 1000, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(x, t, class_labels=y).sample
        loss = F.mse_loss(pred.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: first-call allocations and kernel choices
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    from mriaug.generators.diffusion import unet_config

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    print(f"CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}, "
          f"{a.steps} timed steps after one warm-up")
    configs = {"full-size 128 px (reference)": unet_config(128, (32, 64, 128, 256), 2, True),
               "CPU study 64 px": unet_config(64, (16, 32, 64), 1, False)}
    ref: dict[bool, float] = {}
    for name, config in configs.items():
        for bf16 in (False, True):
            ips = images_per_s(config, a.batch, a.steps, bf16)
            ref.setdefault(bf16, ips)
            print(f"{name:30s} {'bf16' if bf16 else 'fp32'}: {ips:7.1f} images/s  ({ips / ref[bf16]:.1f}x the "
                  f"reference in {'bf16' if bf16 else 'fp32'})")


if __name__ == "__main__":
    main()
