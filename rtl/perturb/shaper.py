"""The common port shape of every shaper (raw random bits in, one perturbation code out)."""

from amaranth.hdl import Cat, Const, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import draw_bits, summand_bits, value_width


__all__ = ["Shaper", "raw_uniform"]


def raw_uniform(bits, index, width):
    """The odd raw uniform ``r = 2*m + 1`` of field ``index`` (``width`` random bits ``m``,
    signed): a ``signed(width + 1)`` value in ``[-(2**width - 1), 2**width - 1]``."""
    m = bits[index * width:(index + 1) * width]
    return Cat(Const(1, 1), m).as_signed()


class Shaper(wiring.Component):
    """A pipeline from ``draw_bits(params)`` random bits to a ``signed(width)`` code.

    Ports
    -----
    bits : In(draw_bits(params))
        Raw random bits, sampled at every clock edge where ``en`` is high.
    en : In(1)
        Pipeline enable: every register of the shaper advances on ``en``.
    value : Out(signed(value_width(params)))
        The code for the bits presented :attr:`depth` enabled edges earlier (with adaptive
        scaling: the static-scaled value with ``ADAPT_GUARD_BITS`` more fraction bits).

    Attributes
    ----------
    depth : int
        Register stages from ``bits`` to ``value`` (0: combinational).
    """

    depth = 1

    @classmethod
    def depth_of(cls, params):
        """:attr:`depth` of this shaper under ``params`` (without building it)."""
        return cls.depth

    def __init__(self, params):
        self.params = params
        self.u = summand_bits(params)
        super().__init__({
            "bits": In(draw_bits(params)), "en": In(1),
            "value": Out(signed(value_width(params))),
        })
