"""The quantizer against the golden model, bit for bit, on random and adversarial blocks."""

import numpy as np
import pytest

from fieldtune.rtl.cache.params import CacheParams, CODEBOOKS
from fieldtune.rtl.cache.quantizer import Quantizer, block_cycles, code_lookup
from fieldtune.sim.engines.pysim import simulate, stream_send, stream_collect
from fieldtune.sim.golden.cache import CacheModel, adversarial_samples


SMALL_TAPS = (24, 16, 8)


def run_quantizer(params, samples, ready=None):
    dut = Quantizer(params)
    flat = [int(v) for s in samples for v in s]
    got = {}
    # the timing contract, doubled for the stalls the source and the sink make
    budget = 2 * sum(block_cycles(params, n) for _, n in dut.layout.blocks) * len(samples) \
        if params.scaled else 2 * len(flat)
    budget += 100

    async def source(ctx):
        await stream_send(ctx, dut.i, flat, valid=lambda c: c % 5 != 3, max_cycles=budget)

    async def sink(ctx):
        items, _ = await stream_collect(ctx, dut.o, len(flat), ready=ready, max_cycles=budget)
        got["items"] = items

    simulate(dut, source, sink, processes=[saturation_counter(dut, got)], name="quantizer")
    return got


def saturation_counter(dut, got, clear=None):
    """A process counting ``dut.saturated`` strobes into ``got["saturations"]`` (zeroed
    while ``clear`` is high), as the golden model counts saturations."""
    got["saturations"] = 0
    signals = [dut.saturated] + ([clear] if clear is not None else [])

    async def process(ctx):
        async for _, _, strobe, *cleared in ctx.tick().sample(*signals):
            if cleared and cleared[0]:
                got["saturations"] = 0
            elif strobe:
                got["saturations"] += 1
    return process


def check_against_model(params, samples, got):
    model = CacheModel(params)
    F = params.features
    sats = 0
    for n, s in enumerate(samples):
        q = model.quantize(s)
        sats += q.saturations
        items = got["items"][n * F:(n + 1) * F]
        codes = [int(it.code) for it in items]
        mask = (1 << params.code_bits) - 1
        assert codes == [int(c) & mask for c in q.codes], f"sample {n}"
        assert [int(it.last) for it in items] == [0] * (F - 1) + [1]
        for b, (start, length) in enumerate(model.layout.blocks):
            for it in items[start:start + length]:
                assert (int(it.mant), int(it.exp)) == (q.mant[b], q.exp[b]), f"block {b}"
            assert [int(it.first) for it in items[start:start + length]] == \
                [1] + [0] * (length - 1)
    assert got["saturations"] == sats


@pytest.mark.parametrize("codebook", CODEBOOKS)
def test_codes_match_model(codebook):
    params = CacheParams(codebook=codebook, taps=SMALL_TAPS, block_size=8, lanes=4)
    samples = adversarial_samples(params, np.random.default_rng(1))
    got = run_quantizer(params, samples, ready=lambda c: c % 7 != 2)
    check_against_model(params, samples, got)


@pytest.mark.parametrize("memory", ["spram", "bram"])
@pytest.mark.parametrize("block_size", [0, 16, 64])
@pytest.mark.parametrize("codebook", ["nf4", "unf4"])
def test_block_sizes(codebook, block_size, memory):
    """Search (SPRAM buffers; signed code books; unsigned ones with blocks beyond 64 values)
    and lookup (block RAM, unsigned, blocks up to 64) at every block size."""
    params = CacheParams(codebook=codebook, taps=(72, 24, 8), block_size=block_size, lanes=4,
                         memory=memory)
    assert code_lookup(params) == (codebook == "unf4" and block_size != 0
                                   and memory == "bram")
    samples = adversarial_samples(params, np.random.default_rng(2), n_random=1)
    check_against_model(params, samples, run_quantizer(params, samples))


def test_eight_bit_input_and_pass8_shift():
    params = CacheParams(codebook="pass8", taps=SMALL_TAPS, in_width=8, in_frac=4,
                         pass8_frac=6, lanes=4)
    samples = adversarial_samples(params, np.random.default_rng(3), n_random=1)
    check_against_model(params, samples, run_quantizer(params, samples))


def test_saturation_strobe_counts_taken_features_only():
    """A value out of the 8-bit input range strobes ``saturated`` in the cycle it is taken,
    and only then: with ``o`` never ready the quantizer takes one value and stalls."""
    params = CacheParams(codebook="pass16", taps=SMALL_TAPS, in_width=8, in_frac=4, lanes=4)
    dut = Quantizer(params)
    got = {}

    async def testbench(ctx):
        ctx.set(dut.i.payload, 1000)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().repeat(10)
        got["stalled"] = got["saturations"]
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(10)

    simulate(dut, testbench, processes=[saturation_counter(dut, got)],
             name="quantizer_saturations")
    assert (got["stalled"], got["saturations"]) == (1, 11)


@pytest.mark.parametrize("codebook", ["unf4", "nf4"])
def test_codes_hold_under_back_pressure(codebook):
    """A consumer taking a code only every fourth cycle: each code stays on ``o`` until it is
    taken (the next value's division starts meanwhile)."""
    params = CacheParams(codebook=codebook, taps=SMALL_TAPS, block_size=8, lanes=4)
    samples = adversarial_samples(params, np.random.default_rng(4), n_random=1)
    got = run_quantizer(params, samples, ready=lambda c: c % 4 == 0)
    check_against_model(params, samples, got)
