"""Known answers for `collect`: hand-written result files with well-separated values, checked through
`gather` and `Collected.medians` (numbers, not the rendered tables)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mriaug import results
from mriaug.analysis import collect
from mriaug.classes import CLASSES


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
    assert c.table("resnet18").loc["Scenario 2", "No Augmentation"] == "failed [range ∞, ∞: covers 0%] (n=1, 1 failed)"
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
