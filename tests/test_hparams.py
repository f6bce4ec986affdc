"""`mriaug.plan.hparams`: a model's settings are its defaults, then the grid's table, then the overrides. (Until issue
23 in test_layout.py.)"""

from __future__ import annotations

import pytest

from mriaug.plan import hparams


def test_hparams_resolve_defaults_then_table_then_overrides() -> None:
    card = hparams.MODELS["vit"].defaults
    hp = hparams.resolve("vit", {"lr": 1e-4, "epochs": 3}, {"epochs": 5, "batch_size": None})
    assert (hp.lr, hp.epochs, hp.batch_size, hp.weight_decay) == (1e-4, 5, card.batch_size, card.weight_decay)
    assert hparams.thesis("vit").weight_decay == 0.05 and hparams.thesis("cnn").epochs == 10
    with pytest.raises(hparams.HParamError, match="lr: must be a positive finite number, got inf"):
        hparams.resolve("cnn", {"lr": float("inf")})
