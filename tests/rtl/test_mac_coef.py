"""The power-of-two scaler of update coefficients equals the golden model
(``sat(round_half_up(v * 2**shift))``: ``stored_coefficients`` for ``dz``) for every shift a
micro-op can carry, on ``dz`` and 32-bit immediates at the values where shifts, rounding and
saturation turn, clamped flag included, under back-pressure."""

import numpy as np
import pytest

from fieldtune.rtl.mac.coef import Pow2Scaler
from fieldtune.rtl.mac.ops import IMM_WIDTH
from fieldtune.rtl.mac.params import MacParams
from fieldtune.sim.golden.mac import stored_coefficients
from fieldtune.sim.engines.pysim import simulate

CW = 16
EDGES = [0, 1, -1, 2, -2, 3, -3, 255, -256, 12345, -12345, 16383, 16384, -16384, -16385,
         32767, -32768, 32766, -32767]
WIDE = [65535, -65536, 65536, -65537, (1 << 31) - 1, -(1 << 31), (1 << 30) + 1, -(1 << 30) - 1]


def _expected(mac, v, c):
    flags = {}
    stored = int(stored_coefficients(mac, [v], c, flags=flags)[0])
    return stored, int(bool(flags.get("saturated")))


def test_every_shift_matches_golden():
    mac = MacParams(coef_width=CW)
    rng = np.random.default_rng(11)
    values = (EDGES + WIDE + [int(v) for v in rng.integers(-(1 << 15), 1 << 15, 8)]
              + [int(v) for v in rng.integers(-(1 << 31), 1 << 31, 8)])
    shifts = list(range(-32, 32))
    jobs = [(v, c) for c in shifts for v in values]
    dut = Pow2Scaler(CW)
    got = []

    async def bench(ctx):
        i = 0
        cycle = 0
        while len(got) < len(jobs):
            if i < len(jobs):
                ctx.set(dut.i.payload.value, jobs[i][0])
                ctx.set(dut.i.payload.shift, jobs[i][1])
            ctx.set(dut.i.valid, i < len(jobs))
            ctx.set(dut.o.ready, cycle % 3 != 1)        # back-pressure now and then
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append((ctx.get(dut.o.payload.value), ctx.get(dut.o.payload.clamped)))
            if i < len(jobs) and ctx.get(dut.i.ready):
                i += 1
            await ctx.tick()
            cycle += 1
            assert cycle < 40 * len(jobs)

    simulate(dut, bench, name="pow2_scaler")
    want = [_expected(mac, v, c) for v, c in jobs]
    assert got == want


def test_rejects_bad_width():
    with pytest.raises(ValueError, match=f"coef_width must be an integer from 2 to "
                                         f"{IMM_WIDTH - 1}, not 40"):
        Pow2Scaler(40)
