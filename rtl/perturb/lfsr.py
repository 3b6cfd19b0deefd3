"""A maximal-length Fibonacci LFSR that leaps several bits per clock.

Bit ``j`` of the state is sequence bit ``a[t+j]``; the recurrence of the characteristic
polynomial ``x**degree + x**tap + 1`` is ``a[j+degree] = a[j+tap] ^ a[j]``. A step leaps
``leap`` bits: the ``leap`` oldest bits are the output and ``leap`` new bits enter. With
``leap <= degree - tap`` every new bit is a two-input XOR of current state bits; larger leaps
are allowed and cost wider XORs. The golden model is
:func:`fieldtune.sim.golden.perturb.lfsr_leap`.
"""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import LFSR_DEGREE, LFSR_TAP


__all__ = ["Lfsr", "leap_taps"]


def leap_taps(degree, tap, leap):
    """For each bit of the state after one leap, the set of current state bits whose XOR it
    is (computed over GF(2) at elaboration)."""
    ext = [frozenset([j]) for j in range(degree)]
    for i in range(leap):
        ext.append(ext[i + tap] ^ ext[i])
    return ext[leap:leap + degree]


class Lfsr(wiring.Component):
    """An LFSR leaping ``leap`` bits per step.

    Parameters
    ----------
    leap : int
        Output bits per step, 1 to ``degree``.
    degree, tap : int
        The primitive trinomial ``x**degree + x**tap + 1`` (default x**31 + x**3 + 1).

    Ports
    -----
    load, load_state : In(1), In(degree)
        Replace the state at the next clock edge (priority over ``advance``).
    seal : In(1)
        With ``load``: an all-zero ``load_state`` (the one state an LFSR never leaves) loads
        as 1 instead. Only that state changes, so no bit of a loaded state is biased.
    advance : In(1)
        Leap at the next clock edge.
    bits : Out(leap)
        The ``leap`` oldest sequence bits of the current state (state bits ``0..leap-1``).
    state : Out(degree)
    """

    def __init__(self, leap, *, degree=LFSR_DEGREE, tap=LFSR_TAP):
        if not isinstance(degree, int) or degree < 2:
            raise ValueError(f"LFSR degree must be an integer of at least 2, not {degree!r}")
        if not isinstance(tap, int) or not 0 < tap < degree:
            raise ValueError(f"LFSR tap must be an integer from 1 to {degree - 1}, not {tap!r}")
        if not isinstance(leap, int) or not 1 <= leap <= degree:
            raise ValueError(f"LFSR leap must be an integer from 1 to {degree}, not {leap!r}")
        self.degree, self.tap, self.leap = degree, tap, leap
        super().__init__({
            "load": In(1), "load_state": In(degree), "seal": In(1), "advance": In(1),
            "bits": Out(leap), "state": Out(degree),
        })

    def elaborate(self, platform):
        m = Module()
        state = Signal(self.degree)
        m.d.comb += [self.state.eq(state), self.bits.eq(state[:self.leap])]
        taps = leap_taps(self.degree, self.tap, self.leap)
        following = []
        for bits in taps:
            value = 0
            for j in sorted(bits):
                value = value ^ state[j]
            following.append(value)
        with m.If(self.load):
            m.d.sync += state.eq(Mux(self.seal & (self.load_state == 0), 1, self.load_state))
        with m.Elif(self.advance):
            m.d.sync += state.eq(Cat(*following))
        return m
