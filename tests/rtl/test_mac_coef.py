"""The dz scaling on the way into the coefficient memory equals the golden model's
``stored_coefficients`` (``sat(round(dz * 2**cshift))``) for every ``cshift`` a BATCH op can
carry and the values where shifts, rounding and saturation turn, clamped flag included."""

import numpy as np
from amaranth.hdl import Module, Signal, signed

from fieldtune.rtl.mac.coef import dz_shift_layout, dz_shift, dz_scale_pipeline
from fieldtune.rtl.mac.params import MacParams
from fieldtune.sim.golden.mac import stored_coefficients
from fieldtune.sim.engines.pysim import simulate

CW = 16
EDGES = [0, 1, -1, 2, -2, 3, -3, 255, -256, 12345, -12345, 16383, 16384, -16384, -16385,
         32767, -32768, 32766, -32767]


def test_every_cshift_matches_golden():
    mac = MacParams(coef_width=CW)
    rng = np.random.default_rng(11)
    values = EDGES + [int(v) for v in rng.integers(-(1 << 15), 1 << 15, 24)]
    shifts = list(range(-32, 32))
    m = Module()
    cs = Signal(signed(6))
    dz = Signal(signed(CW))
    valid = Signal()
    sh = Signal(dz_shift_layout(CW))
    m.d.comb += dz_shift(sh, cs, CW)
    out_v, out, clamped = dz_scale_pipeline(m, 1, valid, dz, sh, CW)
    got = {}

    async def bench(ctx):
        for c in shifts:
            ctx.set(cs, c)
            ctx.set(valid, 1)
            results = []
            for i in range(len(values) + 3):
                ctx.set(dz, values[i] if i < len(values) else 0)
                ctx.set(valid, i < len(values))
                if ctx.get(out_v):
                    results.append((ctx.get(out), ctx.get(clamped)))
                await ctx.tick()
            got[c] = results

    simulate(m, bench, name="dz_scale")
    for c in shifts:
        want = []
        for v in values:
            flags = {}
            stored = int(stored_coefficients(mac, [v], c, flags=flags)[0])
            want.append((stored, int(bool(flags.get("saturated")))))
        assert got[c] == want, c
