"""`mriaug/analysis/collect.py`: the tables of `mriaug collect` from trained phantom runs, and known answers
from hand-written result files."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mriaug.analysis import collect, statistics
from mriaug.cli import app
from mriaug.data.classes import CLASSES
from mriaug.data.sources import HUB_REVISIONS, DataSpec
from mriaug.plan import scenarios
from mriaug.plan.grid import make_spec
from mriaug.store import atomic, results
from tests.conftest import strict_json, tiny_hparams
from tests.engine_helpers import train_one as execute


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    for scen in ("1", "2"):
        for aug in ("none", "hflip"):
            for seed in (0, 1, 2):
                hp = tiny_hparams("cnn", epochs=1)
                execute(make_spec("cnn", scenarios.SCENARIOS[scen], aug, seed, hp, spec), out, log=lambda m: None)
    return out


def test_tables_are_medians_with_counts(results_dir: Path) -> None:
    c = collect.gather(results_dir)
    assert len(c.runs) == 12 and not c.errors
    # A table holds what was run: cnn only (no empty resnet18 or vit), its two scenarios and two augmentations.
    assert c.table_names() == ["cnn"]
    t = c.table("cnn")
    assert list(t.columns) == ["No Augmentation", "Random Horizontal Augment"]
    assert list(t.index) == ["Scenario 1", "Scenario 2"]
    low, mid, high = sorted(c.runs[(c.runs.scenario == "1") & (c.runs.augmentation == "none")]["test_ce"])
    # Three seeds: no order-statistic interval reaches 95%; the range covers the median 1 - 2/8 = 75% of the time.
    assert t.loc["Scenario 1", "No Augmentation"] == f"{mid:.3f} [range {low:.3f}, {high:.3f}: covers 75%] (n=3)"
    assert set(c.runs["pool"]) == {""} and c.runs["ece"].between(0, 1).all()
    assert c.runs["recall:Moderate_Demented"].notna().all()


def test_corrupt_result_is_named_and_tables_still_print(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    victim = sorted(work.glob("*.json"))[0]
    victim.write_text(victim.read_text()[: len(victim.read_text()) // 2])
    (work / "0000000000000000.json").write_text(json.dumps({"run_id": "0000000000000000"}))
    # Valid JSON with every top-level key, but a metric that is not a number.
    broken = json.loads(sorted(results_dir.glob("*.json"))[1].read_text())
    broken["metrics"]["test_ce"] = "low"
    (work / sorted(results_dir.glob("*.json"))[1].name).write_text(json.dumps(broken))
    res = CliRunner().invoke(app, ["collect", str(work)])
    assert res.exit_code == 0, res.output
    assert f"skipped: {victim}: not valid JSON" in res.output
    assert "0000000000000000.json: missing or malformed key 'spec'" in res.output
    assert "'metrics.test_ce' is not a number ('low')" in res.output
    assert "Scenario 1" in res.output and "(n=3)" in res.output and "(n=2)" in res.output
    for suffix in (".csv", ".md", ".tex"):  # tables of the models that ran only
        assert (work / "tables" / f"cnn{suffix}").exists()
        assert not (work / "tables" / f"resnet18{suffix}").exists() and not (work / "tables" / f"vit{suffix}").exists()
    runs = (work / "tables" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 10
    assert r"\begin{tabular}" in (work / "tables" / "cnn.tex").read_text()


def test_result_reader_rejects_mismatched_name(results_dir: Path, tmp_path: Path) -> None:
    src = sorted(results_dir.glob("*.json"))[0]
    dst = tmp_path / "abcdef.json"
    dst.write_text(src.read_text())
    with pytest.raises(results.ResultError, match="does not match its run_id"):
        results.read(dst)


def test_versus_thesis_and_figure(results_dir: Path, tmp_path: Path) -> None:
    c = collect.gather(results_dir)
    t = c.versus_thesis("cnn")
    ours = c.stats().set_index(["table", "scenario", "augmentation"]).loc[("cnn", "1", "none"), "median"]
    assert t.loc["Scenario 1", "No Augmentation"] == f"{ours:.3f} / 0.114 (n=3)"
    # The cells that were run, beside the thesis's (cnn 2/hflip: 0.270616 in its tables).
    assert list(t.index) == ["Scenario 1", "Scenario 2"]
    assert list(t.columns) == ["No Augmentation", "Random Horizontal Augment"]
    assert t.loc["Scenario 2", "Random Horizontal Augment"].endswith(" / 0.271 (n=3)")
    assert collect.thesis_medians().query("model == 'resnet18' and scenario == '2'").empty
    written = collect.write(c, tmp_path)
    png = tmp_path / "cnn.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "vit.png").exists()
    # Phantom data: no comparison with the thesis is written or printed.
    assert not c.tables["cnn"].thesis_data and not list(tmp_path.glob("*_vs_thesis.md"))
    assert "ours / thesis" not in collect.render(c, versus_thesis=True)
    assert ("thesis comparison left out for cnn: its data is 'phantom', not the thesis's hf:Falah/Alzheimer_MRI from "
            "the hub; only runs of hf:Falah/Alzheimer_MRI read from the hub at the pinned revision" in
            collect.render(c, versus_thesis=True))
    assert "left out" not in collect.render(c)  # only when the comparison is asked for


def test_collect_keeps_one_grids_runs_and_separates_settings(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    # The same cell and seed again with other settings, as after editing a grid.
    other = make_spec("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams("cnn", epochs=1, lr=5e-3), spec)
    execute(other, work, log=lambda m: None)
    mixed = collect.gather(work)
    assert len(mixed.runs) == 13 and "differ in hparams.lr" in mixed.warnings[0]
    # Never one cell: a table per setting, named for what sets it apart.
    assert sorted(n for n in mixed.tables if n.startswith("cnn")) == ["cnn_hparams.lr=0.002", "cnn_hparams.lr=0.005"]
    lone = mixed.table("cnn_hparams.lr=0.005")
    assert lone.loc["Scenario 1", "No Augmentation"].endswith("(n=1)")
    assert mixed.table("cnn_hparams.lr=0.002").loc["Scenario 1", "No Augmentation"].endswith("(n=3)")
    assert "cnn [hparams.lr=0.005] — median" in mixed.caption("cnn_hparams.lr=0.005")
    only = collect.gather(work, {other.run_id})
    assert list(only.runs["run_id"]) == [other.run_id] and not only.warnings and "cnn" in only.tables


def _variant(src: Path, dst_dir: Path, edit: Callable[[dict], None]) -> dict:
    """A copy of a result as another run would have written it: edited, with the run id of its new spec."""
    r = json.loads(src.read_text())
    edit(r)
    r["run_id"] = atomic.stable_hash(r["spec"])
    (dst_dir / f"{r['run_id']}.json").write_text(json.dumps(r))
    return r


def test_stats_csv_metric_option_and_results_without_ece(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    res = CliRunner().invoke(app, ["collect", str(work), "--metric", "balanced_accuracy"])
    assert res.exit_code == 0, res.output
    assert "cnn — median balanced accuracy over seeds [95% interval] (n = seeds); higher is better" in res.output
    flat = " ".join(res.output.split())  # the legend is wrapped for the terminal
    assert ("they cover training randomness only (one data split). A failed (diverged) run counts as the worst "
            "value (0.000). Cells marked 'range' have too few seeds for a 95% interval: they show the range, which "
            "covers the median with the probability given (75% at least)." in flat)
    assert "* = differs from scenario 1" in flat and "Holm over the table's 2 comparisons" in flat
    # 3 pairs: the smallest two-sided p is 2/2^3 = 0.25, 0.5 after Holm over 2; 2 * 2/2^n < 0.05 from n = 7.
    assert ("With 3 paired seeds no difference can reach p < 0.05 after Holm over 2 comparisons (the smallest "
            "possible is 0.5); that takes at least 7 seeds." in flat)
    stats = pd.read_csv(work / "tables" / "stats.csv", dtype={"scenario": str, "pool": str}, keep_default_na=False)
    assert list(stats.columns[: len(statistics.COLUMNS)]) == statistics.COLUMNS
    assert {"n_failed", "ci_coverage"} <= set(statistics.COLUMNS)
    # One row per cell (2 scenarios x 2 augmentations of cnn) and metric.
    assert len(stats) == 4 * len(statistics.all_metrics())
    assert set(stats["metric"]) == {"test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece", "scan_accuracy",
                                    "scan_balanced_accuracy", "scan_ce", *(f"recall:{c}" for c in CLASSES)}
    one = stats[(stats.scenario == "1") & (stats.metric == "ece")]
    assert (one[["diff_median", "p_wilcoxon", "p_holm", "prob_improvement"]] == "").all().all()
    two = stats[(stats.scenario == "2") & (stats.metric == "ece")]
    assert (two["n"] == 3).all() and two["p_wilcoxon"].astype(float).between(0, 1).all()
    # Tables of another metric than test CE are named for it too.
    assert (work / "tables" / "cnn_balanced_accuracy.md").exists() and not (work / "tables" / "cnn.md").exists()
    bad = CliRunner().invoke(app, ["collect", str(work), "--metric", "recall:severe"])
    assert bad.exit_code == 2 and "unknown class 'severe'" in bad.output
    # Results from before ECE was recorded: the cells say so, nothing crashes.
    for f in work.glob("*.json"):
        r = json.loads(f.read_text())
        del r["metrics"]["ece"]
        f.write_text(json.dumps(r))
    old = CliRunner().invoke(app, ["collect", str(work), "--metric", "ece"])
    assert old.exit_code == 0, old.output
    assert "— (n=0; 3 runs without ece)" in old.output and "12 of 12 runs have no ece" in old.output
    assert "(n=3)" in CliRunner().invoke(app, ["collect", str(work), "--metric", "test_ce"]).output


def test_split_and_pools_never_share_a_cell(results_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "r"
    work.mkdir()
    sources = sorted(results_dir.glob("*.json"))
    pool_fp = {"gen": "a" * 16, "copy": "b" * 16}
    for src in sources:
        base = json.loads(src.read_text())
        if base["spec"]["augmentation"] != "none":
            continue
        scen = base["spec"]["scenario"]["name"]
        (work / src.name).write_text(src.read_text())  # given split, as the results were written

        def subject(r: dict) -> None:
            r["spec"]["data"]["options"]["split"] = "subject"
            r["data"]["split"] = {"kind": "subject", "seed": 0, "fingerprint": "c" * 16}
            r["data"]["fingerprint"] = "d" * 16
            r["metrics"]["test_ce"] += 1.0

        _variant(src, work, subject)
        if scen == "2":  # stand-ins for scenario 3 runs from two pools
            for name, fp in pool_fp.items():
                def pooled(r: dict, name: str = name, fp: str = fp) -> None:
                    r["spec"]["scenario"] = scenarios.SCENARIOS["3"].to_dict()
                    r["spec"]["pool"] = {"fingerprint": fp}
                    r["data"].update(pool_fingerprint=fp, pool_path=f"/somewhere/pools/{name}")
                    if name == "copy":  # a grid's label for the pool wins over its folder's name
                        r["data"].update(pool_label="copy", pool_path="/somewhere/pools/copy-2026-11")
                    r["metrics"]["test_ce"] -= 0.5 if name == "gen" else 0.0

                _variant(src, work, pooled)
    c = collect.gather(work)
    names = sorted(n for n in c.tables if n.startswith("cnn"))
    assert names == ["cnn_split.kind=given", "cnn_split.kind=subject"]
    assert any("differ in split.kind" in w for w in c.warnings)
    given = c.table("cnn_split.kind=given")
    # The pool is a dimension: a row per pool for every scenario with synthetic images that ran (no scenario 4).
    assert list(given.index) == ["Scenario 1", "Scenario 2", "Scenario 3 · copy", "Scenario 3 · gen"]
    assert list(given.columns) == ["No Augmentation"]
    assert given.loc["Scenario 3 · gen", "No Augmentation"].endswith("(n=3)")
    subj = c.table("cnn_split.kind=subject")
    subject_1 = c.runs.query("split == 'subject' and scenario == '1'")["test_ce"]
    assert len(subject_1) == 3 and subj.loc["Scenario 1", "No Augmentation"].startswith(f"{subject_1.median():.3f} [")
    assert list(subj.index) == ["Scenario 1", "Scenario 2"]  # no pooled runs on the subject split
    s = c.stats().set_index(["table", "scenario", "pool"])
    gen = s.loc[("cnn_split.kind=given", "3", "gen")]
    per_seed = c.runs.query("table == 'cnn_split.kind=given'").pivot_table(
        index="seed", columns=["scenario", "pool"], values="test_ce")
    assert gen["diff_median"] == pytest.approx((per_seed[("3", "gen")] - per_seed[("1", "")]).median())
    assert (per_seed[("3", "gen")] - per_seed[("2", "")]).tolist() == pytest.approx([-0.5] * 3)
    assert gen["prob_improvement"] == 1.0 and gen["n_pairs"] == 3
    # Holm over every comparison of the table: scenario 2 and scenario 3 of both pools.
    given_p = c.stats().query("table == 'cnn_split.kind=given' and scenario != '1'")
    assert len(given_p) == 3 and given_p["p_holm"].tolist() == pytest.approx(statistics.holm(given_p["p_wilcoxon"]))


PINNED = HUB_REVISIONS["Falah/Alzheimer_MRI"]


def _thesis_like(source: str, *, revision: str | None = PINNED, split: str = "given",
                 test: dict[str, int] | None = None) -> Callable[[dict], None]:
    """An edit making a result look as if it had read `source` (at `revision`) under `split`, tested on `test`
    (the thesis's 172/15/634/459 unless given)."""
    def edit(r: dict) -> None:
        r["counts"]["test"] = dict(test or collect.THESIS_TEST_COUNTS)
        options = {"size": 32, **({"split": split} if split != "given" else {})}
        r["spec"]["data"] = {"source": source, "options": options}
        r["data"]["source"] = {**r["spec"]["data"], **({"revision": revision} if revision else {})}
        r["data"]["split"] = {**r["data"]["split"], "kind": split}

    return edit


def test_thesis_comparison_only_for_the_thesis_data_and_split(results_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "r"
    work.mkdir()
    for src in sorted(results_dir.glob("*.json")):
        _variant(src, work, _thesis_like("hf:Falah/Alzheimer_MRI"))
    c = collect.gather(work)
    assert c.tables["cnn"].thesis_data and c.tables["cnn"].why_not_thesis == ""
    out = collect.render(c, versus_thesis=True)
    assert "cnn — median test CE, ours / thesis (n = our seeds)" in out and "/ 0.114 (n=3)" in out
    assert "left out" not in out
    written = collect.write(c, tmp_path / "t")
    assert tmp_path / "t" / "cnn_vs_thesis.md" in written


@pytest.mark.parametrize(("edit", "why"), [
    # The thesis's test counts alone are not the thesis's data: a local copy (re-split or not) and a parquet file.
    (_thesis_like("../shared/data/alzheimer_mri", revision=None),
     "its data is '../shared/data/alzheimer_mri', not the thesis's hf:Falah/Alzheimer_MRI from the hub"),
    (_thesis_like("/data/alzheimer/train.parquet", revision=None),
     "its data is '/data/alzheimer/train.parquet', not the thesis's hf:Falah/Alzheimer_MRI from the hub"),
    (_thesis_like("hf:Falah/Alzheimer_MRI", revision="0" * 40),
     f"hf:Falah/Alzheimer_MRI at revision '{'0' * 40}', not the pinned {PINNED[:8]}"),
    (_thesis_like("hf:Falah/Alzheimer_MRI", split="subject"),
     "its split is 'subject', not the dataset's given train/test split"),
    (_thesis_like("hf:Falah/Alzheimer_MRI", test={**collect.THESIS_TEST_COUNTS, "Moderate_Demented": 14}),
     "its test images are not the thesis's 1,280 (172/15/634/459)"),
], ids=["local-folder", "parquet", "other-revision", "subject-split", "other-counts"])
def test_thesis_comparison_refused_with_its_reason(results_dir: Path, tmp_path: Path,
                                                   edit: Callable[[dict], None], why: str) -> None:
    work = tmp_path / "r"
    work.mkdir()
    for src in sorted(results_dir.glob("*.json")):
        _variant(src, work, edit)
    c = collect.gather(work)
    assert c.table_names() == ["cnn"] and not c.tables["cnn"].thesis_data and c.tables["cnn"].why_not_thesis == why
    out = collect.render(c, versus_thesis=True)
    assert "ours / thesis" not in out
    assert f"thesis comparison left out for cnn: {why}; only runs of hf:Falah/Alzheimer_MRI read from the hub" in out
    assert not [p for p in collect.write(c, tmp_path / "t") if p.name.endswith("_vs_thesis.md")]


def test_a_scenario_defined_two_ways_is_refused(results_dir: Path, tmp_path: Path) -> None:
    import shutil

    work = tmp_path / "r"
    shutil.copytree(results_dir, work)
    src = next(p for p in sorted(work.glob("*.json")) if json.loads(p.read_text())["spec"]["scenario"]["name"] == "1")

    def redefined(r: dict) -> None:
        r["spec"]["scenario"]["real_fraction"]["Non_Demented"] = 0.5

    _variant(src, work, redefined)
    res = CliRunner().invoke(app, ["collect", str(work)])
    assert res.exit_code == 2 and "scenario '1' ('spec.scenario') is defined otherwise than in" in res.output


def test_an_ece_that_is_not_a_number_is_named(results_dir: Path, tmp_path: Path) -> None:
    r = json.loads(sorted(results_dir.glob("*.json"))[0].read_text())
    r["metrics"]["ece"] = "n/a"
    path = tmp_path / f"{r['run_id']}.json"
    path.write_text(json.dumps(r))
    with pytest.raises(results.ResultError, match=r"'metrics.ece' is not a number \('n/a'\)"):
        results.read(path)
    del r["metrics"]["ece"]  # absent, as in results from before ECE: fine
    path.write_text(json.dumps(r))
    back = results.read(path)
    assert back.metrics.ece is None and "ece" not in back.to_dict()["metrics"]


def test_a_pool_remade_in_place_gets_a_row_per_content(results_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "r"
    work.mkdir()
    for src in sorted(results_dir.glob("*.json")):
        spec = json.loads(src.read_text())["spec"]
        if spec["augmentation"] != "none" or spec["scenario"]["name"] != "2":
            continue
        for fp in ("1" * 16, "2" * 16):  # one folder, two manifests
            def pooled(r: dict, fp: str = fp) -> None:
                r["spec"]["scenario"] = scenarios.SCENARIOS["3"].to_dict()
                r["spec"]["pool"] = {"fingerprint": fp}
                r["data"].update(pool_fingerprint=fp, pool_path="/somewhere/pools/gen")

            _variant(src, work, pooled)
    c = collect.gather(work)
    assert sorted(set(c.runs["pool"])) == ["gen@11111111", "gen@22222222"]
    assert any("pool gen has 2 contents" in w for w in c.warnings)
    # Only scenario 3 ran (from the one folder's two contents): its two rows, nothing else.
    assert list(c.table("cnn").index) == ["Scenario 3 · gen@11111111", "Scenario 3 · gen@22222222"]
    assert c.table("cnn").loc["Scenario 3 · gen@22222222", "No Augmentation"].endswith("(n=3)")


# Known answers: hand-written result files with well-separated values, checked through `gather` and
# `Collected.medians` (numbers, not the rendered tables). (Until issue 23 in test_collect_numbers.py.)

def _write(folder: Path, run_id: str, model: str, scenario: str, aug: str, seed: int, ce: float, *,
           accuracy: float = 0.5, real: int = 100, synthetic: int = 0, epochs: int = 3) -> None:
    per = {c: {"recall": 0.0, "precision": 0.0, "f1": 0.0, "support": 0} for c in CLASSES}
    result = {
        "schema": results.SCHEMA, "run_id": run_id,
        "spec": {"model": model, "scenario": {"name": scenario}, "augmentation": aug, "seed": seed,
                 "hparams": {"epochs": epochs}},
        "metrics": {"test_ce": ce, "accuracy": accuracy, "balanced_accuracy": accuracy / 2,
                    "macro_f1": accuracy / 4, "per_class": per, "confusion": [[0] * 4] * 4},
        "history": [],
        "counts": {"real": {"Mild_Demented": real - 10, "Non_Demented": 10},
                   "synthetic": {"Mild_Demented": synthetic, "Non_Demented": 0}},
        "data": {"fingerprint": "d" * 16, "pool_fingerprint": "p" * 16 if synthetic else None},
        "env": {}, "timings": {"train_s": 2.5 * (seed + 1)},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps(result))


# (run id, model, scenario, augmentation, seed, test CE). Medians by hand:
#   cnn 1/none: 0.1, 0.3, 0.9 -> 0.3 (mean 0.433, max 0.9)
#   cnn 1/hflip: 0.2, 0.4, 0.6, 1.4 -> 0.5 (mean 0.65; the lower and upper middle values are 0.4 and 0.6)
#   cnn 2/autoaugment: 0.7 -> 0.7
#   cnn 7/none (a grid's own scenario): 1.0, 2.0 -> 1.5;  cnn 5/hflip: 3.0
#   resnet18 1/none: 5.0, 7.0 -> 6.0 (another model: never mixed into cnn's cells)
RUNS = [
    ("a01", "cnn", "1", "none", 0, 0.1), ("a02", "cnn", "1", "none", 1, 0.9), ("a03", "cnn", "1", "none", 2, 0.3),
    ("b01", "cnn", "1", "hflip", 0, 1.4), ("b02", "cnn", "1", "hflip", 1, 0.2), ("b03", "cnn", "1", "hflip", 2, 0.6),
    ("b04", "cnn", "1", "hflip", 3, 0.4),
    ("c01", "cnn", "2", "autoaugment", 0, 0.7),
    ("d01", "cnn", "7", "none", 0, 2.0), ("d02", "cnn", "7", "none", 1, 1.0),
    ("e01", "cnn", "5", "hflip", 0, 3.0),
    ("r01", "resnet18", "1", "none", 0, 5.0), ("r02", "resnet18", "1", "none", 1, 7.0),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for run_id, model, scen, aug, seed, ce in RUNS:
        _write(tmp_path, run_id, model, scen, aug, seed, ce, accuracy=0.1 * (seed + 1), synthetic=seed)
    return tmp_path


def _cells(m: pd.DataFrame) -> dict[tuple[str, str], tuple[float, int]]:
    return {k: (round(float(v["median"]), 9), int(v["count"])) for k, v in m.iterrows() if v["count"] > 0}


def test_medians_and_counts_per_cell(folder: Path) -> None:
    c = collect.gather(folder)
    assert not c.errors and not c.warnings and len(c.runs) == 13
    m = c.medians("cnn")
    assert _cells(m) == {
        ("1", "none"): (0.3, 3), ("1", "hflip"): (0.5, 4), ("2", "autoaugment"): (0.7, 1),
        ("5", "hflip"): (3.0, 1), ("7", "none"): (1.5, 2),
    }
    # Every cell of the preset scenarios 1-4 is there (empty ones with n = 0), then the grid's own ones, sorted.
    assert list(m.index) == [(s, a) for s in ("1", "2", "3", "4", "5", "7") for a in ("none", "hflip", "autoaugment")]
    assert m.loc[("3", "none"), "count"] == 0 and math.isnan(m.loc[("3", "none"), "median"])
    assert m["count"].dtype.kind == "i" and list(m.index.names) == ["scenario", "augmentation"]
    assert _cells(c.medians("resnet18")) == {("1", "none"): (6.0, 2)}
    vit = c.medians("vit")
    assert (vit["count"] == 0).all() and list(vit.index)[:3] == [("1", "none"), ("1", "hflip"), ("1", "autoaugment")]
    assert len(vit) == 12


def test_gather_reads_each_runs_numbers(folder: Path) -> None:
    runs = collect.gather(folder).runs.set_index("run_id")
    b3 = runs.loc["b03"]
    assert (b3["model"], b3["scenario"], b3["augmentation"], b3["seed"]) == ("cnn", "1", "hflip", 2)
    assert b3["test_ce"] == 0.6 and b3["accuracy"] == pytest.approx(0.3)
    assert b3["balanced_accuracy"] == pytest.approx(0.15) and b3["macro_f1"] == pytest.approx(0.075)
    assert b3["n_real"] == 100 and b3["n_synthetic"] == 2 and b3["epochs"] == 3
    assert b3["data_fingerprint"] == "d" * 16 and b3["pool_fingerprint"] == "p" * 16
    assert pd.isna(runs.loc["a01", "pool_fingerprint"])
    assert b3["train_s"] == 7.5 and b3["file"] == "b03.json"
    assert list(collect.gather(folder).runs.columns) == collect.LONG_COLUMNS


def test_only_the_named_runs_are_gathered(folder: Path) -> None:
    c = collect.gather(folder, {"a01", "a03", "r02"})
    assert sorted(c.runs["run_id"]) == ["a01", "a03", "r02"]
    assert _cells(c.medians("cnn")) == {("1", "none"): (0.2, 2)}


def test_several_runs_for_one_seed_warn_and_bad_files_are_named(folder: Path) -> None:
    _write(folder, "z01", "cnn", "1", "none", 0, 0.5)  # seed 0 of cnn/1/none again, other settings
    _write(folder, "z02", "cnn", "2", "autoaugment", 0, 0.5)
    (folder / "a00.json").write_text("{")  # read first: the files after it still count
    c = collect.gather(folder)
    assert len(c.runs) == 15
    assert c.warnings == ["2 cell(s) have several runs for the same seed (e.g. cnn/1/none/0): results of different "
                          "settings are mixed; collect with --grid to keep one grid's runs"]
    assert len(c.errors) == 1 and "a00.json: not valid JSON" in c.errors[0]
    assert _cells(c.medians("cnn"))[("1", "none")] == (0.4, 4)  # 0.1, 0.3, 0.5, 0.9


def test_models_lists_the_known_ones_then_others(folder: Path) -> None:
    _write(folder, "m01", "mynet", "1", "none", 0, 0.5)
    _write(folder, "m02", "another", "1", "none", 0, 0.5)
    assert collect.gather(folder).models() == ["cnn", "resnet18", "vit", "another", "mynet"]


def test_thesis_medians_are_the_thesis_numbers() -> None:
    t = collect.thesis_medians().set_index(["model", "scenario", "augmentation"])["median_test_ce"]
    assert t[("cnn", "1", "none")] == 0.113512
    assert t[("cnn", "4", "autoaugment")] == 0.242083
    assert ("resnet18", "2", "none") not in t.index  # empty in the thesis, left out
    assert not t.isna().any()


def test_written_long_table_holds_the_numbers(folder: Path, tmp_path: Path) -> None:
    c = collect.gather(folder)
    written = collect.write(c, tmp_path / "tables")
    assert tmp_path / "tables" / "runs.csv" in written
    back = pd.read_csv(tmp_path / "tables" / "runs.csv", dtype={"scenario": str}).set_index("run_id")
    assert back.loc["b01", "test_ce"] == 1.4 and back.loc["d02", "scenario"] == "7" and len(back) == 13


def test_an_empty_folder_gives_empty_cells(tmp_path: Path) -> None:
    c = collect.gather(tmp_path)
    assert c.runs.empty and list(c.runs.columns) == collect.LONG_COLUMNS and not c.errors and not c.warnings
    m = c.medians("cnn")
    assert len(m) == 12 and (m["count"] == 0).all() and m["median"].isna().all()


def test_setting_labels_name_the_fewest_keys_that_tell_settings_apart() -> None:
    from mriaug.analysis import collect

    settings = [
        {"data_fingerprint": "a" * 16, "data": {"source": "../shared/data/alzheimer_mri"},
         "split": {"kind": "given", "fingerprint": "b" * 16}, "hparams": {"lr": 0.001}},
        {"data_fingerprint": "c" * 16, "data": {"source": "../shared/data/alzheimer_mri"},
         "split": {"kind": "subject", "fingerprint": "d" * 16}, "hparams": {"lr": 0.001}},
        {"data_fingerprint": "c" * 16, "data": {"source": "../shared/data/alzheimer_mri"},
         "split": {"kind": "subject", "fingerprint": "d" * 16}, "hparams": {"lr": 0.0001}},
    ]
    labels, differ = collect._setting_labels(settings)
    # The split first, hyper-parameters next, content hashes last (they differ because the split does).
    assert differ == ["split.kind", "hparams.lr", "data_fingerprint", "split.fingerprint"]
    assert labels == ["split.kind=given, hparams.lr=0.001", "split.kind=subject, hparams.lr=0.001",
                      "split.kind=subject, hparams.lr=0.0001"]
    # Settings told apart only by content hashes show them cut to 8 characters; other values stay whole.
    only_data = [{"data_fingerprint": "0123456789abcdef", "data": {"source": "../shared/data/alzheimer_mri"}},
                 {"data_fingerprint": "fedcba9876543210", "data": {"source": "../shared/data/alzheimer_mri/"}}]
    labels, differ = collect._setting_labels(only_data)
    assert differ == ["data.source", "data_fingerprint"]
    assert labels == ["data.source=../shared/data/alzheimer_mri", "data.source=../shared/data/alzheimer_mri/"]
    hashes = [{"data_fingerprint": "0123456789abcdef"}, {"data_fingerprint": "fedcba9876543210"}]
    assert collect._setting_labels(hashes)[0] == ["data_fingerprint=01234567", "data_fingerprint=fedcba98"]
    assert collect._slug("split.kind=subject, hparams.lr=0.0001") == "split.kind=subject-hparams.lr=0.0001"
    assert collect._slug("--a b--") == "a-b" and len(collect._slug("x" * 100)) == 60


def test_setting_key_priorities_missing_keys_and_flattening() -> None:
    from mriaug.analysis import collect

    expected = {"split.kind": 0, "data.source": 1, "split.seed": 2, "data.options.size": 3, "hparams.lr": 4,
                "model": 5, "data_fingerprint": 6, "split.fingerprint": 6}
    assert {k: collect._priority(k) for k in expected} == expected
    # A key one setting lacks shows as a dash for it.
    labels, differ = collect._setting_labels([{"a": "1"}, {"a": "1", "b": "2"}])
    assert differ == ["b"] and labels == ["b=—", "b=2"]
    # Values that are not strings are compared as JSON with sorted keys, so key order never splits a setting.
    assert collect._flat({"x": [{"b": 1, "a": 2}], "y": {"z": "s"}}) == {"x": '[{"a": 2, "b": 1}]', "y.z": "s"}
    assert collect._slug("Mild_Demented") == "Mild_Demented" and collect._slug("X-ray--") == "X-ray"


def _result(folder: Path, run_id: str, model: str, scenario: str, seed: int, ce: float | None, *,
            pool: str = "", status: str = "done") -> None:
    _write(folder, run_id, model, scenario, "none", seed, 0.0, synthetic=5 if pool else 0)
    doc = json.loads((folder / f"{run_id}.json").read_text())
    if pool:
        doc["data"]["pool_label"] = pool
    if status == "diverged":
        doc["status"], doc["diverged_at_epoch"] = status, 2
        doc["metrics"] = dict.fromkeys(results.REQUIRED_METRICS)
    else:
        doc["metrics"]["test_ce"] = ce
    (folder / f"{run_id}.json").write_text(json.dumps(doc))


def test_rows_pools_and_diverged_runs_per_cell(tmp_path: Path) -> None:
    _result(tmp_path, "c1", "cnn", "1", 0, 0.2)
    _result(tmp_path, "c2", "cnn", "1", 1, None, status="diverged")
    _result(tmp_path, "c3", "cnn", "3", 0, 0.4, pool="openai")
    _result(tmp_path, "c4", "cnn", "3", 1, None, pool="openai", status="diverged")
    _result(tmp_path, "c5", "cnn", "3", 2, None, pool="openai", status="diverged")
    _result(tmp_path, "r1", "resnet18", "1", 0, 0.3)
    _result(tmp_path, "r2", "resnet18", "2", 0, None, status="diverged")
    _result(tmp_path, "r3", "resnet18", "7", 0, 0.5)  # a scenario only resnet18's table has
    c = collect.gather(tmp_path)
    # Only models with runs have a table (no vit), and a table only the scenarios it ran.
    assert not c.errors and c.table_names() == ["cnn", "resnet18"] and "vit" not in c.tables
    # One pool in a table: its scenario with synthetic images is one row, labelled without the pool.
    assert c.rows("cnn") == [("Scenario 1", "1", ""), ("Scenario 3", "3", "openai")]
    assert c.rows("resnet18") == [("Scenario 1", "1", ""), ("Scenario 2", "2", ""), ("Scenario 7", "7", "")]
    # Diverged runs per (scenario, pool, augmentation) of their own table only.
    assert c.diverged("cnn") == {("1", "", "none"): 1, ("3", "openai", "none"): 2}
    assert c.diverged("resnet18") == {("2", "", "none"): 1}
    assert c.diverged("vit") == {}
    t = c.table("cnn")
    assert t.index.name == "scenario" and list(t.columns) == ["No Augmentation"]
    # A failed run is the worst test CE (+inf) and counts: 0.2 and inf -> median inf, the range [0.2, inf] of two
    # values covers the median with 1 - 2 * 1/4 = 50%; 0.4, inf, inf -> median inf, range of three 1 - 2/8 = 75%.
    assert t.loc["Scenario 1", "No Augmentation"] == "failed [range 0.200, ∞: covers 50%] (n=2, 1 failed)"
    assert t.loc["Scenario 3", "No Augmentation"] == "failed [range 0.400, ∞: covers 75%] (n=3, 2 failed)"
    # A lone failed run: one value never brackets the median (coverage 1 - 2 * 1/2 = 0).
    assert c.table("resnet18").loc["Scenario 2", "No Augmentation"] == "failed [one run: no interval] (n=1, 1 failed)"
    # Pairs with scenario 1 (its runs without a pool): seed 0 0.4 - 0.2, seed 1 both failed (a tie, 0); seed 2
    # has no scenario 1 run.
    s = c.stats().set_index(["table", "scenario"]).loc[("cnn", "3")]
    assert s["n_pairs"] == 2 and s["n_failed"] == 2 and s["diff_median"] == pytest.approx(0.1)
    assert s["prob_improvement"] == 0.25  # seed 0 worse, the tie counts half


def test_three_of_six_seeds_diverged_count_at_the_worst_value(tmp_path: Path) -> None:
    # Seeds 0-2 done (test CE 0.1, 0.2, 0.3; accuracy 0.5 each), seeds 3-5 diverged; scenario 2 done for all six.
    for seed, ce in enumerate((0.1, 0.2, 0.3)):
        _result(tmp_path, f"a{seed}", "cnn", "1", seed, ce)
    for seed in (3, 4, 5):
        _result(tmp_path, f"a{seed}", "cnn", "1", seed, None, status="diverged")
    for seed, ce in enumerate((0.5, 0.7, 0.9, 1.0, 1.1, 1.2)):
        _result(tmp_path, f"b{seed}", "cnn", "2", seed, ce)
    c = collect.gather(tmp_path)
    assert not c.errors and c.diverged("cnn") == {("1", "", "none"): 3}
    one = c.stats().set_index(["table", "scenario"]).loc[("cnn", "1")]
    # Sorted: 0.1, 0.2, 0.3, inf, inf, inf: n = 6 (not 3), median (0.3 + inf) / 2 = inf; at n = 6 the 95%
    # interval is the 1st and 6th smallest (coverage 1 - 2/64 = 96.9%): [0.1, inf].
    assert (one["n"], one["n_failed"], one["median"], one["ci_low"], one["ci_high"]) == (6, 3, math.inf, 0.1, math.inf)
    assert one["ci_coverage"] == pytest.approx(1 - 2 / 64)
    text = "failed [0.100, ∞] (n=6, 3 failed)"
    assert c.table("cnn").loc["Scenario 1", "No Augmentation"] == text
    assert c.cell_texts("cnn")[("1", "", "none")] == text and text in collect.render(c)
    # The box plot draws the finite values (quantiles of +inf would warn and give NaN boxes) and still gets written.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tmp_path / "tables" / "cnn.png" in collect.write(c, tmp_path / "tables")
    # Accuracy: the failures are 0, so the median of 0, 0, 0, 0.5, 0.5, 0.5 is 0.25 (the survivors alone: 0.5).
    acc = c.stats("accuracy").set_index(["table", "scenario"]).loc[("cnn", "1")]
    assert (acc["n"], acc["n_failed"], acc["median"]) == (6, 3, 0.25)
    # Every seed pairs (6 pairs, not 3): differences 0.4, 0.5, 0.6 and -inf three times; median (-inf + 0.4) / 2;
    # scenario 2 better in 3 of 6. Signed ranks: |d| 0.4, 0.5, 0.6 rank 1, 2, 3, the three infinite tie at 5;
    # T+ = 6, and 14 of the 64 sign patterns of ranks 1..6 have T+ <= 6: two-sided p = 28/64 = 0.4375.
    two = c.stats().set_index(["table", "scenario"]).loc[("cnn", "2")]
    assert two["n_pairs"] == 6 and two["diff_median"] == -math.inf and two["prob_improvement"] == 0.5
    assert two["p_wilcoxon"] == pytest.approx(0.4375)


def test_twenty_seeds_interval_is_the_6th_and_15th_smallest(tmp_path: Path) -> None:
    # Seed s has test CE ((7 s) mod 20 + 1) / 10: the values 0.1 ... 2.0, shuffled over the seeds.
    for seed in range(20):
        _result(tmp_path, f"s{seed:02d}", "cnn", "1", seed, ((7 * seed) % 20 + 1) / 10)
    c = collect.gather(tmp_path)
    collect.write(c, tmp_path / "tables")
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv")
    stats = pd.read_csv(tmp_path / "tables" / "stats.csv").query("metric == 'test_ce'")
    ordered = sorted(runs["test_ce"])
    assert len(ordered) == 20 and ordered[5] == 0.6 and ordered[14] == 1.5
    row = stats.iloc[0]
    assert len(stats) == 1 and (row["n"], row["ci_low"], row["ci_high"]) == (20, ordered[5], ordered[14])
    # Coverage 1 - 2 P(B <= 5), B ~ Binomial(20, 1/2): 1 - 2 * 21700 / 2^20.
    assert row["median"] == pytest.approx(1.05) and row["ci_coverage"] == pytest.approx(1 - 2 * 21700 / 2**20)
    assert c.table("cnn").loc["Scenario 1", "No Augmentation"] == "1.050 [0.600, 1.500] (n=20)"


def test_cell_text_counts_failed_and_missing_runs_apart() -> None:
    nan, inf = float("nan"), float("inf")
    cell = {"n": 3, "n_failed": 1, "n_missing": 0, "median": 0.25, "ci_low": 0.1, "ci_high": 0.4, "p_holm": 0.01}
    assert collect.cell_text(cell, "test_ce") == "0.250 [0.100, 0.400] (n=3, 1 failed) *"
    assert collect.cell_text({**cell, "n_failed": 0, "n_missing": 1, "p_holm": nan}, "test_ce") == (
        "0.250 [0.100, 0.400] (n=3) (1 without test_ce)")
    assert collect.cell_text({**cell, "n_missing": 1, "p_holm": 0.2}, "test_ce") == (
        "0.250 [0.100, 0.400] (n=3, 1 failed) (1 without test_ce)")
    # Marked below 0.05 only: 0.05 itself is not significant.
    assert collect.cell_text({**cell, "n_failed": 0, "p_holm": 0.05}, "test_ce") == "0.250 [0.100, 0.400] (n=3)"
    # Too few seeds for a 95% interval: the range, with what it covers; at 95.9% (n = 20) the plain interval.
    assert collect.cell_text({**cell, "ci_coverage": 0.75, "p_holm": nan}, "test_ce") == (
        "0.250 [range 0.100, 0.400: covers 75%] (n=3, 1 failed)")
    assert collect.cell_text({**cell, "ci_coverage": 0.9586, "p_holm": nan}, "test_ce") == (
        "0.250 [0.100, 0.400] (n=3, 1 failed)")
    # The median run failed: said in words; a failed upper end is infinite.
    failed = {**cell, "n_failed": 2, "median": inf, "ci_high": inf, "ci_coverage": 0.75, "p_holm": nan}
    assert collect.cell_text(failed, "test_ce") == "failed [range 0.100, ∞: covers 75%] (n=3, 2 failed)"
    assert collect.cell_text({**failed, "n_failed": 0}, "test_ce").startswith("∞ [range")  # inf, yet no failure
    # A metric whose worst value is finite: the median is a failure when more than half the seeds failed (4 of 6:
    # the middle two are failures at 0), not when half did (the mean of a failure and a finished run).
    acc = {"n": 6, "n_missing": 0, "median": 0.0, "ci_low": 0.0, "ci_high": 0.5, "ci_coverage": 0.96875,
           "p_holm": nan}
    assert collect.cell_text({**acc, "n_failed": 4}, "accuracy") == "failed [0.000, 0.500] (n=6, 4 failed)"
    assert collect.cell_text({**acc, "n_failed": 3, "median": 0.2}, "accuracy") == (
        "0.200 [0.000, 0.500] (n=6, 3 failed)")
    assert collect.cell_text({**acc, "n_failed": 0}, "accuracy") == "0.000 [0.000, 0.500] (n=6)"
    empty = {"n": 0, "n_failed": 0, "n_missing": 2, "median": nan, "ci_low": nan, "ci_high": nan, "p_holm": nan}
    assert collect.cell_text(empty, "accuracy") == "— (n=0; 2 runs without accuracy)"
    assert collect.cell_text({**empty, "n_missing": 0}, "accuracy") == "— (n=0)"


def _edit(folder: Path, run_id: str, change: Callable[[dict], None]) -> None:
    doc = json.loads((folder / f"{run_id}.json").read_text())
    change(doc)
    (folder / f"{run_id}.json").write_text(json.dumps(doc))


def test_old_results_settings_pool_names_and_table_names(tmp_path: Path) -> None:
    # A result without a split record is on the given split, in the same table as one that says so.
    _result(tmp_path, "g1", "cnn", "1", 0, 0.2)
    _result(tmp_path, "g2", "cnn", "1", 1, 0.3)
    _edit(tmp_path, "g2", lambda d: d["data"].update(split={"kind": "given"}))
    # Pools named the ways older results name them: pool_name, the spec's pool table, the folder.
    _result(tmp_path, "p1", "cnn", "3", 0, 0.4)
    _edit(tmp_path, "p1", lambda d: d["data"].update(pool_name="named"))
    _result(tmp_path, "p2", "cnn", "3", 1, 0.4)
    _edit(tmp_path, "p2", lambda d: d["spec"].update(pool={"name": "fromspec"}))
    _result(tmp_path, "p3", "cnn", "3", 2, 0.4)
    _edit(tmp_path, "p3", lambda d: d["data"].update(pool_path="/pools/folder"))
    c = collect.gather(tmp_path)
    assert not c.errors and not c.warnings and c.table_names() == ["cnn"]
    runs = c.runs.set_index("run_id")
    assert runs.loc["g1", "split"] == runs.loc["g2", "split"] == "given"
    assert runs.loc[["p1", "p2", "p3"], "pool"].tolist() == ["named", "fromspec", "folder"]
    assert set(runs["status"]) == {"done"} and c.tables["cnn"].name == "cnn"

    # Runs of other data (another content fingerprint) go to a table of their own; two settings whose labels
    # make the same table name get distinct names.
    other = tmp_path / "other"
    for i, source in enumerate(("x y", "x-y")):
        _result(other, f"s{i}", "cnn", "1", 0, 0.2)
        _edit(other, f"s{i}", lambda d, s=source: d["spec"].update(data={"source": s}))
    _result(other, "f1", "cnn", "1", 1, 0.2)
    _edit(other, "f1", lambda d: d["data"].update(fingerprint="e" * 16))
    c = collect.gather(other)
    names = [n for n in c.table_names() if n.startswith("cnn")]
    assert len(names) == 3 and all(c.tables[n].name == n for n in names)
    assert {"cnn_data.source=x-y", "cnn_data.source=x-y+"} <= set(names)
    assert c.warnings and c.warnings[0].startswith("cnn: runs of 3 settings (they differ in data.source, "
                                                   "data_fingerprint) are kept apart, in tables cnn_")


def _subject_split(doc: dict, first: int, splits: int, fingerprint: str) -> None:
    """A run of a grid with `[data] split = "subject"`, `split_seed = first`, `splits = K`, as train writes it: seed
    s on split seed first + s mod K, the split's own data and split fingerprints, the source's fingerprint."""
    seed = doc["spec"]["seed"]
    split_seed = first + seed % splits
    opts = {"split": "subject", "split_seed": split_seed, **({"splits": splits} if splits > 1 else {})}
    doc["spec"]["data"] = {"source": "phantom", "options": opts}
    doc["data"]["fingerprint"] = fingerprint * 16
    doc["data"]["split"] = {"kind": "subject", "seed": split_seed, "fingerprint": fingerprint.upper() * 16,
                            "test_fraction": 0.2, "val_fraction": 0.1, "source_fingerprint": "5" * 16,
                            "groups_per_part": {"train": 14, "val": 2, "test": 4},
                            **({"splits": splits} if splits > 1 else {})}


def test_repeated_subject_splits_share_one_table(tmp_path: Path) -> None:
    # splits = 3, split_seed = 10: seeds 0, 1, 2 on split seeds 10, 11, 12 (three data fingerprints).
    for seed, (ce, fp) in enumerate(((0.3, "a"), (0.1, "b"), (0.2, "c"))):
        _result(tmp_path, f"k{seed}", "cnn", "1", seed, ce)
        _edit(tmp_path, f"k{seed}", lambda d, fp=fp: _subject_split(d, 10, 3, fp))
    c = collect.gather(tmp_path)
    assert not c.errors and not c.warnings and c.table_names() == ["cnn"]
    assert sorted(set(c.runs["data_fingerprint"])) == ["a" * 16, "b" * 16, "c" * 16]
    assert c.tables["cnn"].splits == 3
    # One cell of three seeds: median 0.2, the range [0.1, 0.3] (coverage 75%).
    assert c.table("cnn").loc["Scenario 1", "No Augmentation"] == "0.200 [range 0.100, 0.300: covers 75%] (n=3)"
    variation = "training randomness and which patients are tested (3 subject splits, seed s on split s mod 3)"
    assert c.tables["cnn"].variation == variation
    assert f"they cover {variation}." in " ".join(collect.render(c).split())
    # A fourth seed on the first split again (3 mod 3 = 0: split seed 10) joins the cell.
    _result(tmp_path, "k3", "cnn", "1", 3, 0.4)
    _edit(tmp_path, "k3", lambda d: _subject_split(d, 10, 3, "a"))
    c = collect.gather(tmp_path)
    assert c.table_names() == ["cnn"] and c.tables["cnn"].splits == 3 and c.medians("cnn").loc[("1", "none"),
                                                                                                "count"] == 4
    # Two seeds of a grid of 3 splits ran: 2 splits behind the cell, yet seed s is on split s mod 3.
    two = tmp_path / "two"
    for seed, fp in enumerate("ab"):
        _result(two, f"t{seed}", "cnn", "1", seed, 0.1)
        _edit(two, f"t{seed}", lambda d, fp=fp: _subject_split(d, 10, 3, fp))
    info = collect.gather(two).tables["cnn"]
    assert (info.splits, info.repeats) == (2, 3)
    assert info.variation == ("training randomness and which patients are tested (2 subject splits, seed s on split "
                              "s mod 3)")
    # Three grids of one split each (split seeds 10, 11, 12) and another grid's splits (split_seed = 20) are four
    # settings: tables of their own, each over one split.
    other = tmp_path / "other"
    for seed, fp in enumerate("abc"):
        _result(other, f"g{seed}", "cnn", "1", seed, 0.1)
        _edit(other, f"g{seed}", lambda d, s=seed, fp=fp: _subject_split(d, 10 + s, 1, fp))  # split seed 10 + s
    _result(other, "h0", "cnn", "1", 0, 0.1)
    _edit(other, "h0", lambda d: _subject_split(d, 20, 3, "d"))
    c = collect.gather(other)
    assert len(c.table_names()) == 4 and all(c.tables[n].splits == 1 for n in c.table_names())
    assert all(c.tables[n].variation == "training randomness only (one data split)" for n in c.table_names())


def test_a_table_of_runs_from_two_environment_locks_warns(tmp_path: Path) -> None:
    for seed, lock in ((0, "aaaa1111"), (1, "aaaa1111"), (2, "bbbb2222")):
        _result(tmp_path, f"l{seed}", "cnn", "1", seed, 0.3)
        _edit(tmp_path, f"l{seed}", lambda d, lock=lock: d.update(env={"lock": lock}))
    c = collect.gather(tmp_path)
    mixed = [w for w in c.warnings if "different software environments" in w]
    assert len(mixed) == 1 and mixed[0].startswith("cnn: ")
    assert "2 runs with lock aaaa1111; 1 run with lock bbbb2222" in mixed[0]
    _edit(tmp_path, "l2", lambda d: d.update(env={"lock": "aaaa1111"}))
    assert not [w for w in collect.gather(tmp_path).warnings if "environments" in w]


# Diverged runs counted in their cell, and a file given for the folder. (Until issue 23 in test_robustness.py.)

SPEC = DataSpec("phantom", {"n_train": 80, "n_test": 40, "size": 32})


@pytest.fixture(scope="module")
def diverged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn/s1/none: seeds 0 and 1 train normally, seed 2 diverges; cnn/s2/none: only a diverged run. All with the
    same settings, so they share a table (a run with other settings, e.g. lr 1e6, gets a table of its own): the
    loss of the diverging seeds is made non-finite, as an unstable seed's would become."""
    import torch.nn.functional as F

    import mriaug.engine.train

    out = tmp_path_factory.mktemp("diverged")
    hp = tiny_hparams("cnn", epochs=3)
    ce = F.cross_entropy
    for scen, seed, diverge in (("1", 0, False), ("1", 1, False), ("1", 2, True), ("2", 0, True)):
        with pytest.MonkeyPatch.context() as mp:
            if diverge:
                mp.setattr(mriaug.engine.train.F, "cross_entropy", lambda *a, **k: ce(*a, **k) * float("inf"))
            execute(make_spec("cnn", scenarios.SCENARIOS[scen], "none", seed, hp, SPEC), out, log=lambda m: None)
    return out


def test_tables_count_diverged_runs_in_their_cell(diverged_dir: Path, tmp_path: Path) -> None:
    for f in diverged_dir.glob("*.json"):
        strict_json(f)
    c = collect.collect(diverged_dir, tmp_path / "t", echo=lambda m: None, warn=lambda m: None)
    t = c.table("cnn")
    # A diverged run is a failure at the worst value (test CE +inf): in its cell, counted as failed.
    assert t.loc["Scenario 1", "No Augmentation"].endswith("(n=3, 1 failed)")
    assert t.loc["Scenario 2", "No Augmentation"] == "failed [one run: no interval] (n=1, 1 failed)"
    assert "Scenario 3" not in t.index  # no run of scenario 3: no row
    assert (c.runs["status"] == "diverged").sum() == 2
    assert "1 failed" in (tmp_path / "t" / "cnn.md").read_text()


def test_collect_of_a_file_says_so(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text("{}")
    r = CliRunner().invoke(app, ["collect", str(f)])
    assert r.exit_code == 2 and "is a file" in r.output


# Diverged runs in medians and box plots, as in the tables' statistics (issue 26).

def test_medians_and_box_values_count_diverged_runs_at_the_worst_value(tmp_path: Path) -> None:
    # cnn 1/none: 0.1, 0.3 and a diverged run -> sorted 0.1, 0.3, inf: median 0.3, n = 3 (the survivors alone: 0.2,
    # n = 2); cnn 2/none: 0.5 and a diverged run -> median (0.5 + inf) / 2 = inf.
    _result(tmp_path, "a0", "cnn", "1", 0, 0.1)
    _result(tmp_path, "a1", "cnn", "1", 1, 0.3)
    _result(tmp_path, "a2", "cnn", "1", 2, None, status="diverged")
    _result(tmp_path, "b0", "cnn", "2", 0, 0.5)
    _result(tmp_path, "b1", "cnn", "2", 1, None, status="diverged")
    c = collect.gather(tmp_path)
    m = c.medians("cnn")
    assert (m.loc[("1", "none"), "median"], m.loc[("1", "none"), "count"]) == (0.3, 3)
    assert (m.loc[("2", "none"), "median"], m.loc[("2", "none"), "count"]) == (math.inf, 2)
    # Accuracy: every done run 0.5 (the _write default), the diverged one 0 -> 0, 0.5, 0.5: median 0.5; 0, 0.5: 0.25.
    acc = c.medians("cnn", "accuracy")
    assert acc.loc[("1", "none"), "median"] == 0.5 and acc.loc[("2", "none"), "median"] == 0.25
    assert acc.loc[("2", "none"), "count"] == 2
    # The medians agree with the tables' statistics cell by cell.
    s = c.stats().set_index(["scenario", "augmentation"])
    assert s.loc[("1", "none"), "median"] == 0.3 and s.loc[("2", "none"), "median"] == math.inf
    # The box plot's values: every run, the diverged one at +inf.
    assert c.box_values("cnn") == {("1", "", "none"): [0.1, 0.3, math.inf], ("2", "", "none"): [0.5, math.inf]}
    # A box drawn with +inf at the ceiling (here 1.0): median, quartiles and whiskers by hand; the median of 0.5
    # and inf is inf, drawn at the ceiling (not halfway, 0.75).
    one = collect.Collected.box_stats([0.1, 0.3, math.inf], 1.0)
    assert (one["med"], one["q1"], one["q3"], one["whislo"], one["whishi"]) == (0.3, 0.2, 0.65, 0.1, 1.0)
    assert (one["n"], one["failed"]) == (3, 1)
    two = collect.Collected.box_stats([0.5, math.inf], 1.0)
    assert (two["med"], two["failed"]) == (1.0, 1)


def test_box_plot_draws_a_diverged_run_at_the_top_with_its_count(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import plots

    for seed, ce in enumerate((0.1, 0.3)):
        _result(tmp_path, f"a{seed}", "cnn", "1", seed, ce)
    _result(tmp_path, "a2", "cnn", "1", 2, None, status="diverged")
    _result(tmp_path, "a3", "cnn", "1", 3, None, status="diverged")
    c = collect.gather(tmp_path)
    figs = []
    real_png = plots.png
    monkeypatch.setattr(plots, "png", lambda fig, dpi=110: (figs.append(fig), real_png(fig, dpi))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert c.figure("cnn", tmp_path / "cnn.png")
    ax = figs[0].axes[0]
    # Finite values span 0.1-0.3: the ceiling is 0.3 + 0.15 * 0.2 = 0.33; the two diverged runs are one x there
    # with "2" beside it, and the title says n includes them.
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_ydata()) == [pytest.approx(0.33)]
    assert "2" in [t.get_text() for t in ax.texts]
    assert "n includes 2 diverged at the worst value (∞)" in ax.get_title()
    # Sorted 0.1, 0.3, inf, inf: median (0.3 + inf) / 2 = inf, the box's median line at the ceiling.
    medians = [ln for ln in ax.lines if ln.get_gid() == "median"]
    assert len(medians) == 1 and list(medians[0].get_ydata()) == pytest.approx([0.33, 0.33])


def test_runs_csv_names_the_split_each_run_was_tested_on(tmp_path: Path) -> None:
    # splits = 3: seeds 0..4 on splits 0, 1, 2, 0, 1 (s mod 3); a run of one split is on split 0.
    for seed in range(5):
        _result(tmp_path, f"k{seed}", "cnn", "1", seed, 0.1 * (seed + 1))
        _edit(tmp_path, f"k{seed}", lambda d, s=seed: _subject_split(d, 10, 3, "abc"[s % 3]))
    _result(tmp_path / "one", "g0", "cnn", "1", 4, 0.2)
    c = collect.gather(tmp_path)
    collect.write(c, tmp_path / "tables")
    runs = pd.read_csv(tmp_path / "tables" / "runs.csv").set_index("run_id")
    assert [runs.loc[f"k{s}", "split_index"] for s in range(5)] == [0, 1, 2, 0, 1]
    assert set(runs["split"]) == {"subject"}  # the kind, kept
    assert collect.gather(tmp_path / "one").runs["split_index"].tolist() == [0]


def test_collect_help_names_every_metric_and_the_interval_it_prints() -> None:
    """Issue 32: `--metric`'s help left out the per-scan metrics and called the intervals bootstrap ones."""
    text = " ".join(CliRunner().invoke(app, ["collect", "--help"], env={"COLUMNS": "200"}).output.split())
    for metric in statistics.METRICS:
        assert f" {metric}," in text or f" {metric} " in text, metric
    assert "recall:CLASS" in text and "bootstrap" not in text and "distribution-free 95% interval" in text


def test_a_table_of_one_run_per_cell_claims_no_interval(tmp_path: Path) -> None:
    """Issue 32: one run per cell printed '[range 0.300, 0.300: covers 0%]' and a legend on 'n = 20: the 6th and
    15th smallest' and a range that 'covers 0% at least'."""
    _write(tmp_path, "a01", "cnn", "1", "none", 0, 0.3)
    _write(tmp_path, "a02", "cnn", "3", "none", 0, 0.4)
    c = collect.gather(tmp_path)
    assert c.table("cnn").loc["Scenario 1", "No Augmentation"] == "0.300 [one run: no interval] (n=1)"
    legend = c.legend("cnn")
    assert "A cell of one run has no interval" in legend and "(order statistics of the seeds' values)" in legend
    assert "6th" not in legend and "covers the median" not in legend and "0%" not in legend
    assert "Holm over the table's 1 comparison," in legend and "With 1 paired seed no" in legend
    # Cells of 7 runs: the example is theirs (the 1st and 7th smallest cover 98.4%), and n = 1 is still named.
    for seed in range(1, 7):
        _write(tmp_path, f"b{seed}", "cnn", "1", "none", seed, 0.3 + seed / 100)
    legend = collect.gather(tmp_path).legend("cnn")
    assert "n = 7: the 1st and 7th smallest" in legend and "A cell of one run has no interval" in legend
