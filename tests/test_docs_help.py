"""`--help` of every command names the value each option takes: no option that takes a value shows a blank where
its name belongs (number options declared without a metavar are named INTEGER / FLOAT)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mriaug.cli import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize(("command", "lines"), [
    (("run",), ["--seed INTEGER", "--epochs INTEGER", "--lr FLOAT", "--batch-size INTEGER"]),
    (("synth",), ["--per-source INTEGER", "--max-sources INTEGER", "--seed INTEGER"]),
    (("synth", "train-diffusion"), ["--steps INTEGER", "--lr FLOAT", "--seed INTEGER", "--batch-size INTEGER"]),
])
def test_number_options_show_their_value_name(command: tuple[str, ...], lines: list[str]) -> None:
    text = _help(command)
    for line in lines:
        assert re.search(rf"^\s+{re.escape(line)}\s", text, re.M), (line, text)


def test_no_option_of_any_command_shows_a_blank_for_its_value() -> None:
    assert len(COMMANDS) > 12
    blank = []
    for path, command in COMMANDS:
        text = _help(path)
        for p in command.params:
            if getattr(p, "param_type_name", "") != "option" or p.is_flag or p.count or p.hidden:
                continue
            name = max(p.opts, key=len)  # the long form: `--seed`, not `-s`
            if not re.search(rf"^\s+(?:-\w, )?{re.escape(name)} \S", text, re.M):  # its line, then the name
                blank.append(f"mriaug {' '.join(path)} {name}")
    assert blank == [], f"options whose value has no name in --help: {blank}"
