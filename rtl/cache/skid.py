"""A two-entry stream buffer whose ``ready`` and outputs come straight from registers."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out


__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Registered ``i.ready``, ``o.valid`` and ``o.payload``: no combinational path crosses
    it, so a block's inputs can be taken from a neighbour without lengthening its paths.

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Timing
    ------
    One cycle from ``i`` to ``o``; one transfer per cycle sustained. When ``o`` stalls, the
    transfer in flight lands in the spare register and ``i.ready`` drops the next cycle.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        spare = Signal.like(self.i.payload)
        spare_valid = Signal()
        m.d.comb += self.i.ready.eq(~spare_valid)
        with m.If(self.o.ready | ~self.o.valid):
            with m.If(spare_valid):
                m.d.sync += [self.o.payload.eq(spare), self.o.valid.eq(1), spare_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~spare_valid):
            m.d.sync += [spare.eq(self.i.payload), spare_valid.eq(1)]
        return m
