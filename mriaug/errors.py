"""The errors a user can fix. Every one names the file, line, key or setting at fault and what to do.

`mriaug.cli` catches `MriaugError` in one place and prints it as one line with `exit_code`; any other
exception is a bug in mriaug and keeps its traceback.

Exit codes of the command line: 0 done; 1 some work failed (synth sources, runs in `status --wait`);
2 a user error (this module); 3 stopped at a budget or a timeout; 70 an internal error (a bug).
"""

from __future__ import annotations

EXIT_USER = 2
EXIT_BUDGET = 3
EXIT_BUG = 70


class MriaugError(Exception):
    """Base of every error caused by input, settings or the environment (not by a bug)."""

    exit_code = EXIT_USER


class SettingError(MriaugError):
    """A command-line option, grid key or generator setting with an unusable value."""


class UnknownClassError(SettingError):
    """A class name that is not one of the four (nor a common spelling of one)."""


class DataError(MriaugError):
    """A data source that cannot be read; the message names the file, row or setting at fault."""


class PoolError(DataError):
    """A synthetic pool that is missing, malformed or not usable by a run."""


class GridError(SettingError):
    """A grid file (`jobs/*.toml`) that cannot be used."""


class ProfileError(SettingError):
    """A cluster profile (`slurm/*.toml`) that cannot be used."""


class ResultError(MriaugError):
    """A run result file that is missing keys, cut short or not a result."""


class WeightsError(MriaugError):
    """Pretrained weights that are not in the local cache or not in the named file."""


class DeviceError(SettingError):
    """A device that does not exist on this machine."""


class SlurmError(MriaugError):
    """Slurm refused a submission, or a job's command failed."""


class BudgetReached(MriaugError):
    """A paid generator stopped before spending more than `--max-cost`."""

    exit_code = EXIT_BUDGET


class GeneratorError(MriaugError):
    """A generator that cannot go on (a server that refuses every request, a missing model)."""
