"""Build plans for every board and preset generate without running a tool: the platform's
files, the Yosys script with our options, the pins of the host link and the LEDs, the PLL."""

import json

import pytest

from fieldtune.boards.build import BuildError, BuildReport, plan, run_tool, tool_variable
from fieldtune.boards.table import BOARDS
from fieldtune.config import DesignConfig, PRESETS
from fieldtune.rtl.perturb.engine import PerturbationEngine


def _files(board_plan, tmp_path):
    board_plan.prepare().extract(tmp_path)
    return {p.name: p for p in tmp_path.iterdir()}


#: Every preset on its own board, and every board's default preset.
PLANS = sorted({(DesignConfig.preset(p).board, p) for p in PRESETS}
               | {(b.name, b.preset) for b in BOARDS.values()})


@pytest.mark.parametrize("board_name, preset", PLANS)
def test_plan_generates(board_name, preset, tmp_path):
    config = DesignConfig.preset(preset)
    assert config.board == board_name
    board_plan = plan(config)
    b = BOARDS[board_name]
    files = _files(board_plan, tmp_path)
    commands = json.loads(files["build_top.json"].read_text())["commands"]
    pack = "icepack" if b.family == "ice40" else "ecppack"
    assert [c[0] for c in commands[:3]] == ["yosys", f"nextpnr-{b.family}", pack]
    # No programmer is needed to build (amaranth-boards' ULX3S lists openFPGALoader).
    assert not any("openFPGALoader" in c[0] for c in commands)
    script = files["top.ys"].read_text()
    assert f"synth_{b.family} {board_plan.overrides()['synth_opts']}".strip() in script
    assert "tee -q -o stat.json stat -json" in script
    assert ("-spram" in script) == (config.cache.memory == "spram")
    rtlil = files["top.il"].read_text()
    constraints = files["top.pcf" if b.family == "ice40" else "top.lpf"].read_text()
    pins = {"uart": ("uart_0__rx", "uart_0__tx"),
            "usb": ("usb_0__d_p", "usb_0__d_n", "usb_0__pullup")}[config.link]
    for pin in pins:
        assert pin in constraints
    for name, number, *sub in b.leds.values():
        assert "__".join([f"{name}_{number}", *sub, "io"]) in constraints
    primitive = {"ice40": "SB_PLL40_PAD", "ecp5": "EHXPLLL"}[b.family]
    plls = (board_plan.pll is not None) + (config.link == "usb")     # USB serial: its own
    assert rtlil.count(f"cell \\{primitive} ") == plls
    # the preset's own SoC clock (up5k-fo: 18 MHz), else the board's default
    assert board_plan.clock_mhz == pytest.approx(config.clock_mhz or b.soc_mhz, rel=0.005)


def small_core(config):
    """A block much smaller than the SoC, for plans that test the board top alone."""
    return lambda: PerturbationEngine(config.perturb)


def test_plan_follows_the_configured_clock(tmp_path):
    config = DesignConfig.preset("tiny").replace(clock_mhz=36)
    board_plan = plan(config, core=small_core(config))
    assert (board_plan.pll.divf, board_plan.pll.divq) == (47, 4)
    files = _files(board_plan, tmp_path)
    assert "set_frequency" in files["top.pcf"].read_text()
    assert " 36.0\n" in files["top.pcf"].read_text()


def test_orangecrab_uart_is_on_the_feather_header(tmp_path):
    config = DesignConfig.preset("orangecrab-25f")
    files = _files(plan(config, core=small_core(config)), tmp_path)
    lpf = files["top.lpf"].read_text()
    assert 'LOCATE COMP "uart_0__rx__io" SITE "N17"' in lpf
    assert 'LOCATE COMP "uart_0__tx__io" SITE "M18"' in lpf


def test_tool_variables_are_amaranths():
    assert tool_variable("nextpnr-ice40") == "NEXTPNR_ICE40"
    assert tool_variable("yosys") == "YOSYS" and tool_variable("dfu-suffix") == "DFU_SUFFIX"


def test_problems_name_the_resource_or_clock_and_the_margin():
    report = BuildReport("icebreaker", "up5k", 30.0, luts=6000, dsps=8,
                         available={"luts": 5280, "ffs": 5280, "brams": 30, "sprams": 4,
                                    "dsps": 8},
                         clocks={"clk": {"fmax_mhz": 27.5, "target_mhz": 30.0, "met": False},
                                 "clk12": {"fmax_mhz": 200.0, "target_mhz": 12.0,
                                           "met": True}})
    assert report.problems() == [
        "luts: 6000 used of 5280 available on up5k (720 over, 114%)",
        "clock clk: 27.50 MHz reached, target 30.00 MHz (-2.50 MHz, -8.3%)"]


def test_a_tool_that_outlives_its_limit_is_stopped_and_named(tmp_path):
    """A place and route that circles (a full device) ends in a BuildError naming the tool
    and the limit instead of hanging the build; a real process, stopped by the real limit."""
    with pytest.raises(BuildError, match=r"^nextpnr-ice40 did not finish within 0.005 min$"):
        run_tool(["sleep", "30"], tmp_path, None, "nextpnr-ice40", timeout=0.3)
