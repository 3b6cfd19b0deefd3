"""Phase-locked loops from a board's clock to the SoC clock: parameters solved in Python.

:func:`solve` finds the divider settings of the board's PLL that make the SoC clock from the
board clock, or raises :class:`ValueError` naming the frequency, the board clock and the
nearest frequencies the PLL can make. The result is a frozen parameter object whose
:meth:`instance` is the PLL primitive, so the settings checked here are exactly the ones built.

iCE40 (``SB_PLL40_PAD`` / ``SB_PLL40_CORE``, simple feedback; limits of Project IceStorm's
``icepll`` and the iCE40 sysCLOCK PLL note)::

    f_pfd = f_in / (DIVR + 1)            10 ..  133 MHz,  DIVR 0..15
    f_vco = f_pfd * (DIVF + 1)          533 .. 1066 MHz,  DIVF 0..127
    f_out = f_vco / 2 ** DIVQ            16 ..  275 MHz,  DIVQ 1..6

ECP5 (``EHXPLLL``, feedback from CLKOP; limits of Project Trellis' ``ecppll``)::

    f_pfd = f_in / CLKI_DIV            3.125 .. 400 MHz,  CLKI_DIV 1..128
    f_out = f_pfd * CLKFB_DIV             10 .. 400 MHz,  CLKFB_DIV 1..80
    f_vco = f_out * CLKOP_DIV            400 .. 800 MHz,  CLKOP_DIV 1..128

Among the settings within ``tolerance`` (relative) of the request, the closest wins; ties go
to the highest phase-detector frequency on the iCE40 (less jitter, as ``icepll``) and to the
VCO nearest 600 MHz on the ECP5 (as ``ecppll``).
"""

from dataclasses import dataclass
from functools import lru_cache

from amaranth.hdl import Const, Instance


__all__ = ["ICE40PLL", "ECP5PLL", "PLL_FAMILIES", "DEFAULT_TOLERANCE", "solve"]


#: Largest relative error between the requested and the made SoC clock.
DEFAULT_TOLERANCE = 0.005


def _filter_range(f_pfd):
    # iCE40 loop filter setting by phase-detector frequency (icepll).
    for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd < limit:
            return value
    return 6


@dataclass(frozen=True)
class ICE40PLL:
    """Settings of an iCE40 ``SB_PLL40_*`` in simple feedback mode (frequencies in MHz)."""
    f_in: float
    divr: int
    divf: int
    divq: int

    primitive = "SB_PLL40"
    F_IN, F_PFD, F_VCO, F_OUT = (10, 133), (10, 133), (533, 1066), (16, 275)

    @property
    def f_pfd(self):
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self):
        return self.f_pfd * (self.divf + 1)

    @property
    def f_out(self):
        return self.f_vco / 2 ** self.divq

    @classmethod
    def candidates(cls, f_in):
        for divr in range(16):
            f_pfd = f_in / (divr + 1)
            if not cls.F_PFD[0] <= f_pfd <= cls.F_PFD[1]:
                continue
            for divf in range(128):
                f_vco = f_pfd * (divf + 1)
                if not cls.F_VCO[0] <= f_vco <= cls.F_VCO[1]:
                    continue
                for divq in range(1, 7):
                    if cls.F_OUT[0] <= f_vco / 2 ** divq <= cls.F_OUT[1]:
                        yield cls(f_in, divr, divf, divq)

    def preference(self):
        # Less jitter with a faster phase detector.
        return -self.f_pfd

    def instance(self, clk_in, clk_out, lock, *, pad=False):
        """The ``SB_PLL40_PAD`` (``clk_in`` is the clock pin's I/O port, ``pad=True``) or
        ``SB_PLL40_CORE`` (``clk_in`` is a clock signal) driving ``clk_out`` (global net)."""
        return Instance(
            "SB_PLL40_PAD" if pad else "SB_PLL40_CORE",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=Const(self.divr, 4), p_DIVF=Const(self.divf, 7), p_DIVQ=Const(self.divq, 3),
            p_FILTER_RANGE=Const(_filter_range(self.f_pfd), 3),
            **{"i_PACKAGEPIN" if pad else "i_REFERENCECLK": clk_in},
            i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)


@dataclass(frozen=True)
class ECP5PLL:
    """Settings of an ECP5 ``EHXPLLL`` with CLKOP feedback (frequencies in MHz)."""
    f_in: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    primitive = "EHXPLLL"
    F_IN, F_PFD, F_VCO, F_OUT = (8, 400), (3.125, 400), (400, 800), (10, 400)

    @property
    def f_pfd(self):
        return self.f_in / self.clki_div

    @property
    def f_out(self):
        return self.f_pfd * self.clkfb_div

    @property
    def f_vco(self):
        return self.f_out * self.clkop_div

    @classmethod
    def candidates(cls, f_in):
        for clki_div in range(1, 129):
            f_pfd = f_in / clki_div
            if not cls.F_PFD[0] <= f_pfd <= cls.F_PFD[1]:
                continue
            for clkfb_div in range(1, 81):
                f_out = f_pfd * clkfb_div
                if not cls.F_OUT[0] <= f_out <= cls.F_OUT[1]:
                    continue
                for clkop_div in range(1, 129):
                    if cls.F_VCO[0] <= f_out * clkop_div <= cls.F_VCO[1]:
                        yield cls(f_in, clki_div, clkfb_div, clkop_div)

    def preference(self):
        # ecppll's tie-break: the VCO nearest the middle of its range.
        return abs(self.f_vco - 600)

    def instance(self, clk_in, clk_out, lock, *, secondary=None):
        """The ``EHXPLLL`` driving ``clk_out`` from the clock signal ``clk_in``. ``secondary``:
        ``(clock, divider)`` for a second output (CLKOS) at ``f_vco / divider``; each output's
        coarse phase is its divider - 1 (no shift), so the two outputs' edges align."""
        extra = {}
        if secondary is not None:
            clk_os, div = secondary
            extra = dict(a_FREQUENCY_PIN_CLKOS=f"{self.f_vco / div:g}", p_CLKOS_ENABLE="ENABLED",
                         p_CLKOS_DIV=div, p_CLKOS_CPHASE=div - 1, p_CLKOS_FPHASE=0,
                         i_ENCLKOS=Const(0), o_CLKOS=clk_os)
        return Instance(
            "EHXPLLL", **extra,
            a_FREQUENCY_PIN_CLKI=f"{self.f_in:g}", a_FREQUENCY_PIN_CLKOP=f"{self.f_out:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.clki_div, p_CLKFB_DIV=self.clkfb_div, p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=self.clkop_div,
            p_CLKOP_CPHASE=self.clkop_div - 1, p_CLKOP_FPHASE=0,
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, i_CLKFB=clk_out,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clk_out, o_LOCK=lock)


#: FPGA family -> its PLL settings class.
PLL_FAMILIES = {"ice40": ICE40PLL, "ecp5": ECP5PLL}


@lru_cache(maxsize=None)
def _candidates(cls, f_in):
    return tuple(cls.candidates(f_in))


def solve(family, f_in, f_out, *, tolerance=DEFAULT_TOLERANCE):
    """PLL settings of ``family`` ("ice40" or "ecp5") making ``f_out`` MHz from ``f_in`` MHz
    within ``tolerance`` (relative). Raises :class:`ValueError` naming the nearest
    frequencies the PLL can make when none is close enough."""
    if family not in PLL_FAMILIES:
        raise ValueError(f"PLL family must be one of {', '.join(map(repr, PLL_FAMILIES))}, "
                         f"not {family!r}")
    cls = PLL_FAMILIES[family]
    if not cls.F_IN[0] <= f_in <= cls.F_IN[1]:
        raise ValueError(f"{cls.primitive} input clock must be {cls.F_IN[0]} to {cls.F_IN[1]} "
                         f"MHz, not {f_in:g} MHz")
    if not isinstance(f_out, (int, float)) or not f_out > 0:
        raise ValueError(f"clock_mhz must be a positive number, not {f_out!r}")
    candidates = _candidates(cls, f_in)
    best = min(candidates, key=lambda p: (abs(p.f_out - f_out), p.preference()))
    if abs(best.f_out - f_out) <= tolerance * f_out:
        return best
    below = [p.f_out for p in candidates if p.f_out < f_out]
    above = [p.f_out for p in candidates if p.f_out > f_out]
    nearest = " or ".join(f"{f:.4g} MHz" for f in (max(below, default=None),
                                                    min(above, default=None)) if f is not None)
    raise ValueError(f"clock_mhz {f_out:g} cannot be made from the {f_in:g} MHz board clock by "
                     f"the {cls.primitive} PLL ({cls.F_OUT[0]} to {cls.F_OUT[1]} MHz, within "
                     f"{tolerance:.1%}); nearest: {nearest}")
