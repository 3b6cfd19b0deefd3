# amaranth: UnusedElaboratable=no
"""The record walk (rtl/sequencer/order.py) against the golden order (sim/golden/order.py), bit
for bit, epoch after epoch, with its timing contract."""

import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from fieldtune.rtl.sequencer.order import RecordOrder, CANDIDATE_CYCLES
from fieldtune.sim.golden.order import epoch_order


def _run(bits, count, seed, shuffle, epochs, *, stall=0, restart_at=None):
    """Indices per epoch as the walk offers them (ready after ``stall`` idle cycles), and the
    cycles from each restart to the first offer."""
    dut = RecordOrder(bits)
    got, waits = [], []

    async def bench(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.count, count)
        ctx.set(dut.shuffle, shuffle)
        for e in range(epochs):
            pulse = dut.first if e == 0 else dut.next_epoch
            ctx.set(pulse, 1)
            await ctx.tick()
            ctx.set(pulse, 0)
            order, cycles = [], 0
            if restart_at is not None and e == 0:
                # take a few, then restart the run: the walk begins again from epoch 0
                while len(order) < restart_at:
                    await ctx.tick()
                    if ctx.get(dut.index.valid):
                        order.append(ctx.get(dut.index.payload))
                        ctx.set(dut.index.ready, 1)
                        await ctx.tick()
                        ctx.set(dut.index.ready, 0)
                ctx.set(dut.first, 1)
                await ctx.tick()
                ctx.set(dut.first, 0)
                order = []
            while len(order) < count:
                while not ctx.get(dut.index.valid):
                    await ctx.tick()
                    cycles += 1
                if not order:
                    waits.append(cycles)
                for _ in range(stall):
                    await ctx.tick()
                order.append(ctx.get(dut.index.payload))
                ctx.set(dut.index.ready, 1)
                await ctx.tick()
                ctx.set(dut.index.ready, 0)
            # the epoch is over: nothing more is offered for the rest of the walk
            for _ in range(CANDIDATE_CYCLES * ((1 << bits) - count) + 4):
                assert not ctx.get(dut.index.valid)
                await ctx.tick()
            got.append(order)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, waits


@settings(max_examples=12, deadline=None)
@given(bits=st.sampled_from([2, 4, 6]), data=st.data(), seed=st.integers(0, 0xFFFF),
       shuffle=st.booleans())
def test_walk_is_the_golden_order(bits, data, seed, shuffle):
    count = data.draw(st.integers(1, 1 << bits))
    got, _ = _run(bits, count, seed, shuffle, epochs=3)
    order = "shuffle" if shuffle else "cache"
    assert got == [epoch_order(count, seed, e, order, bits).tolist() for e in range(3)]


def test_r1_shape_with_a_wider_walk_and_a_slow_consumer():
    # 256 records in a walk sized for 1,024 (the cache's capacity): most candidates skipped
    got, waits = _run(10, 256, 0xBEEF, True, epochs=2, stall=3)
    assert got == [epoch_order(256, 0xBEEF, e, "shuffle", 10).tolist() for e in range(2)]
    assert got[0] != got[1] and sorted(got[0]) == list(range(256))
    for e, wait in enumerate(waits):
        walk = epoch_order(1 << 10, 0xBEEF, e, "shuffle", 10)       # the unrejected walk
        skipped = next(i for i, v in enumerate(walk) if v < 256)
        assert wait <= CANDIDATE_CYCLES * (1 + skipped)


def test_first_restarts_the_run():
    got, _ = _run(6, 40, 123, True, epochs=1, restart_at=5)
    assert got == [epoch_order(40, 123, 0, "shuffle", 6).tolist()]


def test_seed_zero_and_cache_order():
    got, waits = _run(4, 16, 0, True, epochs=2)
    assert got == [epoch_order(16, 0, e, "shuffle", 4).tolist() for e in range(2)]
    got, waits = _run(4, 9, 5, False, epochs=1)
    assert got == [list(range(9))] and waits[0] <= 2


@pytest.mark.parametrize("bits", [0, 3, 26, True, "8"])
def test_bad_widths_are_rejected(bits):
    with pytest.raises(ValueError, match=f"bits must be an even integer from 2 to 24, not "
                                         f"{bits!r}"):
        RecordOrder(bits)


def _batches(bits, count, seed, shuffle, batch, phases, epochs):
    """Indices as the sequencer's first-order program takes them: per mini-batch, ``mark``,
    then ``phases`` passes over the batch, each after a ``rewind``."""
    dut = RecordOrder(bits)
    got = []

    async def pulse(ctx, port):
        ctx.set(port, 1)
        await ctx.tick()
        ctx.set(port, 0)

    async def take(ctx):
        while not ctx.get(dut.index.valid):
            await ctx.tick()
        value = ctx.get(dut.index.payload)
        ctx.set(dut.index.ready, 1)
        await ctx.tick()
        ctx.set(dut.index.ready, 0)
        return value

    async def bench(ctx):
        ctx.set(dut.seed, seed)
        ctx.set(dut.count, count)
        ctx.set(dut.shuffle, shuffle)
        for e in range(epochs):
            await pulse(ctx, dut.first if e == 0 else dut.next_epoch)
            for base in range(0, count, batch):
                await ctx.tick()            # the sequencer's batch state: the walk goes on
                await pulse(ctx, dut.mark)
                for _ in range(phases):
                    await pulse(ctx, dut.rewind)
                    got.append([await take(ctx) for _ in range(min(batch, count - base))])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@settings(max_examples=8, deadline=None)
@given(bits=st.sampled_from([4, 6]), data=st.data(), seed=st.integers(0, 0xFFFF),
       shuffle=st.booleans(), batch=st.sampled_from([1, 2, 4]), phases=st.integers(1, 3))
def test_mark_and_rewind_replay_each_mini_batch(bits, data, seed, shuffle, batch, phases):
    count = data.draw(st.integers(1, 1 << bits))
    got = _batches(bits, count, seed, shuffle, batch, phases, epochs=2)
    order = "shuffle" if shuffle else "cache"
    expected = []
    for e in range(2):
        walk = epoch_order(count, seed, e, order, bits).tolist()
        for base in range(0, count, batch):
            expected += [walk[base:base + batch]] * phases
    assert got == expected
