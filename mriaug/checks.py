"""One validator for the numbers users write (options, grid keys, profile keys, generator settings).

Each check returns the value (as int or float) or raises `SettingError` with `what` (the option, key or
setting, e.g. "--per-source" or "jobs/x.toml, line 4: model.cnn.epochs") and the rule it breaks.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import SettingError

# Seeds go into numpy and torch generators: keep them in the range every one of them takes.
SEED_LIMIT = 2**31


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def whole(value: Any, what: str, *, lo: int | None = 0, hi: int | None = None) -> int:
    """A whole number (not a bool, not a float) within [lo, hi]."""
    if not is_int(value):
        raise SettingError(f"{what} must be a whole number{_range(lo, hi)}, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingError(f"{what} must be a whole number{_range(lo, hi)}, got {value!r}")
    return value


def positive_int(value: Any, what: str) -> int:
    return whole(value, what, lo=1)


def seed(value: Any, what: str = "seed") -> int:
    return whole(value, what, lo=0, hi=SEED_LIMIT - 1)


def seed_list(value: Any, what: str) -> list[int]:
    """A grid's seeds: a count (20: seeds 0-19), a list of seeds ([0, 1]) or a table {start = 0, count = 20}."""
    def ok(v: Any, lo: int) -> bool:
        return is_int(v) and v >= lo

    if ok(value, 1):
        return list(range(value))
    if isinstance(value, list) and value and all(ok(v, 0) for v in value):
        return list(value)
    if isinstance(value, dict) and set(value) == {"start", "count"} and ok(value["start"], 0) and ok(value["count"], 1):
        return list(range(value["start"], value["start"] + value["count"]))
    raise SettingError(f"{what} must be a count (20), a list of seeds >= 0 ([0, 1]) or {{start = 0, count = 20}}, "
                       f"got {value!r}")


def repeated(values: list[Any]) -> list[str]:
    """The values listed more than once, as sorted strings."""
    return sorted({str(v) for v in values if values.count(v) > 1})


def number(value: Any, what: str, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> float:
    """A finite number within [lo, hi] (or (lo, hi] with lo_open); NaN and infinities are refused."""
    if not is_number(value) or not math.isfinite(value):
        raise SettingError(f"{what} must be a finite number{_range(lo, hi, lo_open)}, got {value!r}")
    if (lo is not None and (value < lo or (lo_open and value == lo))) or (hi is not None and value > hi):
        raise SettingError(f"{what} must be a finite number{_range(lo, hi, lo_open)}, got {value!r}")
    return float(value)


def positive(value: Any, what: str) -> float:
    return number(value, what, lo=0.0, lo_open=True)


def non_negative(value: Any, what: str) -> float:
    return number(value, what, lo=0.0)


def _fmt(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]"
    if lo is not None:
        if lo == 0:
            return " above 0" if lo_open else " of at least 0"
        return f" above {_fmt(lo)}" if lo_open else f" of at least {_fmt(lo)}"
    if hi is not None:
        return f" of at most {_fmt(hi)}"
    return ""
