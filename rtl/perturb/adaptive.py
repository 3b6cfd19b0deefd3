"""PeZO adaptive scaling: solve the per-step correction, apply it per lane.

A step's static-scaled values ``x_i`` (kept with ``G = ADAPT_GUARD_BITS`` extra fraction
bits) have energy ``S = sum(x_i**2)``; the target is ``T = D * 4**(f + G)`` (squared norm equal
to the dimension ``D``). :class:`ScaleSolver` turns ``S`` into a small signed correction ``d``
with one shift and one small constant multiplier
(:class:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants`); a :class:`Corrector` applies
``z = sat(round(x * (2**adapt_shift + d), adapt_shift + G))`` with ``adapt_bits`` shift-and-add
partial products. ``round`` rounds half away from zero, so the correction is odd-symmetric.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import round_half_away, saturate, shift_add_mul
from .numerics import AdaptiveConstants, ADAPT_GUARD_BITS, value_width


__all__ = ["ScaleSolver", "Corrector"]


class ScaleSolver(wiring.Component):
    """``energy`` to the correction ``d`` in four clock cycles: shift and clamp; the two
    small multiplies (``q * linear``, ``q * q``); the quadratic term and the sum; rounding
    and clamping (:class:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants`).

    Ports
    -----
    start : In(1)
        Sample ``energy`` at the next edge.
    energy : In(unsigned(energy_width))
    done : Out(1)
        High for one cycle, four edges after ``start``; the outputs below are valid from then
        on and held until the next ``start``.
    correction : Out(signed(adapt_bits + 1))
        ``d``, in ``[-(2**adapt_bits - 1), 2**adapt_bits - 1]``.
    magnitude, negative : Out(adapt_bits), Out(1)
        ``|d|`` and ``d < 0``, as the correctors use them.
    clamped : Out(1)
        The unclamped ``d`` was out of that range (the step's norm is off by more than the
        correction can reach, e.g. for a very small dimension).
    """

    def __init__(self, params, energy_width):
        self.constants = AdaptiveConstants.of(params)
        self.energy_width = energy_width
        super().__init__({
            "start": In(1), "energy": In(unsigned(energy_width)), "done": Out(1),
            "correction": Out(signed(params.adapt_bits + 1)),
            "magnitude": Out(params.adapt_bits), "negative": Out(1), "clamped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        k = self.constants
        q = Signal(range(-k.q_limit, k.q_limit + 1))
        linear = Signal.like(q * k.linear)
        squared = Signal(range(k.q_limit * k.q_limit + 1))
        total = Signal.like((linear << (k.square_shift - k.shift)) + squared * k.quadratic)
        stages = Signal(3)
        difference = (k.target - self.energy) >> k.pre_shift
        with m.If(self.start):
            m.d.sync += q.eq(Mux(difference > k.q_limit, k.q_limit,
                                 Mux(difference < -k.q_limit, -k.q_limit, difference)))
        m.d.sync += [
            stages.eq(Cat(self.start, stages[:2])), self.done.eq(stages[2]),
            linear.eq(q * k.linear),
            squared.eq(q * q),
            total.eq((linear << (k.square_shift - k.shift)) + squared * k.quadratic),
        ]
        raw = round_half_away(total, k.square_shift)
        d = Mux(raw > k.d_max, k.d_max, Mux(raw < -k.d_max, -k.d_max, raw))
        with m.If(stages[2]):
            m.d.sync += [
                self.correction.eq(d), self.magnitude.eq(abs(d)), self.negative.eq(d < 0),
                self.clamped.eq((raw > k.d_max) | (raw < -k.d_max)),
            ]
        return m


class Corrector(wiring.Component):
    """Applies the correction to one value per cycle, in three register stages: ``x * |d|``
    (``adapt_bits`` shift-and-add terms); ``x * 2**J +- x * |d|``; rounding (half away from
    zero) to the output format and symmetric saturation::

        z = sat(round(x * (2**adapt_shift + d), adapt_shift + ADAPT_GUARD_BITS))

    Ports
    -----
    value : In(signed(value_width))
        A guarded value ``x``, sampled on enabled edges.
    magnitude, negative : In(adapt_bits), In(1)
        ``|d|`` and ``d < 0`` (held while values flow).
    en : In(1)
        Pipeline enable.
    corrected : Out(signed(width))
        ``z`` of the value presented :attr:`depth` enabled edges earlier.
    """

    depth = 3

    def __init__(self, params):
        self.params = params
        super().__init__({
            "value": In(signed(value_width(params))), "magnitude": In(params.adapt_bits),
            "negative": In(1), "en": In(1), "corrected": Out(signed(params.width)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        held = Signal.like(self.value)
        product = Signal.like(shift_add_mul(self.value, self.magnitude))
        scaled = Signal.like((held << p.adapt_shift) - product)
        with m.If(self.en):
            m.d.sync += [
                held.eq(self.value),
                product.eq(shift_add_mul(self.value, self.magnitude)),
                scaled.eq((held << p.adapt_shift) + Mux(self.negative, -product, product)),
                self.corrected.eq(saturate(round_half_away(scaled,
                                                          p.adapt_shift + ADAPT_GUARD_BITS),
                                           p.width)),
            ]
        return m
