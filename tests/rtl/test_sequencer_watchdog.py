# amaranth: UnusedElaboratable=no
"""The sequencer's watchdog fires in exactly the ``watchdog``-th cycle in a row without a
datapath transfer, and a transfer starts the count again."""

import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.soc import SoC
from fieldtune.rtl.sequencer import Sequencer, Mode
from fieldtune.sim.engines.pysim import simulate


def fire_cycle(budget, progress_at=()):
    """Cycles from a start of an EVAL run whose datapath never moves (the MAC array takes
    nothing) to the watchdog's strobe; ``progress`` is raised in the cycles given."""
    soc = SoC(DesignConfig())
    seq = Sequencer(soc.mac, soc.loss, soc.cache, soc.perturb, soc.modes)
    seen = {}

    async def tb(ctx):
        s = seq.settings
        ctx.set(s.mode, Mode.EVAL.value)
        ctx.set(s.eval_first, 0)
        ctx.set(s.eval_count, 1)
        ctx.set(s.watchdog, budget)
        ctx.set(seq.records, 1)
        ctx.set(seq.start, 1)
        await ctx.tick()
        ctx.set(seq.start, 0)
        for cycle in range(budget + 50):
            ctx.set(seq.progress, int(cycle in progress_at))
            *_, fired = await ctx.tick().sample(seq.errors.watchdog)
            if fired:
                seen["cycle"] = cycle
                return

    simulate(seq, tb, name="watchdog")
    return seen["cycle"]


@pytest.mark.parametrize("budget", [2, 5, 17])
def test_fires_after_the_budget(budget):
    assert fire_cycle(budget) - fire_cycle(1) == budget - 1


def test_progress_restarts_the_count():
    first = fire_cycle(6)
    assert fire_cycle(6, progress_at=(first - 2,)) == first - 2 + 6
