"""The skid buffer at the forward cache's inputs moves every payload once, in order, one per
cycle when unobstructed, under any pattern of valid and ready."""

import numpy as np

from fieldtune.rtl.cache.skid import SkidBuffer
from fieldtune.sim.engines.pysim import simulate, stream_send, stream_collect


def run(data, valid=None, ready=None):
    dut = SkidBuffer(16)
    out = {}

    async def source(ctx):
        await stream_send(ctx, dut.i, data, valid=valid, max_cycles=10 * len(data) + 10)

    async def sink(ctx):
        out["items"], out["cycles"] = await stream_collect(ctx, dut.o, len(data), ready=ready,
                                                           max_cycles=10 * len(data) + 10)

    simulate(dut, source, sink, name="skid")
    return out


def test_full_rate():
    got = run(list(range(40)))
    assert got["items"] == list(range(40)) and got["cycles"] == 40 + 1


def test_random_handshakes():
    rng = np.random.default_rng(3)
    v, r = rng.random(2000) < 0.6, rng.random(2000) < 0.5
    data = [int(x) for x in rng.integers(0, 1 << 16, 300)]
    assert run(data, valid=lambda c: v[c], ready=lambda c: r[c])["items"] == data
