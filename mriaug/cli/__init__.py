"""The `mriaug` command line: the app, its verb groups, and the one place errors are turned into exit codes.

Commands import the layers they need when they run, so `mriaug --help`, `mriaug status` and
`mriaug submit --dry-run` start without torch.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import typer

from ..errors import EXIT_BUG, MriaugError
from .options import HelpGroup

# Libraries that give their top logger a StreamHandler on sys.stderr as it is when they are first imported. The
# commands import them lazily, so under a caller that swaps stderr for one command (click's CliRunner, as in the
# tests) that handler kept a stream closed when the command returned, and the library's next message, in a later
# command, printed a "Logging error" traceback into that command's output instead.
_LIBRARY_LOGGERS = ("huggingface_hub", "datasets", "diffusers")


class _Stderr(logging.StreamHandler):
    """A StreamHandler that writes to sys.stderr as it is at each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it; the current stderr is always taken
        pass


def _follow_stderr() -> None:
    """Each library logger's default handler on stderr replaced by one that follows sys.stderr (level, format and
    filters kept); handlers of other streams, and other loggers, are left as they are."""
    for name in _LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        for h in list(lib.handlers):
            if type(h) is logging.StreamHandler and getattr(h.stream, "name", None) == "<stderr>":
                new = _Stderr()
                new.setLevel(h.level)
                new.setFormatter(h.formatter)
                for f in h.filters:
                    new.addFilter(f)
                lib.removeHandler(h)
                lib.addHandler(new)


class _Boundary(HelpGroup):
    """Every command runs inside this group's `invoke`: a `MriaugError` becomes one line on stderr and its
    exit code; any other exception is a bug and keeps its traceback, plus a line that says so. Libraries
    imported during the command log to stderr as it is at each message afterwards (`_follow_stderr`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            _follow_stderr()

    def _invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors and exits: the parser's own
            raise
        except MriaugError as e:
            notes = "".join(f" ({n})" for n in getattr(e, "__notes__", []))
            typer.secho(f"error: {e}{notes}", fg="red", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="yellow", err=True)
            raise typer.Exit(130) from None
        except Exception:
            traceback.print_exc()
            typer.secho("internal error: this is a bug in mriaug, not in your input; please report it with the "
                        "traceback above", fg="red", err=True)
            raise typer.Exit(EXIT_BUG) from None


app = typer.Typer(cls=_Boundary, help="The synthetic-augmentation MRI study as reproducible batch jobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})


def _register() -> None:
    from . import cluster, data, plan, report, runs, synth

    data.register(app)
    runs.register(app)
    synth.register(app)
    cluster.register(app)
    report.register(app)
    plan.register(app)


_register()


def run(argv: list[str]) -> int:
    """Run one command line and return its exit code (the Slurm one-off jobs call this)."""
    try:
        rc = app(argv, prog_name="mriaug", standalone_mode=False)
    except typer.TyperException as e:  # a usage error: printed as the console script would
        show = getattr(e, "show", None)
        if show is not None:
            show()
        return int(getattr(e, "exit_code", 2))
    return rc if isinstance(rc, int) else 0


def main() -> None:
    """The `mriaug` console script."""
    app(prog_name="mriaug")
    sys.exit(0)


__all__ = ["app", "main", "run"]
