"""One run through the engine's one entry (`train.run_unit`), for the tests that train a single run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mriaug.engine import train
from mriaug.plan.spec import RunSpec
from mriaug.store import results


def train_one(spec: RunSpec, results_dir: str | Path, **kw: Any) -> results.RunResult:
    """`spec` trained (or read back) as a unit of one run; its result."""
    (result,) = train.run_unit([spec], results_dir, **kw)
    return result
