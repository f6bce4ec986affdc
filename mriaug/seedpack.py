"""Seeds of one grid cell trained together (`[model.NAME] pack_seeds = S` in a grid): which runs may share a
pack, and the pack's entry point. The training itself is the one engine's (`train.train_unit`), with the S
networks stacked under `vmap` (`mriaug.nets.Stacked`).

Each seed is the run it would be on its own, in distribution and, as far as the draws go, exactly: the same
initialisation (built right after `torch.manual_seed(seed)`), training set (`scenarios.mix`), batch order and
augmentation draws (keyed by seed, epoch and image identity, `mriaug.batches`), steps budget, validation and
selection (each seed tested with the weights of its own best validation epoch), optimizer (Adam and AdamW are
element-wise, so one over the stacked parameters is S independent ones) and divergence (a diverged seed is
written as diverged and the others go on). Only the arithmetic differs (grouped convolutions, another summation
order), so the metrics are not bit for bit those of separate runs; each result says `"packed"`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import locks, results, train
from .errors import SettingError
from .grid import PACKABLE
from .spec import RunSpec


def check_pack(specs: list[RunSpec]) -> None:
    """Runs can train together when they differ only in their seed and their model is packable."""
    if not specs:
        raise SettingError("a seed pack needs at least one run")
    first = specs[0].to_dict()
    first.pop("seed")
    for s in specs[1:]:
        d = s.to_dict()
        d.pop("seed")
        if d != first:
            raise SettingError(f"{s.label} cannot train in one pack with {specs[0].label}: they differ in more than "
                               "the seed")
    if specs[0].model not in PACKABLE:
        raise SettingError(f"model {specs[0].model}: only {', '.join(PACKABLE)} can train seeds together")
    if len({s.seed for s in specs}) != len(specs):
        raise SettingError(f"{specs[0].label}: a seed pack lists a seed twice")


def execute(specs: list[RunSpec], results_dir: str | Path, *, device: str | None = None, save_weights: bool = False,
            log: train.Log = train.log_to_stderr, stop_after: int | None = None, wait: bool = True,
            on_wait: Callable[[dict[str, Any]], None] | None = None) -> list[results.RunResult]:
    """Train the runs `specs` (one cell, several seeds) together under their run locks; return their results in
    the same order. Runs that already have a result are read back and not trained again. A run another live
    process holds is waited for, or with wait=False raises `locks.Busy` (no lock of the pack is kept then)."""
    check_pack(specs)
    with ExitStack() as held:
        for s in sorted(specs, key=lambda s: s.run_id):  # one order for every worker: no two wait on each other
            held.enter_context(results.run_lock(results_dir, s.run_id, wait=wait, on_wait=on_wait))
        # A killed writer of this pack's checkpoint leaves a temporary file the runs' own locks do not name.
        pack = train.unit_id(specs)
        locks.remove_leftovers([(Path(results_dir) / ".checkpoints", f".{pack}.pt.*.tmp")])
        return train.train_unit(specs, results_dir, device=device, save_weights=save_weights, log=log,
                                stop_after=stop_after)
