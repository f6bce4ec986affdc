"""How fast the command line answers: `mriaug --help`, `mriaug status GRID` and `mriaug submit --dry-run`,
against two references measured in the same run: a bare `python -c pass` and `python -c "import torch"`
(what every command paid when the CLI imported torch at the top).

Warm: the median of --repeat runs after one untimed run (files in the page cache, bytecode compiled).
Cold: the first run with an empty bytecode cache (PYTHONPYCACHEPREFIX pointing to a fresh folder), so every
module is compiled again, as after an install or on a node whose cache is elsewhere.

    python benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MRIAUG = [sys.executable, "-c", "from mriaug.cli import main; main()"]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def measure(cmd: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as pyc:
        cold = timed(cmd, {**env, "PYTHONPYCACHEPREFIX": pyc})
    timed(cmd, env)
    warm = statistics.median(timed(cmd, env) for _ in range(repeat))
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        grid = Path(d) / "g.toml"
        grid.write_text(f'name = "g"\nresults = "{d}/res"\nmodels = ["cnn"]\nscenarios = ["1"]\n'
                        'augmentations = ["none"]\nseeds = 20\n[data]\nsource = "phantom"\nn_train = 80\n'
                        'n_test = 40\nsize = 32\n')
        env = {**os.environ, "MRIAUG_CACHE": f"{d}/cache"}
        subprocess.run([*MRIAUG, "data", "prepare", "--data", "phantom", "-o", "n_train=80", "-o", "n_test=40",
                        "-o", "size=32"], cwd=ROOT, env=env, capture_output=True, check=True)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "mriaug --help": [*MRIAUG, "--help"],
            "mriaug status GRID": [*MRIAUG, "status", str(grid)],
            "mriaug submit GRID --dry-run": [*MRIAUG, "submit", str(grid), "--profile", "slurm/local.toml",
                                             "--dry-run"],
        }
        print(f"{'command':<32}{'cold s':>9}{'warm s':>9}{'warm / import torch':>22}")
        rows = {name: measure(cmd, args.repeat, env) for name, cmd in cases.items()}
        torch_warm = rows["python -c 'import torch'"][1]
        for name, (cold, warm) in rows.items():
            print(f"{name:<32}{cold:>9.3f}{warm:>9.3f}{warm / torch_warm:>22.2f}")
        goal = rows["mriaug --help"][1]
        print(f"goal: mriaug --help warm <= 0.5 s: {'met' if goal <= 0.5 else 'NOT met'} ({goal:.3f} s)")


if __name__ == "__main__":
    main()
