"""The cache's shift-and-add products equal ``a * b`` exactly, for every operand of the widths
the dequantizer and quantizer use, and leave no ``$mul`` for the synthesizer to put in a DSP."""

import itertools

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from fieldtune.rtl.cache.arith import shift_add_mul, const_mul


def _products(a_shape, b_shape, make, pairs, width=None):
    m = Module()
    a, b = Signal(a_shape), Signal(b_shape)
    y = Signal(signed(width or len(a) + len(b) + 2))
    m.d.comb += y.eq(make(a, b))
    got = []

    async def bench(ctx):
        for x, z in pairs:
            ctx.set(a, x)
            ctx.set(b, z)
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got, m, (a, b, y)


def test_shift_add_mul_signed_by_unsigned_exhaustive():
    # the dequantizer's shape: a signed 8-bit level times a 6-bit mantissa
    pairs = list(itertools.product(range(-128, 128, 3), range(64)))
    got, _, _ = _products(signed(8), unsigned(6), shift_add_mul, pairs)
    assert got == [x * z for x, z in pairs]


def test_shift_add_mul_unsigned_exhaustive():
    pairs = list(itertools.product(range(256), range(8)))
    got, _, _ = _products(unsigned(8), unsigned(3), shift_add_mul, pairs)
    assert got == [x * z for x, z in pairs]


def test_shift_add_mul_rejects_signed_factor():
    with pytest.raises(TypeError, match="unsigned"):
        shift_add_mul(Signal(signed(4)), Signal(signed(3)))


@pytest.mark.parametrize("factor", [0, 1, 2, 3, 7, 18, 28, 29, 255, 1000])
def test_const_mul(factor):
    values = list(range(0, 1 << 10, 7)) + [(1 << 10) - 1]
    got, _, _ = _products(unsigned(10), unsigned(1), lambda a, b: const_mul(a, factor),
                          [(v, 0) for v in values], width=24)
    assert got == [v * factor for v in values]


def test_no_multiplier_cells():
    _, m, ports = _products(signed(8), unsigned(6),
                            lambda a, b: shift_add_mul(a, b) + const_mul(a, 28), [])
    assert "$mul" not in rtlil.convert(m, ports=list(ports))
