"""The board table: every board's platform, clock, serial link, LEDs, programmer and default
preset agree with each other and with the configuration."""

import pytest

from fieldtune.boards.implement import DEVICES
from fieldtune.boards.program import PROGRAMMERS
from fieldtune.boards.table import BOARDS, DEFAULT_BOARD, board, soc_clock
from fieldtune.config import DesignConfig, PRESETS


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_entry_matches_its_platform(name):
    b = BOARDS[name]
    platform = b.new_platform()
    assert platform.lookup(b.clock, 0).clock.frequency == b.clock_mhz * 1e6
    assert platform.default_clk == b.clock
    serial = platform.lookup(b.serial, 0)
    assert {s.name for s in serial.ios} >= {"rx", "tx"}
    for resource in {led[:2] for led in b.leds.values()}:
        platform.lookup(*resource)
    assert set(b.leds) == {"busy", "done", "error"}
    assert b.device in DEVICES and b.programmer in PROGRAMMERS
    assert DesignConfig.preset(b.preset).board == name
    mhz, _ = soc_clock(name)
    assert mhz == pytest.approx(b.soc_mhz, rel=0.005)
    # The platform's part is the table's device.
    size = {"up5k": "iCE40UP5K"}.get(b.device, f"LFE5U-{b.device[5:].upper()}")
    assert platform.device == size


def test_every_preset_names_a_board_it_suits():
    for name in PRESETS:
        config = DesignConfig.preset(name)
        assert config.board in BOARDS


def test_default_board_and_unknown_board():
    assert DEFAULT_BOARD == "icebreaker" == DesignConfig().board
    with pytest.raises(ValueError, match=r"^board must be one of 'icebreaker', .*, "
                                         r"not 'arty'$"):
        board("arty")


def test_configuration_clock_is_checked_against_the_board_pll():
    assert DesignConfig(clock_mhz=36).clock_mhz == 36
    assert soc_clock("icebreaker", 12.0) == (12.0, None)     # the board clock itself
    with pytest.raises(ValueError, match=r"^clock_mhz 20 cannot be made from the 12 MHz board "
                                         r"clock by the SB_PLL40 PLL"):
        DesignConfig(clock_mhz=20)
    config = DesignConfig.from_dict({"preset": "ecp5-25f", "clock_mhz": 60})
    assert config.clock_mhz == 60 and config.board == "ulx3s-25f"
    text = config.to_toml()
    assert "clock_mhz = 60" in text


def test_clock_round_trips_through_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(DesignConfig(clock_mhz=36).to_toml())
    assert DesignConfig.from_toml(path) == DesignConfig(clock_mhz=36)
