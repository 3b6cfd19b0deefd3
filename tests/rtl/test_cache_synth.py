"""The cache's memories map onto the primitives they are meant for: SB_SPRAM256KA with
``memory = "spram"`` (iCE40, ``synth_ice40 -spram``), SB_RAM40_4K and DP16KD with ``"bram"``.
Synthesis only (Yosys), on a small cache, read from the statistics Yosys writes."""

import json
import subprocess

import pytest
from amaranth.back import rtlil

from fieldtune.boards.implement import (BenchHarness, synth_script, dut_module_name,
                                        count_resources)
from fieldtune.rtl.cache.params import CacheParams
from fieldtune.rtl.cache.cache import ForwardCache
from fieldtune.rtl.cache.layout import CacheLayout
from fieldtune.toolchain import tool_env


def synthesize(params, family, tmp_path):
    harness = BenchHarness(ForwardCache(params))
    (tmp_path / "design.il").write_text(
        rtlil.convert(harness, name="top", ports=[harness.serial_in, harness.fold_out]))
    (tmp_path / "synth.ys").write_text(
        synth_script(family, "top.dut", dsp=False, spram=params.memory == "spram"))
    env = tool_env()
    proc = subprocess.run([env["YOSYS"], "-q", "-l", "yosys.log", "-s", "synth.ys"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (tmp_path / "yosys.log").read_text()[-2000:]
    stat = json.loads((tmp_path / "stat.json").read_text())
    return count_resources(stat["modules"][dut_module_name(stat)]["num_cells_by_type"], family)


@pytest.mark.parametrize("family,memory", [("ice40", "spram"), ("ecp5", "bram")])
def test_memories_map_to_primitives(family, memory, tmp_path):
    params = CacheParams(lanes=4, taps=(32, 16), block_size=16, capacity=64, memory=memory)
    lay = CacheLayout(params)
    counts = synthesize(params, family, tmp_path)
    # Codes (16-bit words) and meta (32-bit words: 12 beats cannot carry 3 scale words and 11
    # side units at one unit per beat) as the layout's estimate; one more memory is the
    # quantizer's block buffer: an SPRAM of its own with "spram", else a block RAM (on ECP5
    # that small one may become distributed RAM).
    estimate = lay.primitives(params.capacity, family, memory)
    if memory == "spram":
        assert (counts["sprams"], counts["brams"]) == (estimate + 1, 0) == (4, 0), counts
    else:
        assert counts["sprams"] == 0 and 2 <= counts["brams"] <= estimate + 1, counts
    # Nothing fell back to flip-flops (the two memories alone hold 36,864 bits).
    assert counts["ffs"] < 5000, counts
