"""A two-entry stream buffer without a multiplexer, for streams that move at most every other
cycle."""

from amaranth.hdl import Module, Signal

from .cache.skid import SkidBuffer


__all__ = ["StageBuffer"]


class StageBuffer(SkidBuffer):
    """Two registers in a row, ``i`` -> ``back`` -> ``o``, each loaded only from the one
    before it: the ports (``shape``: the payload), registered ``i.ready``, ``o.valid`` and
    ``o.payload`` and the two entries of a :class:`~fieldtune.rtl.cache.skid.SkidBuffer`,
    but without its multiplexer per payload bit (the flip-flops' enables do all the
    steering).

    Timing
    ------
    Two cycles from ``i`` to ``o``. ``i.ready`` is high while ``back`` is empty, and ``back``
    moves on when ``o`` is empty or taken, so transfers take at least two cycles each: enough
    where the consumer takes a beat at most every other cycle (the MAC array takes a feature
    beat per ``rows >= 2`` words). Both entries fill while ``o`` stalls, so the producer
    runs up to two beats ahead.
    """

    def elaborate(self, platform):
        m = Module()
        back = Signal.like(self.i.payload)
        back_valid = Signal()
        m.d.comb += self.i.ready.eq(~back_valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(back_valid & (~self.o.valid | self.o.ready)):
            m.d.sync += [self.o.payload.eq(back), self.o.valid.eq(1), back_valid.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [back.eq(self.i.payload), back_valid.eq(1)]
        return m
