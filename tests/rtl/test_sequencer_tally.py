# amaranth: UnusedElaboratable=no
"""The counters the loss results add to (samples, correct, loss_sum) live in the register
bank's block RAM; the sequencer adds each result with one saturating adder: they count, they
saturate at all ones (never wrap), an accepted start clears them, and the bus cannot write
them. The sequencer runs here beside a real bank."""

from dataclasses import replace

from amaranth.hdl import Module
from amaranth.lib import wiring

from fieldtune.config import DesignConfig
from fieldtune.rtl.soc import SoC
from fieldtune.rtl.sequencer import Sequencer, Mode, STORED_COUNTERS
from fieldtune.rtl.csr.registers import RegisterBank, store_words
from fieldtune.sim.engines.pysim import simulate, bus_write, bus_read

ALL_ONES = (1 << 32) - 1


def harness(writable):
    """Sequencer + bank of the default design; ``writable``: the stored counters are rw (so
    the test can preset them through the bus; the SoC's are read only)."""
    soc = SoC(DesignConfig())
    seq = Sequencer(soc.mac, soc.loss, soc.cache, soc.perturb, soc.modes,
                    store_words=store_words(soc.registers))
    registers = tuple(
        replace(r, fields=tuple(replace(f, access="rw") for f in r.fields))
        if writable and r.name in STORED_COUNTERS else r for r in soc.registers)
    bank = RegisterBank(registers, scratch=seq.scratch)
    m = Module()
    m.submodules.seq, m.submodules.bank = seq, bank
    wiring.connect(m, seq.store, bank.store)
    return soc, seq, bank, m


async def start_eval(ctx, soc, seq, bank):
    """An EVAL run of 3 records (its datapath never moves: results come from the test)."""
    for register, fields in (("mode", {"mode": Mode.EVAL.value}),
                             ("eval_range", {"first": 0, "count": 3}),
                             ("watchdog", {"budget": 1 << 20})):
        await bus_write(ctx, bank.bus, soc.address(register), soc.map.pack(register, **fields))
    ctx.set(seq.records, 4)
    ctx.set(seq.start, 1)
    await ctx.tick()
    ctx.set(seq.start, 0)
    while not ctx.get(seq.accepted):
        await ctx.tick()
    await ctx.tick().repeat(4)          # the clear's cycles


async def result(ctx, seq, loss, correct):
    """Presents one loss result until the sequencer takes it; the cycles it took."""
    ctx.set(seq.result.valid, 1)
    ctx.set(seq.result.payload.loss, loss)
    ctx.set(seq.result.payload.correct, correct)
    cycles = 1
    while not (await ctx.tick().sample(seq.result.ready))[-1]:
        cycles += 1
    ctx.set(seq.result.valid, 0)
    return cycles


def test_results_add_up_and_saturate_at_all_ones():
    soc, seq, bank, m = harness(writable=True)
    seen = {}

    async def tb(ctx):
        await start_eval(ctx, soc, seq, bank)
        read = {c: soc.address(c) for c in STORED_COUNTERS}
        assert [await bus_read(ctx, bank.bus, a) for a in read.values()] == [0, 0, 0]
        seen["cycles"] = [await result(ctx, seq, 1000, 1), await result(ctx, seq, 7, 0)]
        assert {c: await bus_read(ctx, bank.bus, a) for c, a in read.items()} == \
            {"samples": 2, "loss_sum": 1007, "correct": 1}
        # preset near the top (the test's bank lets the bus write them)
        for c, v in (("samples", ALL_ONES - 1), ("loss_sum", ALL_ONES - 100),
                     ("correct", ALL_ONES)):
            await bus_write(ctx, bank.bus, read[c], v)
        for _ in range(2):
            await result(ctx, seq, 60, 1)
        assert {c: await bus_read(ctx, bank.bus, a) for c, a in read.items()} == \
            {"samples": ALL_ONES, "loss_sum": ALL_ONES, "correct": ALL_ONES}
        # a new run starts them from 0 again
        ctx.set(seq.abort, 1)
        await ctx.tick()
        ctx.set(seq.abort, 0)
        while not ctx.get(seq.done):
            await ctx.tick()
        await start_eval(ctx, soc, seq, bank)
        assert [await bus_read(ctx, bank.bus, a) for a in read.values()] == [0, 0, 0]

    simulate(m, tb, name="tally")
    # a result is taken 4 cycles after it arrives (zeroth order built: the query-sum step,
    # then the three counters; each word read, written back the cycle after)
    assert seen["cycles"] == [5, 5]


def test_the_bus_cannot_write_the_counters():
    soc, seq, bank, m = harness(writable=False)

    async def tb(ctx):
        await start_eval(ctx, soc, seq, bank)
        await result(ctx, seq, 5, 1)
        for c in STORED_COUNTERS:
            await bus_write(ctx, bank.bus, soc.address(c), 12345)
        assert [await bus_read(ctx, bank.bus, soc.address(c)) for c in STORED_COUNTERS] == \
            [1, 5, 1]

    simulate(m, tb, name="tally_ro")
