"""Cold decode vs warm cache load of a data source (the issue's goal: warm well under a second).

    .venv/bin/python benchmarks/data_cache.py [--data ../shared/data/alzheimer_mri]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mriaug.data import sources as data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="phantom")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MRIAUG_CACHE"] = cache
        spec = data.DataSpec(args.data)
        t0 = time.perf_counter()
        ds = data.load(spec)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            data.load(spec)
            warm.append(time.perf_counter() - t0)
    n = len(ds.train_y) + len(ds.test_y)
    best = min(warm)
    print(f"data {args.data}: {n} images at {ds.resolution}x{ds.resolution}")
    print(f"cold (decode + write cache): {cold:.2f} s")
    print(f"warm (read cache), best of 5: {best:.3f} s   ratio cold/warm: {cold / best:.0f}x")


if __name__ == "__main__":
    main()
