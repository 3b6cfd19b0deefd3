"""PeZO adaptive scaling: solve the per-step correction, apply it per lane.

A step's static-scaled values ``x_i`` (kept with ``G = ADAPT_GUARD_BITS`` extra fraction
bits) have energy ``S = sum(x_i**2)``; the target is ``T = D * 4**(f + G)`` (squared norm equal
to the dimension ``D``). :class:`ScaleSolver` turns ``S`` into a small signed correction ``d``
by counting the energy thresholds it does not exceed (the golden formula of
:class:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants`, tabulated); a :class:`Corrector` applies
``z = sat(round(x * (2**adapt_shift + d), adapt_shift + G))`` with ``adapt_bits`` shift-and-add
partial products. ``round`` rounds half away from zero, so the correction is odd-symmetric.
"""

from amaranth.hdl import Module, Signal, Mux, Array, Const, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import round_half_away, saturate, shift_add_mul
from .numerics import AdaptiveConstants, ADAPT_GUARD_BITS, value_width


__all__ = ["ScaleSolver", "Corrector"]


class ScaleSolver(wiring.Component):
    """``energy`` to the correction ``d`` without a multiplier: ``d`` is the number of
    thresholds (:meth:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants.energy_thresholds`,
    ``2 * d_max + 2`` constants) the energy does not exceed, less ``d_max + 1``. One
    comparator walks the threshold table, one entry a cycle; the result is exactly the golden
    formula's (``d_raw`` clamped, :func:`fieldtune.sim.golden.perturb.adaptive_scale`).
    A step's solve happens once, after a measuring pass of at least ``beats`` cycles, so the
    walk's ``2 * d_max + 2`` cycles cost little and save the four multipliers (SB_MAC16 on
    iCE40) the direct formula needs.

    Ports
    -----
    start : In(1)
        Sample ``energy`` at the next edge.
    energy : In(unsigned(energy_width))
    done : Out(1)
        High for one cycle, :attr:`latency` edges after ``start``; the outputs below are
        valid from then on and held until the next ``start``.
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
        self.thresholds = self.constants.energy_thresholds()
        self.energy_width = energy_width
        self.latency = self.latency_of(params)
        super().__init__({
            "start": In(1), "energy": In(unsigned(energy_width)), "done": Out(1),
            "correction": Out(signed(params.adapt_bits + 1)),
            "magnitude": Out(params.adapt_bits), "negative": Out(1), "clamped": Out(1),
        })

    @staticmethod
    def latency_of(params):
        """Edges from ``start`` to ``done``: the energy is sampled, each of the
        ``2 * d_max + 2`` thresholds compared, the level turned into ``d``."""
        return 2 * ((1 << params.adapt_bits) - 1) + 2 + 2

    def elaborate(self, platform):
        m = Module()
        d_max = self.constants.d_max
        n = len(self.thresholds)
        # thresholds beyond any energy are "always"; -1 is "never"
        top = (1 << self.energy_width) - 1
        table = Array(Const(min(t, top), signed(self.energy_width + 1))
                      for t in self.thresholds)
        energy = Signal(unsigned(self.energy_width))
        index = Signal(range(n))
        level = Signal(range(n + 1))
        walking, finishing = Signal(), Signal()
        m.d.sync += [self.done.eq(finishing), finishing.eq(0)]
        with m.If(self.start):
            m.d.sync += [energy.eq(self.energy), index.eq(0), level.eq(0), walking.eq(1)]
        with m.Elif(walking):
            m.d.sync += [level.eq(level + (energy <= table[index])), index.eq(index + 1)]
            with m.If(index == n - 1):
                m.d.sync += [walking.eq(0), finishing.eq(1)]
        d = Signal(signed(len(level) + 1))
        m.d.comb += d.eq(level - (d_max + 1))
        clamped = (level == 0) | (level == n)
        limited = Mux(level == 0, -d_max, Mux(level == n, d_max, d))
        with m.If(finishing):
            m.d.sync += [
                self.correction.eq(limited), self.magnitude.eq(abs(limited)),
                self.negative.eq(limited < 0), self.clamped.eq(clamped),
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
