from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mriaug import atomic, results, scenarios
from mriaug.analysis import collect, statistics
from mriaug.classes import CLASSES
from mriaug.cli import app
from mriaug.data import HUB_REVISIONS, DataSpec
from mriaug.grid import plan_run
from mriaug.train import execute
from tests.conftest import tiny_hparams


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    for scen in ("1", "2"):
        for aug in ("none", "hflip"):
            for seed in (0, 1, 2):
                hp = tiny_hparams("cnn", epochs=1)
                execute(plan_run("cnn", scenarios.SCENARIOS[scen], aug, seed, hp, spec), out, log=lambda m: None)
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
    other = plan_run("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams("cnn", epochs=1, lr=5e-3), spec)
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
    assert set(stats["metric"]) == {"test_ce", "accuracy", "balanced_accuracy", "macro_f1", "ece",
                                    *(f"recall:{c}" for c in CLASSES)}
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
    assert "ece" not in results.read(path)["metrics"]


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
