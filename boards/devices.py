"""The FPGA parts fieldtune implements for: plain data (capacities, nextpnr arguments), read by
the configuration, the board table, the benchmarks and the implementation flow alike."""

from dataclasses import dataclass


__all__ = ["Device", "DEVICES"]


@dataclass(frozen=True)
class Device:
    """An FPGA part: how to synthesize for it, how to place and route it, what it holds."""
    name: str
    family: str               # "ice40" or "ecp5"
    pnr_args: tuple
    luts: int
    brams: int
    dsps: int
    sprams: int = 0
    target_mhz: float = 50.0  # nextpnr's timing target (drives timing-driven placement)


#: Devices benchmarks target. Capacities from the data sheets (DESIGN.md "Toolchain").
DEVICES = {
    "up5k": Device("up5k", "ice40", ("--up5k", "--package", "sg48"),
                   luts=5280, brams=30, dsps=8, sprams=4, target_mhz=48.0),
    "ecp5-12f": Device("ecp5-12f", "ecp5", ("--12k", "--package", "CABGA381"),
                       luts=12096, brams=32, dsps=28, target_mhz=120.0),
    "ecp5-25f": Device("ecp5-25f", "ecp5", ("--25k", "--package", "CABGA256"),
                       luts=24288, brams=56, dsps=28, target_mhz=120.0),
    "ecp5-45f": Device("ecp5-45f", "ecp5", ("--45k", "--package", "CABGA381"),
                       luts=43848, brams=108, dsps=72, target_mhz=120.0),
    "ecp5-85f": Device("ecp5-85f", "ecp5", ("--85k", "--package", "CABGA381"),
                       luts=83640, brams=208, dsps=156, target_mhz=120.0),
}
