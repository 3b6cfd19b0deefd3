"""Scaling of update coefficients by a power of two: the ``dz`` stream on its way into the
coefficient memory and the zeroth-order immediate, one bit per cycle in one unit.

A value ``v`` (signed, at most :data:`~.ops.IMM_WIDTH` bits) and a signed ``shift`` give
``sat(round_half_up(v * 2**shift))`` in signed ``coef_width`` bits (the golden model's
:func:`~fieldtune.sim.golden.mac.stored_coefficients` for ``dz``, and the immediate of
:func:`~fieldtune.sim.golden.mac.update`), with a flag when it saturated.

Off the throughput path, so serial and small: a register takes ``v`` and shifts it one bit
per cycle, right (keeping the last bit shifted out, which round half up adds) or left
(only its low ``coef_width + 1`` bits move, noting when a shift changes their sign bit: the
result saturates then, as it does when the bits above are not the sign's); the shift count
is the signed shift itself, counted towards 0 (no magnitude or clamp logic). The last cycle
saturates to ``coef_width + 1`` bits, adds the rounding bit and saturates to ``coef_width``
bits: that order gives the same value and flag as rounding first, with a
``coef_width + 1``-bit adder.

Timing: a value is taken when the unit is idle, shifted in ``|shift|`` cycles (at most
32), and offered on ``o`` the cycle after; ``o`` holds under
back-pressure, and the unit takes the next value with the cycle ``o`` is taken. So a value
takes ``|shift| + 2`` cycles: R1's first-order ``dz`` (``shift = -2``) take 4, ten per
sample against the 280 cycles of a sample's forward at 8 lanes.
"""

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .ops import IMM_WIDTH


__all__ = ["SHIFT_WIDTH", "scale_request_layout", "scale_result_layout", "Pow2Scaler"]


#: Width of the signed shift (the micro-op's ``cshift``).
SHIFT_WIDTH = 6


def scale_request_layout():
    """A value to scale: ``value`` (signed :data:`~.ops.IMM_WIDTH` bits; a ``dz`` is
    sign-extended) and ``shift`` (signed :data:`SHIFT_WIDTH` bits)."""
    return data.StructLayout({"value": signed(IMM_WIDTH), "shift": signed(SHIFT_WIDTH)})


def scale_result_layout(coef_width):
    """A scaled value: ``value`` (signed ``coef_width``) and ``clamped`` (it saturated)."""
    return data.StructLayout({"value": signed(coef_width), "clamped": 1})


class Pow2Scaler(wiring.Component):
    """``sat(round_half_up(value * 2**shift))``, one bit of shift per cycle (module docs).

    Parameters
    ----------
    coef_width : int
        Width of the result, signed.

    Attributes
    ----------
    i : In(stream.Signature(scale_request_layout()))
    o : Out(stream.Signature(scale_result_layout(coef_width)))
    """

    def __init__(self, coef_width):
        if not isinstance(coef_width, int) or not 2 <= coef_width < IMM_WIDTH:
            self._MustUse__silence = True
            raise ValueError(f"coef_width must be an integer from 2 to {IMM_WIDTH - 1}, "
                             f"not {coef_width!r}")
        self.coef_width = coef_width
        super().__init__({
            "i": In(stream.Signature(scale_request_layout())),
            "o": Out(stream.Signature(scale_result_layout(coef_width))),
        })

    def elaborate(self, platform):
        m = Module()
        cw = self.coef_width
        qw = IMM_WIDTH
        q = Signal(signed(qw))
        n = Signal(signed(SHIFT_WIDTH))     # shifts left to do, counted towards 0
        right = Signal()
        lost = Signal()              # the last bit shifted out to the right
        over = Signal()              # a left shift changed the sign bit
        neg = Signal()               # the value's sign (which a left shift may lose)
        busy = Signal()
        req = self.i.payload
        take = Signal()
        m.d.comb += [take.eq(self.i.valid & self.i.ready),
                     self.i.ready.eq(~busy & (~self.o.valid | self.o.ready))]
        with m.If(take):
            sh = req.shift
            m.d.sync += [q.eq(req.value), neg.eq(req.value < 0), right.eq(sh < 0),
                         lost.eq(0), over.eq(0),
                         n.eq(sh), busy.eq(1)]
        with m.Elif(busy & (n != 0)):
            m.d.sync += n.eq(n + Mux(right, 1, -1))
            with m.If(right):
                m.d.sync += [q.eq(q >> 1), lost.eq(q[0])]
            with m.Else():
                # left: only the low cw + 1 bits move (the result's window before the last
                # saturation), noting a change of their sign bit; the bits above hold the
                # value's sign extension if it fits the window at all, else they differ
                # from it and saturate the result just the same
                m.d.sync += [q[:cw + 1].eq(q[:cw] << 1),
                             over.eq(over | (q[cw] ^ q[cw - 1]))]
        # the result: saturate to cw + 1 bits, add the rounding bit, saturate to cw bits
        top = q[cw:]
        fits = ~over & ((top == 0) | (top == (1 << len(top)) - 1))
        narrow = Signal(signed(cw + 1))
        m.d.comb += narrow.eq(Mux(fits, q[:cw + 1], Mux(neg, -(1 << cw), (1 << cw) - 1)))
        rounded = Signal(signed(cw + 2))
        m.d.comb += rounded.eq(narrow + lost)
        hi, lo = (1 << (cw - 1)) - 1, -(1 << (cw - 1))
        out_of_range = rounded[cw - 1:].any() & ~rounded[cw - 1:].all()
        with m.If(busy & (n == 0)):
            m.d.sync += [busy.eq(0), self.o.valid.eq(1),
                         self.o.payload.value.eq(Mux(out_of_range,
                                                     Mux(rounded[-1], lo, hi), rounded[:cw])),
                         self.o.payload.clamped.eq(out_of_range)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
