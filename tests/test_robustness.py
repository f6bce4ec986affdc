"""Issue 8: diverged runs counted, readers tolerant of one bad file, data checks, settings checked when
they are read, secrets kept out of job scripts."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mriaug import data, grid, pools, results, scenarios, slurm, synth
from mriaug.analysis import collect
from mriaug.classes import CLASSES
from mriaug.cli import app
from mriaug.errors import DataError, PoolError
from mriaug.slurm.submit import setup_lines
from mriaug.train import execute
from tests.conftest import tiny_hparams
from tests.slurm_helpers import write_grid

runner = CliRunner()
D = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]
SPEC = data.DataSpec("phantom", {"n_train": 80, "n_test": 40, "size": 32})


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# --- 3. diverged runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diverged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn/s1/none: seeds 0 and 1 train normally, seed 2 diverges; cnn/s2/none: only a diverged run. All with the
    same settings, so they share a table (a run with other settings, e.g. lr 1e6, gets a table of its own): the
    loss of the diverging seeds is made non-finite, as an unstable seed's would become."""
    import torch.nn.functional as F

    import mriaug.train

    out = tmp_path_factory.mktemp("diverged")
    hp = tiny_hparams("cnn", epochs=3)
    ce = F.cross_entropy
    for scen, seed, diverge in (("1", 0, False), ("1", 1, False), ("1", 2, True), ("2", 0, True)):
        with pytest.MonkeyPatch.context() as mp:
            if diverge:
                mp.setattr(mriaug.train.F, "cross_entropy", lambda *a, **k: ce(*a, **k) * float("inf"))
            execute(grid.plan_run("cnn", scenarios.SCENARIOS[scen], "none", seed, hp, SPEC), out, log=lambda m: None)
    return out


def test_a_diverged_run_is_valid_json_with_its_status_and_epoch(tmp_path: Path) -> None:
    out = tmp_path / "r"
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--resolution", "32",
                            "--epochs", "2", "--lr", "1e6", "--out", str(out)])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.strip().splitlines()[-1])
    assert line["status"] == "diverged"
    doc = _strict_json(Path(line["result"]))
    assert doc["status"] == "diverged" and doc["diverged_at_epoch"] == line["epoch"] >= 1
    assert doc["metrics"]["test_ce"] is None
    assert results.read(Path(line["result"]))["status"] == "diverged"
    assert not results.checkpoint_for(out, doc["run_id"]).exists()
    # Done, not retried: a second call reads it back.
    again = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--resolution",
                                "32", "--epochs", "2", "--lr", "1e6", "--out", str(out)])
    assert "already done" in again.output


def test_tables_count_diverged_runs_in_their_cell(diverged_dir: Path, tmp_path: Path) -> None:
    for f in diverged_dir.glob("*.json"):
        _strict_json(f)
    c = collect.collect(diverged_dir, tmp_path / "t", echo=lambda m: None, warn=lambda m: None)
    t = c.table("cnn")
    # A diverged run is a failure at the worst value (test CE +inf): in its cell, counted as failed.
    assert t.loc["Scenario 1", "No Augmentation"].endswith("(n=3, 1 failed)")
    assert t.loc["Scenario 2", "No Augmentation"] == "failed [range ∞, ∞: covers 0%] (n=1, 1 failed)"
    assert "Scenario 3" not in t.index  # no run of scenario 3: no row
    assert (c.runs["status"] == "diverged").sum() == 2
    assert "1 failed" in (tmp_path / "t" / "cnn.md").read_text()


def test_non_finite_settings_are_refused(tmp_path: Path) -> None:
    g = tmp_path / "g.toml"
    write_grid(g, tmp_path / "res")
    g.write_text(g.read_text() + "lr = inf\n")
    with pytest.raises(grid.GridError, match=r"model\.cnn\.lr: must be a positive finite number, got inf"):
        grid.load(g)
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--lr", "nan"])
    assert r.exit_code == 2 and "lr" in r.output
    r = runner.invoke(app, ["synth", *D, "--out", str(tmp_path / "p"), "-s", "contrast=nan"])
    assert r.exit_code == 2 and "contrast" in r.output
    r = runner.invoke(app, ["synth", "train-diffusion", *D, "--out", str(tmp_path / "dm"), "--lr", "nan"])
    assert r.exit_code == 2 and "--lr must be a finite number above 0, got nan" in r.output, r.output


# --- 4. one bad file -------------------------------------------------------------------------------


def _spoil(folder: Path) -> tuple[Path, Path, Path]:
    good = sorted(folder.glob("*.json"))[0]
    binary = folder / "0000binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    doc = json.loads(good.read_text())
    doc["counts"]["real"] = {k: str(v) for k, v in doc["counts"]["real"].items()}
    doc["run_id"] = "0000strings"
    strings = folder / "0000strings.json"
    strings.write_text(json.dumps(doc))
    foreign = folder / "package.json"
    foreign.write_text(json.dumps({"name": "x", "version": "1.0"}))
    return binary, strings, foreign


def test_collect_grid_status_and_collector_skip_and_name_bad_files(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    bad = _spoil(res)
    r = runner.invoke(app, ["collect", str(res)])
    assert r.exit_code == 0, r.output
    for f in bad:
        assert f"skipped: {f}" in r.output
    assert "(n=1)" in r.output
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 0, r.output
    assert all(str(f) in r.output for f in bad)
    st = slurm.grid_status(grid.load(g))
    assert st.counts()["done"] == 1
    text = slurm.render_status(st)
    assert all(f.name in text for f in bad), text
    assert slurm.collect_task(str(res)) == 1


def test_result_reader_names_wrong_types(tmp_path: Path) -> None:
    res = tmp_path / "res"
    g = write_grid(tmp_path / "g.toml", res, n_train=80)
    assert runner.invoke(app, ["grid", str(g)]).exit_code == 0
    _, strings, _ = _spoil(res)
    with pytest.raises(results.ResultError, match=r"counts\.real\.Mild_Demented' is not a count"):
        results.read(strings)
    with pytest.raises(results.ResultError, match="binary"):
        results.read(res / "0000binary.json")


# --- 5. data checks --------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _folder(root: Path, classes: list[str], per_class: int = 4, empty: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        if c == empty:
            continue
        for i in range(per_class):
            _png(root / c / f"{i}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    return root


def test_missing_or_empty_class_refused_unless_named(tmp_path: Path) -> None:
    three = _folder(tmp_path / "three", list(CLASSES[:3]))
    with pytest.raises(DataError, match=r"no folder for class\(es\) Very_Mild_Demented"):
        data.load(data.DataSpec(str(three)), use_cache=False)
    empty = _folder(tmp_path / "empty", list(CLASSES), empty="Moderate_Demented")
    with pytest.raises(DataError, match=r"Moderate_Demented: class folder without images"):
        data.load(data.DataSpec(str(empty)), use_cache=False)
    ds = data.load(data.DataSpec(str(three), {"classes": list(CLASSES[:3])}), use_cache=False)
    assert ds.counts("train")["Very_Mild_Demented"] == 0 and ds.counts("train")["Mild_Demented"] > 0
    with pytest.raises(DataError, match="classes"):
        data.load(data.DataSpec(str(three), {"classes": ["Mild", "Mild_Demented"]}), use_cache=False)


def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint32) * 257).astype(np.uint16).reshape(16, 16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    out = data.decode_image(buf.getvalue(), None, "ramp.png")
    assert out.dtype == np.uint8
    assert np.array_equal(out, np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert (out == 255).mean() < 0.01


def _parquet(root: Path, rows: dict[str, list], split_rows: dict[str, list] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        table = pa.table((split_rows or {}).get(split, rows))
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def _img(v: int) -> dict:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), v, np.uint8)).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_parquet_errors_name_file_column_and_row(tmp_path: Path) -> None:
    imgs = [_img(i * 10) for i in range(8)]
    train = "train-00000-of-00001.parquet"
    wrong = _parquet(tmp_path / "img", {"img": imgs, "label": [i % 4 for i in range(8)]})
    with pytest.raises(DataError, match=rf"{train}: no column 'image'"):
        data.load(data.DataSpec(str(wrong)), use_cache=False)
    nolabel = _parquet(tmp_path / "nolabel", {"image": imgs})
    with pytest.raises(DataError, match=rf"{train}: no column 'label'"):
        data.load(data.DataSpec(str(nolabel)), use_cache=False)
    nulls = _parquet(tmp_path / "null", {"image": imgs[:5] + [None] + imgs[6:], "label": [i % 4 for i in range(8)]})
    with pytest.raises(DataError, match=rf"{train}, row 5, column image: no image"):
        data.load(data.DataSpec(str(nulls)), use_cache=False)
    names = ["Mild_Demented", "Moderate Demented", "NonDemented", "very_mild"] * 2
    named = _parquet(tmp_path / "names", {"image": imgs, "label": names})
    ds = data.load(data.DataSpec(str(named)), use_cache=False)
    assert ds.train_y.tolist() == [0, 1, 2, 3] * 2
    unknown = _parquet(tmp_path / "unknown", {"image": imgs, "label": names[:3] + ["Alzheimer"] + names[4:]})
    with pytest.raises(DataError, match=rf"{train}, row 3, column label: unknown class 'Alzheimer'"):
        data.load(data.DataSpec(str(unknown)), use_cache=False)


def test_pool_images_of_another_size_are_refused(tmp_path: Path) -> None:
    ds = data.load(SPEC)
    pool = tmp_path / "pool"
    synth.make_pool(ds, pool, "transform", classes=["Moderate_Demented"], progress_bar=False)
    entries = pools.read_manifest(pool)
    f = pool / entries[0]["file"]
    big = Image.open(f).resize((64, 64))
    big.save(f)
    lines = []
    for e in entries:
        e.pop("_line")
        if e["file"] == entries[0]["file"]:
            e["sha256"] = results.atomic.sha256_file(f)
        lines.append(json.dumps(e))
    (pool / pools.MANIFEST).write_text("\n".join(lines) + "\n")
    with pytest.raises(PoolError, match=r"line 1: image .* is 64x64, but the dataset's images are 32x32"):
        pools.load(pool, ds)


# --- 6. no training images of a class ---------------------------------------------------------------


def test_a_run_without_images_of_a_class_is_refused_at_planning(tmp_path: Path) -> None:
    g = write_grid(tmp_path / "g.toml", tmp_path / "res", scenarios=["empty"], n_train=80)
    g.write_text(g.read_text() + "\n[scenario.empty]\nreal_fraction = {default = 0.0}\n")
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2, r.output
    assert "no training images of class Mild_Demented" in r.output
    assert not list((tmp_path / "res").glob("*.json"))
    g.write_text(g.read_text().replace("{default = 0.0}", "{default = 1.0, Moderate_Demented = 0.0}"))
    r = runner.invoke(app, ["grid", str(g)])
    assert r.exit_code == 2 and "no training images of class Moderate_Demented" in r.output, r.output


# --- 8. checks when a setting is read ---------------------------------------------------------------


@pytest.mark.parametrize("args, match", [
    (["--seed", "1000000000000000"], "seed must be a whole number in"),
    (["--resolution", "2048"], "resolution: must be at most 1024"),
    (["--weights", "/nonexistent.safetensors"], "weights: model cnn is trained from scratch"),
])
def test_run_options_checked_before_anything_runs(tmp_path: Path, args: list[str], match: str) -> None:
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *D, "--epochs", "1",
                            "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and match in r.output, r.output


@pytest.mark.parametrize("args, match", [
    (["--max-cost", "-5"], "--max-cost must be a finite number of at least 0"),
    (["-s", "price_usd=-1"], "-s price_usd must be a finite number of at least 0"),
])
def test_costs_and_prices_are_not_negative(tmp_path: Path, args: list[str], match: str) -> None:
    r = runner.invoke(app, ["synth", *D, "--out", str(tmp_path / "p"), "--generator", "openai", "--dry-run", *args])
    assert r.exit_code == 2 and match in r.output, r.output


@pytest.mark.parametrize("line, match", [
    ('mem_gb = nan', "must be a finite number above 0, got nan"),
    ('mem_gb = inf', "must be a finite number above 0, got inf"),
    ('time = "1:99:99"', "not a valid time"),
    ('time = "2-25:00:00"', "not a valid time"),
    ('partition = "gpu a100"', "not a Slurm name"),
    ('account = "lab;rm"', "not a Slurm name"),
])
def test_profile_numbers_times_and_names_checked(tmp_path: Path, line: str, match: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(f'[resources.default]\n{line}\n')
    with pytest.raises(slurm.ProfileError, match=rf"p\.toml, line 2: resources\.default\.\w+: .*{match}"):
        slurm.load_profile(p)
    assert slurm.parse_time("1:59:59") == 120 and slurm.parse_time("1-23:00:00") == 47 * 60
    ok = tmp_path / "ok.toml"
    ok.write_text('[resources.default]\npartition = "gpu,gpu-long"\nmem_gb = 8.5\n')
    assert slurm.load_profile(ok).resources["default"].partition == "gpu,gpu-long"


def test_collect_of_a_file_says_so(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text("{}")
    r = runner.invoke(app, ["collect", str(f)])
    assert r.exit_code == 2 and "is a file" in r.output


# --- 9. secrets ------------------------------------------------------------------------------------


def test_pass_env_values_never_enter_the_job_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-secret-value-0000-never-on-disk"
    monkeypatch.setenv("MRIAUG_TEST_SECRET", secret)
    p = tmp_path / "p.toml"
    p.write_text('pass_env = ["MRIAUG_TEST_SECRET"]\n[container]\nimage = "/x.sif"\n[resources.default]\ncpus = 1\n')
    prof = slurm.load_profile(p)
    lines = setup_lines(prof, prof.resources["default"])
    assert not any(secret in ln for ln in lines)
    assert 'export APPTAINERENV_MRIAUG_TEST_SECRET="${MRIAUG_TEST_SECRET}"' in lines
    p.write_text('pass_env = ["MRIAUG_TEST_SECRET"]\n[sbatch]\nexport = "NONE"\n')
    with pytest.raises(slurm.ProfileError, match=r"sbatch\.export: 'NONE' would not pass MRIAUG_TEST_SECRET"):
        slurm.load_profile(p)
    assert os.environ["MRIAUG_TEST_SECRET"] == secret
