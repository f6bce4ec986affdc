"""The `mriaug` command line: the app, its verb groups, and the one place errors are turned into exit codes.

Commands import the layers they need when they run, so `mriaug --help`, `mriaug status` and
`mriaug submit --dry-run` start without torch.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from ..errors import EXIT_BUG, MriaugError
from .options import HelpGroup


class _Boundary(HelpGroup):
    """Every command runs inside this group's `invoke`: a `MriaugError` becomes one line on stderr and its
    exit code; any other exception is a bug and keeps its traceback, plus a line that says so."""

    def invoke(self, ctx: Any) -> Any:
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
