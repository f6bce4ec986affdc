"""`mriaug report`: one self-contained HTML page (sections, real pictures, nothing outside it) and its Markdown twin."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from mriaug.analysis import statistics
from mriaug.cli import app

SECTION_WORDS = ("Grad-CAM", "confidence interval", "scenario", "leakage", "provenance")


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small study on the phantom: scenarios 1 and 3 with hflip, two seeds, the CNN keeping its weights."""
    root = tmp_path_factory.mktemp("study")
    runner = CliRunner()
    opts = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]
    pool = root / "pool"
    r = runner.invoke(app, ["synth", *opts, "--out", str(pool), "--generator", "transform",
                            "--classes", "Mild_Demented,Moderate_Demented,Non_Demented"])
    assert r.exit_code == 0, r.output
    for scenario in ("1", "3"):
        for seed in ("0", "1"):
            r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", scenario, "--aug", "hflip", "--seed", seed,
                                    *opts, "--pool", str(pool), "--epochs", "1", "--resolution", "32",
                                    "--out", str(root / "results"), "--save-weights"])
            assert r.exit_code == 0, r.output
    return root / "results"


def _images(html: str) -> list[Image.Image]:
    out = []
    for uri in re.findall(r'<img[^>]+src="([^"]+)"', html):
        assert uri.startswith("data:image/png;base64,"), uri[:60]
        out.append(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    return out


@pytest.fixture(scope="module")
def report(results_dir: Path) -> Path:
    out = results_dir.parent / "report"
    r = CliRunner().invoke(app, ["report", str(results_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_report_is_self_contained_with_every_section(report: Path) -> None:
    out = report
    html = (out / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    for word in SECTION_WORDS:
        assert any(word.lower() in h.lower() for h in headings), (word, headings)
    # Nothing outside the file: no links, scripts, styles or fonts fetched from anywhere.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"(https?:|file:|//[a-z]|url\(|@import)", text, re.I)
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:", "#")), attr
    imgs = _images(html)
    assert len(imgs) >= 8  # forest, box, leakage, examples, pool, augmentations, Grad-CAM panels
    for im in imgs:
        im.load()
        a = np.asarray(im.convert("L"), dtype=float)
        assert min(im.size) > 50 and a.std() > 5  # a real picture, not a blank
    assert "Moderate_Demented sources" in html  # the runs kept weights: Grad-CAM panels made and embedded
    cam = json.loads((out / "cam" / "cam.json").read_text())
    assert {"pearson", "iou", "road"} <= set(cam["per_class"]["Moderate_Demented"])
    assert "not by subject" in html  # the phantom's given split: the leakage warning
    md = (out / "report.md").read_text()
    assert all(word.lower() in md.lower() for word in SECTION_WORDS)
    for ref in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (out / ref).is_file()


# CI installs chromium (.ci/run): there a missing browser fails the test instead of skipping it.
@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed")
def test_report_opens_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    out = report
    shot = tmp_path / "page.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,3000",
                    (out / "report.html").resolve().as_uri()], check=True, capture_output=True, timeout=120)
    a = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert a.std() > 20  # text, tables and figures, not a blank page


def test_report_statistics_have_the_documented_columns() -> None:
    rows = [{"model": "cnn", "augmentation": "none", "scenario": s, "seed": k, "test_ce": 1.0 + d + 0.01 * k}
            for s, d in (("1", 0.0), ("3", -0.2)) for k in range(8)]
    t = statistics.stats_table(pd.DataFrame(rows), "test_ce")
    assert list(t.columns)[: len(statistics.COLUMNS)] == statistics.COLUMNS
    s3 = t[t["scenario"] == "3"].iloc[0]
    assert s3["diff_median"] == pytest.approx(-0.2) and s3["prob_improvement"] == 1.0
    assert s3["ci_low"] <= s3["median"] <= s3["ci_high"]
    assert t[t["scenario"] == "1"]["diff_median"].isna().all()


TWO_SETTINGS = """name = "two"
results = "{root}/results"
models = ["cnn"]
scenarios = ["1", "3"]
augmentations = ["none"]
seeds = 3

[pool]
copy = "{root}/copy"
transform = "{root}/transform"

[data]
source = "phantom"
n_train = 80
n_test = 40
size = 32

[model.cnn]
epochs = 1
batch_size = 16
lr = {lr}
resolution = 32
precision = "fp32"
"""


@pytest.fixture(scope="module")
def two_settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results folder with two learning rates of one model, scenario 3 from two pools: two collect tables."""
    root = tmp_path_factory.mktemp("two")
    runner = CliRunner()
    for lr in ("0.001", "0.01"):
        g = root / f"lr{lr}.toml"
        g.write_text(TWO_SETTINGS.format(root=root, lr=lr))
        for gen in ("copy", "transform"):
            r = runner.invoke(app, ["synth", "--grid", str(g), "--generator", gen, "--no-report",
                                    "--classes", "Mild_Demented,Moderate_Demented"])
            assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["grid", str(g)])
        assert r.exit_code == 0, r.output
    out = root / "report"
    r = runner.invoke(app, ["report", str(root / "results"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return root


def test_every_cell_collect_prints_is_in_the_report_with_its_table_and_pool(two_settings: Path) -> None:
    from mriaug.analysis import collect

    c = collect.gather(two_settings / "results")
    names = c.table_names()
    assert len(names) == 2 and all(n.startswith("cnn_") for n in names)
    html = (two_settings / "report" / "report.html").read_text()
    md = (two_settings / "report" / "report.md").read_text()
    for name in names:
        texts = c.cell_texts(name)
        # scenario 1 without a pool, scenario 3 once per pool: three cells of one column
        assert sorted(texts) == [("1", "", "none"), ("3", "copy", "none"), ("3", "transform", "none")]
        for text in texts.values():
            assert text in html and text in md, text
        assert f"{name}: paired differences from scenario 1" in html
        assert f"forest_{name}.png" in md and f"box_{name}.png" in md
    # every paired row names its pool; no row of a scenario or augmentation that was not run
    for pool in ("copy", "transform"):
        assert f"Scenario 3 · {pool} · No Augmentation" in html
    assert "AutoAugment" not in re.sub(r"<section id=\"augment.*", "", html, flags=re.S)
    assert "Scenario 2" not in html and "resnet18" not in html.split('id="data"')[0]
    assert "`" not in re.sub(r"<[^>]+>", "", html)  # no raw Markdown in the page


@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed")
@pytest.mark.parametrize("width", [1280, 600])
def test_the_report_reads_at_1280_and_600_pixels(two_settings: Path, tmp_path: Path, width: int) -> None:
    shot = tmp_path / f"page{width}.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size={width},2400",
                    (two_settings / "report" / "report.html").resolve().as_uri()], check=True, capture_output=True,
                   timeout=120)
    a = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert a.shape[1] == width and a.std() > 20
    # Wide tables scroll inside their card: nothing is drawn in the page margin right of the cards.
    html = (two_settings / "report" / "report.html").read_text()
    assert html.count('<div class="scroll"><table>') == html.count("<table>")


# --- the report's numbers on hand-written results ----------------------------------------------------------------

HP = {"arch": "cnn", "resolution": 64, "epochs": 10, "batch_size": 32, "lr": 0.001, "weight_decay": 0.0001,
      "precision": "bf16", "pretrained": False}


def _hand_result(folder: Path, run_id: str, scenario: str, seed: int, ce: float, *, acc: float = 0.5,
                 recall: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 test: dict[str, int] | None = None, train: dict[str, int] | None = None,
                 training: dict | None = None, model: str = "cnn", hp: dict | None = None, pool: str = "") -> None:
    from mriaug.data.classes import CLASSES
    from mriaug.store import results

    per = {c: {"recall": r, "precision": 0.0, "f1": 0.0, "support": 0} for c, r in zip(CLASSES, recall, strict=True)}
    doc = {"schema": results.SCHEMA, "run_id": run_id,
           "spec": {"model": model, "scenario": {"name": scenario}, "augmentation": "none", "seed": seed,
                    "hparams": hp or HP},
           "metrics": {"test_ce": ce, "accuracy": acc, "balanced_accuracy": acc / 2, "macro_f1": acc / 4,
                       "ece": acc / 10, "per_class": per, "confusion": [[0] * 4] * 4},
           "history": [],
           "counts": {"real": {"Mild_Demented": 90, "Non_Demented": 10} if train is None else train,
                      "synthetic": {"Mild_Demented": 5} if pool else {},
                      **({"test": test} if test else {})},
           "data": {"fingerprint": "d" * 16, "pool_fingerprint": "p" * 16 if pool else None,
                    **({"pool_label": pool} if pool else {})},
           "env": {}, "timings": {"train_s": 1.0},
           **({"training": training} if training else {})}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps(doc))


def _raw(folder: Path) -> list:
    """The results as `report.build` reads them."""
    from mriaug.store import results

    return [r for _, r in results.scan(folder) if not isinstance(r, results.ResultError)]


def test_paired_differences_and_recalls_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import collect, report

    # Seeds 0-2: scenario 1 test CE 1.0, 1.2, 1.4; scenario 3 0.8, 1.1, 1.0: paired differences -0.2, -0.1, -0.4,
    # median -0.2. Accuracy 0.5, 0.6, 0.7 against 0.6, 0.6, 0.9: differences 0.1, 0, 0.2, median 0.1.
    for seed, (c1, c3, a1, a3) in enumerate([(1.0, 0.8, 0.5, 0.6), (1.2, 1.1, 0.6, 0.6), (1.4, 1.0, 0.7, 0.9)]):
        _hand_result(tmp_path, f"s1-{seed}", "1", seed, c1, acc=a1, recall=(0.1 * seed, 0.5, 1.0, 0.0))
        _hand_result(tmp_path, f"s3-{seed}", "3", seed, c3, acc=a3, recall=(0.2, 0.1 * seed + 0.3, 0.0, 0.9),
                     pool="gen")
        # Another model's table, whose rows must not leak into the cnn table's.
        _hand_result(tmp_path, f"v1-{seed}", "1", seed, 2.0, model="vit")
        _hand_result(tmp_path, f"v3-{seed}", "3", seed, 2.0 + seed, model="vit")
    c = collect.gather(tmp_path)
    forests: list[tuple[str, list[float]]] = []
    real_forest = report._forest

    def spy(d: pd.DataFrame, name: str) -> report.Figure | None:
        forests.append((name, d["diff_median"].round(9).tolist()))
        return real_forest(d, name)

    monkeypatch.setattr(report, "_forest", spy)
    tables, forest = report._stats_sections(c)
    name, vit = c.table_names()
    assert (tables.id, tables.title) == ("intervals", "Results: the thesis tables with 95% confidence intervals")
    assert (forest.id, forest.title) == ("scenarios", "Each scenario against scenario 1: paired differences")
    assert tables.paragraphs == [
        "One block per table of mriaug collect (runs of one model and setting), with the same cells: the median "
        "over seeds, its distribution-free 95% interval, the number of seeds n and the failed (diverged) runs "
        "among them; * marks a Holm-corrected Wilcoxon signed-rank p < 0.05 against scenario 1 of the column.",
        f"{name}: {c.legend(name)}", f"{vit}: {c.legend(vit)}"]
    assert forest.paragraphs == [
        "Per table, each scenario's paired difference from scenario 1 (same seed, same augmentation and, with "
        "repeated splits, the same test patients): the median difference and its distribution-free 95% interval, "
        "for every metric, with the raw and the Holm-corrected Wilcoxon p. For test cross-entropy and ECE, left of "
        "zero is better; for the others, right of zero."]
    # One forest plot per table, of test CE's differences: cnn -0.2 (one comparison), vit 0 + 1 + 2 -> 1.
    assert forests == [(name, [-0.2]), (vit, [1.0])]
    assert [f.name for f in forest.figures] == [f"forest_{name}.png", f"forest_{vit}.png"]
    diffs, vit_diffs = forest.tables
    assert diffs.caption == f"{name}: paired differences from scenario 1 (other minus scenario 1)"
    assert [r[:3] for r in vit_diffs.rows] == [["Scenario 3 · No Augmentation", m, d] for m, d in (
        ("test_ce", "1.000"), ("accuracy", "0.000"), ("balanced_accuracy", "0.000"), ("macro_f1", "0.000"),
        ("ece", "0.000"))]
    assert diffs.columns == ["comparison", "metric", "median diff", "95% interval", "pairs", "p", "p (Holm)",
                             "P(improvement)", "detectable (80%)"]
    rows = {r[1]: r for r in diffs.rows}
    # every metric the runs have, in order, scenario 3 only (these hand-made results predate per-scan scores)
    assert [r[1] for r in diffs.rows] == [m for m in report.DIFF_METRICS if not m.startswith("scan_")]
    assert all(r[0] == "Scenario 3 · gen · No Augmentation" and r[4] == "3" for r in diffs.rows)
    assert rows["test_ce"][2] == "-0.200" and rows["accuracy"][2] == "0.100"
    # The rest of each row is the statistics module's, formatted: interval, Wilcoxon p, Holm's p, P(improvement).
    for metric, r in rows.items():
        s = c.stats(metric)
        s3 = s[(s["table"] == name) & (s["scenario"] == "3")].iloc[0]
        assert r[3] == f"[{report._f(s3['diff_ci_low'])}, {report._f(s3['diff_ci_high'])}]", metric
        assert r[5:] == [report._f(s3["p_wilcoxon"], 4), report._f(s3["p_holm"], 4),
                         report._f(s3["prob_improvement"], 2), report._f(s3["mde"])], metric
    # P(improvement) of test CE: every seed improved (lower) -> 1.00.
    assert rows["test_ce"][7] == "1.00"
    assert forest.figures_first
    # Recall per class: medians over seeds per cell (0.1, 0.5, 1.0, 0.0 for scenario 1; 0.2, 0.4, 0.0, 0.9).
    (recall,) = [t for t in tables.tables if t.caption == f"{name}: median recall per class"]
    assert recall.columns == ["cell", "Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"]
    assert recall.rows == [["Scenario 1 · No Augmentation", "0.100", "0.500", "1.000", "0.000"],
                           ["Scenario 3 · No Augmentation", "0.200", "0.400", "0.000", "0.900"]]  # one pool: no name
    # The thesis tables: one per metric, each with the collect cells.
    medians = [t for t in tables.tables if t.caption.startswith(f"{name}: median ")]
    # (no per-scan tables: these hand-made results predate per-scan scores)
    assert [t.caption for t in medians] == [f"{name}: median {label}" for m, label in report.METRICS.items()
                                            if not m.startswith("scan_")] + [f"{name}: median recall per class"]
    shown = [m for m in report.METRICS if not m.startswith("scan_")]
    for metric, table in zip(shown, medians, strict=False):  # each metric's own cells
        want = c.table(name, metric)
        assert table.columns == ["scenario", *want.columns], metric
        assert table.rows == [[str(i), *map(str, r)] for i, r in zip(want.index, want.values, strict=True)], metric
    assert medians[0].rows != medians[1].rows
    # No baselines without test counts.
    assert not [t for t in tables.tables if "baselines" in t.caption]


def test_an_empty_folder_says_so_by_hand(tmp_path: Path) -> None:
    from mriaug.analysis import collect, report

    tables, forest = report._stats_sections(collect.gather(tmp_path))
    assert tables.paragraphs == ["No runs in this folder yet."] == forest.paragraphs
    assert not tables.tables and not forest.tables and not forest.figures


def test_baselines_by_hand(tmp_path: Path) -> None:
    from mriaug.analysis import collect, report

    # Run a: train 20/5/60/15 (majority Non_Demented), test 10/0/30/10: majority accuracy 30/50 = 0.6; CE of the
    # training priors 0.2, 0.05, 0.6, 0.15 on the test shares 0.2, 0, 0.6, 0.2:
    #   -(0.2 ln 0.2 + 0.6 ln 0.6 + 0.2 ln 0.15).
    # Run b: train 50/10/30/10 (majority Mild), test 20/5/15/10: accuracy 20/50 = 0.4;
    #   -(0.4 ln 0.5 + 0.1 ln 0.1 + 0.3 ln 0.3 + 0.2 ln 0.1).
    names = ["Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"]
    # Runs r0 and r1 come first and are left out: no test images; no training images.
    _hand_result(tmp_path, "r0", "1", 2, 1.0, test={"Mild_Demented": 0})
    _hand_result(tmp_path, "r1", "1", 3, 1.0, train={}, test={"Mild_Demented": 3})
    _hand_result(tmp_path, "r2", "1", 0, 1.0, train=dict(zip(names, [20, 5, 60, 15], strict=True)),
                 test=dict(zip(names, [10, 0, 30, 10], strict=True)))
    _hand_result(tmp_path, "r3", "1", 1, 1.0, train=dict(zip(names, [50, 10, 30, 10], strict=True)),
                 test=dict(zip(names, [20, 5, 15, 10], strict=True)))
    c = collect.gather(tmp_path)
    (name,) = c.table_names()
    t = report._baselines(c, name)
    assert t is not None and t.caption == f"{name}: baselines on the same test images"
    assert t.columns == ["baseline", "test CE", "accuracy", "balanced accuracy", "macro F1"]
    ce_a = -(0.2 * math.log(0.2) + 0.6 * math.log(0.6) + 0.2 * math.log(0.15))
    ce_b = -(0.4 * math.log(0.5) + 0.1 * math.log(0.1) + 0.3 * math.log(0.3) + 0.2 * math.log(0.1))
    # Majority macro F1: the majority class's F1 2a / (1 + a) (precision a, recall 1), the other three 0; over 4.
    f1 = (2 * 0.6 / 1.6 / 4 + 2 * 0.4 / 1.4 / 4) / 2
    assert t.rows == [["chance (uniform over 4 classes)", f"{math.log(4):.3f}", "0.250", "0.250", "—"],
                      ["majority class of the training part (its class priors for CE)", f"{(ce_a + ce_b) / 2:.3f}",
                       "0.500", "0.250", f"{f1:.3f}"]]
    assert f"{(ce_a + ce_b) / 2:.3f}" == "1.169" and f"{f1:.3f}" == "0.165"  # (1.008 + 1.329) / 2; 0.1875, 0.143
    assert t in report._stats_sections(c)[0].tables  # the report shows it
    # A class the training part lacks but the test part has: CE of the priors is infinite; the majority (the only
    # class trained on) is Non_Demented, 8 of 10 test images.
    other = tmp_path / "inf"
    _hand_result(other, "a", "1", 0, 1.0, train={"Non_Demented": 10}, test={"Mild_Demented": 2, "Non_Demented": 8})
    c2 = collect.gather(other)
    t2 = report._baselines(c2, c2.table_names()[0])
    assert t2 is not None and t2.rows[1][1:3] == ["—", "0.800"]
    # Only runs without test counts: no table.
    none = tmp_path / "none"
    _hand_result(none, "c", "1", 0, 1.0)
    c3 = collect.gather(none)
    assert report._baselines(c3, c3.table_names()[0]) is None


def test_methods_selected_epochs_by_hand(tmp_path: Path) -> None:
    from mriaug.analysis import collect, report

    # Selected epochs 7, 2, 3 of 10 (and a run without one): median 3, range 2-7. The grid asked for bf16 (HP);
    # the runs ran in fp32 (a device without bf16): the table says what ran.
    ran = {"budget": "steps", "select": "best_val", "precision": "fp32"}
    for k, t in enumerate([{**ran, "selected_epoch": 7}, {**ran, "selected_epoch": 2},
                           {**ran, "selected_epoch": 3}, None]):
        _hand_result(tmp_path, f"r{k}", "1", k, 1.0, training=t)
    raw = _raw(tmp_path)
    c = collect.gather(tmp_path)
    (name,) = c.table_names()
    s = report._methods_section(c, raw)
    (t,) = s.tables
    assert t.columns == ["table", "architecture", "pixels", "epochs", "batch", "lr", "weight decay", "precision",
                         "pretrained", "budget", "weights tested", "selected epoch", "seeds", "splits"]
    assert HP["precision"] == "bf16"
    assert t.rows == [[name, "cnn", "64", "10", "32", "0.001", "0.0001", "fp32", "no", "steps", "best_val",
                       "median 3 (range 2-7) of 10", "4", "1"]]
    # Without selected epochs (and without a training record): "—", the defaults "epochs" and "last".
    other = tmp_path / "other"
    hp = {**HP, "pretrained": True, "weight_decay": 0}
    _hand_result(other, "q0", "1", 0, 1.0, hp=hp)
    _hand_result(other, "q1", "1", 1, 1.0, hp=hp)
    c2 = collect.gather(other)
    (row,) = report._methods_section(c2, _raw(other)).tables[0].rows
    assert row[8:12] == ["yes", "epochs", "last", "—"] and row[6] == "0" and row[12] == "2"
    assert row[7] == "bf16 (asked)"  # no run recorded what ran: the grid's ask, marked as such
    # Runs of the folder that the raw list does not hold: no row.
    assert report._methods_section(c2, []).tables[0].rows == []
    assert (s.id, s.title, t.caption) == ("methods", "Methods: hyper-parameters, budget, selection", "Per table")
    assert s.paragraphs == ["Budget steps: every scenario trains the optimizer steps scenario 1 takes in its epochs; "
                            "weights tested best_val: those of the epoch with the lowest validation loss, per run.",
                            "Precision: what the runs ran in, which is fp32 where a grid asked for bf16 on a device "
                            "without it; \"(asked)\" marks the grid's setting where no run recorded what ran."]
    # One run per table (a cnn and a vit table), the cnn's without a weight decay (0), the vit's run not among
    # the raw results: the vit table still gets its row.
    one = tmp_path / "one"
    _hand_result(one, "c0", "1", 0, 1.0, hp={k: v for k, v in HP.items() if k != "weight_decay"},
                 training={"budget": "steps", "select": "best_val", "selected_epoch": 4})
    _hand_result(one, "v0", "1", 0, 1.0, model="vit", hp={**HP, "arch": "vit"})
    c3 = collect.gather(one)
    rows3 = report._methods_section(c3, _raw(one)).tables[0].rows
    assert [r[6] for r in rows3] == ["0", "0.0001"]
    assert rows3[0][9:12] == ["steps", "best_val", "median 4 (range 4-4) of 10"]
    vit_only = [r for r in _raw(one) if r.run_id == "v0"]
    assert [r[1] for r in report._methods_section(c3, vit_only).tables[0].rows] == ["vit"]


def test_numbers_format_and_labels_by_hand() -> None:
    from mriaug.analysis import report

    assert [report._f(v) for v in (0.12345, 2, None, float("nan"), float("inf"), -0.0005)] == [
        "0.123", "2.000", "—", "—", "—", "-0.001"]
    assert report._f(0.5, 1) == "0.5" and report._f(np.float64(1 / 3), 4) == "0.3333"
    assert report._label("3", "gen", "hflip") == "Scenario 3 · gen · Random Horizontal Augment"
    assert report._label("1", "", "none") == "Scenario 1 · No Augmentation"
    assert report._label("1", "", "mine") == "Scenario 1 · mine"


def test_leakage_numbers_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import report
    from mriaug.data import audit
    from mriaug.data import sources as data

    x = np.zeros((4, 8, 8), np.uint8)
    ds = data.Dataset(x, np.arange(4), x[:3].copy(), np.arange(3), {"source": "hand", "options": {}}, "fp")
    monkeypatch.setattr(audit, "pixel_leakage", lambda d: (0.75, np.array([1.0, 4.0, 2.0]),
                                                           np.array([3.0, 5.0, 9.0, 7.0])) if d is ds else None)
    assert report.nearest_neighbour_leakage(ds) == {
        "test_images": 3, "nn_accuracy": 0.75, "median_nn_distance_test": 2.0, "median_nn_distance_train": 6.0,
        "distances_test": [1.0, 4.0, 2.0], "distances_train": [3.0, 5.0, 9.0, 7.0]}


def test_repeated_splits_are_named_by_number_in_order_with_runs_csv_fingerprints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import collect, report
    from mriaug.engine import augment

    # Three subject splits (split seeds 10, 11, 12: the grid's first is 10), seeds 0-5: seed s is tested on split
    # s mod 3. Run ids sort as splits 2, 0, 1, so the folder's order is not the splits'.
    opts = {"n_train": 80, "n_test": 40, "size": 32, "split": "subject", "splits": 3}
    for seed, run_id in zip(range(6), ["b0", "c1", "a2", "b3", "c4", "a5"], strict=True):
        j = seed % 3
        _hand_result(tmp_path, run_id, "1", seed, 1.0)
        f = tmp_path / f"{run_id}.json"
        doc = json.loads(f.read_text())
        doc["spec"]["data"] = {"source": "phantom", "options": {**opts, "split_seed": 10 + j}}
        doc["data"]["fingerprint"] = f"{j}" * 16
        doc["spec"]["augmentation"] = "hflip" if seed == 0 else "none"
        f.write_text(json.dumps(doc))
    raw = _raw(tmp_path)
    assert [r.run_id for r in raw][:3] == ["a2", "a5", "b0"]
    datasets = report._datasets(raw, lambda m: None)
    assert list(datasets) == ["0" * 16, "1" * 16, "2" * 16]
    assert [(d.split, d.splits, d.ds.split["seed"]) for d in datasets.values()] == [(0, 3, 10), (1, 3, 11), (2, 3, 12)]
    # runs.csv's fingerprints are the ones the report names the splits by
    assert set(collect.gather(tmp_path).runs["data_fingerprint"]) == set(datasets)
    data, examples = report._data_sections(datasets, 0)
    counts = [t.caption for t in data.tables if t.caption.startswith("Images per class")]
    assert counts == [f"Images per class and part (phantom, split {j} of 3 (data {str(j) * 16}))" for j in range(3)]
    leak = [t for t in data.tables if t.caption.startswith("Leakage")]
    assert [t.caption.split(" (the numbers")[0] for t in leak] == [
        f"Leakage check, split {j} of 3 (data {str(j) * 16})" for j in range(3)]
    assert [t.rows[0][0] for t in leak] == ["0 (subject)", "1 (subject)", "2 (subject)"]
    assert [p.split(":")[0] for p in data.paragraphs[:3]] == [f"Split {j} of 3 (data {str(j) * 16})" for j in range(3)]
    for j, (hist, ex) in enumerate(zip(data.figures, examples.figures, strict=True)):
        tested = f"split {j} of 3 (data {str(j) * 16}); the runs with seed mod 3 = {j}"
        assert hist.name == f"leakage_{str(j) * 16}.png" and tested in hist.caption
        assert ex.caption == f"Training images per class (phantom, {tested})"
    assert len({f.data for f in data.figures}) == 3 and len({f.data for f in examples.figures}) == 3
    # Augmentation examples: only the policies the runs used (hflip), on split 0.
    drawn: list[str] = []
    real_get = augment.get
    monkeypatch.setattr(augment, "get", lambda name: drawn.append(name) or real_get(name))
    s = report._augment_section(datasets, 0, [r.augmentation for r in raw])
    assert set(drawn) == {"hflip"} and len(drawn) == 3  # three draws of the one policy
    (fig,) = s.figures
    assert fig.caption.startswith(f"Split 0 of 3 (data {'0' * 16}); rows: classes ")
    drawn.clear()
    none = report._augment_section(datasets, 0, ["none", "none"])
    assert not none.figures and not drawn
    assert none.paragraphs == ["The runs in this folder use no augmentation policy (none): nothing to show."]


def test_cam_outputs_and_a_cam_json_from_before_cells_by_hand(tmp_path: Path) -> None:
    """`--cam` takes a cam output or a folder of several, each once and in order; a cam.json written before it
    named cells, task classes and per-side numbers is still shown, its cell taken from its runs' labels."""
    from mriaug.analysis import collect, report
    from mriaug.errors import SettingError

    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="PNG")
    picture = buf.getvalue()
    old = {"method": "gradcam", "target": "true class", "pool": "pools/p", "pool_fingerprint": "f" * 16,
           "runs": [{"run_id": "a", "label": "cnn/s3/none/seed0"}, {"run_id": "b", "label": "cnn/s3/none/seed1"}],
           "per_class": {"Non_Demented": {"pairs": 4, "runs": 2, "pearson": 0.5, "iou": 0.25, "road": 0.01,
                                          "flat_maps": 1}},
           "seed_stability": {"cnn/s3/none": {"seeds": [0, 1], "per_class": {"Non_Demented": {"pearson": 0.75}}}},
           "panels": [{"run_id": "a", "class": "Non_Demented", "file": "panels/a_Non_Demented.png"},
                      {"run_id": "b", "class": "Non_Demented", "file": "panels/b_Non_Demented.png"}]}
    for cell in ("z", "a"):
        (tmp_path / "cams" / cell / "panels").mkdir(parents=True)
        (tmp_path / "cams" / cell / "cam.json").write_text(json.dumps(old))
        for p in old["panels"]:
            (tmp_path / "cams" / cell / p["file"]).write_bytes(picture)
    (tmp_path / "none").mkdir()
    outputs = report.cam_outputs([tmp_path / "cams", tmp_path / "cams" / "a"])
    assert outputs == [tmp_path / "cams" / "a", tmp_path / "cams" / "z"]
    with pytest.raises(SettingError, match="no cam.json"):
        report.cam_outputs([tmp_path / "none"])
    s = report._cam_section(tmp_path, tmp_path / "out", [tmp_path / "cams" / "z"], [], collect.gather(tmp_path),
                            [], {}, lambda m: None)
    (t,) = s.tables
    assert t.rows == [["cnn/s3/none (seeds 0, 1)", "Non_Demented", "4", "2", "0.500", "0.250", "—", "—", "—", "—",
                       "0.750", "1"]]
    assert [f.caption for f in s.figures] == ["cnn/s3/none, seed 0: Non_Demented sources beside their variations "
                                              "from p"]  # one panel per class, of the first run
    assert any(p.startswith(f"`{tmp_path / 'cams' / 'z'}`: gradcam over 2 run(s)") for p in s.paragraphs)


def test_split_words_name_a_bids_cohorts_participants_not_recovered_groups() -> None:
    # A BIDS cohort's groups are its participants as written (data.bids.METHOD); only an image folder's groups
    # are recovered from the pixels, and the report said so for both.
    from types import SimpleNamespace

    from mriaug.analysis.report import _split_words
    from mriaug.data import bids

    def words(method: str) -> str:
        split = {"kind": "subject", "seed": 0, "grouping": {"method": method, "groups": 12},
                 "groups_per_part": {"train": 8, "val": 2, "test": 2}}
        return _split_words(SimpleNamespace(split=split, val_rows=[]))  # type: ignore[arg-type]

    assert "12 participants" in words(bids.METHOD) and "recovered" not in words(bids.METHOD)
    assert "12 scan groups recovered from the images" in words("near-duplicate-chains")
