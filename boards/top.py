"""The design on a board: clock, reset, host link on the serial pins, status LEDs.

:class:`BoardTop` is what ``fieldtune build`` synthesizes for a :class:`~.table.Board`:

- **Clock.** The board clock feeds the board's PLL (:mod:`.pll`), whose output is the ``sync``
  domain at the configuration's SoC clock; when the SoC clock equals the board clock, the pin
  drives ``sync`` directly. On the iCE40 the clock pin is the PLL's own pad
  (``SB_PLL40_PAD``); on the ECP5 the pin's buffer feeds an ``EHXPLLL``. The made frequency is
  given to the platform as a clock constraint, so nextpnr checks timing against it.
- **Reset.** ``sync`` is held in reset until the PLL locks and while the board's reset button
  (if it has one) is pressed; the reset is released synchronously
  (:class:`amaranth.lib.cdc.ResetSynchronizer`).
- **Host link.** ``system`` is a component with ``rx: In(1)``, ``tx: Out(1)`` and
  ``busy``/``done``/``error: Out(1)``; ``rx``/``tx`` go to the board's serial resource. A
  system with ``clk48: In(1)`` instead (:class:`~.usb_serial.USBHostSystem`, USB CDC-ACM
  serial) gets the board clock there and requests its USB pins itself.
- **LEDs.** Each status drives the LED the board table names for it (several may share one);
  ``busy`` blinks at about 3 Hz (:func:`blink_half_period`) so a running job is visible,
  ``done`` and ``error`` are steady.
"""

import math

from amaranth.hdl import Cat, ClockDomain, Const, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["BoardTop", "StatusLights", "BLINK_HZ", "blink_half_period"]


#: Approximate blink rate of the ``busy`` LED.
BLINK_HZ = 3


def blink_half_period(clock_mhz):
    """Cycles ``busy``'s LED stays on (and off): the power of two nearest to half a period
    of :data:`BLINK_HZ` (at 24 MHz 2**22 cycles, 2.86 Hz)."""
    cycles = clock_mhz * 1e6 / BLINK_HZ / 2
    return 1 << max(0, round(math.log2(cycles)))


class BoardTop(Elaboratable):
    """``system`` on ``board`` (a :class:`~.table.Board`) with the SoC clock made by ``pll``
    (settings from :func:`~.pll.solve`, or ``None`` to run on the board clock);
    ``clock_mhz`` is the SoC clock. See the module documentation."""

    def __init__(self, board, system, clock_mhz, pll=None):
        self.board = board
        self.system = system
        self.clock_mhz = clock_mhz
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        locked, board_clk = self._clock(m, platform, sync.clk)
        self._reset(m, platform, locked)
        platform.add_clock_constraint(sync.clk, self.clock_mhz * 1e6)

        m.submodules.system = system = self.system
        if "clk48" in system.signature.members:       # USB serial: its PLL takes the board clock
            m.d.comb += system.clk48.eq(board_clk)
        else:
            serial = self._raw(platform, self.board.serial, 0)
            m.submodules.rx = rx = io.Buffer("i", serial.rx)
            m.submodules.tx = tx = io.Buffer("o", serial.tx)
            m.d.comb += [system.rx.eq(rx.i), tx.o.eq(system.tx)]
        self._leds(m, platform, system)
        return m

    @staticmethod
    def _raw(platform, name, number):
        """Request a resource as raw ports (every subsignal, e.g. the ULX3S UART's
        unused RTS and DTR too), for :class:`~amaranth.lib.io.Buffer`."""
        subsignals = [io.name for io in platform.lookup(name, number).ios
                      if hasattr(io, "ios")]
        return platform.request(name, number,
                                dir={s: "-" for s in subsignals} if subsignals else "-")

    @staticmethod
    def _input(m, platform, name, number):
        port = platform.request(name, number, dir="-")
        m.submodules[f"{name}_{number}"] = buffer = io.Buffer("i", port)
        return buffer.i

    def _clock(self, m, platform, clk):
        """Drive ``sync``'s clock; return the PLL's lock signal (constant 1 without PLL) and
        the board clock as a signal (None on the iCE40, whose PLL takes the pad itself)."""
        if self.pll is None:
            board_clk = self._input(m, platform, self.board.clock, 0)
            m.d.comb += clk.eq(board_clk)
            return Const(1), board_clk
        locked = Signal()
        if self.board.family == "ice40":
            pad = platform.request(self.board.clock, 0, dir="-")
            m.submodules.pll = self.pll.instance(pad.io, clk, locked, pad=True)
            return locked, None
        board_clk = self._input(m, platform, self.board.clock, 0)
        m.submodules.pll = self.pll.instance(board_clk, clk, locked)
        return locked, board_clk

    def _reset(self, m, platform, locked):
        arst = Signal()
        button = self._input(m, platform, *self.board.reset) if self.board.reset else 0
        m.d.comb += arst.eq(~locked | button)
        m.submodules.reset = ResetSynchronizer(arst, domain="sync")

    def _leds(self, m, platform, system):
        groups = {}                       # LED (resource, number, subsignal...) -> statuses
        for status, led in self.board.leds.items():
            groups.setdefault(led, []).append(status)
        m.submodules.lights = lights = StatusLights(
            list(groups.values()), blink_half_period(self.clock_mhz))
        m.d.comb += [lights.busy.eq(system.busy), lights.done.eq(system.done),
                     lights.error.eq(system.error)]
        resources = {}
        for index, (name, number, *sub) in enumerate(groups):
            if (name, number) not in resources:
                resources[name, number] = self._raw(platform, name, number)
            port = getattr(resources[name, number], sub[0]) if sub else resources[name, number]
            m.submodules["_".join(map(str, ["led", name, number, *sub]))] = led = \
                io.Buffer("o", port)
            m.d.comb += led.o.eq(lights.leds[index])


class StatusLights(wiring.Component):
    """The SoC's status on LEDs: LED ``i`` lights while any status named in ``groups[i]`` is
    shown; ``done`` and ``error`` show while high, ``busy`` blinks while high (on for
    ``half_period`` cycles, off for as many, from the edge after reset).

    Ports: ``busy``, ``done``, ``error``: In(1); ``leds``: Out(len(groups)). Combinational
    from the inputs to ``leds``."""

    STATUSES = ("busy", "done", "error")

    def __init__(self, groups, half_period):
        for group in groups:
            for status in group:
                if status not in self.STATUSES:
                    raise ValueError(f"LED status must be one of "
                                     f"{', '.join(map(repr, self.STATUSES))}, not {status!r}")
        if not isinstance(half_period, int) or half_period < 1 \
                or half_period & (half_period - 1):
            raise ValueError(f"half_period must be a positive power of two, not "
                             f"{half_period!r}")
        self.groups = [tuple(group) for group in groups]
        self.half_period = half_period
        super().__init__({"busy": In(1), "done": In(1), "error": In(1),
                          "leds": Out(len(groups))})

    def elaborate(self, platform):
        m = Module()
        count = Signal(self.half_period.bit_length())   # free-running: its top bit blinks
        m.d.sync += count.eq(count + 1)
        shown = {"busy": self.busy & ~count[-1], "done": self.done, "error": self.error}
        for index, group in enumerate(self.groups):
            m.d.comb += self.leds[index].eq(Cat(*(shown[s] for s in group)).any())
        return m
