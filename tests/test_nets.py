"""`mriaug.engine.nets` by hand on tiny torch models: the losses, predictions, weights, selection and checkpoint state
of one seed in a plain module (`Single`) and of S seeds stacked under vmap (`Stacked`), and `build`'s seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mriaug.engine import models, nets, speed
from mriaug.errors import SettingError
from tests.conftest import tiny_hparams

S, N, CLASSES = 3, 7, 4


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, CLASSES))


def _with_buffers(seed: int) -> torch.nn.Module:
    """Running statistics (buffers) and dropout (which only train mode draws)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8),
                               torch.nn.Dropout(0.5), torch.nn.Linear(8, CLASSES))


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*shape, 1, 4, 4), dtype=torch.uint8, generator=g)


def _labels(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, CLASSES, shape, generator=g)


def _norm(x: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    return (x.float() / 255.0 - mean) / std


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- Single ---------------------------------------------------------------------------------------------------


def test_single_loss_is_the_cross_entropy_of_its_forward_on_normalised_images() -> None:
    model = _linear(0)
    model.pretrained_cfg = {"mean": (0.2, 0.4, 0.6), "std": (0.1, 0.2, 0.3)}  # grey: mean 0.4, std 0.2
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:  # the compiled forward stands in for the module in training
        calls.append(x)
        return model(x) * 2.0

    one = nets.Single(model, forward)
    assert one.size == 1 and one.norm == pytest.approx((0.4, 0.2))
    xb, yb = _images(1, 5), _labels(1, 5)
    loss = one.losses(xb, yb, autocast=False)
    want = F.cross_entropy(model(_norm(xb[0], 0.4, 0.2)) * 2.0, yb[0])
    assert loss.shape == (1,) and loss.dtype == torch.float32 and len(calls) == 1
    assert loss[0].item() == pytest.approx(want.item(), abs=1e-6)
    loss.sum().backward()  # the loss trains the module's own parameters
    assert all(p.grad is not None for p in one.parameters()) and len(one.parameters()) == 2
    # bf16 autocast changes the number a little, and the loss comes back as float32
    bf16 = one.losses(xb, yb, autocast=True)
    assert bf16.dtype == torch.float32 and bf16[0].item() != loss[0].item()
    assert bf16[0].item() == pytest.approx(want.item(), rel=0.05)


def test_single_predicts_in_eval_mode_shaped_one_by_n_by_classes_whatever_the_batch() -> None:
    model = _with_buffers(1)
    one = nets.Single(model, model)
    x = _images(N)
    one.train()
    assert model.training
    whole = one.predict(x, autocast=False)
    assert not model.training  # dropout off, running statistics read
    assert isinstance(whole, np.ndarray) and whole.shape == (1, N, CLASSES) and whole.dtype == np.float32
    with torch.no_grad():
        assert np.abs(whole[0] - model(_norm(x)).numpy()).max() < 1e-6
    for batch in (1, 3, N, 256):
        assert np.abs(one.predict(x, autocast=False, batch=batch) - whole).max() < 1e-6
    bf16 = one.predict(x, autocast=True)
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - whole).max() < 0.1


def test_single_weights_are_copies_and_select_loads_only_a_chosen_one() -> None:
    model = _with_buffers(2)
    one = nets.Single(model, model)
    w = one.weights(0)
    assert _same(w, model.state_dict()) and "2.running_mean" in w
    assert all(not v.requires_grad for v in w.values())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[2].running_mean.add_(1.0)
    assert not _same(w, model.state_dict())  # the copy kept the weights of when it was taken
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    one.select([None])  # no selected epoch: the last weights stay
    assert _same(model.state_dict(), trained)
    one.select([w])
    assert _same(model.state_dict(), w)


def test_single_state_is_the_modules_own_tensors_and_loads_back() -> None:
    a, b = _with_buffers(3), _with_buffers(4)
    one, other = nets.Single(a, a), nets.Single(b, b)
    state = one.state()
    assert _same(state["model"], a.state_dict())
    assert state["model"]["1.weight"].data_ptr() == a[1].weight.data_ptr()  # references, not copies
    x = _images(N)
    assert np.abs(one.predict(x, False) - other.predict(x, False)).max() > 1e-3
    other.load_state(state)
    assert _same(b.state_dict(), a.state_dict())
    assert np.array_equal(one.predict(x, False), other.predict(x, False))


# --- Stacked --------------------------------------------------------------------------------------------------


def test_stacked_losses_are_each_seeds_own_cross_entropy() -> None:
    seeds = [_linear(s) for s in range(S)]
    pack = nets.Stacked(seeds)
    assert pack.size == S and pack.norm == (0.5, 0.5)
    assert [p.shape for p in pack.parameters()] == [(S, CLASSES, 16), (S, CLASSES)]
    assert all(p.requires_grad for p in pack.parameters())
    xb, yb = _images(S, 5), _labels(S, 5)  # each seed its own batch
    losses = pack.losses(xb, yb, autocast=False)
    want = [F.cross_entropy(m(_norm(xb[k])), yb[k]).item() for k, m in enumerate(seeds)]
    assert losses.shape == (S,) and losses.dtype == torch.float32
    assert losses.tolist() == pytest.approx(want, abs=1e-6)
    assert len(set(want)) == S  # three different numbers: no seed reads another's batch or weights
    # each seed's gradient is its own network's
    losses.sum().backward()
    for k, m in enumerate(seeds):
        F.cross_entropy(m(_norm(xb[k])), yb[k]).backward()
        assert torch.allclose(pack.params["1.weight"].grad[k], m[1].weight.grad, atol=1e-6)
    bf16 = pack.losses(xb, yb, autocast=True)
    assert bf16.dtype == torch.float32 and bf16.tolist() != losses.tolist()
    assert bf16.tolist() == pytest.approx(want, rel=0.05)


def test_stacked_training_draws_differently_per_seed_and_updates_each_seeds_buffers() -> None:
    seeds = [_with_buffers(5) for _ in range(2)]  # two identical networks
    pack = nets.Stacked(seeds)
    pack.train()
    xb = _images(1, 6).expand(2, 6, 1, 4, 4)  # the same batch for both
    losses = pack.losses(xb, _labels(1, 6).expand(2, 6), autocast=False)
    # the same weights and images: only their own dropout masks (randomness="different") tell them apart
    assert losses[0].item() != losses[1].item()
    # the running statistics of BatchNorm moved for each seed, by the same batch
    assert torch.equal(pack.buffers["2.running_mean"][0], pack.buffers["2.running_mean"][1])
    assert not torch.equal(pack.buffers["2.running_mean"][0], torch.zeros(8))


def test_stacked_predicts_every_seed_on_the_same_images_in_eval_mode() -> None:
    seeds = [_with_buffers(s) for s in range(S)]
    pack = nets.Stacked(seeds)
    x = _images(N)
    pack.train()
    whole = pack.predict(x, autocast=False)
    assert isinstance(whole, np.ndarray) and whole.shape == (S, N, CLASSES) and whole.dtype == np.float32
    with torch.no_grad():
        for k, m in enumerate(seeds):
            m.eval()  # dropout off: the same numbers twice
            assert np.abs(whole[k] - m(_norm(x)).numpy()).max() < 1e-5
    assert np.array_equal(pack.predict(x, autocast=False), whole)
    for batch in (1, 2, 5, 256):
        assert np.abs(pack.predict(x, autocast=False, batch=batch) - whole).max() < 1e-6
    bf16 = pack.predict(x, autocast=True)
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - whole).max() < 0.1


def test_stacked_weights_are_copies_of_one_seed_with_its_buffers() -> None:
    seeds = [_with_buffers(s) for s in range(S)]
    for k, m in enumerate(seeds):
        m[2].running_mean.fill_(float(k))  # tell the buffers apart
    pack = nets.Stacked(seeds)
    for k, m in enumerate(seeds):
        w = pack.weights(k)
        assert _same(w, m.state_dict())
        assert all(not v.requires_grad for v in w.values())
    w1 = pack.weights(1)
    with torch.no_grad():
        for v in [*pack.params.values(), *pack.buffers.values()]:
            v.add_(1)  # num_batches_tracked is an integer
    assert _same(w1, seeds[1].state_dict())  # copied: the pack's later training does not reach it


def test_stacked_select_loads_only_the_chosen_seeds() -> None:
    seeds = [_with_buffers(s) for s in range(S)]
    pack = nets.Stacked(seeds)
    before = [pack.weights(k) for k in range(S)]
    chosen = _with_buffers(10).state_dict()
    chosen["2.running_var"].fill_(3.0)
    pack.select([None, chosen, None])
    assert _same(pack.weights(0), before[0]) and _same(pack.weights(2), before[2])
    assert _same(pack.weights(1), chosen)
    assert all(p.requires_grad and p.is_leaf for p in pack.parameters())  # still trainable in place
    # the selected seed now predicts as the chosen network does
    net = _with_buffers(0)
    net.load_state_dict(chosen)
    one = nets.Single(net, net)
    x = _images(N)
    assert np.abs(pack.predict(x, False)[1] - one.predict(x, False)[0]).max() < 1e-5


def test_stacked_state_round_trip() -> None:
    a = nets.Stacked([_with_buffers(s) for s in range(S)])
    b = nets.Stacked([_with_buffers(s + 20) for s in range(S)])
    a.train()
    a.losses(_images(S, 6), _labels(S, 6), autocast=False)  # running statistics of a's own
    state = a.state()
    assert set(state) == {"params", "buffers"}
    assert all(not v.requires_grad for v in state["params"].values())
    assert state["params"]["1.weight"].data_ptr() == a.params["1.weight"].data_ptr()  # references, not copies
    x = _images(N)
    assert np.abs(a.predict(x, False) - b.predict(x, False)).max() > 1e-3
    b.load_state(state)
    for k in range(S):
        assert _same(b.weights(k), a.weights(k))
    assert np.array_equal(a.predict(x, False), b.predict(x, False))
    assert all(p.requires_grad and p.is_leaf for p in b.parameters())


def test_stacked_normalises_with_its_models_statistics() -> None:
    seeds = [_linear(s) for s in range(2)]
    for m in seeds:
        m.pretrained_cfg = {"mean": (0.2, 0.4, 0.6), "std": (0.1, 0.2, 0.3)}  # grey: mean 0.4, std 0.2
    pack = nets.Stacked(seeds)
    assert pack.norm == pytest.approx((0.4, 0.2))
    x, xb, yb = _images(N), _images(2, 5), _labels(2, 5)
    with torch.no_grad():
        for k, m in enumerate(seeds):
            assert np.abs(pack.predict(x, False)[k] - m(_norm(x, 0.4, 0.2)).numpy()).max() < 1e-5
            want = F.cross_entropy(m(_norm(xb[k], 0.4, 0.2)), yb[k]).item()
            assert pack.losses(xb, yb, autocast=False)[k].item() == pytest.approx(want, abs=1e-6)


def test_autocast_is_bf16_whatever_the_devices_default() -> None:
    """On a GPU autocast's default is float16; the nets ask for bf16 themselves. Here the CPU's default is set to
    float16 for the test, and losses and predictions must stay those of bf16."""
    one, pack = nets.Single(_linear(0), _linear(0)), nets.Stacked([_linear(s) for s in range(2)])
    x, xb, yb = _images(N), _images(2, 5), _labels(2, 5)
    with torch.no_grad():
        bf16 = (one.losses(xb[:1], yb[:1], True), one.predict(x, True), pack.losses(xb, yb, True),
                pack.predict(x, True))
    before = torch.get_autocast_dtype("cpu")
    torch.set_autocast_dtype("cpu", torch.float16)
    try:
        with torch.no_grad():
            with torch.autocast("cpu"):  # float16 gives other numbers than bf16: the check below can fail
                fp16 = F.cross_entropy(one.model(_norm(xb[0])).float(), yb[0])
            assert fp16.item() != bf16[0][0].item()
            assert torch.equal(one.losses(xb[:1], yb[:1], True), bf16[0])
            assert np.array_equal(one.predict(x, True), bf16[1])
            assert torch.equal(pack.losses(xb, yb, True), bf16[2])
            assert np.array_equal(pack.predict(x, True), bf16[3])
    finally:
        torch.set_autocast_dtype("cpu", before)


# --- build ----------------------------------------------------------------------------------------------------


def _seeded_cnn(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return models.build("cnn", tiny_hparams("cnn")).state_dict()


def test_build_seeds_each_network_as_its_separate_run() -> None:
    hp, cpu = tiny_hparams("cnn"), torch.device("cpu")
    plain = speed.Speed(channels_last="0")
    one = nets.build("cnn", hp, [7], cpu, plain)
    assert isinstance(one, nets.Single) and one.forward is one.model
    assert _same(one.weights(0), _seeded_cnn(7))
    pack = nets.build("cnn", hp, [3, 8], cpu, plain)
    assert isinstance(pack, nets.Stacked) and pack.size == 2
    assert _same(pack.weights(0), _seeded_cnn(3)) and _same(pack.weights(1), _seeded_cnn(8))
    assert not _same(pack.weights(0), pack.weights(1))


@pytest.mark.parametrize("setting,want", [("0", False), ("auto", True), ("1", True)])
def test_build_puts_a_convolutional_single_in_channels_last_on_the_cpu(setting: str, want: bool) -> None:
    one = nets.build("cnn", tiny_hparams("cnn"), [0], torch.device("cpu"), speed.Speed(channels_last=setting))
    assert isinstance(one, nets.Single)
    conv = one.model.features[3].weight  # (32, 16, 3, 3): its two layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) is want
    assert conv.is_contiguous() is not want


def test_build_compiles_the_forward_only_when_asked() -> None:
    one = nets.build("cnn", tiny_hparams("cnn"), [0], torch.device("cpu"), speed.Speed(compile=True))
    assert isinstance(one, nets.Single) and one.forward is not one.model
    assert getattr(one.forward, "_orig_mod", None) is one.model  # the compiled callable wraps the same module


# --- networks that draw inside themselves (issue 27) -----------------------------------------------------------


def test_stochastic_layers_names_every_layer_that_draws_and_only_those() -> None:
    from timm.layers import DropPath

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.0), torch.nn.Dropout2d(0.25),
                              torch.nn.Sequential(DropPath(0.1), DropPath(0.0)), torch.nn.AlphaDropout(0.5))
    assert nets.stochastic_layers(net) == ["2 (Dropout2d 0.25)", "3.0 (DropPath 0.1)", "4 (AlphaDropout 0.5)"]
    # The packable models draw nothing inside (the ViT's dropout and drop-path rates are 0).
    assert nets.stochastic_layers(models.build("cnn", tiny_hparams("cnn"))) == []
    assert nets.stochastic_layers(models.build("vit", tiny_hparams("vit"))) == []


def test_build_refuses_to_stack_a_network_that_draws_but_builds_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under vmap the seeds would share one generator's dropout draws, not each its separate run's: refused, named.
    monkeypatch.setattr(models, "build", lambda model, hp, classes: _with_buffers(0))
    hp, cpu, plain = tiny_hparams("cnn"), torch.device("cpu"), speed.Speed(channels_last="0")
    with pytest.raises(SettingError, match=r"^model cnn: seeds that draw inside the network cannot train together "
                                           r"\(their draws would not be their separate runs'\): 3 \(Dropout 0.5\); set "
                                           "its rates to 0 or train without pack_seeds$"):
        nets.build("cnn", hp, [0, 1], cpu, plain)
    assert isinstance(nets.build("cnn", hp, [0], cpu, plain), nets.Single)  # a run alone draws from its own seed
