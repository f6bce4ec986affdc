"""Checks of the CUDA path that the CPU-only test suite cannot make (run by benchmarks/gpu_session.sh):

1. batched AutoAugment and hflip on the GPU give the images the CPU gives for the same keys;
2. the kernels one AutoAugment batch launches on the GPU (torch.profiler) do not grow with the batch size;
3. a run stopped after one epoch and resumed on the GPU ends with the metrics of an uninterrupted one.

    python benchmarks/gpu_checks.py [--data ../shared/data/alzheimer_mri]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from mriaug.data import sources as data
from mriaug.engine import augment, batches, train
from mriaug.plan import hparams, scenarios
from mriaug.plan.grid import make_spec


def kernels(fn: object, *args: torch.Tensor) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn(*args)  # type: ignore[operator]
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if e.device_type.name == "CUDA")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of checks 1 and 3 (no kernel count)")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_checks: no CUDA device")
    dev = torch.device(a.device)
    spec = data.DataSpec(a.data, {"n_train": 1024, "n_test": 256, "size": 128} if a.data == "phantom" else {})
    ds = data.load(spec)
    x = torch.from_numpy(ds.train_x[:1024]).unsqueeze(1)
    keys = batches.image_keys(3, 1, torch.arange(len(x)))
    for name in ("hflip", "autoaugment"):
        fn = augment.get(name)
        cpu = fn(x, keys)
        gpu = fn(x.to(dev), keys.to(dev)).cpu()
        same = (cpu == gpu).all(dim=(1, 2, 3)).float().mean().item()
        diff = (cpu.int() - gpu.int()).abs().max().item()
        print(f"1. {name}: {same:.1%} of 1024 images identical on GPU and CPU (largest pixel difference {diff})")
    fn = augment.get("autoaugment")
    counts = {}
    for b in (8, 256) if dev.type == "cuda" else ():
        xb, kb = x[:b].to(dev), keys[:b].to(dev)
        fn(xb, kb)
        counts[b] = kernels(fn, xb, kb)
    if counts:
        print(f"2. CUDA kernels per AutoAugment batch: {counts[8]} at batch 8, {counts[256]} at batch 256")
    hp = replace(hparams.thesis("cnn"), epochs=3)
    run = make_spec("cnn", scenarios.custom("check", real_fraction=0.5), "autoaugment", 0, hp, spec)
    quiet = lambda m: None  # noqa: E731
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        (whole,) = train.run_unit([run], d1, device=a.device, log=quiet)
        try:
            train.run_unit([run], d2, device=a.device, log=quiet, stop_after=1)
        except train.Interrupted:
            pass
        (resumed,) = train.run_unit([run], d2, device=a.device, log=quiet)
    same = whole.metrics == resumed.metrics
    print(
        f"3. resume on the GPU: metrics {'identical' if same else 'DIFFERENT'} "
        f"(test CE {whole.metrics.test_ce:.6f} uninterrupted, "
        f"{resumed.metrics.test_ce:.6f} resumed after epoch 1)"
    )


if __name__ == "__main__":
    main()
