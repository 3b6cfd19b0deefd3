# amaranth: UnusedElaboratable=no
"""The sequencer's watchdog fires in exactly the ``watchdog``-th cycle in a row without a
datapath transfer, and a transfer starts the count again. The sequencer reads its run
registers from the register bank's block RAM, so it runs here beside a real bank."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from fieldtune.config import DesignConfig
from fieldtune.rtl.soc import SoC
from fieldtune.rtl.sequencer import Sequencer, Mode
from fieldtune.rtl.csr.registers import RegisterBank, store_words
from fieldtune.sim.engines.pysim import simulate, bus_write


def fire_cycle(budget, progress_at=(), seen=None):
    """Cycles from a start of an EVAL run whose datapath never moves (the MAC array takes
    nothing) to the watchdog's strobe; ``progress`` is raised in the cycles given. ``seen``
    also gets the abort's ``flush`` cycles (``flush``) and whether ``done`` rose in the
    cycle after the last (``done``), and the sequencer (``seq``)."""
    soc = SoC(DesignConfig())
    seq = Sequencer(soc.mac, soc.loss, soc.cache, soc.perturb, soc.modes,
                    store_words=store_words(soc.registers))
    bank = RegisterBank(soc.registers, scratch=seq.scratch)
    m = Module()
    m.submodules.seq, m.submodules.bank = seq, bank
    wiring.connect(m, seq.store, bank.store)
    seen = {} if seen is None else seen
    seen["seq"] = seq

    async def tb(ctx):
        for register, fields in (("mode", {"mode": Mode.EVAL.value}),
                                 ("eval_range", {"first": 0, "count": 1}),
                                 ("watchdog", {"budget": budget})):
            await bus_write(ctx, bank.bus, soc.address(register),
                            soc.map.pack(register, **fields))
        ctx.set(seq.records, 1)
        ctx.set(seq.start, 1)
        await ctx.tick()
        ctx.set(seq.start, 0)
        for cycle in range(budget + 80):
            ctx.set(seq.progress, int(cycle in progress_at))
            *_, fired = await ctx.tick().sample(seq.errors.watchdog)
            if fired:
                seen["cycle"] = cycle
                break
        flush = 0
        while (await ctx.tick().sample(seq.flush))[-1]:
            flush += 1
        seen["flush"], seen["done"] = flush, ctx.get(seq.done)

    simulate(m, tb, name="watchdog")
    return seen["cycle"]


@pytest.mark.parametrize("budget", [2, 5, 17])
def test_fires_after_the_budget(budget):
    assert fire_cycle(budget) - fire_cycle(1) == budget - 1


def test_progress_restarts_the_count():
    first = fire_cycle(6)
    assert fire_cycle(6, progress_at=(first - 2,)) == first - 2 + 6


def test_an_abort_flushes_the_datapath_for_flush_cycles_then_ends_the_run():
    # the abort's flush counts on the watchdog's counter (idle in ABORT): exactly
    # flush_cycles cycles of flush, then done, after a budget of any size
    for budget in (1, 300):
        seen = {}
        fire_cycle(budget, seen=seen)
        assert seen["flush"] == seen["seq"].flush_cycles and seen["done"] == 1, budget
