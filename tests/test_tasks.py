"""`mriaug.slurm.tasks`: what a Slurm task runs, and jobs queued by an older mriaug. (Until issue 23 in
test_layout.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mriaug import data, hparams
from mriaug.errors import SlurmError


def test_jobs_queued_before_the_move_still_run_or_say_resubmit(phantom_spec: data.DataSpec) -> None:
    from mriaug.grid import make_spec
    from mriaug.scenarios import SCENARIOS
    from mriaug.slurm import CommandTask
    from mriaug.slurm.tasks import upgrade_spec

    spec = make_spec("cnn", SCENARIOS["1"], "none", 0, hparams.thesis("cnn"), phantom_spec)
    old = replace(spec)
    object.__setattr__(old, "hparams", spec.hparams.to_dict())  # as a pickled spec of the old layout holds it
    assert upgrade_spec(old).run_id == spec.run_id
    with pytest.raises(SlurmError, match="submitted by an older version of mriaug; submit it again"):
        CommandTask.__new__(CommandTask)(["synth", "--out", "x"])
