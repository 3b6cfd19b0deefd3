"""A one-entry stream buffer for streams that move at most every other cycle."""

from amaranth.hdl import Module
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out


__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Registered ``i.ready``, ``o.valid`` and ``o.payload`` with one payload register and
    no multiplexer (a :class:`~fieldtune.rtl.cache.skid.SkidBuffer` needs two registers and a
    multiplexer per bit to sustain a transfer per cycle).

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Timing
    ------
    One cycle from ``i`` to ``o``; ``i.ready`` is high while the register is empty, so
    transfers take at least two cycles each: enough where the consumer takes a beat at
    most every other cycle (the MAC array takes a feature beat per ``rows >= 2`` words).
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        return m
