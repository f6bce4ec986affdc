"""The mutation score of `make mutants`, from `mutmut results --all true`: per module, killed / all mutants,
with the survivors listed. Exit 1 when the score is under the goal (90%).

The text rendering of `analysis/collect.py` is not mutated (`# pragma: no mutate block`, see tests/README.md);
should a rendering function lose its pragma, its mutants are still counted apart here, not in the score.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GOAL = 0.90
RENDERING = {"mriaug.analysis.collect": {"table", "versus_thesis", "figure", "caption", "legend", "_latex",
                                         "_latex_escape", "_stem", "write", "render", "collect"}}
KILLED = {"killed", "timeout", "caught by type check"}
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ\w+ǁ)(?P<function>\w+?)__mutmut_\d+$")


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        m = NAME.match(name)
        if m:
            rows.append((m["module"], m["function"], name, status))
    if not rows:
        print("no mutants found: run `mutmut run` first (make mutants)")
        return 1
    counts: dict[tuple[str, bool], list[int]] = defaultdict(lambda: [0, 0])
    survivors = []
    for module, function, name, status in rows:
        rendering = function in RENDERING.get(module, set())
        c = counts[(module, rendering)]
        c[0] += status in KILLED
        c[1] += 1
        if status not in KILLED:
            survivors.append((rendering, name, status))
    print(f"{'module':<28}{'part':<12}{'killed':>8}{'mutants':>9}{'score':>8}")
    killed = total = 0
    for (module, rendering), (k, n) in sorted(counts.items()):
        print(f"{module:<28}{'rendering' if rendering else 'numbers':<12}{k:>8}{n:>9}{k / n:>8.1%}")
        if not rendering:
            killed, total = killed + k, total + n
    score = killed / total
    print(f"\nnumbers: {killed} of {total} mutants killed, {score:.1%} (goal {GOAL:.0%})")
    print("\nnot killed in the number code (`mutmut show NAME` prints the change):")
    for rendering, name, status in sorted(survivors):
        if not rendering:
            print(f"  {name}: {status}")
    rendered: dict[str, int] = defaultdict(int)
    for rendering, name, _ in survivors:
        if rendering:
            rendered[NAME.match(name)["function"]] += 1  # type: ignore[index]
    if rendered:
        print("not killed in the rendering (mutants per function): "
              + ", ".join(f"{f} {n}" for f, n in sorted(rendered.items())))
    return 0 if score >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
