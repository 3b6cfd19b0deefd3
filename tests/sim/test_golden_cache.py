"""The golden model of the forward cache: numeric properties and packing round trips over
every code book, block size and lane count."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fieldtune.rtl.cache.params import CacheParams, CODEBOOKS, FOUR_BIT
from fieldtune.rtl.cache.codebooks import LEVELS, REAL_LEVELS, LEVEL_FRAC
from fieldtune.rtl.cache.layout import CacheLayout, MANT_BITS
from fieldtune.sim.golden.cache import (CacheModel, round_half_up_shift, adversarial_samples,
                                        float_quantize, snr_db)


LANES = (1, 4, 8, 32)
BLOCKS = (8, 16, 32, 64, 0)


def test_code_book_tables():
    for name, levels in LEVELS.items():
        assert len(levels) == 16 and list(levels) == sorted(levels), name
        assert max(levels) == 1 << LEVEL_FRAC
    assert LEVELS["unf4"][0] == LEVELS["uint4"][0] == 0
    assert LEVELS["nf4"][7] == 0 and LEVELS["nf4"][0] == -(1 << LEVEL_FRAC)


def test_unsigned_nf4_is_half_normal_quantiles():
    from scipy.stats import norm          # scipy.stats takes seconds to import: only here
    v = norm.ppf(np.linspace(0.5, 0.9677083, 16))
    assert np.allclose(REAL_LEVELS["unf4"], v / v.max(), atol=1e-9)


def test_round_half_up_shift():
    assert list(round_half_up_shift([5, -5, 6, -6, 7], -1)) == [3, -2, 3, -3, 4]
    assert list(round_half_up_shift([3, -3], 2)) == [12, -12]


@settings(max_examples=200, deadline=None)
@given(codebook=st.sampled_from(FOUR_BIT),
       block=st.lists(st.integers(-(1 << 15), (1 << 15) - 1), min_size=1, max_size=64))
def test_nearest_code_and_unclipped_scale(codebook, block):
    model = CacheModel(CacheParams(codebook=codebook))
    x, _ = model.narrow(block)
    m, e = model.scale(x)
    s = m << e
    assert 1 <= m < 1 << MANT_BITS and np.abs(x).max() <= max(s, 1)
    codes = model.code_block(x, m, e)
    levels = np.array(LEVELS[codebook])
    # Exact distances in units of 2**-LEVEL_FRAC input LSBs: |x * 2**LEVEL_FRAC - level * s|.
    dist = np.abs(x[:, None] * (1 << LEVEL_FRAC) - levels[None, :] * s)
    best = dist.min(axis=1)
    assert (dist[np.arange(len(x)), codes] == best).all()
    # Ties go to the upper code.
    upper = np.array([np.flatnonzero(row == row.min()).max() for row in dist])
    assert (codes == upper).all()


@pytest.mark.parametrize("codebook,block_size,lanes",
                         [c for c in itertools.product(CODEBOOKS, BLOCKS, LANES)
                          if c[0] in FOUR_BIT or c[1] == 32])
def test_pack_unpack_round_trip(codebook, block_size, lanes):
    params = CacheParams(codebook=codebook, block_size=block_size, lanes=lanes, capacity=3)
    model = CacheModel(params)
    rng = np.random.default_rng(lanes + block_size)
    feats = adversarial_samples(params, rng, n_random=0)[:3]
    recs = [(f, rng.integers(-(1 << 15), 1 << 15, 10), i + 4) for i, f in enumerate(feats)]
    for f, z0, label in recs:
        model.write_record(f, z0, label)
    assert model.count == 3
    for i, (f, z0, label) in enumerate(recs):
        q = model.quantize(f)
        q2, z0_back, label_back = model.unpack(i)
        assert (q2.codes == q.codes).all() and label_back == label
        assert list(z0_back) == [int(v) for v in z0]
        if params.scaled:
            assert (q2.mant == q.mant).all() and (q2.exp == q.exp).all()
        beats = model.read(i)
        values = np.concatenate([b.data for b in beats])
        assert (values[:params.features] == model.dequantize(q)).all()
        assert (values[params.features:] == 0).all()
        assert beats[-1].z0 == tuple(int(v) for v in z0) and beats[-1].label == label


@pytest.mark.parametrize("lanes,block_size", list(itertools.product((1, 3, 8, 32, 64), BLOCKS)))
@pytest.mark.parametrize("taps", [(128, 64, 32), (10, 6, 5)])
def test_layout_is_consistent(lanes, block_size, taps):
    params = CacheParams(lanes=lanes, block_size=block_size, taps=taps)
    lay = CacheLayout(params)
    # Every lane group of every beat lies in one block, and its slot names that block.
    for j, row in enumerate(lay.slot_blocks):
        for i, blk in enumerate(row):
            for f in range(j * lanes + i * lay.group, j * lanes + (i + 1) * lay.group):
                assert (lay.block_of_feature[f] if f < lay.features else None) == blk
    # The meta schedule reads at most once per beat and places every side unit once.
    assert lay.meta_words <= lay.beats
    assert sorted(lay.side_pos) == sorted(set(lay.side_pos))
    for w, i in lay.side_pos:
        assert i < lay.meta_units
    # Every scale word's slots are written by some scale op.
    covered = {(w, i) for _, w, mask in lay.scale_ops for i in range(lay.slots) if mask >> i & 1}
    for w, word in enumerate(lay.words):
        if word.scale:
            for i, blk in enumerate(lay.slot_blocks[word.beat]):
                assert ((w, i) in covered) == (blk is not None)


def test_pass16_is_lossless_and_pass8_saturates():
    p16 = CacheModel(CacheParams(codebook="pass16"))
    x = np.arange(-(1 << 15), 1 << 15, 97)[:224]
    assert (p16.dequantize(p16.quantize(x)) == x).all()
    p8 = CacheModel(CacheParams(codebook="pass8", pass8_frac=4))
    q = p8.quantize(np.array([0, 8, 23, 24, 2047, 2048, -2048, -2049, -30000] + [0] * 215))
    assert list(q.codes[:9]) == [0, 1, 1, 2, 127, 127, -128, -128, -128]
    assert q.saturations == 3


def test_float_reference_snr_orders_code_books():
    """On half-normal data the unsigned NF4 beats uniform uint4 and signed NF4."""
    rng = np.random.default_rng(0)
    params = CacheParams()
    lay = CacheLayout(params)
    x = np.abs(rng.normal(size=(64, lay.features)))
    snr = {cb: snr_db(x, np.array([float_quantize(r, cb, lay.blocks) for r in x]))
           for cb in ("nf4", "unf4", "uint4")}
    assert snr["unf4"] > snr["uint4"] > snr["nf4"]


def test_capacity_in_a_memory_budget():
    """R1's 256 samples fit in 3 of the UP5K's SPRAMs with 4-bit codes at L = 8."""
    lay = CacheLayout(CacheParams(lanes=8, codebook="unf4", block_size=32))
    assert lay.bytes_per_sample() == 148           # 28 code words of 32 bits, 18 meta units
    assert lay.primitives(256, "ice40", "spram") == 3
    # a sample's 28 code words take 32 addresses (power-of-two strides, no multiplier)
    assert lay.capacity_for("ice40", "spram", 3) == 16384 // 32
    assert lay.capacity_for("ice40", "spram", 2) == 0        # codes alone need 2 SPRAMs
    wide = CacheLayout(CacheParams(lanes=8, codebook="pass16"))
    assert wide.capacity_for("ice40", "spram", 3) == 0       # 128-bit words: 8 SPRAMs wide
