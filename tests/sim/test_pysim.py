"""The shared stream helpers move every payload once, under back-pressure and bubbles."""

from amaranth.hdl import Module
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from fieldtune.sim.engines.pysim import (simulate, stream_collect, stream_send, stream_get,
                                         stream_put)


class Skid(wiring.Component):
    """A one-register stream buffer (a pipeline stage), the smallest stream block there is."""
    i: In(stream.Signature(8))
    o: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


def test_send_and_collect_under_backpressure():
    dut = Skid()
    data = list(range(50))
    got = []

    async def source(ctx):
        await stream_send(ctx, dut.i, data, valid=lambda c: c % 3 != 1, max_cycles=1000)

    async def sink(ctx):
        items, _ = await stream_collect(ctx, dut.o, len(data), ready=lambda c: c % 4 != 2,
                                        max_cycles=1000)
        got.extend(items)

    simulate(dut, source, sink)
    assert got == data


def test_get_put_single():
    dut = Skid()
    got = []

    async def source(ctx):
        await stream_put(ctx, dut.i, 0xA5)

    async def sink(ctx):
        got.append(await stream_get(ctx, dut.o))

    simulate(dut, source, sink)
    assert got == [0xA5]
