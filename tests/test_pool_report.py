"""Pool reports (figure + fidelity numbers) and the guards that keep test and dropped images out of a run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mriaug.analysis import fidelity, pool_report
from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data
from mriaug.data.kept_for import KeptFor
from mriaug.errors import MriaugError
from mriaug.generators import seed_for, synth
from mriaug.generators.transform import TransformGenerator
from mriaug.plan import scenarios

SMALL = data.DataSpec("phantom", {"n_train": 160, "n_test": 80, "size": 32})
# Big enough that scenario 4 drops a Moderate image (6 of them, 5 kept) and needs one synthetic.
MEDIUM = data.DataSpec("phantom", {"n_train": 640, "n_test": 80, "size": 32})


@pytest.fixture(scope="module")
def small() -> data.Dataset:
    return data.load(SMALL)


@pytest.fixture(scope="module")
def medium() -> data.Dataset:
    return data.load(MEDIUM)


def _write(pool: Path, ds: data.Dataset, rows: list[int]) -> None:
    w = pools.PoolWriter(pool, ds, "transform")
    gen = TransformGenerator()
    for r in rows:
        w.add(gen.variation(ds.train_x[r], r, 0), r, 0, "transform", {})
    w.flush()


# --- the report -------------------------------------------------------------------------------

def test_ssim_and_histogram_distance() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    assert np.allclose(pool_report.ssim(x, x), 1.0)
    assert (pool_report.ssim(x, 255 - x) < 0).all()
    noisy = np.clip(x.astype(int) + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    s = pool_report.ssim(x, noisy)
    assert (s > 0.3).all() and (s < 1).all()
    assert pool_report.hist_distance(x, x) == 0.0
    assert pool_report.hist_distance(np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)) == 2.0


def test_report_written_next_to_the_manifest(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    synth.make_pool(small, pool, "transform", classes=["Mild_Demented", "Moderate_Demented"], progress_bar=False)
    # The CLI finds the dataset from pool.json.
    r = CliRunner().invoke(app, ["synth", "report", str(pool), "--per-class", "3"])
    assert r.exit_code == 0, r.output
    assert "Mild_Demented" in r.output and "SSIM" in r.output
    rep = json.loads((pool / "report.json").read_text())
    assert set(rep["per_class"]) == {"Mild_Demented", "Moderate_Demented"}
    mild = rep["per_class"]["Mild_Demented"]
    assert mild["images"] == int((small.train_y == 0).sum())
    assert 0.3 < mild["ssim_to_source_mean"] < 1.0
    # The histogram distance of each variation to its source, worked out here with plain numpy (64 bins of 4
    # grey levels, each histogram summing to 1): the report's mean must be that number, not just in [0, 2].
    p = pools.load(pool, small)
    rows = np.flatnonzero(p.labels == 0)

    def hist(img: np.ndarray) -> np.ndarray:
        return np.bincount(img.ravel() // 4, minlength=64) / img.size

    want = np.mean([np.abs(hist(p.images[r]) - hist(small.train_x[p.sources[r]])).sum() for r in rows])
    assert mild["hist_l1_to_source_mean"] == pytest.approx(want, rel=1e-9)
    assert 0.0 < want < 1.0  # variations, not copies, and of similar brightness
    png = (pool / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(pool.glob(".*.tmp"))  # atomic writes leave no temporaries
    # The pool itself is still valid with the report beside it.
    pools.load(pool, small)


def test_report_on_a_missing_pool_is_one_clear_error(tmp_path: Path, small: data.Dataset) -> None:
    r = CliRunner().invoke(app, ["synth", "report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "nope does not exist" in r.output and "pool.json" not in r.output
    # A folder that exists but has no pool.json: that file is what is missing.
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["synth", "report", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "pool.json: missing" in r.output
    # A corrupt pool.json is named, not a traceback.
    pool = tmp_path / "pool"
    _write(pool, small, [int(np.flatnonzero(small.train_y == 0)[0])])
    (pool / "pool.json").write_text('{"data_fingerprint": ')
    r = CliRunner().invoke(app, ["synth", "report", str(pool)])
    assert r.exit_code == 2 and "pool.json: not valid JSON" in r.output, r.output


# --- the guards: never a test image, never a dropped image ---------------------------------------

def test_source_outside_the_train_split_is_rejected(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    _write(pool, small, [int(np.flatnonzero(small.train_y == 0)[0])])
    lines = (pool / "manifest.jsonl").read_text().splitlines()
    e = json.loads(lines[0])
    n = len(small.train_y)
    for bad in (n, n + 5, -1):  # a test image would sit past the train rows
        e["source_index"] = bad
        (pool / "manifest.jsonl").write_text(json.dumps(e) + "\n")
        with pytest.raises(pools.PoolError, match="not a row of the train split"):
            pools.load(pool, small)


def test_variations_of_dropped_images_make_mix_fail(tmp_path: Path, medium: data.Dataset) -> None:
    pool = tmp_path / "pool"
    kept = scenarios.kept_for_rows(medium, KeptFor("4", 0))
    mild = np.flatnonzero(medium.train_y == 0).tolist()
    moderate = np.flatnonzero(medium.train_y == 1)
    dropped = [int(r) for r in moderate if r not in kept]
    assert dropped, "scenario 4 should drop a Moderate image here"
    # Every Mild row has a variation; the only Moderate variations come from dropped images.
    _write(pool, medium, mild + dropped)
    p = pools.load(pool, medium)
    with pytest.raises(pools.PoolError, match=r"synthetic Moderate_Demented images whose sources are among the 5 kept"):
        scenarios.mix(medium, scenarios.SCENARIOS["4"], 0, p)
    # Scenario 3 keeps everything, so the same pool serves it.
    m = scenarios.mix(medium, scenarios.SCENARIOS["3"], 0, p)
    assert m.counts_synthetic["Moderate_Demented"] == 1


def test_pool_made_for_a_kept_set(tmp_path: Path, medium: data.Dataset) -> None:
    pool = tmp_path / "pool"
    r = CliRunner().invoke(app, ["synth", "--data", "phantom", "-o", "n_train=640", "-o", "n_test=80", "-o", "size=32",
                                 "--out", str(pool), "--classes", "Mild_Demented,Moderate_Demented",
                                 "--kept-for", "4:0", "--no-report"])
    assert r.exit_code == 0, r.output
    p = pools.load(pool, medium)
    kept = scenarios.kept_for_rows(medium, KeptFor("4", 0))
    assert np.isin(p.sources, kept).all()
    mm = np.isin(medium.train_y, [0, 1])
    assert len(p.sources) == int(np.isin(np.flatnonzero(mm), kept).sum())
    meta = json.loads((pool / "pool.json").read_text())
    assert meta["kept_for"] == {"scenario": "4", "seed": 0}
    assert [r["kept_for"] for r in meta["runs"]] == [{"scenario": "4", "seed": 0}]
    assert meta["trained_on"] == []  # transform learns from nothing
    m = scenarios.mix(medium, scenarios.SCENARIOS["4"], 0, p)
    assert np.array_equal(np.sort(m.real_index), kept)  # the run keeps exactly the rows the pool was made for
    assert np.isin(p.sources[m.synthetic_index], m.real_index).all()
    r = CliRunner().invoke(app, ["synth", "--data", "phantom", "--out", str(pool), "--kept-for", "4"])
    assert r.exit_code == 2 and "SCENARIO:SEED" in r.output


def test_diffusion_trains_only_on_kept_rows(medium: data.Dataset) -> None:
    from mriaug.generators.diffusion import training_rows

    rows = training_rows(medium, ["Moderate_Demented"], KeptFor("4", 0))
    kept = scenarios.kept_for_rows(medium, KeptFor("4", 0))
    assert np.isin(rows, kept).all() and len(rows) == 5
    assert len(training_rows(medium, ["Moderate_Demented"])) == 6


# --- pool.json: required, readable, and true to the latest run ------------------------------------

def test_pool_json_is_required_and_a_corrupt_one_is_named(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    _write(pool, small, [int(np.flatnonzero(small.train_y == 0)[0])])
    meta_file = pool / "pool.json"
    good = meta_file.read_text()
    meta_file.write_text(good[:-20])
    for read in (lambda: pools.read_meta(pool), lambda: pools.load(pool, small),
                 lambda: pools.PoolWriter(pool, small, "transform")):
        with pytest.raises(pools.PoolError, match=r"pool\.json: not valid JSON"):
            read()
    meta_file.write_text("[1, 2]")
    with pytest.raises(pools.PoolError, match=r"pool\.json: expected a JSON object"):
        pools.load(pool, small)
    # Without the fingerprint the rows could belong to another split: refused, with the fix.
    meta = json.loads(good)
    del meta["data_fingerprint"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(pools.PoolError, match=r"pool\.json: no data_fingerprint.*mriaug synth"):
        pools.load(pool, small)
    meta_file.unlink()
    with pytest.raises(pools.PoolError, match=r"pool\.json: missing.*mriaug synth"):
        pools.load(pool, small)
    with pytest.raises(pools.PoolError, match=r"pool\.json: missing or without data_fingerprint"):
        pools.PoolWriter(pool, small, "transform")  # nor may the pool be extended blindly


def test_source_pixels_are_checked_against_a_resplit_dataset(tmp_path: Path, small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    mild = np.flatnonzero(small.train_y == 0)
    _write(pool, small, [int(mild[0]), int(mild[1])])
    entries = [json.loads(line) for line in (pool / "manifest.jsonl").read_text().splitlines()]
    assert entries[1]["source_sha256"] == pools.source_sha256(small, int(mild[1]))
    # Same fingerprint (as a source whose split the fingerprint does not capture), two rows of one class swapped.
    x = small.train_x.copy()
    x[[mild[0], mild[1]]] = x[[mild[1], mild[0]]]
    resplit = dataclasses.replace(small, train_x=x)
    with pytest.raises(pools.PoolError,
                       match=rf"line 1: source train row {mild[0]} is not the image this variation was made from"):
        pools.load(pool, resplit)
    with pytest.raises(pools.PoolError, match="is not the image this variation was made from"):
        pools.PoolWriter(pool, resplit, "transform")
    assert len(pools.load(pool, small).labels) == 2


def test_per_run_keys_follow_the_latest_run(tmp_path: Path, medium: data.Dataset) -> None:
    pool = tmp_path / "pool"

    def make(classes: list[str], kept_for: KeptFor | None, **options: object) -> dict:
        synth.make_pool(medium, pool, "transform", classes=classes, kept_for=kept_for, options=options,
                        progress_bar=False)
        return json.loads((pool / "pool.json").read_text())

    meta = make(["Moderate_Demented"], KeptFor("4", 0))
    assert meta["kept_for"] == {"scenario": "4", "seed": 0} and len(meta["runs"]) == 1
    meta = make(["Moderate_Demented"], KeptFor("4", 0))  # nothing new: no run recorded
    assert len(meta["runs"]) == 1 and meta["kept_for"] == {"scenario": "4", "seed": 0}
    meta = make(["Mild_Demented"], KeptFor("4", 0), contrast=0.2)
    assert meta["kept_for"] == {"scenario": "4", "seed": 0} and meta["generator_params"]["contrast"] == 0.2
    # Extended from all rows: the old kept_for must not survive, and the latest params are shown.
    meta = make(["Non_Demented"], None, contrast=0.3)
    assert meta["kept_for"] is None
    assert meta["generator_params"]["contrast"] == 0.3
    assert [r["kept_for"] for r in meta["runs"]] == [{"scenario": "4", "seed": 0}] * 2 + [None]
    assert [r["generator_params"]["contrast"] for r in meta["runs"]] == [0.1, 0.2, 0.3]
    assert sum(r["images"] for r in meta["runs"]) == len(pools.load(pool, medium).entries)

    # Two different kept sets: no single one describes the pool either.
    other = tmp_path / "other"
    synth.make_pool(medium, other, "transform", classes=["Moderate_Demented"], kept_for=KeptFor("4", 0),
                    progress_bar=False)
    synth.make_pool(medium, other, "transform", classes=["Mild_Demented"], kept_for=KeptFor("4", 1),
                    progress_bar=False)
    assert json.loads((other / "pool.json").read_text())["kept_for"] is None


def test_a_pool_json_from_before_runs_were_kept_drops_its_stale_kept_for(tmp_path: Path,
                                                                          small: data.Dataset) -> None:
    pool = tmp_path / "pool"
    _write(pool, small, [int(np.flatnonzero(small.train_y == 0)[0])])
    meta = json.loads((pool / "pool.json").read_text())
    for k in ("runs", "trained_on"):
        del meta[k]
    meta["kept_for"] = {"scenario": "4", "seed": 0}  # possibly stale: it was never removed
    (pool / "pool.json").write_text(json.dumps(meta))
    w = pools.PoolWriter(pool, small, "transform")
    w.flush()
    meta = json.loads((pool / "pool.json").read_text())
    assert meta["kept_for"] is None
    assert meta["runs"] == [{"generator": "transform", "generator_params": None, "kept_for": None,
                             "trained_on": None, "images": 1, "legacy": True}]


# --- bad settings: one clear error naming the option ----------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--per-source", "0"], "--per-source must be a whole number of at least 1, got 0"),
    (["--max-sources", "0"], "--max-sources must be a whole number of at least 1"),
    (["--seed", "-1"], "--seed must be a whole number in [0, 2147483647], got -1"),
    (["--kept-for", "mine:0"], "only the preset scenarios can be named (1, 2, 3, 4, 5, 6), not 'mine'"),
    (["-s", "flush_every=0"], "flush_every must be a whole number of at least 1"),
])
def test_bad_synth_options_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    r = CliRunner().invoke(app, ["synth", "--data", "phantom", "-o", "n_train=160", "-o", "n_test=80",
                                 "-o", "size=32", "--out", str(tmp_path / "pool"), "--no-report", *args])
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()), r.output
    assert not (tmp_path / "pool" / "manifest.jsonl").exists()


def test_duplicate_classes_are_planned_once(small: data.Dataset) -> None:
    once = synth.pairs_to_make(small, ["Mild_Demented"], 2, None, 0, set())
    assert synth.pairs_to_make(small, ["Mild_Demented", "Mild Demented", "0"], 2, None, 0, set()) == once


# --- seeds: one per (seed, source, variation), without collisions -------------------------------------

def test_transform_variations_do_not_collide(small: data.Dataset) -> None:
    img = small.train_x[0]
    gen = TransformGenerator()
    # seed*1_000_003 + source*101 + variation gave (0, 0, 101) and (0, 1, 0) the same seed, and
    # (1, 0, 0) the same as (0, 9901, 2).
    assert not np.array_equal(gen.variation(img, 0, 101), gen.variation(img, 1, 0))
    assert not np.array_equal(TransformGenerator(seed=1).variation(img, 0, 0), gen.variation(img, 9901, 2))
    assert np.array_equal(gen.variation(img, 3, 1), TransformGenerator().variation(img, 3, 1))  # still seeded
    seeds = {seed_for(s, src, v) for s in range(3) for src in range(40) for v in range(120)}
    assert len(seeds) == 3 * 40 * 120
    with pytest.raises(MriaugError, match="at least 0"):
        seed_for(0, -1, 0)


# --- SSIM against the image's own source, by hand ------------------------------------------------------------------


def _hand_dataset(levels: list[int]) -> data.Dataset:
    """Constant images, one grey level per train row (two rows per class), for numbers worked out by hand."""
    x = np.stack([np.full((32, 32), v, np.uint8) for v in levels])
    y = np.arange(len(levels), dtype=np.int64) // 2
    return data.Dataset(x, y, x[::2].copy(), y[::2].copy(), {"source": "hand", "options": {}}, "hand0000")


def test_ssim_is_taken_against_the_images_own_source(tmp_path: Path) -> None:
    # SSIM of two constant images a and b: the structure term is C2/C2 = 1, the luminance term
    # (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2 = 6.5025 (torchmetrics' constants for 8-bit images).
    levels = [40, 60, 80, 100, 120, 140, 160, 180]
    ds = _hand_dataset(levels)
    pool = tmp_path / "pool"
    w = pools.PoolWriter(pool, ds, "hand")
    order = [7, 5, 3, 1, 0, 2, 4, 6]  # not the rows' order, so a pool row's own index is not its source
    for r in order:
        w.add(np.full((32, 32), levels[r] + 20, np.uint8), r, 0, "hand", {})
    w.flush()
    p = pools.load(pool, ds)
    per = pool_report.fidelity(p, ds, kid=False)

    def ssim(a: float, b: float) -> float:
        return (2 * a * b + 6.5025) / (a * a + b * b + 6.5025)

    for c, name in enumerate(["Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"]):
        want = [ssim(levels[r], levels[r] + 20) for r in (2 * c, 2 * c + 1)]
        assert per[name]["ssim_to_source_mean"] == pytest.approx(np.mean(want), abs=1e-9)
        assert per[name]["ssim_to_source_min"] == pytest.approx(min(want), abs=1e-9)
    assert pool_report.ssim(np.full((1, 32, 32), 100, np.uint8), np.full((1, 32, 32), 50, np.uint8))[0] == \
        pytest.approx(10006.5025 / 12506.5025, abs=1e-9)


# --- memorisation and class fidelity on constructed pools -------------------------------------------------------

MID = data.DataSpec("phantom", {"n_train": 320, "n_test": 80, "size": 32})
MILD, MODERATE, NON, VERY_MILD = 0, 1, 2, 3


@pytest.fixture(scope="module")
def mid() -> data.Dataset:
    return data.load(MID)


def _pool_of(path: Path, ds: data.Dataset, sources: np.ndarray, images: np.ndarray) -> pools.Pool:
    w = pools.PoolWriter(path, ds, "hand")
    for r, img in zip(sources, images, strict=True):
        w.add(img, int(r), 0, "hand", {})
    w.flush()
    return pools.load(path, ds)


def test_exact_copies_are_all_near_copies_and_noise_none(tmp_path: Path, mid: data.Dataset) -> None:
    mild = np.flatnonzero(mid.train_y == MILD)
    non = np.flatnonzero(mid.train_y == NON)[: len(mild)]
    # Copies of training images that are not their sources (another row, another class): near-copies all the same.
    p = _pool_of(tmp_path / "copies", mid, mild, mid.train_x[non])
    m = pool_report.memorisation(p, mid)
    assert m["per_class"]["Mild_Demented"]["near_copy_share"] == 1.0
    assert m["per_class"]["Mild_Demented"]["nn_distance_median"] == 0.0
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (len(mild), 32, 32), dtype=np.uint8)
    m = pool_report.memorisation(_pool_of(tmp_path / "noise", mid, mild, noise), mid)
    r = m["per_class"]["Mild_Demented"]
    assert r["near_copy_share"] == 0.0 and r["nn_distance_min"] > 1.0  # uncorrelated: about sqrt(2)
    # The threshold, by hand: the 5th percentile of the test images' distances to their nearest fit image.
    fit = fidelity.pixel_features(mid.train_x[mid.fit_mask])
    d = fidelity.nearest(fidelity.pixel_features(mid.test_x), fit)[0]
    s = m["summary"]
    assert s["held_out_part"] == "test" and s["held_out_images"] == len(mid.test_y) and s["held_out_shares_scans"]
    assert s["percentile_distance"] == pytest.approx(np.percentile(d, 5), rel=1e-9)
    assert s["threshold"] == pytest.approx(max(np.percentile(d, 5), 0.02), rel=1e-9)
    assert s["held_out_near_share"] == pytest.approx(float((d < s["threshold"]).mean()))
    assert 0.0 < s["held_out_near_share"] <= 0.05 + 1e-12


def test_a_pool_of_new_real_images_has_the_held_out_share(tmp_path: Path, mid: data.Dataset) -> None:
    # The held-out (test) images themselves, each filed as a variation of a training image of its class: their
    # distances are the held-out distances, so each class's near-copy share is exactly the held-out one.
    sources, variation = [], []
    for c in range(4):
        rows = np.flatnonzero(mid.train_y == c)
        k = int((mid.test_y == c).sum())
        sources += [int(rows[j % len(rows)]) for j in range(k)]
        variation += [j // len(rows) for j in range(k)]
    order = np.argsort(mid.test_y, kind="stable")
    w = pools.PoolWriter(tmp_path / "pool", mid, "hand")
    for src, v, img in zip(sources, variation, mid.test_x[order], strict=True):
        w.add(img, src, v, "hand", {})
    w.flush()
    m = pool_report.memorisation(pools.load(tmp_path / "pool", mid), mid)
    for name, r in m["per_class"].items():
        assert r["near_copy_share"] == r["held_out_near_share"], name
        assert r["nn_distance_median"] == pytest.approx(r["held_out_nn_distance_median"], abs=1e-12), name
    assert any(r["near_copy_share"] > 0 for r in m["per_class"].values())  # the threshold cuts through them


def test_copy_pool_flagged_in_every_class_transform_pool_not(tmp_path: Path, mid: data.Dataset) -> None:
    copy, transform = tmp_path / "copy", tmp_path / "transform"
    synth.make_pool(mid, copy, "copy", progress_bar=False)
    synth.make_pool(mid, transform, "transform", progress_bar=False)
    rc = pool_report.quality(pools.load(copy, mid), mid)
    rt = pool_report.quality(pools.load(transform, mid), mid)
    assert set(rc["per_class"]) == set(rt["per_class"]) == {"Mild_Demented", "Moderate_Demented", "Non_Demented",
                                                            "Very_Mild_Demented"}
    for name, r in rc["per_class"].items():
        assert r["near_copy_share"] == 1.0, name
        # Copies are their sources: the classifier labels them exactly as it labels the sources.
        assert r["class_fidelity"] == r["sources_recall"], name
    for name, r in rt["per_class"].items():
        assert r["near_copy_share"] < pool_report.COPY_MOSTLY, name
    assert rt["per_class"]["Non_Demented"]["near_copy_share"] <= pool_report.expected_near_share(
        rt["per_class"]["Non_Demented"]["images"], 5.0)
    assert any("Mild_Demented: near-copies 100% of" in v and "mostly copies" in v for v in rc["verdicts"])
    assert any("Non_Demented: near-copies" in v and "no more near-copies" in v for v in rt["verdicts"])
    # The held-out recall, by hand: the same classifier's labels of the test images.
    net = fidelity.feature_net(mid)
    pred = fidelity.predict(net, mid.test_x)
    for c, name in enumerate(CLASS_NAMES):
        want = float((pred[mid.test_y == c] == c).mean())
        assert rc["per_class"][name]["held_out_recall"] == pytest.approx(want)
    assert rc["classifier"]["held_out_accuracy"] == pytest.approx(float((pred == mid.test_y).mean()))
    assert rc["classifier"]["training_images"] == len(mid.train_y)


CLASS_NAMES = ["Mild_Demented", "Moderate_Demented", "Non_Demented", "Very_Mild_Demented"]


def test_a_pool_of_another_class_has_low_class_fidelity(tmp_path: Path, mid: data.Dataset) -> None:
    mild = np.flatnonzero(mid.train_y == MILD)
    very = np.flatnonzero(mid.train_y == VERY_MILD)
    n = min(len(mild), len(very))
    # Labelled Mild (their sources are Mild rows) but the pictures are Very mild ones, and the other way round.
    swapped = _pool_of(tmp_path / "swapped", mid, np.concatenate([mild[:n], very[:n]]),
                       np.concatenate([mid.train_x[very[:n]], mid.train_x[mild[:n]]]))
    same = _pool_of(tmp_path / "same", mid, np.concatenate([mild[:n], very[:n]]),
                    np.concatenate([mid.train_x[mild[:n]], mid.train_x[very[:n]]]))
    rs = pool_report.quality(swapped, mid)
    rk = pool_report.quality(same, mid)
    # The sources' recall is the classifier's on the source rows (the real Mild and Very mild images here).
    pred = fidelity.predict(fidelity.feature_net(mid), mid.train_x)
    assert rs["per_class"]["Mild_Demented"]["sources_recall"] == pytest.approx(float((pred[mild[:n]] == MILD).mean()))
    assert rs["per_class"]["Very_Mild_Demented"]["sources_recall"] == pytest.approx(
        float((pred[very[:n]] == VERY_MILD).mean()))
    for name in ("Mild_Demented", "Very_Mild_Demented"):
        assert rk["per_class"][name]["class_fidelity"] >= 0.8, name
        assert rs["per_class"][name]["class_fidelity"] <= 0.2, name
        assert rk["per_class"][name]["held_out_recall"] > 0.5, name
    assert any("Mild_Demented: class fidelity" in v and "loses its class" in v for v in rs["verdicts"])
    assert any("Mild_Demented: class fidelity" in v and "keeps its class" in v for v in rk["verdicts"])


def test_held_out_is_validation_without_this_pools_sources(tmp_path: Path) -> None:
    spec = {"n_train": 320, "n_test": 80, "size": 32, "split": "subject"}
    a = data.load(data.DataSpec("phantom", {**spec, "val_fraction": 0.1}))
    b = data.load(data.DataSpec("phantom", {**spec, "val_fraction": 0.4}))
    pool = tmp_path / "pool"
    synth.make_pool(a, pool, "copy", progress_bar=False)  # sources from a's fit part, some in b's validation
    p = pools.load(pool, b)
    drawn = np.intersect1d(b.val_rows, p.sources)
    assert len(drawn)  # the case this test is about
    part, x, y = pool_report.held_out(p, b)
    left = np.setdiff1d(b.val_rows, p.sources)
    assert part == "validation" and np.array_equal(x, b.train_x[left]) and np.array_equal(y, b.train_y[left])
    m = pool_report.memorisation(p, b)
    assert m["summary"]["held_out_images"] == len(left) and not m["summary"]["held_out_shares_scans"]
    assert m["summary"]["training_images"] == int(b.fit_mask.sum()) + len(drawn)
    for name, r in m["per_class"].items():  # copies of validation rows are copies of training images too
        assert r["near_copy_share"] == 1.0, name


# --- verdicts: thresholds by hand ----------------------------------------------------------------------------


def test_verdict_thresholds_by_hand() -> None:
    # 5% plus two binomial standard errors: 0.05 + 2 * sqrt(0.05 * 0.95 / 100) = 0.0935890...
    assert pool_report.expected_near_share(100, 5.0) == pytest.approx(0.0935890, abs=1e-7)
    m = {"threshold": 0.1, "percentile": 5.0, "held_out_images": 50, "held_out_part": "validation", "floor": 0.02,
         "held_out_distance_median": 0.3}
    r = {"images": 100, "nn_distance_median": 0.2}
    assert "mostly copies" in pool_report.memorisation_verdict("X", {**r, "near_copy_share": 0.5}, m)
    assert "more near-copies than a pool that copies nothing" in pool_report.memorisation_verdict(
        "X", {**r, "near_copy_share": 0.094}, m)
    assert "no more near-copies" in pool_report.memorisation_verdict("X", {**r, "near_copy_share": 0.093}, m)
    # KID: the floor plus 2 * hypot(0.003, 0.004) = 0.001 + 0.010 = 0.011.
    k = {"kid_real_vs_real": 0.001, "kid_real_vs_synthetic_std": 0.003, "kid_real_vs_real_std": 0.004}
    assert "as close to the real images" in pool_report.kid_verdict("X", {**k, "kid_real_vs_synthetic": 0.0109})
    line = pool_report.kid_verdict("X", {**k, "kid_real_vs_synthetic": 0.0111})
    assert line and "further from the real images" in line and "= 0.0110" in line
    assert pool_report.kid_verdict("X", {"kid_real_vs_synthetic": None, "kid_real_vs_real": None}) is None
    # Class fidelity: held-out recall 0.9 of 100, synthetic 100 images; at q = 0.85 the tolerance is
    # 2 * sqrt(0.85 * 0.15 / 100 + 0.9 * 0.1 / 100) = 0.0933, so the line is at 0.8067.
    c = {"images": 100, "held_out_recall": 0.9, "held_out_class_images": 100, "sources_recall": 0.95}
    assert "keeps its class" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.85}, 0.25))
    assert "less recognisable" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.5}, 0.25))
    # Either side of the line: at q = 0.81 the tolerance is 2 * sqrt(0.81 * 0.19 / 100 + 0.0009) = 0.0988 (line
    # 0.8012); at q = 0.79 it is 0.1012 (line 0.7988).
    assert "keeps its class" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.81}, 0.25))
    assert "less recognisable" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.79}, 0.25))
    assert "loses its class" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.25}, 0.25))
    assert "does not recognise" in str(pool_report.class_fidelity_verdict(
        "X", {**c, "held_out_recall": 0.25, "class_fidelity": 0.9}, 0.25))
    assert "no real held-out image of this class" in str(pool_report.class_fidelity_verdict(
        "X", {**c, "held_out_recall": None, "held_out_class_images": 0, "class_fidelity": 0.9}, 0.25))


def test_synth_report_prints_and_writes_every_number(tmp_path: Path, small: data.Dataset) -> None:
    opts = ["--data", "phantom", "-o", "n_train=160", "-o", "n_test=80", "-o", "size=32"]
    for gen in ("copy", "transform"):
        r = CliRunner().invoke(app, ["synth", *opts, "--out", str(tmp_path / gen), "--generator", gen, "--no-report"])
        assert r.exit_code == 0, r.output
    out = {}
    for gen in ("copy", "transform"):
        r = CliRunner().invoke(app, ["synth", "report", str(tmp_path / gen)])
        assert r.exit_code == 0, r.output
        out[gen] = (r.output, json.loads((tmp_path / gen / "report.json").read_text()))
    text, rep = out["copy"]
    assert "near-copy" in text and "class fid" in text and "classifier: BasicCNN" in text
    for name in CLASS_NAMES:
        assert rep["per_class"][name]["near_copy_share"] == 1.0
        assert f"memorisation {name}: near-copies 100% of {rep['per_class'][name]['images']}" in text
        assert f"class {name}: class fidelity" in text
    assert "KID Non_Demented: KID real vs synthetic" in text and "the floor" in text
    assert rep["memorisation"]["threshold"] > 0 and rep["classifier"]["held_out_part"] == "test"
    assert rep["verdicts"] and all(line in text.splitlines() for line in rep["verdicts"])  # printed as written
    text, rep = out["transform"]
    assert all(r["near_copy_share"] < 1.0 for r in rep["per_class"].values())
    assert "no more near-copies" in text
    assert not list((tmp_path / "copy").glob(".*.tmp")) and not list((tmp_path / "copy").glob("*.tmp"))


# --- numbers by hand on constructed pools (no trained network: a classifier by hand) -----------------------------


def _walsh(k: int) -> np.ndarray:
    """A +-1 Walsh pattern of 32x32 pixels: zero-mean, orthogonal to every other k."""
    bits = np.array([bin(v).count("1") for v in np.arange(1024) & k])
    return np.where(bits % 2, -1, 1).reshape(32, 32)


def _pt(plane: int, a: int, b: int) -> np.ndarray:
    """An image whose pixel feature (zero-mean, unit-norm) is (a, b) / |(a, b)| on Walsh patterns 2*plane+1 and
    2*plane+2: images of one plane lie on a unit circle, images of two planes sqrt(2) apart."""
    return (128 + a * _walsh(2 * plane + 1) + b * _walsh(2 * plane + 2)).astype(np.uint8)


def _unit_distance(p: tuple[int, int], q: tuple[int, int]) -> float:
    return float(np.hypot(*(np.array(p) / np.hypot(*p) - np.array(q) / np.hypot(*q))))


def _pool(ds: data.Dataset, sources: list[int], images: list[np.ndarray], entries: list[dict] | None = None
          ) -> pools.Pool:
    src = np.array(sources, np.int64)
    return pools.Pool(Path("hand"), np.stack(images), ds.train_y[src], src,
                      entries or [{"generator": "hand"} for _ in sources], {}, "poolfp")


def _memorisation_dataset(val: list[int]) -> data.Dataset:
    """8 train rows (classes 0, 0, 1, 1, ...), row r at (60, 0) of plane r; 21 test images: plane 0 and plane 1 at
    (48, 36) (class 0; sqrt(0.4) = 0.632 from rows 0 and 1), 19 in planes 20-38 (classes 1, 2, 3; sqrt(2) from
    every row)."""
    x = np.stack([_pt(r, 60, 0) for r in range(8)])
    tx = np.stack([_pt(0, 48, 36), _pt(1, 48, 36)] + [_pt(20 + j, 60, 0) for j in range(19)])
    ty = np.array([0, 0] + [1 + j % 3 for j in range(19)], np.int64)
    return data.Dataset(x, np.arange(8, dtype=np.int64) // 2, tx, ty, {"source": "hand", "options": {}}, "memfp",
                        val_rows=np.array(val, np.int64))


def test_memorisation_by_hand() -> None:
    ds = _memorisation_dataset([])
    # Held out: the 21 test images, distances sorted sqrt(0.4), sqrt(0.4), sqrt(2) x 19. Their 5th percentile
    # (linear, position 0.05 * 20 = 1, the second smallest) is sqrt(0.4): the near-copy threshold.
    near = _unit_distance((60, 0), (48, 36))
    assert near == pytest.approx(0.4**0.5)
    # Class 0: a copy of row 0 (0), (59, 8) of plane 0 (0.135), (48, 36) of plane 1 (exactly the threshold: not
    # under it), plane 30 (sqrt(2)); class 1: (0, 60) of plane 2 (sqrt(2) from row 2, and from every other row).
    p = _pool(ds, [0, 1, 0, 1, 2], [_pt(0, 60, 0), _pt(0, 59, 8), _pt(1, 48, 36), _pt(30, 60, 0), _pt(2, 0, 60)])
    m = pool_report.memorisation(p, ds)
    s = m["summary"]
    assert s["feature_space"] == "32x32 pixels, zero-mean and unit-norm"
    assert (s["training_images"], s["held_out_part"], s["held_out_images"], s["held_out_shares_scans"]) == (
        8, "test", 21, True)
    assert (s["percentile"], s["floor"]) == (5.0, 0.02)
    assert s["percentile_distance"] == pytest.approx(near) and s["threshold"] == pytest.approx(near)
    assert s["held_out_near_share"] == 0.0  # none under the threshold: it is a strict bound
    assert s["held_out_distance_median"] == pytest.approx(2**0.5)
    small = _unit_distance((60, 0), (59, 8))
    c0, c1 = m["per_class"]["Mild_Demented"], m["per_class"]["Moderate_Demented"]
    assert c0["near_copy_share"] == 0.5  # the copy and (59, 8)
    assert c0["nn_distance_median"] == pytest.approx((small + near) / 2) and c0["nn_distance_min"] == 0.0
    assert c0["held_out_nn_distance_median"] == pytest.approx(near) and c0["held_out_near_share"] == 0.0
    assert c1["near_copy_share"] == 0.0 and c1["nn_distance_min"] == pytest.approx(2**0.5)
    assert c1["nn_distance_median"] == pytest.approx(2**0.5)
    # Class 1 has 6 or 7 held-out images (test classes 1, 2, 3 in turn), all sqrt(2) away.
    assert c1["held_out_nn_distance_median"] == pytest.approx(2**0.5) and c1["held_out_near_share"] == 0.0
    assert set(m["per_class"]) == {"Mild_Demented", "Moderate_Demented"}  # classes without images left out


def test_memorisation_of_an_empty_pool_by_hand() -> None:
    ds = _memorisation_dataset([])
    empty = pools.Pool(Path("hand"), np.zeros((0, 32, 32), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       [], {}, "poolfp")
    m = pool_report.memorisation(empty, ds)
    assert m["per_class"] == {} and m["summary"]["threshold"] == pytest.approx(0.4**0.5)


def test_memorisation_on_validation_by_hand() -> None:
    # Rows 1 and 3 held out for validation; row 1 is also a source of this pool (made under another validation
    # fraction): training images are the 6 fit rows and row 1; held out: row 3 only (plane 3, a training row's
    # distance from every other row: sqrt(2)); the threshold is then sqrt(2) itself.
    ds = _memorisation_dataset([1, 3])
    p = _pool(ds, [0, 1], [_pt(1, 48, 36), _pt(9, 60, 0)])
    part, hx, hy = pool_report.held_out(p, ds)
    assert part == "validation" and np.array_equal(hx, ds.train_x[[3]]) and hy.tolist() == [1]
    m = pool_report.memorisation(p, ds)
    s = m["summary"]
    assert (s["training_images"], s["held_out_part"], s["held_out_images"], s["held_out_shares_scans"]) == (
        7, "validation", 1, False)
    assert s["threshold"] == pytest.approx(2**0.5) and s["held_out_near_share"] == 0.0
    # (48, 36) of plane 1 is near row 1 (a source, so a training image): 0.632 < sqrt(2); plane 9 is not.
    c0 = m["per_class"]["Mild_Demented"]
    assert c0["near_copy_share"] == 0.5 and c0["nn_distance_min"] == pytest.approx(0.4**0.5)
    assert c0["held_out_nn_distance_median"] is None and c0["held_out_near_share"] is None  # no class-0 row held out
    # Without a held-out image at all: the floor, and no held-out numbers.
    ds0 = data.Dataset(ds.train_x, ds.train_y, ds.test_x[:0], ds.test_y[:0], ds.source, "memfp")
    m0 = pool_report.memorisation(_pool(ds0, [0], [_pt(0, 60, 0)]), ds0)["summary"]
    assert m0["threshold"] == 0.02 and m0["held_out_images"] == 0
    assert m0["percentile_distance"] is None and m0["held_out_near_share"] is None
    assert m0["held_out_distance_median"] is None
    assert pool_report._shares_scans("test", ds0) and not pool_report._shares_scans("validation", ds0)
    sub = data.Dataset(ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.source, "memfp", split={"kind": "subject"})
    assert not pool_report._shares_scans("test", sub)
    assert pool_report._shares_scans("test", data.Dataset(ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.source,
                                                          "memfp", split={}))


class _Brightness(torch.nn.Module):
    """A classifier by hand: class floor(4 * v / 255) (at most 3) of an image's mean grey level v; its feature for
    KID is that mean (prepared to [-1, 1])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().mean(dim=(1, 2, 3))[:, None]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        k = ((x.mean(dim=(1, 2, 3)) + 1) / 2 * 4).floor().clamp(0, 3)
        return -((torch.arange(4)[None] - k[:, None]) ** 2).float()


def _flat(levels: list[int]) -> np.ndarray:
    return np.stack([np.full((32, 32), v, np.uint8) for v in levels])


def _fidelity_dataset() -> data.Dataset:
    """Train levels 10, 20 (class 0), 70, 200 (class 1), 140, 150 (class 2), 250, 30 (class 3): the classifier
    says 0, 0, 1, 3, 2, 2, 3, 0. Test (held out): 5 (class 0), 100 and 70 (class 1), 130, 20 and 240 (class 2),
    none of class 3: it says 0, 1, 1, 2, 0, 3."""
    return data.Dataset(_flat([10, 20, 70, 200, 140, 150, 250, 30]), np.array([0, 0, 1, 1, 2, 2, 3, 3]),
                        _flat([5, 100, 70, 130, 20, 240]), np.array([0, 1, 1, 2, 2, 2]),
                        {"source": "hand", "options": {}}, "fidfp")


def test_class_fidelity_by_hand() -> None:
    ds = _fidelity_dataset()
    # Class 0: images 10 and 100 from rows 0 and 1 -> 0, 1; class 1: 80, 90, 250 from rows 2, 3, 2 -> 1, 1, 3;
    # class 3: 255 from row 7 -> 3. No class-2 image.
    p = _pool(ds, [0, 1, 2, 3, 2, 7], list(_flat([10, 100, 80, 90, 250, 255])))
    r = pool_report.class_fidelity(p, ds, _Brightness())
    s = r["summary"]
    assert s == {"network": "BasicCNN 64x64, 5 epochs, class-weighted", "trained_on": "fit part",
                 "training_images": 8, "held_out_part": "test", "held_out_images": 6, "held_out_shares_scans": True,
                 "held_out_accuracy": pytest.approx(4 / 6),
                 # recalls 1/1, 2/2, 1/3 (class 3 has no held-out image, so it is not averaged)
                 "held_out_balanced_accuracy": pytest.approx((1 + 1 + 1 / 3) / 3), "chance": 0.25}
    per = r["per_class"]
    assert set(per) == {"Mild_Demented", "Moderate_Demented", "Very_Mild_Demented"}
    assert per["Mild_Demented"] == {"class_fidelity": 0.5, "held_out_recall": 1.0, "held_out_class_images": 1,
                                    "sources_recall": 1.0}
    # Sources of class 1: rows 2, 3, 2 (70, 200, 70) -> 1, 3, 1.
    assert per["Moderate_Demented"] == {"class_fidelity": pytest.approx(2 / 3), "held_out_recall": 1.0,
                                        "held_out_class_images": 2, "sources_recall": pytest.approx(2 / 3)}
    assert per["Very_Mild_Demented"] == {"class_fidelity": 1.0, "held_out_recall": None, "held_out_class_images": 0,
                                         "sources_recall": 0.0}
    # Validation rows 1 and 5, row 1 a source of this pool: held out is row 5 only (150, class 2 -> 2).
    val = data.Dataset(ds.train_x, ds.train_y, ds.test_x, ds.test_y, ds.source, "fidfp", val_rows=np.array([1, 5]))
    sv = pool_report.class_fidelity(p, val, _Brightness())["summary"]
    assert (sv["held_out_part"], sv["held_out_images"], sv["held_out_accuracy"], sv["training_images"]) == (
        "validation", 1, 1.0, 6)
    # No held-out image at all: no accuracies.
    none = data.Dataset(ds.train_x, ds.train_y, ds.test_x[:0], ds.test_y[:0], ds.source, "fidfp")
    s0 = pool_report.class_fidelity(p, none, _Brightness())["summary"]
    assert s0["held_out_accuracy"] is None and s0["held_out_balanced_accuracy"] is None
    assert s0["held_out_images"] == 0


def test_quality_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import fidelity as fid

    ds = _fidelity_dataset()
    monkeypatch.setattr(fid, "feature_net", lambda dataset: _Brightness() if dataset is ds else None)
    # Class 0: 10 (source row 0, level 10) and 100 (source row 1, level 20); class 3: 255 and 250 from row 6 (250).
    p = _pool(ds, [0, 1, 6, 6], list(_flat([10, 100, 255, 250])))
    rep = pool_report.quality(p, ds)
    c0, c3 = rep["per_class"]["Mild_Demented"], rep["per_class"]["Very_Mild_Demented"]
    assert set(rep["per_class"]) == {"Mild_Demented", "Very_Mild_Demented"}
    # SSIM of constant images a, b: (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2 = 6.5025.
    lo = (2 * 100 * 20 + 6.5025) / (100**2 + 20**2 + 6.5025)
    assert (c0["images"], c0["sources"]) == (2, 2) and (c3["images"], c3["sources"]) == (2, 1)
    assert c0["ssim_to_source_mean"] == pytest.approx((1 + lo) / 2, abs=1e-9)
    assert c0["ssim_to_source_median"] == pytest.approx((1 + lo) / 2, abs=1e-9)
    assert c0["ssim_to_source_min"] == pytest.approx(lo, abs=1e-9)
    # 64 bins of 4 levels: 10 -> bin 2, 20 -> 5, 100 -> 25; 250 and 255 -> 62 and 63.
    assert c0["hist_l1_to_source_mean"] == 1.0  # 0 for 10 against 10, 2 for 100 against 20
    assert c0["hist_l1_class_vs_real"] == 1.0  # {2, 25} against the class's {2, 5}: 0 + 0.5 + 0.5
    assert c3["hist_l1_to_source_mean"] == 1.0 and c3["hist_l1_class_vs_real"] == 1.0  # real {62, 7}: 0 + 0.5 + 0.5
    assert (c0["mean_intensity_synthetic"], c0["mean_intensity_real"]) == (55.0, 15.0)
    assert (c3["mean_intensity_synthetic"], c3["mean_intensity_real"]) == (252.5, 140.0)
    # The memorisation and class-fidelity numbers of their own functions, merged in per class.
    mem = pool_report.memorisation(p, ds)
    cls = pool_report.class_fidelity(p, ds, _Brightness())
    for name in ("Mild_Demented", "Very_Mild_Demented"):
        for k, v in {**mem["per_class"][name], **cls["per_class"][name]}.items():
            assert rep["per_class"][name][k] == v, (name, k)
    assert rep["memorisation"] == mem["summary"] and rep["classifier"] == cls["summary"]
    # KID of two real images (halves of one) against two synthetic ones: too few for subsets of 2.
    assert c0["kid_real_vs_synthetic"] is None and c0["kid_subset_size"] == 1
    assert rep["verdicts"] == pool_report.verdicts(rep)
    assert pool_report.fidelity(p, ds) == rep["per_class"]
    assert pool_report.fidelity(p, ds, kid=False) == pool_report.quality(p, ds, kid=False)["per_class"] != rep[
        "per_class"]
    # Without the network: no KID and no class fidelity.
    plain = pool_report.quality(p, ds, kid=False)
    assert plain["classifier"] is None and "kid_real_vs_synthetic" not in plain["per_class"]["Mild_Demented"]
    assert "class_fidelity" not in plain["per_class"]["Mild_Demented"]


def test_quality_kid_per_class_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.analysis import fidelity as fid

    # Four real class-0 images (0, 0, 255, 255: features -1, -1, +1, +1) and two synthetic ones: the class's KID
    # is `kid_real_vs_synthetic` of the class's real images against its synthetic ones.
    x = _flat([0, 0, 255, 255, 128, 128])
    ds = data.Dataset(x, np.array([0, 0, 0, 0, 2, 2]), x[:2].copy(), np.array([0, 0]),
                      {"source": "hand", "options": {}}, "kidfp")
    monkeypatch.setattr(fid, "feature_net", lambda dataset: _Brightness())
    p = _pool(ds, [0, 2, 4], list(_flat([255, 255, 128])))
    rep = pool_report.quality(p, ds)
    want = fid.kid_real_vs_synthetic(_Brightness(), x[:4], _flat([255, 255]))
    assert want["kid_subset_size"] == 2 and want["kid_real_vs_synthetic"] is not None
    for k, v in want.items():
        assert rep["per_class"]["Mild_Demented"][k] == v, k
    assert rep["per_class"]["Non_Demented"]["kid_subset_size"] == 1  # one real image per half


def test_histogram_by_hand() -> None:
    # 64 bins of 4 levels: 0 and 3 in bin 0, 4 in bin 1, 255 in bin 63.
    h = pool_report.histogram(np.array([[0, 3], [4, 255]], np.uint8))
    assert h.shape == (64,) and h[0] == 0.5 and h[1] == 0.25 and h[63] == 0.25 and h.sum() == 1.0
    h4 = pool_report.histogram(np.array([0, 63, 64, 200, 255], np.uint8), bins=4)  # bins of 64 levels
    assert h4.tolist() == [0.4, 0.2, 0.0, 0.4]
    assert pool_report.histogram(np.zeros(0, np.uint8)).tolist() == [0.0] * 64  # nothing: no division by 0
    assert pool_report.hist_distance(np.array([0, 0, 8, 8], np.uint8), np.array([0, 8, 8, 8], np.uint8)) == 0.5
    assert pool_report.hist_distance(np.array([0, 5], np.uint8), np.array([0, 9], np.uint8), bins=2) == 0.0
    # 124 and 127 share the 64-bin histogram's bin 31 (124-127); 65 bins would part them.
    assert pool_report.hist_distance(np.array([124], np.uint8), np.array([127], np.uint8)) == 0.0
    assert pool_report.histogram(np.array([7], np.uint8)).sum() == 1.0  # one pixel: its bin holds all of it


def test_ssim_window_and_batches_by_hand() -> None:
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    rng = np.random.default_rng(3)
    # The window: Gaussian with sigma 1.5, which torchmetrics makes 2 * int(3.5 * 1.5 + 0.5) + 1 = 11 pixels wide
    # whatever `kernel_size` says (it reads kernel_size only for a uniform window), on small images too.
    for side, k in ((8, 11), (9, 11), (10, 11), (32, 11)):
        a = rng.integers(0, 256, (5, side, side), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
        want = tm_ssim(torch.from_numpy(a).double()[:, None], torch.from_numpy(b).double()[:, None], kernel_size=k,
                       sigma=1.5, data_range=255.0, reduction="none")
        for batch in (2, 64):
            got = pool_report.ssim(a, b, batch=batch)
            assert got.shape == (5,) and np.allclose(got, want.numpy(), rtol=0, atol=1e-12), (side, batch)
    assert pool_report.ssim(np.zeros((0, 8, 8), np.uint8), np.zeros((0, 8, 8), np.uint8)).shape == (0,)


def test_verdict_lines_by_hand() -> None:
    assert pool_report.expected_near_share(0, 5.0) == pytest.approx(0.05 + 2 * (0.05 * 0.95) ** 0.5)  # n taken as 1
    assert pool_report.expected_near_share(400, 10.0) == pytest.approx(0.1 + 2 * (0.1 * 0.9 / 400) ** 0.5)
    assert (pool_report._num(0.12345, 2), pool_report._num(3, 1), pool_report._num(None, 2)) == ("0.12", "3.0", "—")
    m = {"threshold": 0.1234, "percentile": 5.0, "held_out_images": 50, "held_out_part": "validation",
         "floor": 0.02, "held_out_distance_median": 0.3, "held_out_shares_scans": False}
    r = {"images": 100, "nn_distance_median": 0.2, "near_copy_share": 0.05}
    assert pool_report.memorisation_verdict("X", r, m) == (
        "X: near-copies 5% of 100 (nearest training image closer than 0.123, the 5th percentile of 50 real validation "
        "images' distances, at least 0.02; median distance 0.200 vs 0.300 for real held-out images): no more "
        "near-copies than new real images give (up to 9% expected)")
    assert pool_report.memorisation_verdict("X", {**r, "near_copy_share": 0.2}, m).endswith(
        "more near-copies than a pool that copies nothing would show (up to 9%); look at them before sharing the pool")
    assert pool_report.memorisation_verdict("X", {**r, "near_copy_share": 0.5}, m).endswith(
        "mostly copies of training images, a privacy problem for patient data")
    assert pool_report.memorisation_verdict("X", {**r, "near_copy_share": 0.4999}, m).endswith("sharing the pool")
    at = pool_report.expected_near_share(100, 5.0)  # exactly the expected share: not more than it
    assert "no more near-copies" in pool_report.memorisation_verdict("X", {**r, "near_copy_share": at}, m)
    k = {"kid_real_vs_synthetic": 0.002, "kid_real_vs_real": 0.001, "kid_real_vs_synthetic_std": 0.0003,
         "kid_real_vs_real_std": 0.0004}
    assert pool_report.kid_verdict("X", k) == (
        "X: KID real vs synthetic 0.0020, real vs real (the floor) 0.0010; threshold: the floor + 2 standard "
        "deviations of the two estimates = 0.0020: as close to the real images as a second real sample is (the "
        "feature CNN cannot tell them apart)")
    # Without the standard deviations: the floor itself is the threshold.
    assert str(pool_report.kid_verdict("X", {"kid_real_vs_synthetic": 0.0011, "kid_real_vs_real": 0.001})).endswith(
        "= 0.0010: further from the real images than real images are from each other")
    assert "as close" in str(pool_report.kid_verdict("X", {"kid_real_vs_synthetic": 0.001, "kid_real_vs_real": 0.001}))
    assert pool_report.kid_verdict("X", {"kid_real_vs_synthetic": 0.1, "kid_real_vs_real": None}) is None
    assert pool_report.kid_verdict("X", {"kid_real_vs_synthetic": None, "kid_real_vs_real": 0.1}) is None
    c = {"images": 100, "held_out_recall": 0.9, "held_out_class_images": 100, "sources_recall": 0.95,
         "class_fidelity": 0.85}
    assert pool_report.class_fidelity_verdict("X", c, 0.25) == (
        "X: class fidelity 0.85 (share the real-data CNN labels X); its recall on real held-out X images 0.90 "
        "(n=100), on this pool's sources 0.95: keeps its class (as recognisable as new real images; threshold: the "
        "held-out recall less two standard errors, 0.81)")
    assert pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": None}, 0.25) is None
    bare = {"images": 100, "sources_recall": 0.5, "class_fidelity": 0.35, "held_out_recall": None}
    assert pool_report.class_fidelity_verdict("X", bare, 0.25) == (
        "X: class fidelity 0.35 (share the real-data CNN labels X); its recall on real held-out X images — (n=0), on "
        "this pool's sources 0.50: no real held-out image of this class to set it against, so class fidelity says "
        "little here")
    assert "keeps its class" in str(pool_report.class_fidelity_verdict("X", {**bare, "held_out_recall": 0.9}, 0.25))
    assert pool_report.class_fidelity_verdict("X", {**c, "held_out_recall": 0.3, "class_fidelity": 0.1}, 0.3).endswith(
        "the CNN does not recognise this class on new real images (recall at or below chance, 0.30), so class "
        "fidelity says little here")
    assert pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.2}, 0.25).endswith(
        "loses its class (labelled X no more often than chance, 0.25)")
    # 0.5: tolerance 2 * sqrt(0.25 / 100 + 0.09 / 100) = 0.117, line 0.78.
    assert pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.5}, 0.25).endswith(
        "less recognisable than new real images (below 0.78, the held-out recall less two standard errors)")
    # At recall 1 and fidelity 1 the tolerance is 0: equal is kept.
    one = {**c, "held_out_recall": 1.0, "class_fidelity": 1.0}
    assert "keeps its class" in str(pool_report.class_fidelity_verdict("X", one, 0.25))
    # Without a held-out count, n is taken as 1: tolerance 2 * sqrt(0.35 * 0.65 / 100 + 0.09 / 1) = 0.61, so 0.35
    # is kept (line 0.29); with n = 100 the tolerance is 0.113 (line 0.79) and 0.35 is below it.
    assert "keeps its class" in str(pool_report.class_fidelity_verdict(
        "X", {**c, "held_out_class_images": 0, "class_fidelity": 0.35}, 0.25))
    assert "less recognisable" in str(pool_report.class_fidelity_verdict("X", {**c, "class_fidelity": 0.35}, 0.25))
    # A report's lines: the classifier, then per class KID, memorisation, class; the split note once at the end.
    rep = {"memorisation": {**m, "held_out_shares_scans": True}, "per_class": {"X": {**r, **k, **c}},
           "classifier": {"network": "N", "trained_on": "fit part", "training_images": 8, "held_out_images": 6,
                          "held_out_part": "test", "held_out_accuracy": 0.5, "held_out_balanced_accuracy": 0.75,
                          "chance": 0.25, "held_out_shares_scans": True}}
    lines = pool_report.verdicts(rep)
    assert lines[0] == ("classifier: N, trained on the fit part (8 images); on 6 real test images accuracy 0.50, "
                        "balanced accuracy 0.75 (chance 0.25)")
    assert [line.split(" X: ")[0] for line in lines[1:4]] == ["KID", "memorisation", "class"]
    assert lines[4:] == ["note: the held-out images are the given split's test part, which can share scans with the "
                         "training images; --data-option split=subject gives a patient-level reference"]
    assert len(lines) == 5
    # Without the classifier or the note: memorisation only.
    rep2 = {"memorisation": m, "per_class": {"X": r}, "classifier": None}
    assert pool_report.verdicts(rep2) == [f"memorisation {pool_report.memorisation_verdict('X', r, m)}"]
    assert pool_report.verdicts({"memorisation": None, "classifier": None, "per_class": {"X": r}}) == []


def test_provenance_by_hand() -> None:
    entries = [{"generator": "openai", "params": {"model": "m1", "size": "64x64", "price": 1,
                                                  "request": {"id": "r1"}}},
               {"generator": "openai", "params": {"model": "m1", "size": "64x64", "price": 2,
                                                  "request": {"id": "r1"}}},
               {"generator": "openai", "params": {"model": "m1", "size": "64x64", "request": {"id": "r2"}}},
               {"generator": "openai", "params": {"model": "m2", "size": "64x64"}},
               {"generator": "transform", "params": {}},
               {"generator": "transform"}]
    p = pools.Pool(Path("hand"), np.zeros((6, 2, 2), np.uint8), np.zeros(6), np.zeros(6), entries, {}, "fp")
    # Prices do not split a group; requests are counted by their id; none known: None.
    assert pool_report.provenance(p) == [
        {"generator": "openai", "model": "m1", "size": "64x64", "images": 3, "requests": 2},
        {"generator": "openai", "model": "m2", "size": "64x64", "images": 1, "requests": None},
        {"generator": "transform", "images": 2, "requests": None}]
