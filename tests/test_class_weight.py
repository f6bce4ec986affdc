"""class_weight = "balanced" (issue 28): the weights by hand, the weighted loss of one seed and of a pack, the
weights a run records, and its run id (unchanged for the default "none")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mriaug.data.sources import DataSpec
from mriaug.engine import nets, speed
from mriaug.engine.metrics import weighted_ce
from mriaug.engine.train import class_weights
from mriaug.errors import SettingError
from mriaug.plan import hparams, scenarios
from mriaug.plan.grid import make_spec
from tests.conftest import tiny_hparams
from tests.engine_helpers import train_one as execute


def test_balanced_weights_by_hand() -> None:
    # 6 images: three of class 0, one of class 1, two of class 2, none of class 3. n / (C * n_c) over the C = 3
    # classes present: 6/9, 6/3, 6/6; an absent class weighs 0.
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    np.testing.assert_allclose(w, [2 / 3, 2.0, 1.0, 0.0])
    # A balanced set weighs every class 1.
    np.testing.assert_allclose(class_weights(np.array([0, 1, 2, 0, 1, 2]), 3), [1.0, 1.0, 1.0])


def test_weighted_ce_by_hand() -> None:
    logits = np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.8, 0.2]]))
    y = np.array([0, 1, 1])
    losses = -np.log([0.5, 0.75, 0.2])
    assert weighted_ce(logits, y, None) == pytest.approx(losses.mean())
    # Weights 1 for class 0 and 3 for class 1: (1 * l0 + 3 * l1 + 3 * l2) / 7, torch's weighted mean.
    want = (losses[0] + 3 * losses[1] + 3 * losses[2]) / 7
    assert weighted_ce(logits, y, np.array([1.0, 3.0])) == pytest.approx(want)
    t = F.cross_entropy(torch.tensor(logits), torch.tensor(y), weight=torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert float(t) == pytest.approx(want)


def test_a_pack_weighs_each_seed_as_its_single_run() -> None:
    torch.manual_seed(0)
    hp = hparams.resolve("cnn", {"resolution": 16, "epochs": 1, "batch_size": 4, "lr": 1e-3})
    fast = speed.settings()
    one = [nets.build("cnn", hp, [s], torch.device("cpu"), fast, 3) for s in (0, 1)]
    pack = nets.build("cnn", hp, [0, 1], torch.device("cpu"), fast, 3)
    xb = torch.randint(0, 255, (2, 6, 1, 16, 16), dtype=torch.uint8)
    yb = torch.tensor([[0, 1, 1, 2, 2, 2], [0, 0, 1, 2, 1, 0]])
    w = torch.tensor([[3.0, 1.0, 0.5], [1.0, 2.0, 4.0]])
    packed = pack.losses(xb, yb, False, w).detach()
    for k in range(2):
        single = one[k].losses(xb[k : k + 1], yb[k : k + 1], False, w[k : k + 1]).detach()
        assert float(single) == pytest.approx(float(packed[k]), rel=1e-5)
        plain = one[k].losses(xb[k : k + 1], yb[k : k + 1], False).detach()
        assert float(plain) != pytest.approx(float(single), rel=1e-3)  # the weights change the loss


def test_a_run_records_its_weights_and_selects_on_the_weighted_loss(tmp_path: Path) -> None:
    data = DataSpec("phantom", {"n_train": 480, "n_test": 160, "size": 32, "split": "subject", "val_fraction": 0.3})
    spec = make_spec("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams("cnn", class_weight="balanced"), data,
                     None, select="best_val")
    r = execute(spec, tmp_path, log=lambda m: None)
    w = r.training.class_weights
    assert w is not None and set(w) == set(r.counts.real)
    counts = r.counts.real
    n, present = sum(counts.values()), sum(1 for v in counts.values() if v)
    for name, v in counts.items():
        assert w[name] == pytest.approx(n / (present * v) if v else 0.0, rel=1e-6)
    assert all("val_loss" in h for h in r.history)
    best = min(r.history, key=lambda h: h["val_loss"])
    assert r.training.selected_epoch == best["epoch"]
    plain = make_spec("cnn", scenarios.SCENARIOS["1"], "none", 0, tiny_hparams("cnn"), data, None, select="best_val")
    assert plain.run_id != spec.run_id
    p = execute(plain, tmp_path, log=lambda m: None)
    assert p.training.class_weights is None and all("val_loss" not in h for h in p.history)


def test_class_weight_is_checked_and_left_out_of_the_run_id_at_its_default() -> None:
    with pytest.raises(SettingError, match="class_weight: must be 'none' or 'balanced', got 'inverse'"):
        hparams.resolve("cnn", {"class_weight": "inverse"})
    assert "class_weight" not in hparams.resolve("cnn").to_dict()
    assert hparams.resolve("cnn", {"class_weight": "balanced"}).to_dict()["class_weight"] == "balanced"
