"""A UART written by someone else checks ours: cocotbext-uart's UartSource and UartSink drive
the emitted Verilog of HostSystem (host link + SoC, the tiny geometry) on Icarus, at the
configured baud and at +-2 % baud error (host_link_tb.py is the cocotb testbench)."""

import os
from pathlib import Path

import pytest
from cocotb_tools.runner import get_runner, get_results

from fieldtune.config import DesignConfig
from fieldtune.rtl.host.top import HostSystem
from fieldtune.rtl.csr.map import MAGIC
from fieldtune.rtl.mac.layout import Layout
from fieldtune.rtl.sequencer import Mode
from fieldtune.sim.engines import hdl
from fieldtune.toolchain import tool_env


def config():
    """4 lanes, taps (8, 8), 4 classes (as tests/rtl/test_soc.py), 3 Mbaud at 24 MHz."""
    return DesignConfig.preset("tiny").replace(
        perturb={"lanes": 4, "pool_size": 64, "dimension": 64},
        cache={"taps": [8, 8], "classes": 4, "capacity": 16, "block_size": 8},
        mac={"taps": [8, 8], "classes": 4, "max_batch": 4},
        loss={"classes": 4},
        host={"baud": 3_000_000, "clock_hz": 24_000_000})


@pytest.fixture(scope="module")
def build(tmp_path_factory, require_programs):
    require_programs("iverilog", "vvp", why="the cocotb check of the host link runs on Icarus")
    cfg = config()
    top = HostSystem(cfg)
    verilog = hdl.emit_verilog(top, env=tool_env("YOSYS"), name="host_system")
    work = tmp_path_factory.mktemp("cocotb")
    (work / "host_system.v").write_text(verilog.text)
    runner = get_runner("icarus")
    runner.build(sources=[work / "host_system.v"], hdl_toplevel="host_system",
                 build_dir=work / "build", timescale=("1ps", "1ps"), always=True,
                 # Verilog-2005 semantics: the emitted combinational blocks rely on an
                 # initializer event at time 0, which SystemVerilog mode (cocotb's default
                 # -g2012) runs before time 0, leaving them unevaluated (x)
                 build_args=["-g2005"])
    return cfg, top, runner, work


@pytest.mark.parametrize("error", [0.0, 0.02, -0.02])
def test_cocotb_uart_talks_to_the_host_system(build, error):
    cfg, top, runner, work = build
    soc_map = top.soc.map
    env = {
        "HOST_TB_CLOCK_PS": str(2 * round(0.5e12 / cfg.host.clock_hz)),
        "HOST_TB_BAUD": str(cfg.host.baud * (1 + error)),
        "HOST_TB_SEED_ADDRESS": str(soc_map.address("seed")),
        "HOST_TB_ID_ADDRESS": str(soc_map.address("id")),
        "HOST_TB_MAGIC": str(MAGIC),
        "HOST_TB_MODE_ADDRESS": str(soc_map.address("mode")),
        "HOST_TB_WEIGHTS_ADDRESS": str(soc_map.address("weights")),
        "HOST_TB_WEIGHTS": str(Layout(cfg.mac).words * cfg.mac.lanes),
        "HOST_TB_LOAD": str(Mode.LOAD.value), "HOST_TB_DUMP": str(Mode.DUMP.value),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                       os.environ.get("PYTHONPATH", "")]),
    }
    results = runner.test(hdl_toplevel="host_system", test_module="host_link_tb",
                          build_dir=work / "build", test_dir=work / f"run{error}",
                          extra_env=env)
    tests, failed = get_results(results)
    assert tests == 1 and failed == 0
