"""`mriaug submit` / `mriaug status`: the Slurm side of the CLI (see mriaug/slurm.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the cluster commands to the main app."""
