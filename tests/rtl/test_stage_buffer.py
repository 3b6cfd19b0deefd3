"""The SoC's feature-stream buffer moves every payload once, in order, one every other cycle
when unobstructed, holding two while its consumer stalls, under any pattern of valid and
ready; no combinational path crosses it."""

import numpy as np

from fieldtune.rtl.stage_buffer import StageBuffer
from fieldtune.sim.engines.pysim import simulate, stream_through


def test_half_rate():
    items, cycles = stream_through(StageBuffer(16), range(40))
    assert items == list(range(40)) and cycles <= 2 * 40 + 2


def test_holds_two_while_stalled():
    dut = StageBuffer(8)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.i.valid, 1)
        accepted = 0
        for value in range(6):                  # the consumer never takes anything
            ctx.set(dut.i.payload, value)
            *_, ready = await ctx.tick().sample(dut.i.ready)
            accepted += ready
        seen["accepted"] = accepted
        seen["out"] = ctx.get(dut.o.payload)

    simulate(dut, tb, name="stage_stall")
    assert seen == {"accepted": 2, "out": 0}


def test_random_handshakes():
    rng = np.random.default_rng(5)
    v, r = rng.random(2000) < 0.6, rng.random(2000) < 0.5
    data = [int(x) for x in rng.integers(0, 1 << 16, 300)]
    items, _ = stream_through(StageBuffer(16), data, valid=lambda c: v[c],
                              ready=lambda c: r[c])
    assert items == data


def test_ready_and_outputs_are_registered():
    # i.ready and o.valid do not follow o.ready or i.valid within a cycle
    dut = StageBuffer(8)

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        before = (ctx.get(dut.i.ready), ctx.get(dut.o.valid))
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 0)
        assert (ctx.get(dut.i.ready), ctx.get(dut.o.valid)) == before

    simulate(dut, tb, name="stage_comb")
