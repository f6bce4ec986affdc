"""Start-up of one Slurm task up to its first training step: interpreter + imports, device, data, model and
the first step, measured in fresh processes (what every unpacked array task pays) with the dataset cache
cold (decoded from the source) and warm, and for the next run of a packed task (`runs_per_task`: the same
process, the dataset kept in memory), where only the model and the first step remain.

    .venv/bin/python benchmarks/task_startup.py --data ../shared/data/alzheimer_mri
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The child: the steps `TrainTask` / `train.run_unit` take before the first optimizer step, timed one by one.
CHILD = r"""
import json, sys, time
t = {"start": time.time()}
import torch
from mriaug import data as data_mod, models, pools, train, hparams
from mriaug.engine.runtime import pick_device
t["import"] = time.time()
dev = pick_device(None)
torch.zeros(1, device=dev).sum().item()
t["device"] = time.time()
spec = data_mod.DataSpec(sys.argv[1], json.loads(sys.argv[2]))
hp = hparams.resolve("cnn", {"resolution": int(sys.argv[3])})

def first_step(t, suffix=""):
    ds = data_mod.load(spec)
    x = train.to_device_uint8(ds.train_x, hp.resolution, dev)
    y = torch.from_numpy(ds.train_y).to(dev)
    t["data" + suffix] = time.time()
    torch.manual_seed(0)
    model = models.build("cnn", hp).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    xb = (x[:hp.batch_size].float() / 255.0 - 0.5) / 0.5
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(xb).float(), y[:hp.batch_size])
    loss.backward()
    opt.step()
    float(loss)
    t["first_step" + suffix] = time.time()

with pools.cached_in_process():
    first_step(t)
    t["next"] = time.time()
    first_step(t, "_next")  # the next run of a packed task: same process, dataset in memory
print(json.dumps(t))
"""


def run_child(data: str, options: dict, size: int, cache: str) -> dict[str, float]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keep wheels on the path
    env = {**os.environ, "MRIAUG_CACHE": cache, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, data, json.dumps(options), str(size)], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    t = json.loads(out.stdout.strip().splitlines()[-1])
    return {"interpreter": t["start"] - t0, "import": t["import"] - t["start"], "device": t["device"] - t["import"],
            "data": t["data"] - t["device"], "model + first step": t["first_step"] - t["data"],
            "total": t["first_step"] - t0,
            "next run: data": t["data_next"] - t["next"],
            "next run: model + first step": t["first_step_next"] - t["data_next"],
            "next run: total": t["first_step_next"] - t["next"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    options = {"n_train": 5120, "n_test": 1280, "size": a.size} if a.data == "phantom" else {}
    data = a.data if a.data == "phantom" else str(Path(a.data).resolve())
    cold, warm = [], []
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run_child(data, options, a.size, cache))  # empty dataset cache: decode the source
            warm.append(run_child(data, options, a.size, cache))  # the cache the cold run wrote
    print(f"data {a.data}, cnn at {a.size}x{a.size}; median of {a.repeats} fresh processes each; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'seconds':<30}{'cold':>8}{'warm':>8}")
    for key in cold[0]:
        c, w = statistics.median(x[key] for x in cold), statistics.median(x[key] for x in warm)
        print(f"{key:<30}{c:>8.2f}{w:>8.2f}")


if __name__ == "__main__":
    main()
