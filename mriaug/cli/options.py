"""Options several commands share, and the parsing of KEY=VALUE options (names are public for cli modules)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import SettingError

if TYPE_CHECKING:
    from ..data.sources import DataSpec
    from ..plan.grid import Grid

# typer labels every value with its type ("--seed <int>", "GRID <path>") and required arguments with braces
# ("{GRID}"); our metavars and help already say what goes there.
_TYPE_LABEL = re.compile(r" <(?:int|float|text|path|bool|file|choice|list\[\w+\]|[\w ]+ range)>")
_BRACED = re.compile(r"\{([A-Z_]+)\}")


def _plain(text: str) -> str:
    return _BRACED.sub(r"\1", _TYPE_LABEL.sub("", text))


_NUMBER_NAMES = {"<int>": "INTEGER", "<int range>": "INTEGER", "<float>": "FLOAT", "<float range>": "FLOAT"}


def _name_numbers(command: Any, ctx: Any) -> None:
    """A number option declared without a metavar is named by its type (`--seed INTEGER`, `--lr FLOAT`): with the
    type labels taken out above it would otherwise show a blank where the value's name belongs."""
    for p in command.params:
        if (getattr(p, "param_type_name", "") == "option" and p.metavar is None and not p.is_flag and not p.count
                and hasattr(p, "display_type")):
            p.metavar = _NUMBER_NAMES.get(p.display_type(ctx))


class HelpCommand(TyperCommand):
    def get_help(self, ctx: Any) -> str:
        _name_numbers(self, ctx)
        return _plain(super().get_help(ctx))

    def get_usage(self, ctx: Any) -> str:
        return _plain(super().get_usage(ctx))


class HelpGroup(TyperGroup):
    def get_help(self, ctx: Any) -> str:
        _name_numbers(self, ctx)
        return _plain(super().get_help(ctx))

    def get_usage(self, ctx: Any) -> str:
        return _plain(super().get_usage(ctx))


# The default data source, repeated here so that `--help` needs no import of the data layer.
DEFAULT_SOURCE = "hf:Falah/Alzheimer_MRI"

DataOpt = Annotated[str, typer.Option(
    "--data", metavar="SOURCE",
    help="dataset: phantom | hf:REPO | a parquet folder | an image-folder tree | a BIDS folder")]
DataOptions = Annotated[list[str] | None, typer.Option(
    "--data-option", "-o", metavar="KEY=VALUE",
    help="source option, repeatable (e.g. -o size=64 -o n_train=400 -o test_fraction=0.2)")]
DeviceOpt = Annotated[str | None, typer.Option(
    metavar="DEVICE", help="cuda | cuda:N | cpu (default: cuda when available)")]
GridArg = Annotated[Path, typer.Argument(metavar="GRID", help="grid file, e.g. jobs/thesis.toml")]
Profile = Annotated[Path | None, typer.Option(
    metavar="PROFILE", help="submit this command as one Slurm job with this cluster profile (slurm/*.toml) "
    "instead of running it here")]


def parse_value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v.startswith(("{", "[")):
        return json.loads(v)
    return {"true": True, "false": False}.get(v.lower(), v)


def pairs(items: list[str] | None, flag: str, keep_str: tuple[str, ...] = ()) -> dict[str, Any]:
    """KEY=VALUE options (numbers, booleans and JSON parsed, except keys in keep_str); errors name the option."""
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise SettingError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[k.strip()] = v if k.strip() in keep_str else parse_value(v)
        except json.JSONDecodeError as e:
            raise SettingError(f"{flag} {item!r}: the value is not valid JSON ({e.msg} at column {e.colno})") from e
    return out


def data_spec(source: str, options: list[str] | None) -> DataSpec:
    from ..data.sources import DataSpec

    return DataSpec(source, pairs(options, "--data-option"))


def load_grid(path: Path) -> Grid:
    from ..plan.grid import load

    return load(path)


def classes_list(classes: str | None) -> list[str] | None:
    """`--classes A,B` as a list; `all` names every class of the source (None: the command's default)."""
    if classes is not None and classes.strip().lower() == "all":
        from ..data.classes import CLASSES

        return list(CLASSES)
    return [c.strip() for c in classes.split(",")] if classes else None
