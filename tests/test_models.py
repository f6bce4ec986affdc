from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mriaug.engine import models
from mriaug.errors import MriaugError
from tests.conftest import tiny_hparams


@pytest.mark.parametrize(("name", "res"), [("cnn", 128), ("resnet18", 64), ("vit", 32)])
def test_models_take_one_channel_and_give_four_logits(name: str, res: int) -> None:
    m = models.build(name, tiny_hparams(name, resolution=res))
    assert m(torch.zeros(2, 1, res, res)).shape == (2, 4)


def test_basic_cnn_is_the_thesis_shape() -> None:
    m = models.BasicCNN(128)
    convs = [x for x in m.features if isinstance(x, torch.nn.Conv2d)]
    pools = [x for x in m.features if isinstance(x, torch.nn.MaxPool2d)]
    linears = [x for x in m.classifier if isinstance(x, torch.nn.Linear)]
    assert len(convs) == 2 and len(pools) == 2 and len(linears) == 3 and linears[-1].out_features == 4


def test_pretrained_weights_from_a_local_safetensors_file(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    # A stand-in for the ImageNet checkpoint: an RGB, 1000-class state dict in timm's layout.
    src = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        src.conv1.weight.fill_(0.01)
    f = tmp_path / "resnet18.safetensors"
    save_file(src.state_dict(), str(f))
    m = models.build("resnet18", tiny_hparams("resnet18", pretrained=True, weights=str(f), resolution=64))
    # timm adapts the RGB stem to one channel by summing over colours; the head is new (4 classes).
    assert torch.allclose(m.conv1.weight, torch.full_like(m.conv1.weight, 0.03))
    assert m.fc.out_features == 4
    with pytest.raises(models.WeightsError, match="does not exist"):
        models.build("resnet18", tiny_hparams("resnet18", weights=str(tmp_path / "nope.safetensors")))


def test_cold_weight_cache_names_prefetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(models.WeightsError, match="mriaug prefetch"):
        models.build("resnet18", tiny_hparams("resnet18", pretrained=True, arch="resnet18.tv_in1k"))


def test_cnn_refuses_pretrained() -> None:
    with pytest.raises(MriaugError, match="from scratch"):
        models.build("cnn", tiny_hparams("cnn", pretrained=True))
