"""Grad-CAM (`mriaug cam`): the maps find where a class's signal is, and the agreement numbers say whether a
variation keeps it there; on runs shaped like the published study's (merge, subject splits with a pool per split,
pretraining), and the report's Grad-CAM section of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mriaug.analysis import cam
from mriaug.cli import app
from mriaug.data import pools
from mriaug.data import sources as data_mod
from mriaug.engine import models
from mriaug.plan.hparams import resolve
from mriaug.store import results

SIDE = 32
REGION = (slice(2, 14), slice(2, 14))  # the top-left 12x12 square holds every class's signal


def _phantom(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dark noise everywhere; the class is the brightness of REGION (class k adds 40 + 45 k grey levels)."""
    y = rng.integers(0, 4, n)
    x = rng.normal(30, 10, (n, SIDE, SIDE))
    x[:, REGION[0], REGION[1]] += (40 + 45 * y)[:, None, None]
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def trained() -> tuple[cam.CamModel, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = _phantom(480, rng)
    net = models.build("cnn", resolve("cnn", {"resolution": SIDE}))
    cm = cam.CamModel.of("cnn", net, SIDE)
    xs, ys = cm.inputs(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(6):
        for i in range(0, len(ys), 32):
            loss = F.cross_entropy(net(xs[i : i + 32]), ys[i : i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt, yt = _phantom(64, rng)
    assert (cm.probabilities(xt).argmax(1) == yt).mean() > 0.9  # it learned the task
    return cm, xt, yt


def test_gradcam_mass_lies_in_the_signal_region(trained: tuple[cam.CamModel, np.ndarray, np.ndarray]) -> None:
    cm, x, y = trained
    m = cam.maps(cm, x, y.tolist())
    region = np.zeros((SIDE, SIDE), bool)
    region[REGION] = True
    share = np.array([cam.mass_in(mi, region) for mi in m])
    # The region is 14% of the image; most of the map's mass falls in it. (Grad-CAM keeps positive evidence
    # only: for the dimmest class, whose evidence is that the region is *not* bright, the map marks little.)
    assert np.median(share) > 0.6, share
    assert np.median(share[y > 0]) > 0.7, share


def test_agreement_high_when_the_region_stays_low_when_it_moves(
        trained: tuple[cam.CamModel, np.ndarray, np.ndarray]) -> None:
    cm, x, y = trained
    x, y = x[y > 0], y[y > 0]  # classes with positive evidence (see above)
    rng = np.random.default_rng(1)
    kept = np.clip(x.astype(float) + rng.normal(0, 6, x.shape), 0, 255).astype(np.uint8)  # same layout, new noise
    moved = np.ascontiguousarray(x[:, ::-1, ::-1])  # the signal now sits in the opposite corner
    m, mk, mm = (cam.maps(cm, v, y.tolist()) for v in (x, kept, moved))
    keep_r = [cam.pearson(a, b) for a, b in zip(m, mk, strict=True)]
    move_r = [cam.pearson(a, b) for a, b in zip(m, mm, strict=True)]
    keep_iou = [cam.iou(a, b) for a, b in zip(m, mk, strict=True)]
    move_iou = [cam.iou(a, b) for a, b in zip(m, mm, strict=True)]
    assert np.isfinite(keep_r).all()  # no flat map where the signal stays
    assert np.nanmean(keep_r) > 0.7 and np.nanmean(keep_iou) > 0.5, (keep_r, keep_iou)
    # Where the signal moved, the map is elsewhere or flat (no evidence left for the class): low agreement.
    assert np.mean(move_r) < 0.2 and np.mean(move_iou) < 0.2, (move_r, move_iou)


def test_iou_and_pearson_edges() -> None:
    a = np.zeros((10, 10), np.float32)
    a[:2] = 1.0
    assert cam.iou(a, a) == 1.0 and cam.pearson(a, a) == pytest.approx(1.0)
    assert cam.iou(a, a[::-1]) == 0.0 and cam.pearson(a, a[::-1]) < 0
    sparse = np.zeros((10, 10), np.float32)
    sparse[0, 0], sparse[9, 9] = 1.0, 0.5  # zero on 98% of the image: its top region is 2 pixels, not all
    assert cam.top_region(sparse).sum() == 2 and cam.iou(sparse, sparse[::-1]) == 0.0
    assert cam.pearson(a, np.zeros_like(a)) == 0.0 and cam.iou(a, np.zeros_like(a)) == 0.0  # evidence lost
    assert np.isnan(cam.pearson(a * 0, a * 0)) and np.isnan(cam.iou(a * 0, a * 0))  # both flat: undefined


def test_vit_reshape_uses_the_model_grid() -> None:
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, in_chans=1, img_size=256)
    reshape = models.entry("vit").gradcam_reshape(net)
    assert reshape is not None
    out = reshape(torch.zeros(2, 1 + 16 * 16, 192))
    assert out.shape == (2, 192, 16, 16)  # 16x16 at 256 px, not the library's 14x14
    small = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, in_chans=1, img_size=64)
    m = cam.maps(cam.CamModel.of("vit", small, 64), np.zeros((2, 64, 64), np.uint8) + 100, [0, 1])
    assert m.shape == (2, 64, 64)  # maps on the 4x4 token grid, upsampled to the input


def test_cam_command_writes_panels_and_cam_json(tmp_path: Path) -> None:
    runner = CliRunner()
    opts = ["--data", "phantom", "-o", "n_train=80", "-o", "n_test=40", "-o", "size=32"]
    pool = tmp_path / "pool"
    r = runner.invoke(app, ["synth", *opts, "--out", str(pool), "--generator", "transform",
                            "--classes", "Moderate_Demented,Non_Demented"])
    assert r.exit_code == 0, r.output
    files = []
    for seed in (0, 1):
        r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", "--seed", str(seed),
                                *opts, "--epochs", "1", "--resolution", "32", "--out", str(tmp_path / "runs"),
                                "--save-weights"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.output.strip().splitlines()[-1])["result"]
        assert json.loads(Path(res).read_text())["weights"]  # the result records its weights file
        files.append(res)
    out = tmp_path / "cam"
    r = runner.invoke(app, ["cam", *files, "--pool", str(pool), "--out", str(out), "--pairs", "3",
                            "--road-images", "1"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "cam.json").read_text())
    assert set(report["per_class"]) == {"Moderate_Demented", "Non_Demented"}
    for v in report["per_class"].values():
        assert {"pearson", "iou", "road", "pairs"} <= set(v)
        assert v["pairs"] >= 2 and v["flat_maps"] >= 0
        # Flat maps (no positive evidence) leave the agreement undefined (null), never a made-up number.
        assert v["pearson"] is None or -1 <= v["pearson"] <= 1
        assert v["iou"] is None or 0 <= v["iou"] <= 1
    (cell,) = report["seed_stability"].values()
    assert cell["seeds"] == [0, 1] and set(cell["per_class"]) == {"Moderate_Demented", "Non_Demented"}
    for p in report["panels"]:
        assert (out / p["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cam_without_weights_names_the_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    opts = ["--data", "phantom", "-o", "n_train=240", "-o", "n_test=80", "-o", "size=32"]
    r = runner.invoke(app, ["run", "--model", "cnn", "--scenario", "1", "--aug", "none", *opts, "--epochs", "1",
                            "--resolution", "32", "--out", str(tmp_path / "runs")])
    res = json.loads(r.output.strip().splitlines()[-1])["result"]
    r = runner.invoke(app, ["cam", res, "--pool", str(tmp_path), "--out", str(tmp_path / "cam")])
    assert r.exit_code == 2 and "--save-weights" in r.output


# --- the agreement numbers by hand (issue 18) ------------------------------------------------------------


def _ramp() -> tuple[np.ndarray, np.ndarray]:
    """a: 0..99 row by row on 10x10; b: the same ramp 10 higher (mod 100), i.e. a's rows moved up by one."""
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    return a, (a + 10) % 100


def test_iou_of_the_top_20_percent_by_hand() -> None:
    a, b = _ramp()
    # Top 20 pixels: a's rows 8-9 (values 80-99), b's rows 7-8 (where a is 70-89). Overlap row 8: 10 / 30.
    ra, rb = cam.top_region(a), cam.top_region(b)
    assert ra.sum() == 20 and ra[8:].all() and not ra[:8].any()
    assert rb.sum() == 20 and rb[7:9].all() and not rb[9].any()
    assert cam.iou(a, b) == pytest.approx(1 / 3)
    # On the top 80% instead, a keeps values 20-99, b values >= 20 where a is 10-89: 70 / 90. Not the number.
    assert cam.iou(a, b, fraction=0.8) == pytest.approx(7 / 9)
    assert cam.TOP_FRACTION == 0.2
    # Half the map: a >= 50 (50 px), b >= 50 where a is 40-89 (50 px): 40 / 60.
    assert cam.iou(a, b, fraction=0.5) == pytest.approx(2 / 3)


def test_top_region_counts_ties_rounds_half_and_skips_the_minimum() -> None:
    # 13 pixels: 20% is 2.6, rounded to 3 (not cut to 2).
    m = np.arange(13, dtype=np.float32).reshape(1, 13)
    assert cam.top_region(m).sum() == 3 and cam.top_region(m)[0, 10:].all()
    # 7 pixels: 1.4 -> 1; 2 pixels: 0.4 -> at least 1.
    assert cam.top_region(np.arange(7.0).reshape(1, 7)).sum() == 1
    assert cam.top_region(np.array([[0.0, 1.0]])).tolist() == [[False, True]]
    # Ties at the threshold are all in: the 3rd largest value 5 is shared by 4 pixels -> 2 + 4 = 6.
    t = np.array([[9, 8, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1]], np.float32)
    assert cam.top_region(t).sum() == 6
    # Pixels at the map's minimum are never in, even when the top 20% reaches them.
    z = np.zeros((5, 5), np.float32)
    z[0, :3] = [3.0, 2.0, 1.0]
    assert cam.top_region(z).sum() == 3


def test_pearson_and_mass_in_by_hand() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    b = np.array([[2.0, 4.0], [6.0, 9.0]], np.float32)
    # centred: a -1.5 -0.5 0.5 1.5; b -3.25 -1.25 0.75 3.75; sum ab 11.5; sum aa 5; sum bb 26.75
    assert cam.pearson(a, b) == pytest.approx(11.5 / np.sqrt(5 * 26.75))
    assert cam.pearson(a, -b) == pytest.approx(-11.5 / np.sqrt(5 * 26.75))
    assert cam.pearson(a, 3 * a + 7) == pytest.approx(1.0)
    region = np.array([[False, True], [False, True]])
    assert cam.mass_in(a, region) == pytest.approx(6 / 10)
    assert cam.mass_in(np.zeros((2, 2)), region) == 0.0
    assert cam.mass_in(a, ~region) == pytest.approx(4 / 10)
    assert cam.mass_in(np.array([[0.25, 0.25]]), np.array([[True, False]])) == pytest.approx(0.5)  # total under 1


def test_flat_maps_threshold() -> None:
    base = np.zeros((4, 4), np.float32)
    nearly = base.copy()
    nearly[0, 0] = 1e-6  # a peak-to-peak of 1e-6 counts as flat, 1e-5 does not
    marked = base.copy()
    marked[0, 0] = 1e-5
    assert cam.flat(base) and cam.flat(nearly) and not cam.flat(marked)
    a, _ = _ramp()
    assert cam.iou(a, np.zeros_like(a)) == 0.0 and cam.iou(np.zeros_like(a), a) == 0.0
    assert cam.pearson(np.zeros_like(a), a) == 0.0
    assert np.isnan(cam.iou(base, nearly)) and np.isnan(cam.pearson(base, nearly))


def test_summary_by_hand() -> None:
    s = cam._summary([1.0, 2.0, 6.0, float("nan")])  # NaN (a flat pair) left out
    assert s["mean"] == pytest.approx(3.0) and s["median"] == pytest.approx(2.0)
    assert s["sd"] == pytest.approx(np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))  # ddof 1
    assert cam._summary([0.5]) == {"mean": 0.5, "median": 0.5, "sd": 0.0}
    assert cam._summary([1.0, 3.0])["sd"] == pytest.approx(np.sqrt(2.0))  # two values: ddof 1 already
    assert cam._summary([float("nan")]) == {"mean": None, "median": None, "sd": None}
    assert cam._summary([]) == {"mean": None, "median": None, "sd": None}
    assert cam._num(float("nan")) is None and cam._num(0.25) == 0.25 and cam._num(float("inf")) is None


def _run(run_id: str, seed: int, model: str = "cnn") -> cam.Run:
    result = results.RunResult(run_id, {"model": model, "scenario": {"name": "3"}, "augmentation": "none",
                                        "seed": seed}, results.Metrics(), results.DataInfo(), results.Counts())
    return cam.Run(Path(f"{run_id}.json"), result, None, None)  # type: ignore[arg-type]


def test_seed_stability_by_hand() -> None:
    a, b = _ramp()
    c = a[::-1].copy()
    runs = [_run("r0", 0), _run("r1", 1), _run("r2", 2), _run("n0", 0, model="resnet18"), _run("v0", 0, model="vit"),
            _run("v5", 5, model="vit")]
    assert runs[0].cell == runs[2].cell != runs[3].cell and runs[1].label == "cnn/s3/none/seed1"
    real_maps = {"r0": {1: np.stack([a, a])}, "r1": {1: np.stack([a, b])}, "r2": {1: np.stack([c, a])},
                 "n0": {1: np.stack([a, a])}, "v0": {1: np.stack([a])}, "v5": {1: np.stack([c])}}
    out = cam.seed_stability(runs, real_maps)
    assert list(out) == ["cnn/s3/none", "vit/s3/none"]  # the ResNet's cell has one run: no stability to report
    # Two ViT runs, one image: the single pair (a, c).
    assert out["vit/s3/none"]["seeds"] == [0, 5]
    assert out["vit/s3/none"]["per_class"] == {"Moderate_Demented": {"pearson": pytest.approx(-99 / 101),
                                                                    "pearson_sd": 0.0, "runs": 2, "images": 1}}
    cell = out["cnn/s3/none"]
    assert cell["seeds"] == [0, 1, 2]
    # Pairs of runs (0,1), (0,2), (1,2), image by image: (a,a) (a,b), (a,c) (a,a), (a,c) (b,a). With a = 10 row +
    # column and c its rows reversed, r(a,c) = (-100 var(row) + var(col)) / (100 var(row) + var(col)) = -99/101.
    r_ab, r_ac = np.corrcoef(a.ravel(), b.ravel())[0, 1], -99 / 101
    vals = [1.0, r_ab, r_ac, 1.0, r_ac, r_ab]
    got = cell["per_class"]["Moderate_Demented"]  # class index 1
    assert got["pearson"] == pytest.approx(np.mean(vals)) and got["pearson_sd"] == pytest.approx(np.std(vals, ddof=1))
    assert got["runs"] == 3 and got["images"] == 2


def test_pick_pairs_one_variation_per_source() -> None:
    from types import SimpleNamespace

    labels = np.array([1, 1, 1, 2, 1, 1, 2])
    sources = np.array([5, 5, 7, 5, 9, 7, 3])
    images = np.arange(7 * 4, dtype=np.uint8).reshape(7, 2, 2)
    pool = SimpleNamespace(labels=labels, sources=sources, images=images)
    ds = SimpleNamespace(train_x=np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2) + 100)
    # Class 1: sources 5, 7, 9 with first variations at rows 0, 2, 4: all three when 8 are asked for.
    p = cam.pick_pairs(pool, ds, 1, 8)  # type: ignore[arg-type]
    assert p.rows.tolist() == [0, 2, 4] and p.sources.tolist() == [5, 7, 9] and p.label == 1
    assert (p.real == ds.train_x[[5, 7, 9]]).all() and (p.synthetic == images[[0, 2, 4]]).all()
    two = cam.pick_pairs(pool, ds, 1, 2, seed=3)  # type: ignore[arg-type]
    assert len(two.rows) == 2 and set(two.rows.tolist()) <= {0, 2, 4} and two.rows.tolist() == sorted(two.rows)
    assert (pool.sources[two.rows] == two.sources).all()
    # Seeded: the same pick every time, seed 0 by default (10 sources, 5 picked: 252 possible picks).
    many = SimpleNamespace(labels=np.ones(10, np.int64), sources=np.arange(10), images=np.zeros((10, 2, 2), np.uint8))
    picks = [cam.pick_pairs(many, ds, 1, 5, seed=s).rows.tolist() for s in (0, 0, 1)]  # type: ignore[arg-type]
    assert picks[0] == picks[1] == cam.pick_pairs(many, ds, 1, 5).rows.tolist() != picks[2]  # type: ignore[arg-type]
    none = cam.pick_pairs(pool, ds, 0, 4)  # type: ignore[arg-type]
    assert len(none.rows) == 0 and none.real.shape == (0, 2, 2)


# --- runs shaped like the published study's (issue 37) ------------------------------------------------------------
# Subject splits with a pool folder per split made for every class, Moderate merged into Mild (3 task classes),
# weights kept by the grid, scenario 1 beside a pretraining scenario: `mriaug cam` on each cell's split-0 runs with
# a merged-away source class (Moderate) and a kept one, then `mriaug report --cam` with both cells.

GRID = """name = "camstudy"
results = "{root}/results"
models = ["cnn"]
scenarios = ["1", "pre-diffusion"]
augmentations = ["none"]
seeds = 4
budget = "steps"
save_weights = true

[pool]
diffusion = "{root}/pool"

[scenario.pre-diffusion]
pretrain = {{pool = "diffusion", images = 60, epochs = 1}}

[data]
source = "phantom"
n_train = 240
n_test = 80
size = 32
split = "subject"
splits = 2
split_seed = 0
merge = {{Moderate_Demented = "Mild_Demented"}}

[model.cnn]
epochs = 3
batch_size = 32
resolution = 32
class_weight = "balanced"
"""
CLASSES = "Moderate_Demented,Non_Demented"  # a source class merged away, and one the task keeps
CELLS = {"scenario-1": "1", "pre-diffusion": "pre-diffusion"}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid's pools (transform, `--classes all`, one folder per split) and its 8 runs, weights kept."""
    root = tmp_path_factory.mktemp("camstudy")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the maps' numbers below are of these weights: one summation order, every time
    g = root / "grid.toml"
    g.write_text(GRID.format(root=root))
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--grid", str(g), "--generator", "transform", "--classes", "all",
                            "--no-report"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["grid", str(g)])
    torch.set_num_threads(before)
    assert r.exit_code == 0, r.output
    return root


def _study_runs(root: Path, scenario: str, seeds: tuple[int, ...] = (0, 2)) -> list[str]:
    """The result files of one scenario's runs of the given seeds (0 and 2: split 0 of 2), in seed order."""
    found = {r.seed: p for p, r in results.scan(root / "results") if not isinstance(r, results.ResultError)
             and r.scenario == scenario and r.seed in seeds}
    return [str(found[s]) for s in seeds]


@pytest.fixture(scope="module")
def cams(study: Path) -> Path:
    """`mriaug cam` per cell into CAM/CELL: scenario 1 given the split's folder, the pretraining cell the grid's
    pool (the folder of every split), which cam resolves to the runs' split."""
    runner = CliRunner()
    for cell, scenario in CELLS.items():
        pool = study / "pool" / ("split-0" if scenario == "1" else "")
        r = runner.invoke(app, ["cam", *_study_runs(study, scenario), "--pool", str(pool), "--out",
                                str(study / "cam" / cell), "--classes", CLASSES, "--pairs", "3",
                                "--road-images", "1"])
        assert r.exit_code == 0, r.output
        assert "task class" in r.output and re.search(r"Moderate_Demented\s+Mild_Demented", r.output), r.output
    return study / "cam"


def _cam(cams: Path, cell: str) -> dict:
    return json.loads((cams / cell / "cam.json").read_text())


def test_cam_json_of_each_cell_names_it_and_holds_every_number(study: Path, cams: Path) -> None:
    unmerged = None
    for cell, scenario in CELLS.items():
        rep = _cam(cams, cell)
        assert Path(rep["pool"]) == study / "pool" / "split-0"  # the runs' split, also where the parent was given
        assert rep["split"] == {"kind": "subject", "seed": 0, "splits": 2}
        assert rep["classes"] == ["Mild_Demented", "Non_Demented", "Very_Mild_Demented"]
        (c,) = rep["cells"]
        assert c["scenario"] == scenario and c["seeds"] == [0, 2] and len(c["run_ids"]) == 2
        if scenario == "1":
            assert c["name"] == "cnn/s1/none" and c["pretraining"] is None and not c["trained_on_pool"]
        else:  # named by its pretraining, which drew on this very pool
            assert c["name"] == "cnn/spre-diffusion/none, pretrained on diffusion (60 images, 1 epoch)"
            assert c["pretraining"]["pool"] == "diffusion" and c["pretraining"]["images"] == 60
            assert c["trained_on_pool"]
        assert set(rep["per_class"]) == {"Moderate_Demented", "Non_Demented"}
        assert rep["per_class"]["Moderate_Demented"]["task_class"] == "Mild_Demented"
        assert rep["per_class"]["Non_Demented"]["task_class"] == "Non_Demented"
        for v in rep["per_class"].values():
            assert v["runs"] == 2 and v["pairs"] >= 2
            assert v["pearson"] is None or -1 <= v["pearson"] <= 1
            assert v["iou"] is None or 0 <= v["iou"] <= 1
            for key in ("road", "road_real", "road_synthetic"):
                assert v[key] is not None and np.isfinite(v[key])
            assert 0 <= v["p_target_real"] <= 1 and 0 <= v["p_target_synthetic"] <= 1
        (st,) = rep["seed_stability"].values()
        assert list(rep["seed_stability"]) == [c["name"]] and st["seeds"] == [0, 2]
        assert set(st["per_class"]) == {"Moderate_Demented", "Non_Demented"}
        # The pairs are of the asked source class: Moderate sources (label Mild after the merge), Non sources.
        run = cam.load_run(_study_runs(study, scenario)[0])
        if unmerged is None:
            spec = run.result.data_spec
            unmerged = data_mod.load(data_mod.DataSpec(spec["source"], spec["options"]).unmerged())
        for name, want in (("Moderate_Demented", (1, 0)), ("Non_Demented", (2, 1))):
            e = rep["per_run"][run.run_id]["per_class"][name]
            src = np.asarray(e["sources"])
            assert len(src) == e["pairs"] >= 2 and e["target"] == e["task_class"]
            assert (unmerged.train_y[src] == want[0]).all() and (run.dataset.train_y[src] == want[1]).all()
        for p in rep["panels"]:
            assert (cams / cell / p["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_pair_numbers_are_the_maps_of_the_task_class(study: Path, cams: Path) -> None:
    """The first pretraining run's numbers again, from its weights: Moderate sources' maps are of Mild (task label
    0), not of the source's own index (1, Non_Demented's label after the merge)."""
    rep = _cam(cams, "pre-diffusion")
    run = cam.load_run(_study_runs(study, "pre-diffusion")[0])
    pool = pools.load(rep["pool"], run.dataset)
    e = rep["per_run"][run.run_id]["per_class"]["Moderate_Demented"]
    real, syn = run.dataset.train_x[e["sources"]], pool.images[e["pool_rows"]]
    t = [0] * len(real)
    mr, ms = cam.maps(run.cam_model, real, t), cam.maps(run.cam_model, syn, t)
    assert not any(cam.flat(m) for m in (*mr, *ms))  # evidence for Mild on Moderate sources: defined numbers
    assert e["pearson_per_pair"] == pytest.approx([cam.pearson(a, b) for a, b in zip(mr, ms, strict=True)], abs=1e-5)
    assert e["iou_per_pair"] == pytest.approx([cam.iou(a, b) for a, b in zip(mr, ms, strict=True)], abs=1e-5)
    assert e["p_target_real"] == pytest.approx(float(run.cam_model.probabilities(real)[:, 0].mean()), abs=1e-5)


def test_report_shows_both_cells_maps_and_numbers(study: Path, cams: Path) -> None:
    out = study / "report"
    r = CliRunner().invoke(app, ["report", str(study / "results"), "--out", str(out), "--cam", str(cams)])
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="gradcam">'):html.index('<section id="provenance">')]
    # One row per cell and source class, each cell named with its pretraining and seeds, its numbers as cam.json
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    cells = {}
    for cell in CELLS:
        rep = _cam(cams, cell)
        name = f"{rep['cells'][0]['name']} (seeds 0, 2)"
        for cls, v in rep["per_class"].items():
            label = cls if cls == v["task_class"] else f"{cls} (as {v['task_class']})"
            row = [x for x in rows if f"<td>{name}</td>" in x and f"<td>{label}</td>" in x]
            assert len(row) == 1, (name, label, rows)
            cells[cell, cls] = re.findall(r"<td>(.*?)</td>", row[0])
            want = ["—" if v[k] is None else f"{v[k]:.3f}" for k in ("pearson", "iou", "road_real")]
            assert cells[cell, cls][4:7] == want
    assert ("pre-diffusion", "Moderate_Demented") in cells and ("scenario-1", "Non_Demented") in cells
    assert "pretrained on diffusion (60 images, 1 epoch)" in section and "cnn/s1/none (seeds 0, 2)" in section
    assert "pool/split-0" in section and "split 0 of 2" in section
    assert "not new to them" in section  # the pretraining cell trained on the pool's images
    # Panels of both cells, each source class of each, embedded and captioned with the cell
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", section, re.S)
    for cls in CLASSES.split(","):
        assert any(c.startswith("cnn/s1/none, seed 0: " + cls) for c in captions), captions
        assert any(c.startswith("cnn/spre-diffusion/none, pretrained on diffusion") and f": {cls} sources" in c
                   for c in captions), captions
    assert section.count('src="data:image/png;base64,') == 4
    md = (out / "report.md").read_text()
    assert "| cnn/s1/none (seeds 0, 2) | Moderate_Demented (as Mild_Demented) |" in md


def test_cam_refuses_runs_of_two_splits_and_a_cam_folder_without_output(study: Path, cams: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["cam", *_study_runs(study, "1", (0, 1)), "--pool", str(study / "pool"), "--out",
                            str(study / "mixed")])
    assert r.exit_code == 2 and "different datasets" in r.output, r.output
    r = runner.invoke(app, ["report", str(study / "results"), "--out", str(study / "r2"), "--cam",
                            str(study / "pool")])
    assert r.exit_code == 2 and "no cam.json" in r.output, r.output
