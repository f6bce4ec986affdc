"""The generated tables written into the pages themselves, so that they read the same on the repository page as on
the site: docs/architecture.md's layers and modules, docs/reference.md's keys of grid files and cluster profiles,
docs/study-design.md's scenario presets (`PAGES`). The tables are made by gen_reference.py from mriaug's own
definitions; docs/testing.md's test map, which changes with every test's imports, stays a marker that only the site
build fills in (gen_reference.py, the MkDocs hook).

    python docs/gen_architecture.py           # rewrite the tables from the code
    python docs/gen_architecture.py --check   # exit 1 if a page differs from what this would write

Run it after adding, moving or renaming a module, changing a module docstring's first sentence, the import layers,
a key a grid or profile reader accepts or its meaning in gen_reference.py, or a scenario preset;
tests/test_layout.py (architecture.md) and tests/test_docs.py (the others) fail until the pages match. A table
sits between `<!-- begin generated: NAME -->` and `<!-- end generated: NAME -->` lines (a bare
`<!-- generated: NAME -->` line becomes such a block).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGE = DOCS / "architecture.md"
# The pages whose generated tables live in the file, and the tables each holds.
PAGES = {"architecture.md": ("layers", "modules"),
         "reference.md": ("grid", "data", "model", "scenario", "profile", "resource-tables", "resources", "container"),
         "study-design.md": ("presets",)}
BEGIN, END, BARE = "<!-- begin generated: ", "<!-- end generated: ", "<!-- generated: "


def _reference():  # docs/gen_reference.py, which makes the tables (docs/ is no package)
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_reference", module)  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def tables(page: str = "architecture.md") -> dict[str, str]:
    """The generated tables of one of `PAGES`, by name."""
    ref = _reference()
    return {name: ref.render(name) for name in PAGES[page]}


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
        raise SystemExit(f"`{BEGIN}{skipping} -->` has no `{END}{skipping} -->` line")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name in PAGES:
        page = DOCS / name
        text = page.read_text()
        new = render(text, tables(name))
        if new == text:
            continue
        if "--check" in argv:
            stale.append(page)
        else:
            page.write_text(new)
            print(f"wrote {page}")
    for page in stale:
        print(f"{page} is out of date: run `python docs/gen_architecture.py`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
