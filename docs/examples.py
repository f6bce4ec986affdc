"""The console examples of README.md and docs/*.md that a script can produce, produced by running them.

In a page, a line `<!-- example: NAME -->` right above a ```console block marks the block as the output of
EXAMPLES[NAME]: the commands run in a fresh folder holding copies of jobs/ and slurm/ (phantom data, an empty
cache), and the block becomes each command after `$ ` followed by what it printed (that folder's path left
out). Every other console block in the pages is marked as recorded output, with its date and machine
(tests/test_docs.py checks that each block is one or the other).

    python docs/examples.py                 # rerun every example and rewrite its block
    python docs/examples.py smoke data-show # only these
    python docs/examples.py --check         # rerun the fast ones; exit 1 when a block differs (CI)
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!-- example: ([\w-]+) -->$")
PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar (stderr): says nothing a reader needs

BAD_GRID = """\
name = "bad"
data = "phantom"
models = ["cnn"]
scenarios = ["1"]

[model.cnn]
epochs = -1
"""


Trim = Callable[[list[str]], list[str]]


def head_tail(head: int, tail: int) -> Trim:
    """Of a long output, the first and last lines, a "..." between."""
    def trim(lines: list[str]) -> list[str]:
        return lines if len(lines) <= head + tail + 1 else [*lines[:head], "...", *lines[len(lines) - tail:]]
    return trim


def first_table(lines: list[str]) -> list[str]:
    """`mriaug grid`'s first line, its first model's table with the legend, and its last line."""
    start = next((i for i, line in enumerate(lines) if " — " in line), None)
    if start is None:
        return lines
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [lines[0], *lines[start:end], "...", lines[-1]]


@dataclass(frozen=True)
class Example:
    commands: list[str]
    fast: bool = False  # checked by `--check` (and so by the tests and CI): seconds, no float output
    trim: dict[int, Trim] = field(default_factory=dict)  # per command (by position), what of its output is shown
    files: dict[str, str] = field(default_factory=dict)  # written into the folder first
    exit_codes: tuple[int, ...] = ()  # per command, when not 0: an output that ended otherwise is not written


SMOKE = ["mriaug synth --grid jobs/smoke.toml --generator transform --classes Mild_Demented,Moderate_Demented",
         "mriaug grid jobs/smoke.toml"]

COHORT = "mriaug data phantom-bids cohort --participants 24 --longitudinal 2"

EXAMPLES: dict[str, Example] = {
    "data-show": Example(["mriaug data show --data phantom -o n_train=480 -o n_test=160 -o size=32"], fast=True),
    # `status` reads a grid without importing torch: the check stays fast on a busy machine
    "grid-error": Example(["mriaug status jobs/bad.toml"], fast=True, files={"jobs/bad.toml": BAD_GRID},
                          exit_codes=(2,)),
    "status-new": Example(["mriaug status jobs/smoke.toml"], fast=True, trim={0: head_tail(4, 3)}),
    "own-cohort": Example([COHORT, "mriaug data show --data cohort -o split=subject -o size=32 --subjects split.tsv",
                           "head -4 split.tsv"], fast=True),
    "own-cohort-run": Example([COHORT, "mriaug run --model cnn --scenario 1 --aug none --seed 0 --epochs 1 "
                               "--data cohort -o split=subject -o size=32"]),
    "synth-smoke": Example(SMOKE[:1]),
    "smoke": Example(SMOKE, trim={0: head_tail(1, 0), 1: first_table}),
}


def run(name: str) -> str:
    """The console text of one example: each command and what it printed."""
    ex = EXAMPLES[name]
    with tempfile.TemporaryDirectory(prefix="mriaug-example-") as tmp:
        work = Path(tmp)
        for folder in ("jobs", "slurm"):
            shutil.copytree(ROOT / folder, work / folder)
        for rel, text in ex.files.items():
            (work / rel).write_text(text)
        env = {**os.environ, "MRIAUG_CACHE": str(work / "cache"), "NO_COLOR": "1", "COLUMNS": "120",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("CI", None)
        out = []
        for n, cmd in enumerate(ex.commands):
            # bytes, not text: text mode would turn a progress bar's "\r" into line breaks
            p = subprocess.run(cmd, shell=True, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            expected = ex.exit_codes[n] if n < len(ex.exit_codes) else 0
            if p.returncode != expected:
                tail = p.stdout.decode(errors="replace")[-2000:]
                raise SystemExit(f"example {name}: `{cmd}` exited {p.returncode}, not {expected}; nothing "
                                 f"written\n{tail}")
            text = p.stdout.decode(errors="replace").replace(f"{work.resolve()}/", "").replace(f"{work}/", "")
            # a bar redraws itself after "\r"; what is left of such a line after its last "\r" is the bar or nothing
            lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.rstrip("\n").split("\n")
                     if not ("\r" in line and (PROGRESS.search(line.rsplit("\r", 1)[-1]) or
                                               not line.rsplit("\r", 1)[-1].strip()))]
            lines = [line for line in lines if not PROGRESS.search(line)]
            if n in ex.trim:
                lines = ex.trim[n](lines)
            out += [f"$ {cmd}", *lines]
    return "\n".join(out)


def blocks(text: str) -> list[tuple[str, int, int]]:
    """(example name, first line, end line) of each marked block's content in a page's lines."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].strip().startswith("```"):
            raise SystemExit(f"line {i + 1}: {line.strip()} is not followed by a ``` block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise SystemExit(f"line {i + 2}: the block of example {m.group(1)} is not closed")
        if m.group(1) not in EXAMPLES:
            raise SystemExit(f"line {i + 1}: no example {m.group(1)!r} in docs/examples.py")
        found.append((m.group(1), i + 2, end))
    return found


def _shown(page: Path) -> Path:
    return page.relative_to(ROOT) if page.is_relative_to(ROOT) else page


# The phantom's pixels come from numpy's float32 sin/cos/exp, whose vectorised kernels numpy picks by CPU (AVX-512
# machines and AVX2 ones round a few pixels apart), so a phantom's content fingerprint is the same on one machine
# every time but not across machines. The check compares fingerprints as "<fingerprint>"; every other character
# of a block must match.
_FINGERPRINT = re.compile(r"(fingerprint: )[0-9a-f]{16}\b")


def comparable(block: str) -> str:
    return _FINGERPRINT.sub(r"\1<fingerprint>", block)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="examples to rerun (default: all)")
    ap.add_argument("--check", action="store_true", help="rerun the fast examples and compare; rewrite nothing")
    args = ap.parse_args(argv)
    unknown = set(args.names) - set(EXAMPLES)
    if unknown:
        raise SystemExit(f"no example {', '.join(sorted(unknown))}; known: {', '.join(EXAMPLES)}")
    wanted = args.names or [n for n, ex in EXAMPLES.items() if ex.fast or not args.check]
    outputs = {name: run(name) for name in wanted}
    failed = 0
    for page in PAGES:
        text = page.read_text()
        lines = text.splitlines()
        for name, start, end in reversed(blocks(text)):
            if name not in outputs:
                continue
            old = "\n".join(lines[start:end])
            if args.check and comparable(old) != comparable(outputs[name]):
                failed += 1
                print(f"{_shown(page)}: example {name} prints otherwise now (if that is right, rewrite the "
                      f"block with `python docs/examples.py {name}`):")
                print("\n".join(difflib.unified_diff(old.splitlines(), outputs[name].splitlines(), "page", "now",
                                                     lineterm="")))
            lines[start:end] = outputs[name].splitlines()
        if not args.check and lines != text.splitlines():
            page.write_text("\n".join(lines) + "\n")
            print(f"rewrote {_shown(page)}")
    if args.check:
        print(f"{len(outputs)} example(s) checked, {failed} block(s) differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
