"""Pool reports (figure + fidelity numbers) and the guards that keep test and dropped images out of a run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mriaug import data, pools, scenarios, synth
from mriaug.analysis import fidelity, pool_report
from mriaug.cli import app
from mriaug.errors import MriaugError
from mriaug.generators import seed_for
from mriaug.generators.transform import TransformGenerator
from mriaug.kept import KeptFor

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
    once = synth.plan(small, ["Mild_Demented"], 2, None, 0, set())
    assert synth.plan(small, ["Mild_Demented", "Mild Demented", "0"], 2, None, 0, set()) == once


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
