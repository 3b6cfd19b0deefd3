# amaranth: UnusedElaboratable=no
"""The board top's status LEDs, simulated: steady done/error, blinking busy, shared LEDs."""

import pytest
from amaranth.sim import Simulator

from fieldtune.boards.top import StatusLights


def run(dut, stimulus, cycles):
    """LED values after each of ``cycles`` clock edges, inputs set by ``stimulus(cycle)``."""
    seen = []

    async def bench(ctx):
        for cycle in range(cycles):
            for name, value in stimulus(cycle).items():
                ctx.set(getattr(dut, name), value)
            seen.append(ctx.get(dut.leds))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_busy_blinks_and_shares_an_led_with_done():
    # The iCEBreaker's mapping: green = busy or done, red = error.
    dut = StatusLights([("busy", "done"), ("error",)], half_period=3)
    seen = run(dut, lambda c: {"busy": 1, "done": 0, "error": int(c >= 9)}, 12)
    green = [v & 1 for v in seen]
    red = [v >> 1 for v in seen]
    assert green == [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert red == [0] * 9 + [1] * 3
    seen = run(StatusLights([("busy", "done")], 3), lambda c: {"busy": 0, "done": 1}, 7)
    assert seen == [1] * 7                      # done is steady, whatever the blink phase


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"^LED status must be one of 'busy', 'done', "
                                         r"'error', not 'idle'$"):
        StatusLights([("idle",)], 3)
    with pytest.raises(ValueError, match=r"^half_period must be a positive integer, not 0$"):
        StatusLights([("busy",)], 0)
