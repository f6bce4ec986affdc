"""The thesis grid's and the subject grid's device-hours, MEASURED on this machine (the GPU when there is one).

For each model at the thesis settings (`hparams.THESIS`; weights randomly initialised, which costs the same as
pretrained ones) it trains real runs of scenario 1 with `train.run_unit`, as a packed Slurm task does (one
process, the dataset kept in memory), with and without AutoAugment, and for the basic CNN also `pack_seeds`
seeds together (the same entry, a unit of several seeds). It samples the GPU's utilisation (NVML) while each run
trains. From the measured seconds per run (data to device, model, every epoch, the test pass) it projects both grids:

- thesis grid (`jobs/thesis.toml`): 3 models x scenarios 1-4 x 3 augmentations x 20 seeds = 720 runs; a run's
  training time scales with its scenario's training images (hflip costs what `none` costs: one `where`);
- subject grid (`jobs/subject.toml`): 3 models x scenarios 1-6 x 3 augmentations x 20 seeds = 1,080 runs with one
  pool (1,800 with the two the file names); `budget = "steps"` gives every scenario scenario 1's steps, and
  `select = "best_val"` adds a validation pass per epoch (10% of the images; counted as a test-sized pass);
- plus a per-task start-up (`--startup-s`, measured by `benchmarks/task_startup.py`) per `--runs-per-task` runs.

    python benchmarks/grid_hours.py --data ../shared/data/alzheimer_mri [--models cnn,resnet18,vit] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from mriaug.data import sources as data
from mriaug.engine import train
from mriaug.plan import hparams, scenarios
from mriaug.plan.grid import make_spec

N_TRAIN = 5120  # the dataset's training split; scenario sizes below are the thesis's
SCENARIO_IMAGES = {"1": 5120, "2": 4096, "3": 5120 + 145 + 10, "4": 4096 + 145 + 10}


class Utilisation:
    """GPU utilisation (%) sampled every 50 ms by NVML while a block runs; None without a GPU or NVML."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._handle: Any = None
        if torch.cuda.is_available():
            try:
                import pynvml

                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
                self._nvml = pynvml
            except Exception:
                self._handle = None

    def __enter__(self) -> Utilisation:
        self.samples = []
        self._stop.clear()
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._handle is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def thesis_hp(model: str, epochs: int) -> hparams.HParams:
    hp = replace(hparams.thesis(model), pretrained=False)
    return replace(hp, epochs=epochs) if epochs else hp


def measure_runs(
    model: str, aug: str, seeds: int, spec: data.DataSpec, util: Utilisation, epochs: int
) -> dict[str, Any]:
    hp = thesis_hp(model, epochs)
    scen = scenarios.custom("bench", real_fraction=1.0)
    out: dict[str, Any] = {"model": model, "aug": aug, "runs": []}
    with tempfile.TemporaryDirectory() as d, data.cached_in_process():
        for seed in range(seeds):
            run = make_spec(model, scen, aug, seed, hp, spec)
            t0 = time.perf_counter()
            with util:
                (r,) = train.run_unit([run], d, log=lambda m: None)
            wall = time.perf_counter() - t0
            n = sum(r.counts.real.values())
            epochs = [h["seconds"] for h in r.history]
            out["runs"].append(
                {
                    "wall_s": wall,
                    "train_s": r.timings["train_s"],
                    "epochs_s": epochs,
                    "images": n,
                    "epochs": len(epochs),
                    "util": util.mean,
                    "test_ce": r.metrics.test_ce,
                }
            )
    # Steady state: epochs after the first of every run (the first pays cuDNN/kernel warm-up).
    later = [e for run in out["runs"] for e in run["epochs_s"][1:]]
    later = later or [e for run in out["runs"] for e in run["epochs_s"]]
    out["img_per_s"] = out["runs"][0]["images"] / statistics.median(later)
    out["run_s"] = statistics.median(run["wall_s"] for run in out["runs"][1:] or out["runs"])
    out["train_s"] = statistics.median(run["train_s"] for run in out["runs"][1:] or out["runs"])
    out["util"] = statistics.median(run["util"] for run in out["runs"]) if out["runs"][0]["util"] is not None else None
    # At the thesis's epochs (when fewer were measured): the training part scales, the rest does not.
    scale = hparams.thesis(model).epochs / out["runs"][0]["epochs"]
    out["thesis_train_s"] = out["train_s"] * scale
    out["thesis_run_s"] = out["run_s"] - out["train_s"] + out["thesis_train_s"]
    return out


def measure_pack(aug: str, seeds: int, spec: data.DataSpec, util: Utilisation, epochs: int) -> dict[str, Any]:
    hp = thesis_hp("cnn", epochs)
    scen = scenarios.custom("bench", real_fraction=1.0)
    specs = [make_spec("cnn", scen, aug, s, hp, spec) for s in range(seeds)]
    with tempfile.TemporaryDirectory() as d, data.cached_in_process():
        train.run_unit(specs[:2], d, log=lambda m: None)  # warm-up pack (kernels for the vmapped shapes)
    with tempfile.TemporaryDirectory() as d, data.cached_in_process():
        t0 = time.perf_counter()
        with util:
            rs = train.run_unit(specs, d, log=lambda m: None)
        wall = time.perf_counter() - t0
    scale = hparams.thesis("cnn").epochs / hp.epochs
    return {
        "model": "cnn",
        "aug": aug,
        "seeds": seeds,
        "wall_s": wall,
        "per_run_s": wall / seeds,
        "thesis_per_run_s": wall / seeds * scale,
        "img_per_s": rs[0].timings["pack_images_per_s"],
        "util": util.mean,
        "test_ce": [r.metrics.test_ce for r in rs],
    }


def project(
    per_run: dict[tuple[str, str], float],
    train_s: dict[tuple[str, str], float],
    startup_s: float,
    runs_per_task: int,
    seeds: int,
    scen_images: dict[str, int],
    steps_matched: bool,
    val_share: float,
    test_pass_s: dict[str, float],
) -> tuple[float, int]:
    """Seconds for the whole grid and its number of runs, from measured scenario-1 runs."""
    total, runs = 0.0, 0
    for (model, aug), wall in per_run.items():
        fixed = wall - train_s[(model, aug)]  # data to device, model, test pass: per run, whatever the scenario
        for n in scen_images.values():
            scale = 1.0 if steps_matched else n / N_TRAIN
            extra = val_share * test_pass_s[model] * hparams.thesis(model).epochs if val_share else 0.0
            t = fixed + train_s[(model, aug)] * scale + extra
            reps = 2 if aug == "none" else 1  # hflip costs what none costs
            total += t * seeds * reps
            runs += seeds * reps
    tasks = -(-runs // runs_per_task)
    return total + tasks * startup_s, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="phantom")
    ap.add_argument("--models", default="cnn,resnet18,vit")
    ap.add_argument("--seeds", type=int, default=2, help="runs measured per model and augmentation")
    ap.add_argument(
        "--cnn-seeds", type=int, default=0, help="separate cnn runs (0: --seeds), the spread packs are compared with"
    )
    ap.add_argument("--pack-seeds", type=int, default=20, help="cnn seeds trained together (0: skip)")
    ap.add_argument("--startup-s", type=float, default=10.0, help="per-task start-up (benchmarks/task_startup.py)")
    ap.add_argument("--runs-per-task", type=int, default=20)
    ap.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="epochs per run (0: the thesis's; the projection scales by the thesis's epochs)",
    )
    ap.add_argument("--json", help="also write every measurement here")
    a = ap.parse_args()
    spec = data.DataSpec(a.data, {"n_train": N_TRAIN, "n_test": 1280, "size": 128} if a.data == "phantom" else {})
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    util = Utilisation()
    print(f"device {name}, torch {torch.__version__}, data {a.data}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    measured = []
    for model in a.models.split(","):
        for aug in ("none", "autoaugment"):
            m = measure_runs(model, aug, (a.cnn_seeds or a.seeds) if model == "cnn" else a.seeds, spec, util, a.epochs)
            measured.append(m)
            u = f"{m['util']:.0f}%" if m["util"] is not None else "n/a"
            print(
                f"{model:<9}{aug:<12} {m['img_per_s']:>8.0f} img/s  run {m['run_s']:6.1f} s "
                f"(training {m['train_s']:.1f} s, {m['runs'][0]['epochs']} epochs)  GPU util {u}",
                flush=True,
            )
    packs = []
    if a.pack_seeds and "cnn" in a.models.split(","):
        for aug in ("none", "autoaugment"):
            p = measure_pack(aug, a.pack_seeds, spec, util, a.epochs)
            packs.append(p)
            u = f"{p['util']:.0f}%" if p["util"] is not None else "n/a"
            sep = next(m for m in measured if m["model"] == "cnn" and m["aug"] == aug)
            ces = [r["test_ce"] for r in sep["runs"]]
            print(
                f"cnn      {aug:<12} {p['seeds']} seeds packed: {p['img_per_s']:>8.0f} img/s combined "
                f"({p['img_per_s'] / sep['img_per_s']:.1f}x one run), {p['per_run_s']:.2f} s per run "
                f"(separate: {sep['run_s']:.2f} s), test CE median {statistics.median(p['test_ce']):.3f} "
                f"(separate runs: median {statistics.median(ces):.3f}, range {min(ces):.3f}-{max(ces):.3f}), "
                f"GPU util {u}",
                flush=True,
            )
    per_run = {(m["model"], m["aug"]): m["thesis_run_s"] for m in measured}
    train_s = {(m["model"], m["aug"]): m["thesis_train_s"] for m in measured}
    # A test-sized pass (1,280 images, forward only) per model, from the fixed part of a run: an upper bound.
    test_pass = {m["model"]: m["thesis_run_s"] - m["thesis_train_s"] for m in measured if m["aug"] == "none"}
    rows = []
    for label, seeds, scen, steps, val in (
        ("thesis grid, 720 runs", 20, SCENARIO_IMAGES, False, 0.0),
        ("subject grid, 1,080 runs (one pool)", 20, {**SCENARIO_IMAGES, "5": 5120 + 1024, "6": 4096 + 1024}, True, 0.4),
    ):
        sep_s, runs = project(per_run, train_s, a.startup_s, a.runs_per_task, seeds, scen, steps, val, test_pass)
        rows.append((label, runs, sep_s, None))
        if packs:  # the cnn's runs trained pack_seeds at a time: its per-run seconds from the pack
            pk = {(p["model"], p["aug"]): p["thesis_per_run_s"] for p in packs}
            per_run2 = {k: pk.get(k, v) for k, v in per_run.items()}
            train2 = {k: pk.get(k, v) for k, v in train_s.items()}  # all of a packed run scales with images
            packed_s, _ = project(per_run2, train2, a.startup_s, a.runs_per_task, seeds, scen, steps, val, test_pass)
            rows[-1] = (label, runs, sep_s, packed_s)
    print(f"\nprojection (per-task start-up {a.startup_s:.0f} s, runs_per_task {a.runs_per_task}) on {name}:")
    for label, _runs, sep_s, packed_s in rows:
        extra = f"; cnn seeds packed {a.pack_seeds}: {packed_s / 3600:.2f} h" if packed_s is not None else ""
        print(f"  {label}: {sep_s / 3600:.2f} device-hours{extra}")
    if a.json:
        Path(a.json).write_text(
            json.dumps({"device": name, "measured": measured, "packs": packs, "projection": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
