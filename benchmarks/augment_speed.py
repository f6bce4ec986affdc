"""AutoAugment alone: mriaug's batched version against the per-image loop it replaced (torchvision's v2
AutoAugment called once per uint8 tensor) and against torchvision on PIL images (the textbook Dataset path).

The batched version is timed twice: one call per batch of `--batch` images, and as a training run calls it
(`augment.ahead_images`: on the CPU a few batches per call, on a GPU the whole epoch). Each figure is images
per second over `--batch` x `--batches` images at `--res` pixels, the median of `--repeats` timed passes over
the same images (after a warm-up pass; the contenders' passes taken in turn), in one process.

    .venv/bin/python benchmarks/augment_speed.py [--data ../shared/data/alzheimer_mri] [--batch 64] [--res 128]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from mriaug.data import sources as data
from mriaug.engine import augment, batches
from mriaug.engine.train import to_device_uint8


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per pass of each function, the passes taken in turn (A, B, C, A, B, C, ...) so that a
    busy spell of a shared machine falls on every contender alike, after one warm-up pass each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=16, help="batches per timed pass")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = data.load(data.DataSpec(args.data))
    n = args.batch * args.batches
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = to_device_uint8(ds.train_x[:n], args.res, dev)
    keys = batches.image_keys(0, 0, torch.arange(n, device=dev))
    chunks = [slice(i, i + args.batch) for i in range(0, n, args.batch)]
    batched = augment.get("autoaugment")
    per_image = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    pil_policy = T.AutoAugment(T.AutoAugmentPolicy.IMAGENET)
    pil = [Image.fromarray(img[0].cpu().numpy()) for img in x]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_batched() -> None:
        for c in chunks:
            batched(x[c], keys[c])
        sync()

    span = augment.ahead_images(dev, "autoaugment", args.batch, args.res * args.res, n)
    spans = [slice(i, i + span) for i in range(0, n, span)]
    rows = torch.arange(n, device=dev)

    def run_as_trained() -> None:
        for c in spans:
            augment.ahead(batched, x, rows[c], keys[c])
        sync()

    def run_loop() -> None:
        for c in chunks:
            torch.stack([per_image(img) for img in x[c]])
        sync()

    def run_pil() -> None:
        for img in pil:
            pil_policy(img)

    print(f"data {args.data}: {n} images at {args.res}x{args.res}, batch {args.batch}, "
          f"threads={torch.get_num_threads()}, device={dev}")
    per_batch, as_trained = f"batched, one call per batch of {args.batch}", f"batched, {span} images per call"
    seconds = timed({per_batch: run_batched, as_trained: run_as_trained, "per-image loop (v2, tensors)": run_loop,
                     "torchvision on PIL": run_pil}, args.repeats)
    rates = {name: n / s for name, s in seconds.items()}
    print(f"{'augmentation':<36}{'img/s':>10}")
    for name, r in rates.items():
        print(f"{name:<36}{r:>10.0f}")
    for name in (as_trained, per_batch):
        print(f"{name}: {rates[name] / rates['per-image loop (v2, tensors)']:.1f}x the per-image loop, "
              f"{rates[name] / rates['torchvision on PIL']:.1f}x torchvision on PIL")
    print(f"(a training run on {dev.type} calls it with {span} images per call: augment.ahead_images)")


if __name__ == "__main__":
    main()
