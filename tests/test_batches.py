"""Common random numbers: keys from (seed, epoch, identity), the batch order, and what two scenarios share."""

from __future__ import annotations

import numpy as np
import torch

from mriaug.data import sources as data_mod
from mriaug.data.sources import DataSpec
from mriaug.engine import augment, batches
from mriaug.plan import scenarios


def test_tensor_hash_is_splitmix64() -> None:
    rng = np.random.default_rng(0)
    values = [0, 1, -1, 2**63 - 1, -(2**63), *rng.integers(-(2**63), 2**63 - 1, 500, dtype=np.int64).tolist()]
    got = batches.mix64(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [batches.mix64_int(v) for v in values]
    # splitmix64's first output for state 0 (its finaliser of 0x9E3779B97F4A7C15) is 0xE220A8397B1DCDAF.
    assert batches.mix64_int(0x9E3779B97F4A7C15) == batches._signed(0xE220A8397B1DCDAF)


def test_draws_are_uniform_and_independent_across_purposes() -> None:
    keys = batches.image_keys(0, 0, torch.arange(100_000))
    u = batches.uniform(keys, batches.APPLY1)
    assert float(u.min()) >= 0 and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(torch.corrcoef(torch.stack([u, batches.uniform(keys, batches.SIGN1)]))[0, 1])) < 0.01
    counts = torch.bincount(batches.below(keys, batches.POLICY, 25), minlength=25)
    assert int(counts.min()) > 3700 and int(counts.max()) < 4300
    perm = batches.order(keys)
    assert torch.equal(perm.sort().values, torch.arange(100_000))


def test_keys_depend_on_seed_epoch_and_identity_only() -> None:
    ids = torch.tensor([5, 9, batches.POOL_OFFSET + 5])
    k = batches.image_keys(3, 2, ids)
    assert torch.equal(k, batches.image_keys(3, 2, ids.flip(0)).flip(0))  # not on position
    assert len(set(k.tolist())) == 3  # a pool line is not the train row of the same number
    assert not torch.equal(k, batches.image_keys(3, 3, ids)) and not torch.equal(k, batches.image_keys(4, 2, ids))
    assert k.tolist() == batches.image_keys(3, 2, ids).tolist()


def test_an_image_shared_by_two_scenarios_is_drawn_alike() -> None:
    """Scenario 1 keeps every real image, scenario 2 80% of them: under one seed the images both train
    on come in the same relative order and get the same augmentation, epoch by epoch, as train.py draws."""
    ds = data_mod.load(DataSpec("phantom", {"n_train": 240, "n_test": 80, "size": 32}))
    seed, bs = 7, 16
    runs = {}
    for name in ("1", "2"):
        mix = scenarios.mix(ds, scenarios.SCENARIOS[name], seed, None)
        x_np, _ = scenarios.training_arrays(ds, mix, None)
        ids = torch.from_numpy(batches.identities(mix.real_index, mix.synthetic_index))
        x = torch.from_numpy(x_np).unsqueeze(1)
        epochs = []
        for epoch in range(2):
            keys = batches.image_keys(seed, epoch, ids)  # what train.train_epoch does, batch by batch
            perm = batches.order(keys)
            out = {}
            order = []
            for i in range(0, len(ids), bs):
                idx = perm[i : i + bs]
                aug = augment.get("autoaugment")(x[idx], keys[idx])
                for j, row in enumerate(ids[idx].tolist()):
                    out[row] = aug[j]
                    order.append(row)
            epochs.append((order, out))
        runs[name] = epochs
    for epoch in range(2):
        (order1, out1), (order2, out2) = runs["1"][epoch], runs["2"][epoch]
        shared = set(order2)
        assert shared < set(order1) and len(shared) == 192
        assert [r for r in order1 if r in shared] == order2
        assert all(torch.equal(out1[r], out2[r]) for r in shared)
    assert runs["1"][0][0] != runs["1"][1][0]  # a new order every epoch


def test_identities_put_pool_lines_after_real_rows() -> None:
    ids = batches.identities(np.array([3, 1]), np.array([0, 2]))
    assert ids.tolist() == [3, 1, batches.POOL_OFFSET, batches.POOL_OFFSET + 2]


def test_several_streams_at_once_are_the_streams_one_by_one() -> None:
    import torch

    keys = batches.image_keys(4, 2, torch.arange(300))
    both = batches.draws_of(keys, (batches.POLICY, batches.SIGN2))
    assert torch.equal(both[:, 0], batches.draw(keys, batches.POLICY))
    assert torch.equal(both[:, 1], batches.draw(keys, batches.SIGN2))
    assert torch.equal(batches.below_of(both[:, 0], 25), batches.below(keys, batches.POLICY, 25))
    assert torch.equal(batches.uniform_of(both[:, 1]), batches.uniform(keys, batches.SIGN2))


# --- the draws by hand, in Python integers (issue 18) ----------------------------------------------------

G = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def _py_mix(z: int) -> int:
    """splitmix64's finaliser written out on unsigned Python integers (0 <= result < 2**64)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _signed(v: int) -> int:
    v &= MASK
    return v - (1 << 64) if v >> 63 else v


def test_signed_and_logical_shift_by_hand() -> None:
    assert batches._signed(0) == 0 and batches._signed((1 << 63) - 1) == (1 << 63) - 1
    assert batches._signed(1 << 63) == -(1 << 63) and batches._signed(MASK) == -1
    assert batches._signed(1 << 64) == 0 and batches._signed((1 << 64) + 5) == 5
    assert batches._srl(torch.tensor([-1]), 30).tolist() == [(1 << 34) - 1]
    assert batches._srl(torch.tensor([-(1 << 63)]), 63).tolist() == [1]
    assert batches._srl(torch.tensor([12345]), 3).tolist() == [12345 >> 3]
    assert batches.mix64_int(-1) == _signed(_py_mix(MASK)) and batches.mix64_int(1 << 64) == batches.mix64_int(0)


def test_keys_and_draws_are_the_documented_hashes() -> None:
    ids = [0, 1, 17, batches.POOL_OFFSET + 3]
    seed, epoch = 11, 4
    base = _py_mix(_py_mix(seed) + G * (epoch + 1))
    want_keys = [_signed(_py_mix(i * G + base)) for i in ids]
    keys = batches.image_keys(seed, epoch, torch.tensor(ids))
    assert keys.tolist() == want_keys
    for stream in (batches.ORDER, batches.HFLIP, batches.SIGN2):
        want = [_signed(_py_mix(k + G * (stream + 1))) for k in want_keys]
        assert batches.draw(keys, stream).tolist() == want
    assert (batches.ORDER, batches.HFLIP, batches.POLICY, batches.APPLY1, batches.SIGN1, batches.APPLY2,
            batches.SIGN2) == (0, 1, 2, 3, 4, 5, 6)
    # The batch order: positions sorted by their ORDER draw, compared as the signed int64 torch stores.
    order_draws = [_signed(_py_mix(k + G)) for k in want_keys]
    assert batches.order(keys).tolist() == sorted(range(4), key=lambda i: order_draws[i])


def test_uniform_and_below_from_bits_by_hand() -> None:
    bits = torch.tensor([0, -1, -(1 << 63), 1 << 40, (1 << 40) - 1, _signed(3 << 62), 1 << 33],
                        dtype=torch.int64)
    # uniform: the top 24 bits / 2**24.
    assert batches.uniform_of(bits).tolist() == [0.0, (2**24 - 1) / 2**24, 0.5, 1 / 2**24, 0.0, 0.75, 0.0]
    assert batches.uniform_of(bits).dtype == torch.float32
    # below n: the top 31 bits times n, shifted down by 31.
    assert batches.below_of(bits, 10).tolist() == [0, 9, 5, 0, 0, 7, 0]
    assert batches.below_of(bits, 1 << 31).tolist() == [0, (1 << 31) - 1, 1 << 30, 1 << 7, (1 << 7) - 1,
                                                        3 << 29, 1]
    assert batches.uniform(bits, 2).tolist() == batches.uniform_of(batches.draw(bits, 2)).tolist()
    assert batches.below(bits, 5, 7).tolist() == batches.below_of(batches.draw(bits, 5), 7).tolist()


def test_equal_keys_keep_their_positions_in_the_order() -> None:
    keys = torch.tensor([9, 4, 9, 9, 4, 4, 9, 4] * 8)
    perm = batches.order(keys).tolist()
    d9, d4 = batches.draw(torch.tensor([9, 4]), batches.ORDER).tolist()
    first, second = ([1, 4, 5, 7], [0, 2, 3, 6]) if d4 < d9 else ([0, 2, 3, 6], [1, 4, 5, 7])
    want = [i for i in range(64) if i % 8 in first] + [i for i in range(64) if i % 8 in second]
    assert perm == want


def test_identities_are_int64_with_the_pool_offset() -> None:
    ids = batches.identities(np.array([2], np.int32), np.array([7], np.int32))
    assert ids.dtype == np.int64 and ids.tolist() == [2, (1 << 40) + 7] and batches.POOL_OFFSET == 1 << 40
    assert batches.identities(np.array([], np.int64), np.array([], np.int64)).tolist() == []
