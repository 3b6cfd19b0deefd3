# amaranth: UnusedElaboratable=no
"""The dequantizer's ``side`` field (the beat's meta word, whose side units a consumer takes as
they pass: z0 and the label) against the golden read stream, through the forward cache: every
beat that carries side units, in-range and out-of-range reads, one-lane and full-rate
dequantizers."""

import numpy as np
import pytest

from fieldtune.rtl.cache.params import CacheParams
from fieldtune.rtl.cache.cache import ForwardCache
from fieldtune.rtl.cache.layout import CacheLayout
from fieldtune.sim.engines.pysim import simulate, stream_send, stream_collect
from fieldtune.sim.golden.cache import CacheModel, record_elements


def _read_sides(params, records, requests):
    """Write ``records`` [(features, z0, label)], then read ``requests``; returns the
    ``(beat, side)`` of every beat and the golden model."""
    dut, lay, model = ForwardCache(params), CacheLayout(params), CacheModel(params)
    elements = [e for f, z0, label in records for e in record_elements(f, z0, label)]
    for d, last in elements:
        model.write(d, last)
    budget = 20000 * len(records) + 500
    got = {}

    async def writer(ctx):
        await stream_send(ctx, dut.wr, [{"data": d, "last": last} for d, last in elements],
                          max_cycles=budget)
        while ctx.get(dut.count) != model.count or ctx.get(dut.writing):
            await ctx.tick()
        await stream_send(ctx, dut.req, requests, max_cycles=budget)

    async def reader(ctx):
        got["beats"], _ = await stream_collect(
            ctx, dut.rd, len(requests) * lay.beats, max_cycles=budget,
            convert=lambda p: (int(p.beat), int(p.side)))

    simulate(dut, writer, reader, name="dequantizer_side")
    want = [b for index in requests for b in model.read(index)]
    return got["beats"], want


@pytest.mark.parametrize("kw", [dict(lanes=8, dequantizer_lanes=1),        # the up5k SoC's
                                dict(lanes=8, dequantizer_lanes=8),
                                dict(lanes=32, dequantizer_lanes=4, memory="bram")])
def test_side_units_pass_on_their_beats(kw):
    params = CacheParams(capacity=2, **kw)
    rng = np.random.default_rng(7)
    records = [(rng.integers(-200, 200, params.features), rng.integers(-30000, 30000,
                                                                      params.classes),
                int(rng.integers(0, params.classes))) for _ in range(2)]
    got, want = _read_sides(params, records, [1, 0, 5])        # 5: out of range (zeros)
    assert [b for b, _ in got] == [w.beat for w in want]
    lay = CacheLayout(params)
    checked = [({u: g >> (16 * u) & 0xFFFF for u in w.side}, w.side)
               for (_, g), w in zip(got, want) if w.side]
    assert len(checked) == 3 * len({lay.words[w].beat for w, _ in lay.side_pos})
    assert all(g == w for g, w in checked)
    assert all(set(g.values()) == {0} for g, _ in checked[-len(checked) // 3:])  # index 5
    # the first read's units, taken where the layout puts them, are its z0 and label
    side_of = dict(got[:lay.beats])                  # beat -> side word, first read
    units = [side_of[lay.words[w].beat] >> (16 * u) & 0xFFFF for w, u in lay.side_pos]
    z0 = [v - (1 << 16) if v >> 15 else v for v in units[:params.classes]]
    assert (z0, units[params.classes]) == ([int(v) for v in records[1][1]], records[1][2])
