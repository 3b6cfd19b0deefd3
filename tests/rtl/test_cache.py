# amaranth: UnusedElaboratable=no
"""The forward cache against the golden model: records written, read back bit for bit, at L
values per cycle, with flags for every kind of bad input."""

import numpy as np
import pytest

from fieldtune.rtl.cache.params import CacheParams, FOUR_BIT
from fieldtune.rtl.cache.cache import ForwardCache, read_latency, single_read
from fieldtune.rtl.cache.quantizer import Quantizer, block_cycles
from fieldtune.rtl.cache.dequantizer import Dequantizer
from fieldtune.rtl.cache.layout import CacheLayout
from fieldtune.sim.engines.pysim import simulate, stream_send, stream_collect
from fieldtune.sim.golden.cache import CacheModel, record_elements, adversarial_samples
from test_quantizer import saturation_counter


SMALL_TAPS = (40, 16, 8)


def make_records(params, rng, n):
    """``n`` records: adversarial feature vectors first, random logits and labels."""
    feats = adversarial_samples(params, rng)
    feats = [feats[(i * 3) % len(feats)] for i in range(n)]
    return [(f, rng.integers(-(1 << 15), 1 << 15, params.classes),
             int(rng.integers(0, params.classes))) for f in feats]


def beat_tuple(payload, lanes, classes):
    return (tuple(int(payload.data[i]) for i in range(lanes)), int(payload.beat),
            bool(payload.first), bool(payload.last), bool(payload.error), int(payload.side))


def run_cache(params, elements, requests, *, expected_count, ready=None, req_valid=None,
              wr_valid=None, clear_after=None):
    """Write ``elements`` [(data, last)], wait for ``expected_count`` records, then stream
    ``requests``. Returns a dict with the beats, cycle counts and final status."""
    dut = ForwardCache(params)
    lay = CacheLayout(params)
    out = {}
    budget = 40 * (len(elements) + len(requests) * lay.beats) + 500
    if params.scaled:       # the quantizer's timing contract, for every record begun
        records = sum(last for _, last in elements) + 1
        budget += records * sum(block_cycles(params, n) for _, n in lay.blocks)

    async def writer(ctx):
        await stream_send(ctx, dut.wr, [{"data": d, "last": l} for d, l in elements],
                          valid=wr_valid, max_cycles=budget)
        out["written"] = True

    async def wait_written(ctx):
        cycles = 0
        # `writing` low: every record committed or dropped, the count and the flags final
        while not (out.get("written") and ctx.get(dut.count) == expected_count
                   and not ctx.get(dut.writing)):
            await ctx.tick()
            cycles += 1
            assert cycles < budget, f"count stuck at {ctx.get(dut.count)}"

    async def requester(ctx):
        await wait_written(ctx)
        out["count"] = ctx.get(dut.count)
        await stream_send(ctx, dut.req, requests, valid=req_valid, max_cycles=budget)

    async def reader(ctx):
        await wait_written(ctx)
        items, cycles = await stream_collect(
            ctx, dut.rd, len(requests) * lay.beats, ready=ready, max_cycles=budget,
            convert=lambda p: beat_tuple(p, params.lanes, params.classes))
        out["beats"], out["cycles"] = items, cycles
        await ctx.tick().repeat(2)
        for flag in ("overflow", "record_error", "read_error"):
            out[flag] = ctx.get(getattr(dut, flag))

    simulate(dut, writer, requester, reader, processes=[saturation_counter(dut, out, dut.clear)],
             name="forward_cache")
    return out


def expected_beats(model, requests):
    beats = []
    for index in requests:
        for b in model.read(index):
            beats.append(b)
    return beats


def assert_beats_match(params, got, want):
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        data, beat, first, last, error, side = g
        where = f"beat {n} (sample {w.index}, beat {w.beat})"
        assert (data, beat, first, last, error) == \
            (w.data, w.beat, w.first, w.last, w.error), where
        if w.side:       # z0 and the label: the units the layout places on this beat
            assert {u: side >> (16 * u) & 0xFFFF for u in w.side} == w.side, where


def round_trip(params, n_records, requests, seed=0, **kw):
    rng = np.random.default_rng(seed)
    model = CacheModel(params)
    elements = []
    for f, z0, label in make_records(params, rng, n_records):
        elements += record_elements(f, z0, label)
    for d, l in elements:
        model.write(d, l)
    got = run_cache(params, elements, requests, expected_count=model.count, **kw)
    assert_beats_match(params, got["beats"], expected_beats(model, requests))
    for flag in ("overflow", "record_error", "read_error", "saturations"):
        assert got[flag] == getattr(model, flag), flag
    return got, model


LANES = (1, 4, 8, 32)
BLOCKS = (8, 16, 32, 64, 0)
# Every (code book, block size), (code book, lanes) and (block size, lanes) pair appears:
# lanes rotate with the code book and the block size (a Latin-square covering).
COVERING = [(cb, bs, LANES[(i + j) % 4]) for i, cb in enumerate(FOUR_BIT)
            for j, bs in enumerate(BLOCKS)]
COVERING += [(cb, 32, lanes) for cb in ("pass8", "pass16") for lanes in LANES]


@pytest.mark.parametrize("codebook,block_size,lanes", COVERING)
def test_round_trip(codebook, block_size, lanes):
    params = CacheParams(codebook=codebook, block_size=block_size, lanes=lanes,
                         taps=SMALL_TAPS, capacity=4,
                         memory="spram" if lanes <= 8 else "bram")
    round_trip(params, 3, [2, 0, 1, 2])


@pytest.mark.parametrize("kw", [dict(codebook="unf4", block_size=32, lanes=8),
                                dict(codebook="nf4", block_size=8, lanes=32, memory="bram")])
def test_round_trip_r1(kw):
    round_trip(CacheParams(capacity=3, **kw), 3, [1, 2, 0])


@pytest.mark.parametrize("lanes", [8, 32])
def test_sustained_across_samples(lanes):
    """Cycles from the first request to the last beat = read_latency + N * beats, for every
    N: one beat per cycle, no bubble at sample boundaries."""
    params = CacheParams(lanes=lanes, capacity=2, memory="bram" if lanes > 8 else "spram")
    beats = CacheLayout(params).beats
    for n in (1, 5):
        got, _ = round_trip(params, 2, [i % 2 for i in range(n)])
        assert got["cycles"] == read_latency(params) + n * beats


def test_backpressure_loses_nothing():
    params = CacheParams(codebook="nf4", block_size=16, lanes=4, taps=SMALL_TAPS, capacity=4)
    rng = np.random.default_rng(5)
    ready_pattern = rng.random(4000) < 0.6
    valid_pattern = rng.random(4000) < 0.7
    round_trip(params, 4, [3, 1, 1, 0, 2], ready=lambda c: ready_pattern[c % 4000],
               req_valid=lambda c: valid_pattern[c % 4000],
               wr_valid=lambda c: valid_pattern[(c * 7) % 4000])


def test_overflow_keeps_earlier_records():
    params = CacheParams(codebook="unf4", block_size=8, lanes=8, taps=SMALL_TAPS, capacity=2)
    got, model = round_trip(params, 3, [0, 1, 2])
    assert model.overflow and got["overflow"] == 1 and model.count == 2
    assert got["read_error"] == 1     # index 2 was never stored
    assert all(b[4] for b in got["beats"][-CacheLayout(params).beats:])


def test_out_of_range_read_streams_zeros_and_goes_on():
    params = CacheParams(codebook="int4", block_size=16, lanes=4, taps=SMALL_TAPS, capacity=4)
    got, _ = round_trip(params, 2, [0, 7, 65535, 1])
    assert got["read_error"] == 1


def test_bad_records_are_dropped():
    """An early ``last`` in the features or the logits, a label without ``last`` and a label
    out of range each drop only their own record."""
    params = CacheParams(codebook="unf4", block_size=8, lanes=4, taps=SMALL_TAPS, capacity=4)
    rng = np.random.default_rng(9)
    (f0, z0, l0), (f1, z1, l1) = make_records(params, rng, 2)
    good0, good1 = record_elements(f0, z0, l0), record_elements(f1, z1, l1)
    F = params.features
    early_feature = good1[:10] + [(5, 1)]
    early_logit = good1[:F + 3] + [(5, 1)]
    no_last = good1[:-1] + [(l1, 0)] + [(1, 0), (2, 0), (3, 1)]
    bad_label = good1[:-1] + [(params.classes, 1)]
    elements = good0 + early_feature + early_logit + no_last + bad_label + good1
    model = CacheModel(params)
    for d, l in elements:
        model.write(d, l)
    assert model.count == 2 and model.record_error
    got = run_cache(params, elements, [0, 1], expected_count=2)
    assert_beats_match(params, got["beats"], expected_beats(model, [0, 1]))
    assert got["record_error"] == 1 and got["overflow"] == 0


@pytest.mark.parametrize("codebook", ["unf4", "uint4"])
def test_negative_inputs_with_unsigned_codebook_clamp_to_zero(codebook):
    params = CacheParams(codebook=codebook, block_size=8, lanes=4, taps=SMALL_TAPS, capacity=2)
    rng = np.random.default_rng(4)
    feats = rng.integers(-2000, 2000, params.features)
    elements = record_elements(feats, np.zeros(params.classes, dtype=int), 3)
    model = CacheModel(params)
    for d, l in elements:
        model.write(d, l)
    assert model.saturations == int((feats < 0).sum()) > 0
    got = run_cache(params, elements, [0], expected_count=1)
    assert_beats_match(params, got["beats"], expected_beats(model, [0]))
    assert got["saturations"] == model.saturations
    values = np.concatenate([b[0] for b in got["beats"]])[:params.features]
    assert (values[feats < 0] == 0).all() and (values >= 0).all()


def test_rejects_non_params():
    with pytest.raises(ValueError, match="ForwardCache needs a CacheParams, not dict"):
        ForwardCache({})
    with pytest.raises(ValueError, match="Quantizer needs a CacheParams, not int"):
        Quantizer(3)
    with pytest.raises(ValueError, match="Dequantizer needs a CacheParams, not NoneType"):
        Dequantizer(None)


def test_writing_and_clear():
    """`writing` stays high from a record's first element until it is committed; `clear`
    forgets every record and flag, and the cache takes new records at index 0."""
    params = CacheParams(codebook="nf4", block_size=8, lanes=4, taps=SMALL_TAPS, capacity=2)
    rng = np.random.default_rng(11)
    recs = make_records(params, rng, 3)
    first = [e for r in recs[:2] for e in record_elements(*r)] + [(3, 1)]   # + a bad record
    dut = ForwardCache(params)
    seen = {}

    # the quantizer's timing contract: most cycles one record's blocks take
    record_cycles = sum(block_cycles(params, n) for _, n in dut.layout.blocks)

    async def testbench(ctx):
        elements = [{"data": d, "last": l} for d, l in first]
        await stream_send(ctx, dut.wr, elements[:5], max_cycles=500)
        assert ctx.get(dut.writing) == 1
        await stream_send(ctx, dut.wr, elements[5:], max_cycles=1000 + 3 * record_cycles)
        cycles = 0
        limit = 1000 + record_cycles
        while ctx.get(dut.writing):
            await ctx.tick()
            cycles += 1
            assert cycles < limit
        seen["before"] = (ctx.get(dut.count), ctx.get(dut.record_error))
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        seen["cleared"] = (ctx.get(dut.count), ctx.get(dut.record_error))
        await stream_send(ctx, dut.wr, [{"data": d, "last": l}
                                        for d, l in record_elements(*recs[2])],
                          max_cycles=1000 + record_cycles)
        while ctx.get(dut.writing):
            await ctx.tick()
        seen["after"] = ctx.get(dut.count)
        await stream_send(ctx, dut.req, [0], max_cycles=100)
        items, _ = await stream_collect(
            ctx, dut.rd, CacheLayout(params).beats, max_cycles=500,
            convert=lambda p: beat_tuple(p, params.lanes, params.classes))
        seen["beats"] = items

    simulate(dut, testbench, name="forward_cache_clear")
    assert seen["before"] == (2, 1) and seen["cleared"] == (0, 0) and seen["after"] == 1
    model = CacheModel(params)
    model.write_record(*recs[2])
    assert_beats_match(params, seen["beats"], expected_beats(model, [0]))


# A dequantizer narrower than the beat: the same beats, bit for bit, one lane group per cycle.
SERIAL = [("unf4", 32, 8, 1), ("nf4", 8, 8, 3), ("int4", 16, 4, 2), ("pass8", 32, 8, 1),
          ("uint4", 0, 32, 4), ("pass16", 32, 8, 5)]


@pytest.mark.parametrize("codebook,block_size,lanes,dq_lanes", SERIAL)
def test_round_trip_narrow_dequantizer(codebook, block_size, lanes, dq_lanes):
    params = CacheParams(codebook=codebook, block_size=block_size, lanes=lanes,
                         dequantizer_lanes=dq_lanes, taps=SMALL_TAPS, capacity=4,
                         memory="spram" if lanes <= 8 else "bram")
    round_trip(params, 3, [2, 0, 1, 2])


@pytest.mark.parametrize("dq_lanes,memory", [(1, "spram"), (3, "spram"), (1, "bram")])
def test_sustained_narrow_dequantizer(dq_lanes, memory):
    """A beat every ``beat_cycles`` cycles, no bubble at sample boundaries: the first beat
    after read_latency, then beats * beat_cycles per sample (one word in flight with 1 lane,
    a read buffer with 3; block RAM: the ECP5 SoC's single read with its output register)."""
    params = CacheParams(lanes=8, dequantizer_lanes=dq_lanes, capacity=2, memory=memory)
    assert single_read(params) == (dq_lanes == 1)
    beats = CacheLayout(params).beats
    assert params.beat_cycles == -(-8 // dq_lanes)
    for n in (1, 3):
        got, _ = round_trip(params, 2, [i % 2 for i in range(n)])
        assert got["cycles"] == read_latency(params) + (n * beats - 1) * params.beat_cycles + 1


def test_backpressure_narrow_dequantizer():
    params = CacheParams(codebook="nf4", block_size=16, lanes=8, dequantizer_lanes=3,
                         taps=SMALL_TAPS, capacity=4)
    rng = np.random.default_rng(7)
    ready_pattern = rng.random(4000) < 0.5
    round_trip(params, 4, [3, 1, 0, 2], ready=lambda c: ready_pattern[c % 4000])
