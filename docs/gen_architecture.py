"""docs/architecture.md's tables of layers and modules, written into the page itself so that it reads the same on
the repository page as on the site (the other pages' tables are filled in at build time by gen_reference.py).

    python docs/gen_architecture.py           # rewrite the tables from pyproject.toml's layers and the modules
    python docs/gen_architecture.py --check   # exit 1 if the page differs from what this would write

Run it after adding, moving or renaming a module, changing a module docstring's first sentence or the import
layers; tests/test_layout.py fails until the page matches. A table sits between `<!-- begin generated: NAME -->`
and `<!-- end generated: NAME -->` lines (a bare `<!-- generated: NAME -->` line becomes such a block).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGE = DOCS / "architecture.md"
BEGIN, END, BARE = "<!-- begin generated: ", "<!-- end generated: ", "<!-- generated: "


def _reference():  # docs/gen_reference.py, which makes the tables (docs/ is no package)
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_reference", module)  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def tables() -> dict[str, str]:
    ref = _reference()
    return {"layers": ref.table(["layer", "modules (a module imports only from layers below its own)"], ref.layers()),
            "modules": ref.table(["layer", "module", "what it does (its docstring's first sentence)"],
                                 ref.module_rows())}


def _name(line: str, marker: str) -> str | None:
    line = line.strip()
    if line.startswith(marker) and line.endswith("-->"):
        return line[len(marker):-3].strip()
    return None


def render(text: str, made: dict[str, str]) -> str:
    """`text` with each generated block (or bare marker) holding its table from `made`."""
    out: list[str] = []
    skipping: str | None = None
    for line in text.splitlines():
        if skipping is not None:
            if _name(line, END) == skipping:
                skipping = None
            continue
        name = _name(line, BEGIN) or _name(line, BARE)
        if name in made:
            out += [f"{BEGIN}{name} -->", made[name], f"{END}{name} -->"]
            skipping = name if _name(line, BEGIN) else None
        else:
            out.append(line)
    if skipping is not None:
        raise SystemExit(f"{PAGE}: `{BEGIN}{skipping} -->` has no `{END}{skipping} -->` line")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    new = render(text, tables())
    if "--check" in argv:
        if new != text:
            print(f"{PAGE} is out of date: run `python docs/gen_architecture.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        PAGE.write_text(new)
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
