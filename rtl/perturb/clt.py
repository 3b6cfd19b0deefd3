"""Gaussian baseline by the central limit theorem: the sum of 4 or 12 raw uniforms per lane.

CLT4: ``z = sat(round(sum(r_j) * 111, u + 7 - f))`` with ``u = f + 2`` (the sum of four
uniforms of variance 1/3 times sqrt(3)/2 has unit variance). CLT12: ``z = sat(round(sum(r_j),
u + 1 - f))`` with ``u = max(f, 1)`` (twelve uniforms, halved). Two register stages: the
adder tree, then scaling, rounding (half away from zero) and symmetric saturation.
"""

from amaranth.hdl import Module, Signal

from .arith import round_half_away, saturate, const_mul
from .numerics import SQRT3_MUL, SQRT3_SHIFT, summands
from .shaper import Shaper, raw_uniform


__all__ = ["CltShaper"]


def adder_tree(values):
    """Pairwise sum (a balanced tree, so the depth is ``ceil(log2(len))`` adders)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class CltShaper(Shaper):
    """Sum of ``k`` uniforms (k = 4 or 12). See the module documentation."""

    depth = 2

    def __init__(self, params):
        if params.shape not in ("clt4", "clt12"):
            raise ValueError(f"CltShaper needs perturb.shape 'clt4' or 'clt12', not "
                             f"{params.shape!r}")
        super().__init__(params)
        self.k = summands(params)

    def elaborate(self, platform):
        m = Module()
        f, u, w = self.params.frac_bits, self.u, self.params.width
        terms = [raw_uniform(self.bits, j, u) for j in range(self.k)]
        total = Signal.like(adder_tree(terms), name="total")
        value = Signal.like(self.value)
        if self.k == 4:
            scaled = round_half_away(const_mul(total, SQRT3_MUL), u + SQRT3_SHIFT + 1 - f)
        else:
            scaled = round_half_away(total, u + 1 - f)
        with m.If(self.en):
            m.d.sync += [total.eq(adder_tree(terms)), value.eq(saturate(scaled, w))]
        m.d.comb += self.value.eq(value)
        return m
