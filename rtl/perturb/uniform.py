"""Uniform shaping and PeZO's static scaling.

``scaling = "none"``: ``z = round(r, u - f)`` with ``u = max(f, 1)``, the odd codes of ``(-1,
1)`` (combinational, :attr:`depth` 0). ``"static"`` and ``"adaptive"``: ``z = round(r * 111, u +
6 - f)`` with ``u = f + 4``, uniform in ``[-a, a]``, ``a = 111/64 ~= sqrt(3)`` (unit variance;
one register). ``"adaptive"`` stops before the last ``ADAPT_GUARD_BITS`` of that rounding
(``round(r * 111, u + 6 - f - 4)``): the per-step correction (:mod:`.adaptive`) rounds to the
output format. ``round`` rounds half away from zero; neither result can overflow
``Q(width-f).f`` because ``frac_bits <= width - 2``.
"""

from amaranth.hdl import Module, Signal, Cat, Const

from .arith import round_half_away, const_mul
from .numerics import SQRT3_MUL, SQRT3_SHIFT, ADAPT_GUARD_BITS, summand_bits
from .shaper import Shaper, raw_uniform


__all__ = ["UniformShaper", "uniform_magnitude"]


def uniform_magnitude(params, bits):
    """``|z|`` of a uniform draw without adaptive scaling, unsigned (the reuse pool stores
    magnitudes): ``round`` is odd-symmetric, so ``|round(r * c, s)| = round(|r| * c, s)``,
    and ``|r| = |2m + 1| = 2 (m ^ sign) + 1`` needs no adder. A combinational expression of
    ``bits`` (the draw's ``u`` random bits)."""
    u, f = summand_bits(params), params.frac_bits
    m = bits[:u]
    odd = Cat(Const(1, 1), m[:u - 1] ^ m[u - 1].replicate(u - 1))     # |r|, unsigned
    if params.scaling == "none":
        return round_half_away(odd, max(u - f, 0))
    return round_half_away(const_mul(odd, SQRT3_MUL), u + SQRT3_SHIFT - f)


class UniformShaper(Shaper):
    """Uniform codes, unscaled or scaled by sqrt(3). See the module documentation."""

    def __init__(self, params):
        if params.shape != "uniform":
            raise ValueError(f"UniformShaper needs perturb.shape 'uniform', not "
                             f"{params.shape!r}")
        super().__init__(params)
        self.depth = self.depth_of(params)

    @classmethod
    def depth_of(cls, params):
        return 0 if params.scaling == "none" else 1

    def elaborate(self, platform):
        m = Module()
        f = self.params.frac_bits
        r = raw_uniform(self.bits, 0, self.u)
        if self.params.scaling == "none":
            m.d.comb += self.value.eq(round_half_away(r, self.u - f))
        else:
            scaled = Signal.like(self.value)
            guard = ADAPT_GUARD_BITS if self.params.scaling == "adaptive" else 0
            with m.If(self.en):
                m.d.sync += scaled.eq(round_half_away(const_mul(r, SQRT3_MUL),
                                                      self.u + SQRT3_SHIFT - f - guard))
            m.d.comb += self.value.eq(scaled)
        return m
