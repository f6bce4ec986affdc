"""Training throughput of mriaug's run path against a plain PyTorch reference, in one process.

Reference: the textbook loop — a map-style Dataset that turns each PIL image into a float tensor
(AutoAugment on PIL, ToTensor, Normalize), a DataLoader, fp32. mriaug: `train.run_unit` (uint8 tensors
on the device, batched augmentation on the device keyed per image, bf16 autocast, channels_last on the CPU,
one host sync per epoch; `MRIAUG_COMPILE=1` / `MRIAUG_CHANNELS_LAST=0|1` in the environment try the speed
settings of `mriaug.engine.speed`).

    .venv/bin/python benchmarks/train_speed.py [--data ../shared/data/alzheimer_mri] [--models cnn,resnet18]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from mriaug.data import sources as data
from mriaug.engine import models
from mriaug.engine.train import run_unit
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from mriaug.plan.hparams import HParams
from mriaug.plan.hparams import resolve as model_hparams


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, res: int, aug: str):
        self.x, self.y = x, y
        steps = [T.Resize(res)] if res != x.shape[-1] else []
        if aug == "autoaugment":
            steps.append(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET))
        elif aug == "hflip":
            steps.append(T.RandomHorizontalFlip())
        self.tf = T.Compose([*steps, T.ToTensor(), T.Normalize([0.5], [0.5])])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(Image.fromarray(self.x[i])), int(self.y[i])


def reference(ds: data.Dataset, n: int, model_name: str, hp: HParams, aug: str) -> float:
    torch.manual_seed(0)
    model = models.build(model_name, hp)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(PILDataset(ds.train_x[:n], ds.train_y[:n], hp.resolution, aug),
                                         batch_size=hp.batch_size, shuffle=True)
    model.train()
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return n / (time.perf_counter() - t0)


def ours(spec: data.DataSpec, n_frac: float, model_name: str, hp: HParams, aug: str) -> float:
    scen = scenarios.custom("bench", n_frac, 0.0)
    run = make_spec(model_name, scen, aug, 0, replace(hp, epochs=1), spec)
    with tempfile.TemporaryDirectory() as d:
        (r,) = run_unit([run], d, log=lambda m: None)
    return r.timings["train_images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--models", default="cnn,resnet18")
    ap.add_argument("--images", type=int, default=1024, help="training images per measurement")
    ap.add_argument("--aug", default="autoaugment")
    ap.add_argument("--skip-reference", action="store_true", help="time mriaug only (comparing speed settings)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = data.DataSpec(args.data)
    ds = data.load(spec)
    frac = min(1.0, args.images / len(ds.train_y))
    n = int(sum(scenarios.round_half_up(frac * c) for c in ds.counts("train").values()))
    print(f"data {args.data}: {n} training images/measurement, aug={args.aug}, threads={torch.get_num_threads()}, "
          f"device={'cuda' if torch.cuda.is_available() else 'cpu'}")
    from mriaug.engine.runtime import autocast_bf16, cpu_bf16_native

    name_line = next((ln for ln in open("/proc/cpuinfo").read().splitlines() if ln.startswith("model name")), "?")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"CPU {name_line.split(':', 1)[-1].strip()}: native bf16 {cpu_bf16_native()}; mriaug's runs train in "
          f"{'bf16' if autocast_bf16('bf16', dev) else 'fp32'} on {dev} where a model asks for bf16")
    print(f"{'model':<10}{'res':>5}{'reference img/s':>18}{'mriaug img/s':>15}{'ratio':>8}")
    for name in args.models.split(","):
        res = 128
        hp = model_hparams(name, {"resolution": res, "pretrained": False, "batch_size": 64,
                                  **({"arch": "vit_small_patch16_224"} if name == "vit" else {})})
        ref = float("nan") if args.skip_reference else reference(ds, n, name, replace(hp, precision="fp32"), args.aug)
        fast = ours(spec, frac, name, hp, args.aug)
        print(f"{name:<10}{res:>5}{ref:>18.0f}{fast:>15.0f}{fast / ref:>8.2f}")


if __name__ == "__main__":
    main()
