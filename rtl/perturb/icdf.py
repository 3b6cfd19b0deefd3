"""Accurate Gaussian baseline: a piecewise-linear inverse CDF over octaves of the tail.

From a 15-bit uniform ``t`` and a sign bit: ``t' = 2t + 1`` (16 bits, odd) is the two-sided
tail probability ``p = t' / 2**16``; ``e`` = leading zeros of ``t'`` picks the octave
``[2**-(e+1), 2**-e)``; the next 2 bits pick one of four linear segments and the 6 bits after
them interpolate between the segment's end nodes (:func:`~.numerics.icdf_table`, values with
``f + 4`` fraction bits)::

    x = V[e][s] + round((V[e][s+1] - V[e][s]) * frac, 6)
    z = sign ? -sat(round(x, 4)) : sat(round(x, 4))

Accurate to 0.0055 sigma up to the largest magnitude 4.32 sigma (``docs/numerics.md``).
Four register stages: normalize (count leading zeros, shift), table read, interpolate,
round/saturate/sign. The table is a ROM with a synchronous read port, so the synthesizer may
put it in block RAM or LUTs.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, unsigned, signed
from amaranth.lib.memory import Memory
from amaranth.lib import data

from .arith import round_half_away, saturate, shift_add_mul
from .numerics import (ICDF_UNIFORM_BITS, ICDF_SEGMENT_BITS, ICDF_INTERP_BITS,
                       ICDF_GUARD_BITS, icdf_table)
from .shaper import Shaper


__all__ = ["IcdfShaper"]


class IcdfShaper(Shaper):
    """Inverse-CDF Gaussian. See the module documentation."""

    depth = 4

    def __init__(self, params):
        if params.shape != "icdf":
            raise ValueError(f"IcdfShaper needs perturb.shape 'icdf', not {params.shape!r}")
        super().__init__(params)

    def elaborate(self, platform):
        m = Module()
        u, sb, fb = ICDF_UNIFORM_BITS, ICDF_SEGMENT_BITS, ICDF_INTERP_BITS
        table = icdf_table(self.params.frac_bits)
        nodes = [(row[j], row[j + 1] - row[j]) for row in table for j in range(1 << sb)]
        node_width = max(v for v, _ in nodes).bit_length()
        slope_width = max(-s for _, s in nodes).bit_length() + 1
        entry = data.StructLayout({"node": unsigned(node_width), "slope": signed(slope_width)})
        m.submodules.rom = rom = Memory(shape=entry, depth=len(nodes),
                                        init=[{"node": v, "slope": s} for v, s in nodes])
        read = rom.read_port(domain="sync")

        # Stage 1: normalize t' so its leading one is at the top.
        t = Cat(Const(1, 1), self.bits[:u])                           # 2t + 1, u + 1 bits
        negative = self.bits[u]
        zeros = Const(u, range(u + 1))
        for i in range(u + 1):                                        # highest set bit wins
            zeros = Mux(t[i], u - i, zeros)
        normal = (t << zeros)[:u + 1]
        octave = Signal(range(u + 1))
        segment = Signal(sb)
        frac = Signal(fb)
        sign1 = Signal()
        with m.If(self.en):
            m.d.sync += [
                octave.eq(zeros),
                segment.eq(normal[u - sb:u]),
                frac.eq(normal[u - sb - fb:u - sb]),
                sign1.eq(negative),
            ]

        # Stage 2: table read (the read port's register), carrying frac and sign along.
        frac2 = Signal(fb)
        sign2 = Signal()
        m.d.comb += [read.addr.eq(Cat(segment, octave)), read.en.eq(self.en)]
        with m.If(self.en):
            m.d.sync += [frac2.eq(frac), sign2.eq(sign1)]

        # Stage 3: interpolate.
        x = Signal(signed(node_width + 1))
        sign3 = Signal()
        with m.If(self.en):
            m.d.sync += [
                x.eq(read.data.node + round_half_away(shift_add_mul(read.data.slope, frac2), fb)),
                sign3.eq(sign2),
            ]

        # Stage 4: to the output format.
        magnitude = saturate(round_half_away(x, ICDF_GUARD_BITS), self.params.width)
        value = Signal.like(self.value)
        with m.If(self.en):
            m.d.sync += value.eq(Mux(sign3, -magnitude, magnitude))
        m.d.comb += self.value.eq(value)
        return m
