"""Seeds trained together (`pack_seeds`, mriaug.seedpack) against separate runs, measured in one run.

One separate run (`train.execute`) and one pack of S seeds (`seedpack.execute`) of the same cell train the
same number of epochs on the same images; the figure is training images per second (the results' `train_s`:
augmentation, forward, backward and optimizer steps, without data loading and evaluation). The pack's
combined rate counts every seed's images. Repeats alternate separate and packed so that a busy machine
slows both alike; the medians are printed.

    .venv/bin/python benchmarks/seed_pack.py --data ../shared/data/alzheimer_mri --seeds 8 --aug none
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from mriaug import hparams, scenarios, seedpack, train  # noqa: E402
from mriaug.data import DataSpec  # noqa: E402
from mriaug.grid import plan_run  # noqa: E402


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
    a = ap.parse_args()
    data = DataSpec(a.data, {"n_train": 5120, "n_test": 256, "size": a.size} if a.data == "phantom" else {})
    hp = hparams.resolve("cnn", {"epochs": a.epochs, "resolution": a.size, "precision": a.precision})
    scen = scenarios.custom("bench", real_fraction=a.fraction)
    specs = [plan_run("cnn", scen, a.aug, s, hp, data) for s in range(a.seeds)]
    quiet = lambda m: None  # noqa: E731
    seedpack.execute(specs[:1], tempfile.mkdtemp(), log=quiet)  # warm caches and imports
    sep, packed = [], []
    n = 0
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as d:
            r = train.execute(specs[0], d, log=quiet)
            n = sum(r["counts"]["real"].values()) * a.epochs
            sep.append(n / r["timings"]["train_s"])
        with tempfile.TemporaryDirectory() as d:
            rs = seedpack.execute(specs, d, log=quiet)
            packed.append(rs[0]["timings"]["pack_images_per_s"])
    s, p = statistics.median(sep), statistics.median(packed)
    print(f"data {a.data}: cnn at {a.size}x{a.size}, {n // a.epochs} training images per run, aug={a.aug}, "
          f"{a.precision}, threads={torch.get_num_threads()}, device={rs[0]['env']['device']}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"separate run:      {s:8.0f} img/s   (measurements: {', '.join(f'{x:.0f}' for x in sep)})")
    print(f"{a.seeds} seeds packed:   {p:8.0f} img/s combined, {p / a.seeds:.0f} per seed "
          f"(measurements: {', '.join(f'{x:.0f}' for x in packed)})")
    print(f"ratio packed/separate: {p / s:.2f}x")


if __name__ == "__main__":
    main()
