"""TOML files users write (grids, cluster profiles): parsed once, and every error names the file, the
line and the key at fault."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from .. import checks
from ..errors import SettingError


def line_of(text: str, table: str, key: str | None) -> int | None:
    """Line number of `key` inside `[table]` (or of the table header when key is None)."""
    current = ""
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", s)
        if header:
            current = header.group(1).replace('"', "")
            if key is None and current == table:
                return n
            continue
        if key is not None and current == table and re.match(rf"^\"?{re.escape(key)}\"?\s*=", s):
            return n
    return None


class TomlFile:
    """A parsed TOML file plus the checks grids and profiles share; `error` is the exception to raise."""

    error: type[SettingError] = SettingError

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text()
        try:
            self.doc: dict[str, Any] = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            raise self.error(f"{path}: not valid TOML: {e}") from e

    def fail(self, table: str, key: str | None, msg: str) -> SettingError:
        line = line_of(self.text, table, key)
        where = f"{self.path}" + (f", line {line}" if line else "")
        return self.error(f"{where}: {'.'.join(p for p in (table, key) if p)}: {msg}")

    def check_keys(self, table: str, doc: dict[str, Any], known: set[str]) -> None:
        for key in doc:
            if key not in known:
                raise self.fail(table, key, f"unknown key; known: {', '.join(sorted(known))}")

    def table(self, table: str, key: str | None, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(table, key, "must be a table")
        return value

    def positive_int(self, table: str, key: str, value: Any, *, zero_ok: bool = False) -> int:
        try:
            return checks.whole(value, key, lo=0 if zero_ok else 1)
        except SettingError:
            raise self.fail(table, key, f"must be a {'non-negative' if zero_ok else 'positive'} integer, "
                            f"got {value!r}") from None

    def number(self, table: str, key: str, value: Any, **limits: Any) -> float:
        """A finite number within `limits` (see `checks.number`); errors name the line."""
        try:
            return checks.number(value, "value", **limits)
        except SettingError as e:
            raise self.fail(table, key, str(e).removeprefix("value ")) from None

    def string_list(self, table: str, key: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(table, key, "must be a list of strings")
        return list(value)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__} {v!r}")


def dumps(doc: dict[str, Any], head: str = "") -> str:
    """TOML text of a parsed document (the values a grid or profile holds: strings, numbers, booleans, lists and
    tables), `head` as comment lines on top; checked to parse back to `doc`. Tables of tables become [a.b]
    sections, tables inside them inline ({...})."""
    lines = [f"# {line}".rstrip() for line in head.splitlines()]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]

    def section(path: list[str], table: dict[str, Any]) -> None:
        plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if plain or not subs:
            lines.extend(["", f"[{'.'.join(map(_key, path))}]"])
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
        for k, v in subs.items():
            if plain:  # a table below one with keys of its own stays inline, beside them
                lines.append(f"{_key(k)} = {_value(v)}")
            else:
                section([*path, k], v)

    for k, v in doc.items():
        if isinstance(v, dict):
            section([k], v)
    text = "\n".join(lines).lstrip("\n") + "\n"
    if tomllib.loads(text) != doc:
        raise ValueError("internal: the TOML written does not read back as the document")
    return text
