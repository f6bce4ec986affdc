"""Pool fidelity from libraries: batched SSIM (torchmetrics) and KID on features of a CNN trained on the real data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mriaug.analysis import fidelity, pool_report
from mriaug.data import sources as data


def test_ssim_in_batches_equals_one_batch() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (10, 32, 32), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    assert np.allclose(pool_report.ssim(a, b, batch=3), pool_report.ssim(a, b, batch=64))


def test_kid_sees_a_shifted_distribution_above_the_real_floor() -> None:
    ds = data.load(data.DataSpec("phantom", {"n_train": 320, "n_test": 40, "size": 32}))
    net = fidelity.feature_net(ds)
    real = ds.train_x[ds.train_y == 2]  # Non_Demented, the largest class
    copies = real.copy()
    darker = (real // 3).astype(np.uint8)
    same = fidelity.kid_real_vs_synthetic(net, real, copies)
    off = fidelity.kid_real_vs_synthetic(net, real, darker)
    assert off["kid_real_vs_synthetic"] > 5 * max(off["kid_real_vs_real"], 1e-4)
    assert same["kid_real_vs_real"] == off["kid_real_vs_real"]  # the floor does not depend on the synthetic set
    assert fidelity._cache_path(ds).exists()  # trained once, then read from the cache


# --- KID by hand -------------------------------------------------------------------------------------------------
# With a one-number feature f, torchmetrics' KID is the unbiased MMD^2 with the kernel k(x, y) = (x*y/1 + 1)^3:
# mean of k over distinct pairs within each set, plus the same for the other set, less twice the mean of k over
# all cross pairs. With subset_size equal to both set sizes every subset is the whole set: std 0.
# Feature: the mean of the prepared image, so a black image (0 -> -1) gives -1, a white one +1, and one half
# black, half white 0 (64 x 64, the feature net's side, so nothing is resized).


class _MeanFeature(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().mean(dim=(1, 2, 3))[:, None]


def _img(kind: str) -> np.ndarray:
    x = np.zeros((fidelity.SIDE, fidelity.SIDE), np.uint8)
    if kind == "white":
        x[:] = 255
    elif kind == "half":
        x[:, fidelity.SIDE // 2 :] = 255
    return x


def test_kid_known_answers() -> None:
    b, w, h = _img("black"), _img("white"), _img("half")
    net = _MeanFeature()
    # {-1, -1} against {+1, +1}: k(-1,-1) = 8 within the first, k(1,1) = 8 within the second, k(-1,1) = 0 across:
    # 8 + 8 - 2*0 = 16.
    assert fidelity.kid(net, np.stack([b, b]), np.stack([w, w]), 2) == (16.0, 0.0)
    # {-1, +1} against {+1, +1}: 0 within the first, 8 within the second, across (0 + 0 + 8 + 8)/4 = 4: 0 + 8 - 8 = 0.
    assert fidelity.kid(net, np.stack([b, w]), np.stack([w, w]), 2) == (0.0, 0.0)
    # {0, 0} against {-1, +1}: k(0, .) = 1 everywhere: 1 + 0 - 2*1 = -1 (the unbiased estimate can go below 0).
    assert fidelity.kid(net, np.stack([h, h]), np.stack([b, w]), 2) == (-1.0, 0.0)


def test_halves_are_disjoint_random_and_seeded() -> None:
    for n in (2, 7, 10):
        a, b = fidelity.halves(n, 3)
        assert len(a) == n // 2 and len(b) == n - n // 2
        assert sorted(np.concatenate([a, b]).tolist()) == list(range(n))  # disjoint, and every row once
    assert np.array_equal(fidelity.halves(10, 3)[0], fidelity.halves(10, 3)[0])
    assert np.array_equal(fidelity.halves(10)[0], np.random.default_rng(0).permutation(10)[:5])  # seed 0
    assert len({tuple(np.sort(fidelity.halves(10, s)[0])) for s in range(6)}) > 1  # the seed draws the halves


def test_kid_floor_is_between_two_distinct_halves() -> None:
    # Real images with features A = -1, B = +1, C = 0, D = 0; synthetic {+1, +1}. The three ways to halve them:
    #   {A,B}|{C,D}: floor k(A,B) + k(C,D) - 2*(1+1+1+1)/4 = 0 + 1 - 2 = -1;
    #   {A,C}|{B,D} or {A,D}|{B,C}: 1 + 1 - 2*(0+1+1+1)/4 = 0.5.
    # Against the synthetic pair (8 within it) from the first half: {A,B} 0 + 8 - 2*(0+0+8+8)/4 = 0;
    # {C,D} 1 + 8 - 2*1 = 7; {A,C} or {A,D} 1 + 8 - 2*(0+0+1+1)/4 = 8; {B,C} or {B,D} 1 + 8 - 2*(8+8+1+1)/4 = 0.
    # A floor taken between a half and itself would give -8, 0 or -3.5 instead.
    real = np.stack([_img("black"), _img("white"), _img("half"), _img("half")])
    syn = np.stack([_img("white"), _img("white")])
    floors = set()
    for seed in range(12):
        r = fidelity.kid_real_vs_synthetic(_MeanFeature(), real, syn, seed=seed)
        assert r["kid_subset_size"] == 2
        assert (r["kid_real_vs_real"], r["kid_real_vs_synthetic"]) in {(-1.0, 0.0), (-1.0, 7.0), (0.5, 8.0),
                                                                         (0.5, 0.0)}
        assert r["kid_real_vs_real_std"] == 0.0
        floors.add(r["kid_real_vs_real"])
    assert floors == {-1.0, 0.5}
    # Fewer than two images in a half: no KID rather than a number from one image.
    r = fidelity.kid_real_vs_synthetic(_MeanFeature(), real[:3], syn)
    assert r == {"kid_real_vs_synthetic": None, "kid_real_vs_real": None, "kid_subset_size": 1}


# --- memorisation: distances and the near-copy threshold, by hand ------------------------------------------------


def test_nearest_by_hand_and_copies_at_exactly_zero() -> None:
    ref = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    d, i = fidelity.nearest(np.array([[3.0, 4.0], [1.0, 0.0], [6.0, 8.0], [7.0, 0.0]]), ref, block=2)
    assert d.tolist() == [0.0, 1.0, 5.0, 3.0] and i.tolist() == [1, 0, 1, 2]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 32, 32), dtype=np.uint8)
    f = fidelity.pixel_features(x)
    d, i = fidelity.nearest(f[::-1], f)
    assert (d == 0.0).all() and i.tolist() == list(range(19, -1, -1))
    with pytest.raises(ValueError, match="^nearest: the reference set is empty$"):
        fidelity.nearest(f, f[:0])


def test_pixel_features_ignore_brightness_and_contrast() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 120, (3, 64, 64), dtype=np.uint8)
    f = fidelity.pixel_features(x)
    assert f.shape == (3, 32 * 32)
    assert np.allclose(np.linalg.norm(f, axis=1), 1.0) and np.allclose(f.mean(axis=1), 0.0)
    brighter = (x.astype(np.int64) * 2 + 10).astype(np.uint8)  # at most 248: no clipping
    assert np.allclose(fidelity.pixel_features(brighter), f, atol=1e-6)
    # An image and its negative: correlation -1, distance sqrt(2 * (1 - (-1))) = 2.
    neg = fidelity.pixel_features(255 - x)
    assert np.allclose(np.linalg.norm(neg - f, axis=1), 2.0)


def test_near_copy_threshold_by_hand() -> None:
    # 5th percentile of 1..100 (linear interpolation): position 0.05 * 99 = 4.95 between 5 and 6 -> 5.95.
    assert fidelity.near_copy_threshold(np.arange(1, 101, dtype=float)) == pytest.approx(5.95, abs=1e-12)
    assert fidelity.near_copy_threshold(np.arange(1, 101, dtype=float) / 1000) == pytest.approx(0.02)  # the floor
    assert fidelity.near_copy_threshold(np.zeros(50)) == fidelity.NEAR_FLOOR  # a held-out part of duplicates
    assert fidelity.near_copy_threshold(np.zeros(0)) == fidelity.NEAR_FLOOR


# --- class fidelity's classifier ---------------------------------------------------------------------------------


def test_class_weights_and_recall_by_hand() -> None:
    # Counts 3, 0, 1, 0 over 4 images and 2 present classes: 4 / (2*3) and 4 / (2*1); absent classes 0.
    w = fidelity.class_weights(np.array([0, 0, 0, 2]))
    assert w.tolist() == pytest.approx([2 / 3, 0.0, 2.0, 0.0])
    pred, y = np.array([0, 0, 1, 2, 2, 3]), np.array([0, 1, 1, 2, 3, 3])
    assert fidelity.recall(pred, y, 1) == 0.5 and fidelity.recall(pred, y, 3) == 0.5
    assert fidelity.recall(pred, y, 0) == 1.0 and fidelity.recall(pred, np.array([0, 0, 0, 2, 2, 2]), 1) is None


def test_feature_net_is_cached_per_split_and_trained_without_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"n_train": 160, "n_test": 40, "size": 32, "split": "subject"}
    a = data.load(data.DataSpec("phantom", {**spec, "val_fraction": 0.1}))
    b = data.load(data.DataSpec("phantom", {**spec, "val_fraction": 0.3}))
    assert a.fingerprint == b.fingerprint and len(a.val_rows) < len(b.val_rows)  # one pool serves both...
    assert fidelity._cache_path(a) != fidelity._cache_path(b)  # ...but each has its own network
    net = fidelity.feature_net(b)
    pred = fidelity.predict(net, b.train_x)
    assert pred.shape == (len(b.train_y),) and set(pred.tolist()) <= {0, 1, 2, 3}
    # Trained on the fit rows only: the training loop sees as many images as the fit part holds.
    seen: list[int] = []
    original = fidelity.Features.prepare

    def spy(images: np.ndarray) -> torch.Tensor:
        seen.append(len(images))
        return original(images)

    fidelity._cache_path(b).unlink()
    monkeypatch.setattr(fidelity.Features, "prepare", staticmethod(spy))
    fidelity.feature_net(b)
    assert seen == [int(b.fit_mask.sum())] and seen[0] == len(b.train_y) - len(b.val_rows)


# --- the feature network, its cache and its training, by hand ------------------------------------------------------


def test_prepare_features_and_logits_by_hand() -> None:
    # uint8 -> the network's side (64), scaled to [-1, 1]: 0 -> -1, 255 -> +1, 51 -> 0.2 * 2 - 1 = -0.6.
    x = fidelity.Features.prepare(np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)]))
    assert x.shape == (2, 1, 64, 64) and x.dtype == torch.float32
    assert (x[0] == -1).all() and (x[1] == 1).all()
    small = fidelity.Features.prepare(np.full((3, 32, 32), 51, np.uint8))  # resized to 64 first
    assert small.shape == (3, 1, 64, 64) and torch.allclose(small, torch.full_like(small, -0.6))
    torch.manual_seed(0)
    net = fidelity.Features(fidelity.BasicCNN(fidelity.SIDE).train())
    assert not net.net.training  # features of a network in eval mode
    imgs = torch.rand(5, 1, 64, 64) * 2 - 1
    f = net(imgs)
    assert f.shape == (5, 64) and (f >= 0).all()  # the 64 activations after the last hidden ReLU
    # ...which the output layer turns into the class scores.
    assert torch.allclose(net.net.classifier[-1](f), net.logits(imgs)) and net.logits(imgs).shape == (5, 4)


def _hand_dataset(n: int, val: list[int], split: dict | None = None) -> data.Dataset:
    """n train images 16x16 of class k = row mod 4 (grey level 40 + 50k with a little noise), val rows held out."""
    rng = np.random.default_rng(0)
    y = np.arange(n, dtype=np.int64) % 4
    x = np.clip(40 + 50 * y[:, None, None] + rng.integers(-10, 10, (n, 16, 16)), 0, 255).astype(np.uint8)
    return data.Dataset(x, y, x[:4].copy(), y[:4].copy(), {"source": "hand", "options": {}}, "handfp",
                        val_rows=np.array(val, np.int64), split=split or {"kind": "given"})


def test_feature_net_cache_path_by_hand() -> None:
    root = data.cache_root() / "kid-features"
    assert fidelity._cache_path(_hand_dataset(8, [])) == root / "handfp-given-cnn64-e5-balanced.safetensors"
    sub = _hand_dataset(8, [1], {"kind": "subject", "fingerprint": "spl1"})
    assert fidelity._cache_path(sub) == root / "handfp-spl1-cnn64-e5-balanced.safetensors"


def test_feature_net_trains_on_the_fit_part_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    # 70 rows (classes 18, 18, 17, 17), rows 0 and 4 (class 0) held out for validation: 68 fit rows, so each of
    # the 5 epochs takes batches of 64 and 4, with class weights n / (k n_c) of the fit rows' classes
    # (16, 18, 17, 17 -> 68/64, 68/72, 1, 1).
    ds = _hand_dataset(70, [0, 4], {"kind": "subject", "fingerprint": "fitonly"})
    fidelity._cache_path(ds).unlink(missing_ok=True)
    calls: list[tuple[int, list[float], list[int]]] = []
    real_ce = torch.nn.functional.cross_entropy

    def ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        calls.append((len(target), weight.tolist(), target.tolist()))
        return real_ce(logits, target, weight=weight)

    lrs: list[float] = []
    real_adam = torch.optim.Adam

    def adam(params: object, lr: float) -> torch.optim.Optimizer:
        lrs.append(lr)
        return real_adam(params, lr=lr)  # type: ignore[arg-type]

    monkeypatch.setattr(fidelity.F, "cross_entropy", ce)
    monkeypatch.setattr(fidelity.torch.optim, "Adam", adam)
    net = fidelity.feature_net(ds)
    assert [c[0] for c in calls] == [64, 4] * 5 and lrs == [1e-3]
    assert all(c[1] == pytest.approx([68 / 64, 68 / 72, 1.0, 1.0]) for c in calls)
    fit_labels = sorted(ds.train_y[ds.fit_mask].tolist())
    for epoch in range(5):  # every fit row once per epoch (the labels of the two batches are the fit rows')
        assert sorted(calls[2 * epoch][2] + calls[2 * epoch + 1][2]) == fit_labels
    assert calls[0][2] != calls[2][2]  # shuffled anew each epoch
    # The first epoch's order: a permutation from torch's generator seeded with the seed (0), not the global one.
    perm = torch.randperm(68, generator=torch.Generator().manual_seed(0))
    assert calls[0][2] + calls[1][2] == ds.train_y[ds.fit_mask][perm.numpy()].tolist()
    assert not net.net.training and fidelity._cache_path(ds).exists()
    # Read back from the cache, without training, as the same network.
    calls.clear()
    again = fidelity.feature_net(ds)
    assert calls == [] and not again.net.training
    for k, v in net.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k]), k
    # The seed decides the network: the same seed trains the same weights, another seed others.
    monkeypatch.undo()
    fidelity._cache_path(ds).unlink()
    same = fidelity.feature_net(ds, seed=0)
    fidelity._cache_path(ds).unlink()
    other = fidelity.feature_net(ds, seed=1)
    w = "net.classifier.5.weight"
    assert torch.equal(same.state_dict()[w], net.state_dict()[w])
    assert not torch.equal(other.state_dict()[w], net.state_dict()[w])


# --- KID and class fidelity's predictions, by hand ----------------------------------------------------------------


def test_kid_in_batches_and_subsets_by_hand() -> None:
    b, w, h = _img("black"), _img("white"), _img("half")
    net = _MeanFeature()
    # The same answers with features taken one image at a time.
    assert fidelity.kid(net, np.stack([b, b]), np.stack([w, w]), 2, batch=1) == (16.0, 0.0)
    assert fidelity.kid(net, np.stack([h, h, h]), np.stack([b, w, w]), 3, batch=2)[0] == pytest.approx(
        1 + (0 + 0 + 8) / 3 - 2 * 1)
    # Default subsets (100) and seed (0); torchmetrics' warning that features are kept is silenced.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        default = fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2)
    assert not [m for m in caught if "extracted features" in str(m.message)]
    assert default == fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=100, seed=0)
    assert default != fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=101, seed=0)
    # Subsets of 2 of 3 images: {b, w} or {w, w} against {h, h}: 0 + 1 - 2 = -1 or 8 + 1 - 2 = 7; which subsets
    # are drawn is the seed's, the same for the same seed.
    one = fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=50, seed=1)
    assert one == fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=50, seed=1)
    assert -1.0 < one[0] < 7.0 and one[1] > 0
    assert one != fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=50, seed=2)
    # Every subset (with replacement of subsets) of 2 distinct images: {b,w} twice as likely as {w,w}: the mean
    # over many subsets is near (2 * -1 + 7) / 3 = 5/3.
    many = fidelity.kid(net, np.stack([b, w, w]), np.stack([h, h, h]), 2, subsets=3000, seed=0)
    assert many[0] == pytest.approx(5 / 3, abs=0.25)


def test_kid_subset_size_is_capped_at_100_by_hand() -> None:
    # 250 real images (halves of 125) and 120 synthetic ones: subsets of 100, drawn by the seed; the numbers are
    # those of `kid` on the seed's halves.
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (250, 8, 8), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    syn = rng.integers(0, 200, (120, 8, 8), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    r = fidelity.kid_real_vs_synthetic(_MeanFeature(), real, syn, seed=3)
    assert r["kid_subset_size"] == 100
    a, b = fidelity.halves(250, 3)
    assert (r["kid_real_vs_synthetic"], r["kid_real_vs_synthetic_std"]) == fidelity.kid(
        _MeanFeature(), real[a], syn, 100, seed=3)
    assert (r["kid_real_vs_real"], r["kid_real_vs_real_std"]) == fidelity.kid(_MeanFeature(), real[a], real[b], 100,
                                                                               seed=3)
    assert r["kid_real_vs_real_std"] > 0  # subsets of 100 of 125 differ
    assert fidelity.kid_real_vs_synthetic(_MeanFeature(), real[:9], syn)["kid_subset_size"] == 4  # the half of 9
    assert fidelity.kid_real_vs_synthetic(_MeanFeature(), real[:9], syn[:3])["kid_subset_size"] == 3  # synthetic
    # The default seed is 0: its halves and subsets.
    assert fidelity.kid_real_vs_synthetic(_MeanFeature(), real, syn) == fidelity.kid_real_vs_synthetic(
        _MeanFeature(), real, syn, seed=0) != r


class _Brightness(torch.nn.Module):
    """A classifier by hand: class floor(4 * v / 255) (at most 3) of an image's mean grey level v."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        k = ((x.mean(dim=(1, 2, 3)) + 1) / 2 * 4).floor().clamp(0, 3)
        return -((torch.arange(4)[None] - k[:, None]) ** 2).float()


def test_predict_by_hand() -> None:
    levels = [0, 70, 140, 255, 60, 200, 64]  # classes 0, 1, 2, 3, 0, 3, 1
    imgs = np.stack([np.full((64, 64), v, np.uint8) for v in levels])
    for batch in (1, 2, 256):
        pred = fidelity.predict(_Brightness(), imgs, batch=batch)  # type: ignore[arg-type]
        assert pred.tolist() == [0, 1, 2, 3, 0, 3, 1] and pred.dtype == np.int64
    empty = fidelity.predict(_Brightness(), imgs[:0])  # type: ignore[arg-type]
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_nearest_over_more_than_one_block_by_hand() -> None:
    # 1,100 queries (two blocks of 1,024): query j is (j + 0.25, 0), its nearest reference point (j, 0) at 0.25.
    ref = np.stack([np.arange(1100.0), np.zeros(1100)], axis=1)
    q = ref + [0.25, 0.0]
    d, i = fidelity.nearest(q[::-1], ref)
    assert i.tolist() == list(range(1099, -1, -1)) and np.allclose(d, 0.25)
    assert fidelity.pixel_features(np.zeros((2, 64, 64), np.uint8)).dtype == np.float64
