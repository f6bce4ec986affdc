"""Seeds of one grid cell trained together (`[model.NAME] pack_seeds = S` in a grid): which runs may share a
pack. The training is the one engine's (`train.run_unit`, for a unit of one run or of S), with the S networks
stacked under `vmap` (`mriaug.engine.nets.Stacked`).

Each seed is the run it would be on its own, in distribution and, as far as the draws go, exactly: the same
initialisation (built right after `torch.manual_seed(seed)`), training set (`scenarios.mix`), batch order and
augmentation draws (keyed by seed, epoch and image identity, `mriaug.engine.batches`), steps budget, validation and
selection (each seed tested with the weights of its own best validation epoch), optimizer (Adam and AdamW are
element-wise, so one over the stacked parameters is S independent ones) and divergence (a diverged seed is
written as diverged and the others go on). A network that draws inside itself (dropout, drop-path) is not
packed (`nets.build` refuses it): under vmap its seeds would share one generator's draws, not their own.
Only the arithmetic differs (grouped convolutions, another summation order), so the metrics are not bit for
bit those of separate runs; each result says `"packed"`.
"""

from __future__ import annotations

from ..errors import SettingError
from ..plan.grid import PACKABLE
from ..plan.spec import RunSpec


def check_pack(specs: list[RunSpec]) -> None:
    """Runs can train as one unit when they differ only in their seed and, for more than one, their model is
    packable. A unit of one run is any run."""
    if not specs:
        raise SettingError("a seed pack needs at least one run")
    if len(specs) == 1:
        return
    first = specs[0]
    for s in specs[1:]:
        if s.cell != first.cell:
            raise SettingError(f"{s.label} cannot train in one pack with {first.label}: they differ in more than "
                               "the seed")
    if first.model not in PACKABLE:
        raise SettingError(f"model {first.model}: only {', '.join(PACKABLE)} can train seeds together")
    if len({s.seed for s in specs}) != len(specs):
        raise SettingError(f"{first.label}: a seed pack lists a seed twice")
