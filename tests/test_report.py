"""`mriaug report`: one self-contained HTML page (sections, real pictures, nothing outside it) and its Markdown twin."""

from __future__ import annotations

import base64
import io
import json
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
    """A small study on the phantom: scenarios 1 and 3, two seeds, the CNN keeping its weights."""
    root = tmp_path_factory.mktemp("study")
    runner = CliRunner()
    opts = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]
    pool = root / "pool"
    r = runner.invoke(app, ["synth", *opts, "--out", str(pool), "--generator", "transform",
                            "--classes", "Mild_Demented,Moderate_Demented,Non_Demented"])
    assert r.exit_code == 0, r.output
    for scenario in ("1", "3"):
        for seed in ("0", "1"):
            r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", scenario, "--aug", "none", "--seed", seed,
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
