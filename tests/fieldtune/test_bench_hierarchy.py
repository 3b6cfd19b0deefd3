"""Per-module resources: every module of a block reported, totals adding up over submodules,
read from Yosys' statistics file; the command's argument errors."""

from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from fieldtune.boards.implement import hierarchy
from fieldtune.cli import main
from fieldtune.rtl.cache.skid import SkidBuffer
from fieldtune.toolchain import tool_env


class Chain(wiring.Component):
    """Two skid buffers in a row: a block with two submodules and a little logic of its own."""

    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(8)))

    def elaborate(self, platform):
        m = Module()
        m.submodules.first = first = SkidBuffer(unsigned(8))
        m.submodules.second = second = SkidBuffer(unsigned(8))
        wiring.connect(m, wiring.flipped(self.i), first.i)
        wiring.connect(m, first.o, second.i)
        wiring.connect(m, second.o, wiring.flipped(self.o))
        return m


def test_rows_add_up_over_submodules(tmp_path):
    rows = hierarchy(Chain(), "up5k", tool_env(), workdir=tmp_path)
    by_name = {r["module"]: r for r in rows}
    assert list(by_name) == ["dut", "dut.first", "dut.second"]
    assert (tmp_path / "stat.json").exists()
    top, a, b = by_name["dut"], by_name["dut.first"], by_name["dut.second"]
    for key in ("luts", "ffs", "dsps", "brams", "sprams"):
        assert top[key] == a[key] + b[key] + (top["own_luts"] if key == "luts" else 0), key
    # a skid buffer holds two 8-bit payloads and its flags
    assert a["ffs"] >= 16 and a["luts"] > 0 and a["ffs"] == b["ffs"]


def test_bad_depth_is_one_error_line(capsys):
    assert main(["bench", "hierarchy", "--depth", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --depth must be at least 0, not -1"]


def test_logic_cells_per_module(tmp_path):
    """On the iCE40 each row counts nextpnr's packed logic cells: a skid buffer's payload
    registers are loaded from the harness' input chain or the other buffer through
    multiplexers, so every module has cells; the rows add up, and no cell is counted twice
    (the whole design's cells, harness included, are at least the block's)."""
    rows = hierarchy(Chain(), "up5k", tool_env(), workdir=tmp_path)
    by_name = {r["module"]: r for r in rows}
    top, a, b = by_name["dut"], by_name["dut.first"], by_name["dut.second"]
    assert a["lcs"] > 0 and a["lcs"] == b["lcs"]
    assert top["lcs"] >= a["lcs"] + b["lcs"]
    # a cell holds one LUT and one flip-flop: a skid buffer has no carry chain, so its cells
    # are its LUTs plus the flip-flops no LUT of their own feeds (the payload registers
    # loaded from the other buffer)
    for row in rows:
        assert row["lcs"] == row["luts"] + row["lone_ffs"], row
        assert row["lcs"] >= row["ffs"] and 0 < row["lone_ffs"] < row["ffs"], row
    report = (tmp_path / "pack.log").read_text()
    placed = int(report.split("ICESTORM_LC:")[1].split("/")[0])
    assert placed >= top["lcs"]
