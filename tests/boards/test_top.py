# amaranth: UnusedElaboratable=no
"""The board top's status LEDs, simulated: steady done/error, blinking busy, shared LEDs."""

import pytest
from amaranth.sim import Simulator

from fieldtune.boards.top import StatusLights, blink_half_period


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
    dut = StatusLights([("busy", "done"), ("error",)], half_period=4)
    seen = run(dut, lambda c: {"busy": 1, "done": 0, "error": int(c >= 9)}, 16)
    green = [v & 1 for v in seen]
    red = [v >> 1 for v in seen]
    assert green == [1, 1, 1, 1, 0, 0, 0, 0] * 2
    assert red == [0] * 9 + [1] * 7
    seen = run(StatusLights([("busy", "done")], 4), lambda c: {"busy": 0, "done": 1}, 9)
    assert seen == [1] * 9                      # done is steady, whatever the blink phase


@pytest.mark.parametrize("clock_mhz, half_period", [(24, 1 << 22), (30, 1 << 22),
                                                    (48, 1 << 23), (12, 1 << 21)])
def test_the_blink_is_a_power_of_two_near_three_hertz(clock_mhz, half_period):
    assert blink_half_period(clock_mhz) == half_period
    assert 2 <= clock_mhz * 1e6 / (2 * half_period) <= 4.5


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match=r"^LED status must be one of 'busy', 'done', "
                                         r"'error', not 'idle'$"):
        StatusLights([("idle",)], 4)
    for bad in (0, 3):
        with pytest.raises(ValueError, match=rf"^half_period must be a positive power of two, "
                                             rf"not {bad}$"):
            StatusLights([("busy",)], bad)
