"""The per-epoch sample order (sim/golden/order.py): a permutation every epoch, reproducible,
different between epochs and seeds, and defined by its integer recipe."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fieldtune.sim.golden.order import (ROUNDS, KEY_STEP, index_bits, round_keys, feistel,
                                        epoch_order)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2048), seed=st.integers(0, 0xFFFF), epoch=st.integers(0, 300))
def test_every_epoch_is_a_permutation(n, seed, epoch):
    order = epoch_order(n, seed, epoch)
    assert order.dtype == np.int64
    assert sorted(order.tolist()) == list(range(n))


def test_index_bits():
    assert [index_bits(n) for n in (1, 2, 4, 5, 16, 17, 256, 257, 719)] == \
        [2, 2, 2, 4, 4, 6, 8, 10, 10]
    with pytest.raises(ValueError, match="at least 1, not 0"):
        index_bits(0)
    # the walk is less than four times the records, so rejection skips at most 3/4 of it
    # and at most half for n above 2^(b-1)
    for n in range(1, 3000):
        assert n <= 1 << index_bits(n) < 4 * n or n < 4


def test_cache_order_is_the_identity():
    assert epoch_order(256, 7, 3, "cache").tolist() == list(range(256))
    with pytest.raises(ValueError, match="order must be one of cache, shuffle, not 'random'"):
        epoch_order(256, 7, 3, "random")


def test_reproducible_and_different_between_epochs_and_seeds():
    a = [epoch_order(256, 1, e) for e in range(10)]
    assert all(np.array_equal(x, epoch_order(256, 1, e)) for e, x in enumerate(a))
    assert len({x.tobytes() for x in a}) == 10
    assert not np.array_equal(epoch_order(256, 1, 0), epoch_order(256, 2, 0))
    # a shuffle, not a near-identity: rank correlation with the cache order is small
    for x in a:
        assert abs(np.corrcoef(x, np.arange(256))[0, 1]) < 0.3
        assert np.mean(x == np.arange(256)) < 0.05


def test_the_integer_recipe():
    # keys: xorshift16 (7, 9, 8) from (seed + epoch * KEY_STEP) mod 2^16, low half bits
    s = (5 + 2 * KEY_STEP) & 0xFFFF
    expect = []
    for _ in range(ROUNDS):
        s ^= (s << 7) & 0xFFFF
        s ^= s >> 9
        s ^= (s << 8) & 0xFFFF
        expect.append(s & 0xF)
    assert round_keys(5, 2, 4) == expect
    # a zero state becomes KEY_STEP (xorshift would stay at zero)
    assert round_keys((-3 * KEY_STEP) & 0xFFFF, 3, 4) == round_keys(KEY_STEP, 0, 4)
    # one round by hand: L, R = R, L ^ F(R, k), F(x, k) = rotl1(t) ^ (t >> 1), t = x + k
    half, c, k = 4, 0b1011_0110, 0b0111
    t = (0b0110 + k) & 0xF
    f = (((t << 1) | (t >> 3)) & 0xF) ^ (t >> 1)
    left, right = 0b0110, 0b1011 ^ f
    assert feistel(c, [k], half) == (left << 4) | right
    # scalars and arrays agree
    keys = round_keys(9, 4, 5)
    arr = feistel(np.arange(1024, dtype=np.int64), keys, 5)
    assert [feistel(i, keys, 5) for i in range(0, 1024, 97)] == arr[::97].tolist()
    with pytest.raises(ValueError, match="0 to 65535, not 65536"):
        round_keys(1 << 16, 0, 4)
