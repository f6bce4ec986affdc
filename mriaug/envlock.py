"""The lock file an environment was installed from (`requirements/*.txt`, pip-tools' hashed pins).

`make venv` and the container's install step install a lock with `pip install --require-hashes`, then run
`python -m mriaug.envlock record LOCK [RUNTIME_LOCK]`: it checks that every installed distribution has the
lock's version (and that nothing the lock names is missing) and writes a stamp into the environment
(`sys.prefix`). Every result's `env` carries the stamp's hash (`installed_hash`): the runtime lock's, for the
dev venv too (its extra tools do not touch the numbers), so runs of different software can be told apart
(`mixed_locks`, used by `collect`) while a dev venv and the image of one lock agree.

The hash covers the pins (name and version, sorted), not the file's comments: re-running `make lock` with
nothing changed keeps it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from .store import atomic

STAMP_NAME = "mriaug-lock.json"
# Installed but never in a lock: the installer itself, and mriaug (installed from the checkout, --no-deps).
NOT_LOCKED = {"pip", "mriaug"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Pillow` is `pillow`, `typing_extensions` `typing-extensions`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str, where: str = "lock") -> dict[str, str]:
    """`name==version` of every requirement of a pip-compile output (hash and comment lines skipped)."""
    pins: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith(("#", "--", "-c ", "-r ")):
            continue
        m = _PIN.match(s)
        if not m:
            raise ValueError(f"{where}, line {n}: {s!r} is not a pinned requirement (NAME==VERSION)")
        name = normalize(m.group(1))
        if name in pins and pins[name] != m.group(2):
            raise ValueError(f"{where}, line {n}: {name} pinned twice ({pins[name]} and {m.group(2)})")
        pins[name] = m.group(2)
    if not pins:
        raise ValueError(f"{where}: no pinned requirements")
    return pins


def pins_hash(pins: Mapping[str, str]) -> str:
    """16 hex digits of the sha256 of the sorted `name==version` lines."""
    text = "".join(f"{k}=={pins[k]}\n" for k in sorted(pins))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def installed_versions() -> dict[str, str]:
    """Every distribution installed in this interpreter's environment, by normalized name."""
    out: dict[str, str] = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            out.setdefault(normalize(name), d.version)
    return out


def differences(pins: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """How an environment differs from a lock, one line per package; empty when it is exactly the lock."""
    out = []
    for name in sorted(set(pins) | set(installed)):
        want, have = pins.get(name), installed.get(name)
        if name in NOT_LOCKED or want == have:
            continue
        if want is None:
            out.append(f"{name} {have} is installed but not in the lock")
        elif have is None:
            out.append(f"{name} {want} is in the lock but not installed")
        else:
            out.append(f"{name} is {have}, the lock has {want}")
    return out


def stamp_path(prefix: str | Path | None = None) -> Path:
    return Path(prefix or sys.prefix) / STAMP_NAME


def read_stamp(prefix: str | Path | None = None) -> dict[str, Any] | None:
    """The stamp `record` wrote into this environment, or None (not installed from a lock)."""
    try:
        doc = json.loads(stamp_path(prefix).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("hash"), str) and isinstance(doc.get("pins"), dict)
    return doc if ok else None


def installed_hash(prefix: str | Path | None = None) -> str | None:
    """The hash of the lock this environment was installed from (recorded in every result's `env`)."""
    doc = read_stamp(prefix)
    return doc["hash"] if doc else None


def record(lock: str | Path, runtime: str | Path | None = None, prefix: str | Path | None = None) -> dict[str, Any]:
    """Check that this environment is exactly `lock` and write the stamp; ValueError names every difference.

    `runtime`: the runtime lock `lock` extends (the dev lock adds test and lint tools to it). The hash results
    record is then the runtime lock's, so a dev venv and the image that share the packages jobs run report the
    same hash; the runtime lock's pins must be the dev lock's."""
    lock = Path(lock)
    pins = read_pins(lock.read_text(), str(lock))
    diff = differences(pins, installed_versions())
    if diff:
        raise ValueError(f"the environment {sys.prefix} is not {lock}:\n  " + "\n  ".join(diff))
    hashed = pins
    if runtime is not None:
        hashed = read_pins(Path(runtime).read_text(), str(runtime))
        apart = [f"{k} {v} (the runtime lock) vs {pins.get(k)}" for k, v in sorted(hashed.items()) if pins.get(k) != v]
        if apart:
            raise ValueError(f"{lock} does not hold {runtime}'s pins: " + "; ".join(apart) + "; run `make lock`")
    doc = {"lock": lock.name, "hash": pins_hash(hashed), "hashed": Path(runtime or lock).name, "pins": pins}
    atomic.write_json(stamp_path(prefix), doc)
    return doc


def mixed_locks(envs: Iterable[Mapping[str, Any] | None]) -> str | None:
    """A warning when results (their `env` dicts) come from more than one locked environment, or mix locked
    runs with runs that recorded none; None when they agree (or none recorded a lock)."""
    counts: dict[str | None, int] = {}
    for env in envs:
        key = (env or {}).get("lock")
        key = key if isinstance(key, str) else None
        counts[key] = counts.get(key, 0) + 1
    if len(counts) < 2:
        return None
    parts = [f"{n} run{'s' if n != 1 else ''} with lock {k}" for k, n in sorted(
        ((k, n) for k, n in counts.items() if k is not None), key=lambda kv: (-kv[1], kv[0]))]
    if None in counts:
        parts.append(f"{counts[None]} run{'s' if counts[None] != 1 else ''} with no lock recorded")
    return ("warning: this table mixes runs of different software environments (" + "; ".join(parts)
            + "): their differences may be the software's, not the scenario's. Rerun the odd ones in one "
            "environment (`make venv` / the container, from the same requirements/ lock)")


def main(argv: list[str]) -> int:
    """`python -m mriaug.envlock record LOCK [RUNTIME_LOCK]` (after an install) | `check LOCK` | `hash LOCK`."""
    if not (argv and (argv[0] == "record" and len(argv) in (2, 3) or argv[0] in ("check", "hash") and len(argv) == 2)):
        print("usage: python -m mriaug.envlock record LOCK [RUNTIME_LOCK] | check LOCK | hash LOCK", file=sys.stderr)
        return 2
    cmd, lock = argv[:2]
    try:
        if cmd == "record":
            doc = record(lock, argv[2] if len(argv) == 3 else None)
            print(f"environment {sys.prefix} is {lock} ({len(doc['pins'])} pins; results record lock "
                  f"{doc['hash']}, the hash of {doc['hashed']})")
        elif cmd == "check":
            diff = differences(read_pins(Path(lock).read_text(), lock), installed_versions())
            if diff:
                print(f"the environment {sys.prefix} is not {lock}:\n  " + "\n  ".join(diff), file=sys.stderr)
                return 1
            print(f"environment {sys.prefix} is {lock}")
        else:
            print(pins_hash(read_pins(Path(lock).read_text(), lock)))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
