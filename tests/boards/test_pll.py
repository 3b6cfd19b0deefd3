"""PLL parameter solver: settings within the data-sheet limits, the frequency made as asked,
and a clear error when it cannot be made."""

import pytest
from amaranth.hdl import Signal
from hypothesis import given, settings, strategies as st

from fieldtune.boards.pll import ECP5PLL, ICE40PLL, solve


def ice40_out(f_in, divr, divf, divq):
    # iCE40 sysCLOCK PLL, simple feedback (written out here, independent of the solver).
    f_pfd = f_in / (divr + 1)
    f_vco = f_pfd * (divf + 1)
    assert 10 <= f_pfd <= 133 and 533 <= f_vco <= 1066
    assert 0 <= divr <= 15 and 0 <= divf <= 127 and 1 <= divq <= 6
    return f_vco / 2 ** divq


def ecp5_out(f_in, clki_div, clkfb_div, clkop_div):
    f_pfd = f_in / clki_div
    f_out = f_pfd * clkfb_div
    assert 3.125 <= f_pfd <= 400 and 400 <= f_out * clkop_div <= 800
    assert 1 <= clki_div <= 128 and 1 <= clkfb_div <= 80 and 1 <= clkop_div <= 128
    return f_out


@pytest.mark.parametrize("f_out, expected", [
    # icepll -i 12 -o 30 / 36 / 48
    (30, ICE40PLL(12, divr=0, divf=79, divq=5)),
    (36, ICE40PLL(12, divr=0, divf=47, divq=4)),
    (48, ICE40PLL(12, divr=0, divf=63, divq=4)),
])
def test_ice40_settings_match_icepll(f_out, expected):
    assert solve("ice40", 12, f_out) == expected


@pytest.mark.parametrize("f_in, f_out, expected", [
    # ecppll -i 25 -o 50 / 100; -i 48 -o 60
    (25, 50, ECP5PLL(25, clki_div=1, clkfb_div=2, clkop_div=12)),
    (25, 100, ECP5PLL(25, clki_div=1, clkfb_div=4, clkop_div=6)),
    (48, 96, ECP5PLL(48, clki_div=1, clkfb_div=2, clkop_div=6)),
])
def test_ecp5_settings_match_ecppll(f_in, f_out, expected):
    assert solve("ecp5", f_in, f_out) == expected


@settings(max_examples=60, deadline=None)
@given(st.floats(16, 275))
def test_ice40_made_frequency_is_within_tolerance(f_out):
    try:
        p = solve("ice40", 12, f_out, tolerance=0.01)
    except ValueError as e:
        assert str(e).startswith(f"clock_mhz {f_out:g} cannot be made from the 12 MHz")
        return
    made = ice40_out(12, p.divr, p.divf, p.divq)
    assert made == pytest.approx(p.f_out)
    assert abs(made - f_out) <= 0.01 * f_out


@settings(max_examples=40, deadline=None)
@given(st.floats(10, 400), st.sampled_from([25.0, 48.0]))
def test_ecp5_made_frequency_is_within_tolerance(f_out, f_in):
    try:
        p = solve("ecp5", f_in, f_out)
    except ValueError as e:
        assert "cannot be made" in str(e)
        return
    made = ecp5_out(f_in, p.clki_div, p.clkfb_div, p.clkop_div)
    assert abs(made - f_out) <= 0.005 * f_out


def test_error_names_the_nearest_frequencies():
    # 12 MHz * (DIVF + 1) / 2**DIVQ with a 10 MHz phase detector minimum: 19.875 or 20.25.
    with pytest.raises(ValueError, match=r"^clock_mhz 20 cannot be made from the 12 MHz board "
                                         r"clock by the SB_PLL40 PLL \(16 to 275 MHz, within "
                                         r"0.5%\); nearest: 19.88 MHz or 20.25 MHz$"):
        solve("ice40", 12, 20)
    # Ends of the range: 12 * 86 / 64 (VCO 1032) and 12 * 45 / 2 (VCO 540).
    with pytest.raises(ValueError, match=r"nearest: 16.12 MHz$"):
        solve("ice40", 12, 10)
    with pytest.raises(ValueError, match=r"nearest: 270 MHz$"):
        solve("ice40", 12, 400)
    with pytest.raises(ValueError, match=r"^clock_mhz must be a positive number, not -5$"):
        solve("ecp5", 25, -5)
    with pytest.raises(ValueError, match=r"^PLL family must be one of 'ice40', 'ecp5', "
                                         r"not 'xc7'$"):
        solve("xc7", 25, 50)
    with pytest.raises(ValueError, match=r"^EHXPLLL input clock must be 8 to 400 MHz, "
                                         r"not 2 MHz$"):
        solve("ecp5", 2, 50)


def test_filter_range_follows_the_phase_detector():
    p = solve("ice40", 12, 30)
    inst = p.instance(Signal(), Signal(), Signal())
    assert inst.type == "SB_PLL40_CORE"
    params = {k: v for k, v in inst.parameters.items()}
    assert params["DIVF"].value == 79 and params["FILTER_RANGE"].value == 1
    assert p.instance(Signal(), Signal(), Signal(), pad=True).type == "SB_PLL40_PAD"
