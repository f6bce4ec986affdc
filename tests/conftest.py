"""Shared fixtures: every test session gets its own data cache, and small data made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mriaug.data import DataSpec
from mriaug.hparams import resolve as model_hparams

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alzheimer_mri"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Never touch the user's cache; Slurm jobs submitted by tests inherit this variable.
    cache = tmp_path_factory.mktemp("mriaug-cache")
    os.environ["MRIAUG_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return cache


@pytest.fixture
def phantom_spec() -> DataSpec:
    return DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32})


def tiny_hparams(model: str = "cnn", **over: object) -> dict:
    base = {"epochs": 2, "batch_size": 32, "resolution": 32, "lr": 2e-3}
    if model == "vit":
        base.update(arch="vit_tiny_patch16_224", pretrained=False)
    if model == "resnet18":
        base.update(arch="resnet18", pretrained=False)
    base.update(over)
    return model_hparams(model, base)
