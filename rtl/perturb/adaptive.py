"""PeZO adaptive scaling: solve the per-step correction, apply it per lane.

A step's static-scaled codes ``v_i`` have energy ``S = sum(v_i**2)``; the target is
``T = D * 4**f`` (squared norm equal to the dimension ``D``). :class:`ScaleSolver` turns ``S``
into a small signed correction ``d`` with one shift and one small constant multiplier
(:class:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants`); :func:`corrected` applies
``z = sat(v + round(v * d, adapt_shift))`` to one lane with ``adapt_bits`` shift-and-add
partial products. ``round`` rounds half away from zero, so the correction is odd-symmetric.
"""

from amaranth.hdl import Module, Signal, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import round_half_away, saturate, shift_add_mul
from .numerics import AdaptiveConstants


__all__ = ["ScaleSolver", "corrected"]


class ScaleSolver(wiring.Component):
    """``energy`` to correction ``d`` in two clock cycles.

    Ports
    -----
    start : In(1)
        Sample ``energy`` at the next edge.
    energy : In(unsigned(energy_width))
    done : Out(1)
        High for one cycle, two edges after ``start``; ``correction`` and ``clamped`` are valid
        from then on and held until the next ``start``.
    correction : Out(signed(adapt_bits + 1))
        ``d``, in ``[-(2**adapt_bits - 1), 2**adapt_bits - 1]``.
    clamped : Out(1)
        The unclamped ``d`` was out of that range (the step's norm is off by more than the
        correction can reach, e.g. for a very small dimension).
    """

    def __init__(self, params, energy_width):
        self.constants = AdaptiveConstants.of(params)
        self.energy_width = energy_width
        super().__init__({
            "start": In(1), "energy": In(unsigned(energy_width)), "done": Out(1),
            "correction": Out(signed(params.adapt_bits + 1)), "clamped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k = self.constants
        q = Signal(range(-k.q_limit, k.q_limit + 1))
        busy = Signal()
        difference = (k.target - self.energy) >> k.pre_shift
        with m.If(self.start):
            m.d.sync += q.eq(Mux(difference > k.q_limit, k.q_limit,
                                 Mux(difference < -k.q_limit, -k.q_limit, difference)))
        m.d.sync += [busy.eq(self.start), self.done.eq(busy)]
        raw = round_half_away(q * k.multiplier, k.shift)
        with m.If(busy):
            m.d.sync += [
                self.correction.eq(Mux(raw > k.d_max, k.d_max,
                                       Mux(raw < -k.d_max, -k.d_max, raw))),
                self.clamped.eq((raw > k.d_max) | (raw < -k.d_max)),
            ]
        return m


def corrected(value, magnitude, negative, adapt_shift, width):
    """``sat(v + round(v * d, adapt_shift))`` for ``d = -magnitude if negative else
    magnitude`` (``round(v*d) = sign(d) * round(v*|d|)``, rounding being odd-symmetric)."""
    step = round_half_away(shift_add_mul(value, magnitude), adapt_shift)
    return saturate(value + Mux(negative, -step, step), width)
