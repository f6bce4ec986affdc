"""Augmentation by behaviour, through `augment.get(name)`: what comes out, for which images, and what
never goes in (the test set)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mriaug import augment, batches, data, scenarios
from mriaug.data import DataSpec
from mriaug.errors import SettingError
from mriaug.grid import plan_run
from mriaug.train import execute
from tests.conftest import tiny_hparams


@pytest.fixture(autouse=True)
def _fresh_tables() -> None:
    # Built anew for each test: the builders of the cached policy table and kernels are tested too.
    augment.clear_caches()


def _batch(n: int = 64, size: int = 16, seed: int = 0) -> torch.Tensor:
    # Random pixels: no image equals its own mirror image.
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g)


def _keys(n: int, seed: int, epoch: int = 0) -> torch.Tensor:
    """The per-image keys a run with this seed draws from at this epoch (images 0..n-1)."""
    return batches.image_keys(seed, epoch, torch.arange(n))


def _mirrored(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per image: True where `out` is `x` mirrored left-right; every image must be one or the other."""
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all()), "hflip returned an image that is neither the input nor its mirror"
    return flipped


def test_hflip_mirrors_about_half_a_batch_left_to_right() -> None:
    x = _batch()
    out = augment.get("hflip")(x, _keys(len(x), 0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    flipped = _mirrored(x, out)
    assert 20 <= int(flipped.sum()) <= 44  # Binomial(64, 1/2): mean 32, sd 4
    assert not (out == x.flip(-2)).flatten(1).all(1).any(), "a vertical flip is not the thesis's augmentation"
    # Over many batches the share is one half.
    total = 0
    for seed in range(20):
        total += int(_mirrored(x, augment.get("hflip")(x, _keys(len(x), 100 + seed))).sum())
    assert 560 <= total <= 720  # 1280 draws: mean 640, sd 18
    assert torch.equal(x, _batch()), "the input batch is left as it was"


def test_hflip_draws_from_the_seed() -> None:
    x = _batch()
    a = augment.get("hflip")(x, _keys(len(x), 5))
    b = augment.get("hflip")(x, _keys(len(x), 5))
    c = augment.get("hflip")(x, _keys(len(x), 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_none_is_the_identity() -> None:
    x = _batch()
    assert torch.equal(augment.get("none")(x, _keys(len(x), 0)), x)


@pytest.fixture(scope="module")
def phantom_images() -> torch.Tensor:
    ds = data.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
    return torch.from_numpy(ds.train_x[:32]).unsqueeze(1)


def test_autoaugment_changes_images(phantom_images: torch.Tensor) -> None:
    out = augment.get("autoaugment")(phantom_images, _keys(len(phantom_images), 0))
    assert out.shape == phantom_images.shape and out.dtype == torch.uint8
    changed = (out != phantom_images).flatten(1).any(1)
    assert int(changed.sum()) >= 16, f"only {int(changed.sum())} of 32 images changed"
    # Not a mere mirror image either.
    assert not torch.equal(out, phantom_images.flip(-1))


def test_autoaugment_differs_per_image(phantom_images: torch.Tensor) -> None:
    # The same image 32 times: a policy drawn once per batch would give (at most) one distinct output.
    same = phantom_images[:1].repeat(32, 1, 1, 1)
    out = augment.get("autoaugment")(same, _keys(len(same), 1))
    distinct = {hashlib.sha256(o.numpy().tobytes()).hexdigest() for o in out}
    assert len(distinct) >= 8, f"{len(distinct)} distinct outputs for 32 draws"


def test_unknown_augmentation_is_named() -> None:
    with pytest.raises(SettingError, match=r"unknown augmentation 'vflip'; known: none, hflip, autoaugment"):
        augment.get("vflip")
    assert set(augment.LABELS) == set(augment.AUGMENTATIONS)


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["hflip", "autoaugment"])
def test_the_test_set_never_passes_through_augmentation(name: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})
    ds = data.load(spec)
    seen: list[torch.Tensor] = []
    real_get = augment.get

    def spying_get(aug_name: str) -> Any:
        fn = real_get(aug_name)

        def spy(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            seen.append(x.detach().cpu().clone())
            return fn(x, *args, **kwargs)

        return spy

    monkeypatch.setattr(augment, "get", spying_get)
    run = plan_run("cnn", scenarios.SCENARIOS["2"], name, 0, tiny_hparams("cnn", epochs=2), spec)
    r = execute(run, tmp_path, log=lambda m: None)
    went_in = [_digest(img[0].numpy()) for batch in seen for img in batch]
    train = {_digest(img) for img in ds.train_x}
    test = {_digest(img) for img in ds.test_x}
    assert train.isdisjoint(test), "the check needs distinct train and test images"
    # Every image augmented is a kept training image, each once per epoch; no test image ever.
    kept = [_digest(ds.train_x[i]) for i in r["selection"]["real_train_rows"]]
    assert sorted(went_in) == sorted(kept * 2)
    assert not set(went_in) & test
