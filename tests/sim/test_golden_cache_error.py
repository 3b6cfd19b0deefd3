"""Quantization error of every code book on R1's real features (the int8 backbone's taps of
the 256 fine-tuning samples, 30 degree drift); the figures are in docs/numerics.md."""

import numpy as np
import pytest

from fieldtune.rtl.cache.params import CacheParams, FOUR_BIT
from fieldtune.rtl.cache.codebooks import LEVELS, LEVEL_FRAC
from fieldtune.sim.golden.cache import CacheModel, float_quantize, snr_db
from fieldtune.sim.scenario import r1_features


@pytest.fixture(scope="module")
def features():
    return r1_features(30)["train_features"]


def dequantized(params, X):
    model = CacheModel(params)
    out = []
    for x in X:
        q = model.quantize(x)
        out.append((q, model.dequantize(q)))
    return model, out


@pytest.mark.parametrize("codebook", FOUR_BIT)
@pytest.mark.parametrize("block_size", [32, 0])
def test_four_bit_error_is_bounded_and_close_to_float(features, codebook, block_size):
    params = CacheParams(codebook=codebook, block_size=block_size)
    model, out = dequantized(params, features)
    Y = np.array([y for _, y in out])
    lay = model.layout
    reference = np.array([float_quantize(x / 256, codebook, lay.blocks) for x in features])
    # The integer code book, 6-bit mantissa and rounding cost < 0.2 dB against exact floats.
    assert snr_db(features, Y) > snr_db(features / 256, reference) - 0.2
    # Every value is within half the widest level gap of its block scale (+ 1 output LSB).
    gap = max(np.diff(LEVELS[codebook])) / 2 / (1 << LEVEL_FRAC)
    for x, (q, y) in zip(features, out):
        for b, (start, n) in enumerate(lay.blocks):
            s = q.mant[b] << q.exp[b]
            err = np.abs(x[start:start + n] - y[start:start + n])
            assert (err <= gap * s + 1).all()


def test_unsigned_code_books_suit_post_relu_features(features):
    assert features.min() >= 0      # the taps follow ReLUs
    snr = {}
    for codebook in FOUR_BIT:
        _, out = dequantized(CacheParams(codebook=codebook), features)
        snr[codebook] = snr_db(features, np.array([y for _, y in out]))
    assert snr["unf4"] > snr["nf4"] + 3 and snr["uint4"] > snr["int4"] + 3
    assert min(snr.values()) > 18


def test_pass_through_code_books(features):
    _, out = dequantized(CacheParams(codebook="pass16"), features)
    assert (np.array([y for _, y in out]) == features).all()
    model, out = dequantized(CacheParams(codebook="pass8", pass8_frac=3), features)
    Y = np.array([y for _, y in out])
    assert np.abs(Y - features).max() <= 1 << (8 - 3 - 1)   # half a Q5.3 step, in Q8.8 LSBs
