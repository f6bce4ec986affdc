"""The mutation score of `make mutants`, from `mutmut results --all true`: per module, killed / all mutants,
with the survivors listed. Exit 1 when the score of any module is under the goal (90%).

Scored are the functions that compute a number a user reads or a decision a run makes. Not scored, and counted
apart: the text rendering of `analysis/collect.py` (also `# pragma: no mutate block`, see tests/README.md), and
in two modules whose numbers are a part of them, everything outside `SCOPE` (cam's maps, panels and the command
around the agreement numbers; the OpenAI generator's HTTP calls, retries and pool writing around its spend and
prices). Mutants a run did not try (a run of some modules or a sample, `mutmut run NAME-GLOB`) are counted as
"not run", never as killed or survived.

`python tests/mutation_score.py prepare MODULE DIR` writes a copy of the checkout's committed files to DIR with
`[tool.mutmut]` narrowed to MODULE and its own test files (`MODULES`), for a run of one module:
`cd DIR && OMP_NUM_THREADS=1 mutmut run --max-children 1 [NAME-GLOB...] ; python tests/mutation_score.py`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

GOAL = 0.90
RENDERING = {"mriaug.analysis.collect": {"table", "versus_thesis", "figure", "_draw_box", "_label_axes", "caption",
                                         "legend", "_latex", "_latex_escape", "_stem", "write", "render", "collect"}}
# Where only part of a module computes numbers: the scored functions ("Class.method" for methods).
SCOPE = {
    "mriaug.analysis.cam": {"flat", "_one_flat", "pearson", "top_region", "iou", "mass_in", "_summary", "_num",
                            "seed_stability", "pick_pairs"},
    "mriaug.generators.openai_api": {"tokens_of", "token_cost", "spend_before", "Ledger.spent", "Ledger.reserve",
                                     "Ledger.settle", "Ledger.run_spend", "OpenAIGenerator.__init__",
                                     "OpenAIGenerator._token_prices", "OpenAIGenerator.requests_for",
                                     "OpenAIGenerator.estimate", "OpenAIGenerator._take"},
    # Not scored: the pool's figure, its files, and the text tables of `mriaug synth report` (their numbers are
    # these).
    "mriaug.analysis.pool_report": {"ssim", "histogram", "hist_distance", "held_out", "_shares_scans", "memorisation",
                                    "class_fidelity", "quality", "fidelity", "kid_verdict", "expected_near_share",
                                    "memorisation_verdict", "class_fidelity_verdict", "verdicts", "_num",
                                    "provenance"},
    # The report's numbers: the paired-difference rows, recalls, baselines and selected epochs, the leakage numbers
    # and their formatting; not its figures, words and page (they show these numbers).
    "mriaug.analysis.report": {"_f", "_label", "_stats_sections", "_table_block", "_differences_block",
                               "_recall_table", "_baselines", "_methods_section", "nearest_neighbour_leakage"},
}
# Log lines only (their numbers are in the result files the tests read).
NOT_SCORED = {"mriaug.engine.train": {"_stderr"}, "mriaug.engine.seedpack": {"_stderr"}}
KILLED = {"killed", "timeout", "caught by type check"}
NOT_RUN = {"not checked"}
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ(?P<cls>\w+)ǁ)(?P<function>\w+?)__mutmut_\d+$")

# One module's run: (files mutated, test selection). The selection is the module's own test files, without the
# tests that take a real network or the loopback OpenAI server (seconds each, per mutant).
NOT_NETWORKS = "not (test_resume_after_interruption_gives_identical_metrics and (resnet18 or vit))"
BY_HAND = "by_hand or token_details or spend_before or per_token or booked or settings or defaults"
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "train": (["mriaug/engine/train.py"], ["tests/test_train.py", "-k", NOT_NETWORKS]),
    "seedpack": (["mriaug/engine/seedpack.py"], ["tests/test_seedpack.py"]),
    "batches": (["mriaug/engine/batches.py"], ["tests/test_batches.py"]),
    "audit": (["mriaug/data/audit.py"], ["tests/test_audit.py"]),
    "locks": (["mriaug/store/locks.py", "mriaug/store/results.py"], ["tests/test_locks.py", "tests/test_results.py"]),
    "cam": (["mriaug/analysis/cam.py"], ["tests/test_cam.py"]),
    "openai": (["mriaug/generators/openai_api.py"], ["tests/test_openai_api.py", "-k", BY_HAND]),
    "statistics": (["mriaug/analysis/statistics.py"], ["tests/test_statistics.py"]),
    "collect": (["mriaug/analysis/collect.py"], ["tests/test_collect.py", "-k",
                                                 "not test_written_long_table_holds_the_numbers"]),
    # Without the real data's audit, a trained feature CNN on the phantom, or a study (minutes per mutant).
    "splits": (["mriaug/data/splits.py"], ["tests/test_splits.py", "-k", "not real_data_audit"]),
    "fidelity": (["mriaug/analysis/fidelity.py"], ["tests/test_fidelity.py", "-k",
                                                   "not (kid_sees or feature_net_is_cached)"]),
    "pool_report": (["mriaug/analysis/pool_report.py"], ["tests/test_pool_report.py", "-k", "by_hand or ssim"]),
    "report": (["mriaug/analysis/report.py"], ["tests/test_report.py", "-k", "by_hand"]),
    # Its tests by hand, the seed packs (Stacked) and the one-seed runs that predict in batches, save weights,
    # select by validation and resume (Single), without the real networks' resume.
    "nets": (["mriaug/engine/nets.py"], ["tests/test_nets.py", "tests/test_seedpack.py", "tests/test_train.py", "-k",
                                  "test_nets or test_seedpack or ((predict_in_batches or saved_weights or best_val"
                                  f" or resume) and {NOT_NETWORKS})"]),
}


def part_of(module: str, cls: str | None, function: str) -> str:
    if function in RENDERING.get(module, set()):
        return "rendering"
    if function in NOT_SCORED.get(module, set()):
        return "not scored"
    scope = SCOPE.get(module)
    if scope is not None and (f"{cls}.{function}" if cls else function) not in scope:
        return "not scored"
    return "numbers"


def prepare(module: str, folder: Path) -> int:
    """A copy of the committed tree in `folder`, its [tool.mutmut] narrowed to `module` (see MODULES)."""
    root = Path(__file__).resolve().parents[1]
    files, selection = MODULES[module]
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    tomllib.loads(text)["tool"]["mutmut"]  # the section is there

    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join('"' + i.replace('"', '\\"') + '"' for i in items) + "]"

    text = re.sub(r"^only_mutate = \[.*?\]\n", f"only_mutate = {toml_list(files)}\n", text, count=1,
                  flags=re.S | re.M)
    text = re.sub(r"^pytest_add_cli_args_test_selection = \[.*?\n\]\n",
                  f"pytest_add_cli_args_test_selection = {toml_list(selection)}\n", text, count=1, flags=re.S | re.M)
    config = tomllib.loads(text)["tool"]["mutmut"]
    assert config["only_mutate"] == files and config["pytest_add_cli_args_test_selection"] == selection, config
    pyproject.write_text(text)
    print(f"{folder}: {module} ({', '.join(files)}) against {' '.join(selection)}")
    return 0


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        m = NAME.match(name)
        if m:
            rows.append((m["module"], part_of(m["module"], m["cls"], m["function"]), m["function"], name, status))
    if not rows:
        print("no mutants found: run `mutmut run` first (make mutants)")
        return 1
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    survivors = []
    for module, part, _function, name, status in rows:
        c = counts[(module, part)]
        if status in NOT_RUN:
            c[2] += 1
            continue
        c[0] += status in KILLED
        c[1] += 1
        if status not in KILLED:
            survivors.append((part, name, status))
    print(f"{'module':<30}{'part':<12}{'killed':>8}{'mutants':>9}{'score':>8}{'not run':>9}")
    killed = total = 0
    low = []
    for (module, part), (k, n, skipped) in sorted(counts.items()):
        score = f"{k / n:>8.1%}" if n else f"{'-':>8}"
        print(f"{module:<30}{part:<12}{k:>8}{n:>9}{score}{skipped:>9}")
        if part == "numbers":
            killed, total = killed + k, total + n
            if n and k / n < GOAL:
                low.append(module)
    if not total:
        print("\nno mutant of the number code was run")
        return 1
    print(f"\nnumbers: {killed} of {total} mutants killed, {killed / total:.1%} (goal {GOAL:.0%} per module"
          + (f"; under it: {', '.join(low)})" if low else ")"))
    print("\nnot killed in the number code (`mutmut show NAME` prints the change):")
    for part, name, status in sorted(survivors):
        if part == "numbers":
            print(f"  {name}: {status}")
    apart: dict[str, int] = defaultdict(int)
    for part, name, _ in survivors:
        if part != "numbers":
            apart[NAME.match(name)["function"]] += 1  # type: ignore[index]
    if apart:
        print("not killed in rendering and unscored code (mutants per function): "
              + ", ".join(f"{f} {n}" for f, n in sorted(apart.items())))
    return 0 if not low else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        raise SystemExit(prepare(sys.argv[2], Path(sys.argv[3])))
    raise SystemExit(main())
