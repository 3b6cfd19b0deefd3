"""Memories named ``*_norw`` leave a read/write collision undefined, so Yosys maps them to
block RAM without soft logic (boards.implement.NO_COLLISION_SUFFIX_PATTERN)."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fieldtune.boards.implement import hierarchy
from fieldtune.toolchain import tool_env


class _Table(wiring.Component):
    """A 128 x 64-bit memory with one write port and one synchronous read port."""

    def __init__(self, name):
        self.name = name
        super().__init__({"w_addr": In(7), "w_data": In(64), "w_en": In(1),
                          "r_addr": In(7), "r_data": Out(64)})

    def elaborate(self, platform):
        m = Module()
        m.submodules[self.name] = mem = Memory(shape=64, depth=128, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.w_addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en),
                     rd.addr.eq(self.r_addr), self.r_data.eq(rd.data)]
        return m


@pytest.mark.slow
def test_no_collision_memories_need_no_soft_logic(tmp_path):
    luts = {}
    for name in ("table", "table_norw"):
        rows = hierarchy(_Table(name), "up5k", tool_env(), workdir=tmp_path / name)
        top = next(r for r in rows if r["module"] == "dut")
        assert top["brams"] == 4, name
        luts[name] = top["luts"]
    # the collision logic is about one LUT4 per data bit; without it nearly nothing is left
    assert luts["table"] >= 64
    assert luts["table_norw"] <= 8
