"""Grad-CAM (`mriaug cam`): the maps find where a class's signal is, and the agreement numbers say whether a
variation keeps it there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mriaug import models
from mriaug.analysis import cam
from mriaug.cli import app
from mriaug.hparams import resolve

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
