"""The SoC's datapath glue on its own: the router's tag queue (:class:`ShiftQueue`) against a
Python deque, random writes and reads each cycle, full and empty included."""

from collections import deque

import numpy as np
import pytest
from amaranth.sim import Simulator

from fieldtune.rtl.soc import ShiftQueue


@pytest.mark.parametrize("depth,seed", [(1, 1), (4, 2), (5, 3)])
def test_shift_queue_is_a_fifo(depth, seed):
    dut = ShiftQueue(4, depth)
    rng = np.random.default_rng(seed)
    seen = {"full": 0, "empty": 0, "both": 0}

    async def bench(ctx):
        ref = deque()
        for _ in range(600):
            w_en, r_en = (int(v) for v in rng.integers(0, 2, 2))
            value = int(rng.integers(0, 16))
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, value)
            ctx.set(dut.r_en, r_en)
            assert ctx.get(dut.w_rdy) == (len(ref) < depth)
            assert ctx.get(dut.r_rdy) == (len(ref) > 0)
            if ref:
                assert ctx.get(dut.r_data) == ref[0]
            seen["full"] += len(ref) == depth
            seen["empty"] += not ref
            popped = r_en and ref
            pushed = w_en and len(ref) < depth
            seen["both"] += bool(popped and pushed)
            if popped:
                ref.popleft()
            if pushed:
                ref.append(value)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # every case met (a write beside a read needs room for both: depth > 1)
    assert seen["full"] and seen["empty"] and (seen["both"] or depth == 1)
