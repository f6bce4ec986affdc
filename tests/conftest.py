"""Shared fixtures: every test session gets its own data cache, and small data made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mriaug import data
from mriaug.data import DataSpec
from mriaug.hparams import resolve as model_hparams

# The real dataset beside the checkout (../shared/data); MRIAUG_REAL_DATA points elsewhere (the test of the
# CI rule below uses it to name a folder that is not there).
REAL_DATA = Path(os.environ.get("MRIAUG_REAL_DATA")
                 or Path(__file__).resolve().parents[2] / "shared" / "data" / "alzheimer_mri")


def in_ci() -> bool:
    """CI sets CI=true: there a test that needs the real data fails when it is missing instead of skipping."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_real_data() -> None:
    """Skip without the real dataset on a developer's machine; fail loudly in CI, where it must be."""
    if REAL_DATA.is_dir():
        return
    if in_ci():
        pytest.fail(f"CI is set but the real dataset is not at {REAL_DATA}; lay out ../shared/data (or set "
                    "MRIAUG_REAL_DATA) so these tests run", pytrace=False)
    pytest.skip(f"real dataset not present at {REAL_DATA}")


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


@pytest.fixture
def ds(phantom_spec: DataSpec) -> data.Dataset:
    """The phantom dataset of `phantom_spec`, loaded."""
    return data.load(phantom_spec)


def tiny_hparams(model: str = "cnn", **over: object) -> dict:
    base = {"epochs": 2, "batch_size": 32, "resolution": 32, "lr": 2e-3}
    if model == "vit":
        base.update(arch="vit_tiny_patch16_224", pretrained=False)
    if model == "resnet18":
        base.update(arch="resnet18", pretrained=False)
    base.update(over)
    return model_hparams(model, base)
