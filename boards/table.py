"""The board table: every board fieldtune builds for, in one place.

A :class:`Board` names its amaranth-boards platform, its FPGA (a key of
:data:`fieldtune.boards.implement.DEVICES`), its clock, the serial pins the host link uses, its
status LEDs, its programmer (a key of :data:`fieldtune.boards.program.PROGRAMMERS`), its default
design preset (:data:`fieldtune.config.PRESETS`) and its default SoC clock. The configuration,
the builds, the programming command and the demo all read this table.

Serial links: the iCEBreaker's ``uart`` is the FT2232H's second channel (the first programs the
flash); the ULX3S's ``uart`` goes through the FT231X that also programs it. The OrangeCrab has no
UART resource: :data:`ORANGECRAB_HEADER_UART` puts one on the Feather header, pin ``0`` (RX,
ball N17) and pin ``1`` (TX, ball M18), 3.3 V: wire a USB-serial adapter's TX to pin 0, its RX
to pin 1 and GND to GND. The OrangeCrab's own USB-C port also carries the host link, as a USB
CDC-ACM serial device (:mod:`.usb_serial`, LUNA): ``usb`` is its :attr:`Board.link` by default,
since a user with only the board needs no adapter for it; ``serial = "uart"`` in the
configuration keeps the header UART.
"""

from dataclasses import dataclass, field

from amaranth.build import Attrs
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.orangecrab_r0_2 import (OrangeCrabR0_2_25FPlatform,
                                             OrangeCrabR0_2_85FPlatform)
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import (ULX3S_12F_Platform, ULX3S_25F_Platform, ULX3S_45F_Platform,
                                   ULX3S_85F_Platform)

from .devices import DEVICES
from .pll import DEFAULT_TOLERANCE, solve


__all__ = ["Board", "BOARDS", "DEFAULT_BOARD", "LINKS", "ORANGECRAB_HEADER_UART", "board",
           "soc_clock"]


#: Host links a board may have: a UART on its serial resource, or USB CDC-ACM serial on its
#: USB resource (needs a 48 MHz board clock and an ECP5 PLL, :mod:`.usb_serial`).
LINKS = ("uart", "usb")


#: The OrangeCrab's host-link UART on its Feather header (see the module documentation).
ORANGECRAB_HEADER_UART = UARTResource(0, rx="0", tx="1", conn=("io", 0),
                                      attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP"))


@dataclass(frozen=True)
class Board:
    """One development board (see the module documentation)."""
    name: str
    title: str
    platform: type                   # amaranth-boards platform class
    device: str                      # key of DEVICES
    clock: str                       # platform clock resource
    clock_mhz: float
    programmer: str                  # key of fieldtune.boards.program.PROGRAMMERS
    preset: str                      # default design preset
    soc_mhz: float                   # default SoC clock
    serial: str = "uart"             # UART resource (rx, tx) of the host link
    leds: dict = field(default_factory=dict)   # "busy"/"done"/"error" -> (resource, number)
    reset: tuple | None = None       # (resource, number) of a reset button, if any
    extra_resources: tuple = ()      # resources the platform lacks (header UART)
    wiring: str = ""                 # how the serial link reaches the host
    programmer_args: tuple = ()      # board-specific programmer options
    usb: str | None = None           # USB resource (d_p, d_n, pullup) for CDC-ACM serial
    link: str = "uart"               # default host link, one of :attr:`links`

    def __post_init__(self):
        if self.link not in self.links:
            raise ValueError(f"link of board {self.name!r} must be one of "
                             f"{', '.join(map(repr, self.links))}, not {self.link!r}")
        if self.usb is not None and (self.family != "ecp5" or self.clock_mhz != 48.0):
            raise ValueError(f"USB serial on board {self.name!r} needs an ECP5 with a 48 MHz "
                             f"board clock, not {self.family} at {self.clock_mhz} MHz")

    @property
    def links(self):
        """The host links this board can build, from :data:`LINKS`."""
        return ("uart", "usb") if self.usb else ("uart",)

    @property
    def family(self):
        return DEVICES[self.device].family

    @property
    def bitstream_suffix(self):
        """File the build writes and the programmer reads."""
        return ".bin" if self.family == "ice40" else ".bit"

    def new_platform(self):
        """A fresh platform instance with :attr:`extra_resources` added."""
        platform = self.platform()
        if self.extra_resources:
            platform.add_resources(list(self.extra_resources))
        return platform


# Default SoC clocks: the host link's 3 Mbaud UART needs a whole number of clock cycles per
# bit within 1 % (30 MHz: 10, 45 MHz: 15, 48 MHz: 16, 60 MHz: 20; 50 MHz would be 17 cycles,
# 2 % off). The ULX3S-25F runs its 16-lane default at 60 MHz (64.9 MHz placed and routed
# against a 60 MHz target, docs/boards.md); the others keep 45 until measured.
def _ulx3s(size, platform, preset, soc_mhz):
    return Board(
        f"ulx3s-{size}f", f"ULX3S {size.upper()}F", platform, f"ecp5-{size}f",
        clock="clk25", clock_mhz=25.0, programmer="openfpgaloader",
        programmer_args=("--board", "ulx3s"), preset=preset,
        soc_mhz=soc_mhz,
        leds={"busy": ("led", 0), "done": ("led", 1), "error": ("led", 7)},
        reset=("button_fire", 0),
        wiring="USB port US1 (FT231X): programs the FPGA and carries the host link")


def _orangecrab(size, platform, preset):
    return Board(
        f"orangecrab-{size}f", f"OrangeCrab r0.2 {size.upper()}F", platform, f"ecp5-{size}f",
        clock="clk", clock_mhz=48.0, programmer="dfu-util", preset=preset, soc_mhz=48.0,
        leds={"busy": ("rgb_led", 0, "b"), "done": ("rgb_led", 0, "g"),
              "error": ("rgb_led", 0, "r")},
        extra_resources=(ORANGECRAB_HEADER_UART,), usb="usb", link="usb",
        wiring="USB-C: CDC-ACM serial (/dev/ttyACM0) and dfu-util (hold the button while "
               "plugging in); with serial = \"uart\": 3.3 V USB-serial adapter on the "
               "Feather header: adapter TX -> pin 0 (FPGA RX, N17), adapter RX <- pin 1 "
               "(FPGA TX, M18), GND -> GND")


#: name -> :class:`Board`. The first is the default. The iCEBreaker runs its SoC at 18 MHz: the
#: default design (both modes, 4 lanes, behind the host link) fills 98.8 % of the UP5K and places
#: and routes at 22.3 MHz (docs/boards.md); 18 MHz is 6 clocks a bit at 3 Mbaud. Issue 9's
#: target is 30 MHz.
BOARDS = {b.name: b for b in (
    Board("icebreaker", "iCEBreaker", ICEBreakerPlatform, "up5k", clock="clk12",
          clock_mhz=12.0, programmer="iceprog", preset="up5k", soc_mhz=18.0,
          leds={"busy": ("led_g", 0), "done": ("led_g", 0), "error": ("led_r", 0)},
          reset=("button", 0),
          wiring="USB (FT2232H): channel A programs the flash, channel B is the host link"),
    _ulx3s("12", ULX3S_12F_Platform, "ecp5-12f", 45.0),
    _ulx3s("25", ULX3S_25F_Platform, "ecp5-25f", 60.0),
    _ulx3s("45", ULX3S_45F_Platform, "ecp5-45f", 45.0),
    _ulx3s("85", ULX3S_85F_Platform, "ecp5-85f", 45.0),
    _orangecrab("25", OrangeCrabR0_2_25FPlatform, "orangecrab-25f"),
    _orangecrab("85", OrangeCrabR0_2_85FPlatform, "orangecrab"),
)}

DEFAULT_BOARD = next(iter(BOARDS))


def board(name):
    """The :class:`Board` called ``name``; :class:`ValueError` naming the known boards."""
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(map(repr, BOARDS))}, not {name!r}")
    return BOARDS[name]


def soc_clock(name, clock_mhz=None, *, tolerance=DEFAULT_TOLERANCE):
    """``(mhz, pll)``: the SoC clock of board ``name`` (``clock_mhz``, default the board's
    :attr:`~Board.soc_mhz`) and the PLL settings making it, or ``None`` when the SoC runs on
    the board clock itself. :class:`ValueError` when the PLL cannot make it."""
    b = board(name)
    mhz = b.soc_mhz if clock_mhz is None else clock_mhz
    if mhz == b.clock_mhz:
        return float(mhz), None
    pll = solve(b.family, b.clock_mhz, mhz, tolerance=tolerance)
    return pll.f_out, pll
