"""The host link over the board's own USB port: a USB CDC-ACM serial device (LUNA).

::

    USB D+/D- <-> LUNA USBSerialDevice (usb_io 48 MHz, usb 12 MHz)
                   rx stream --AsyncFIFO--> rx --> HostCore --bus--> SoC
                   tx stream <--AsyncFIFO-- tx <--   (sync, the SoC clock)

A host sees a CDC-ACM serial port (``/dev/ttyACM0`` on Linux, a COM port on Windows); pyserial
opens it like any other and ignores the baud rate. The host link's protocol (docs/protocol.md)
runs unchanged over it, without the UART: bytes arrive in order and none is lost, because USB
carries its own flow control (the device NAKs an OUT packet it has no room for, and the host
sends it again), so the core's ``ferr`` and ``lost`` flags stay 0.

- :class:`USBSerialBridge`: LUNA's byte streams (``usb`` domain) to the host link's byte
  streams (``sync``), one :class:`~amaranth.lib.fifo.AsyncFIFO` each way. It ends a USB packet
  (``last``) at each frame delimiter and whenever the byte sent is the only one waiting, so no
  response waits for a full 64-byte packet.
- :class:`USBClocks`: the ``usb_io`` (48 MHz) and ``usb`` (12 MHz) domains a full-speed LUNA
  device needs, from one ECP5 ``EHXPLLL`` fed by the board's 48 MHz clock (both outputs of
  one PLL, phase-aligned, as LUNA's gateware PHY requires), each held in reset until it locks.
- :class:`USBStreamHost`: the SoC and the host core behind the bridge (LUNA's streams as
  ports, what the simulation drives); :class:`USBHostSystem`: that behind LUNA's
  ``USBSerialDevice``; the board top (:class:`~.top.BoardTop`) gives it the 48 MHz board clock
  and it requests the board's ``usb`` resource (d_p, d_n, pullup) itself.
"""

from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Elaboratable, Module
from amaranth.hdl import Signal
from amaranth.lib import data, io, stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from ..rtl.host.link import HostCore
from .pll import ECP5PLL
from ..rtl.soc import SoC


__all__ = ["USBSerialBridge", "USBClocks", "USBStreamHost", "USBHostSystem", "USBPins",
           "usb_tx_layout", "USB_CLOCK_MHZ", "USB_IO_MHZ", "FRAME_DELIMITER", "USB_IDS"]


#: Full-speed USB: LUNA's ``usb`` domain (one byte a cycle on its UTMI side) and ``usb_io``
#: (the gateware PHY's 4x oversampling of the 12 Mbit/s line).
USB_CLOCK_MHZ, USB_IO_MHZ = 12.0, 48.0

#: The byte that ends every frame of the host protocol (docs/protocol.md).
FRAME_DELIMITER = 0x00

#: USB vendor and product ID: LUNA's own example IDs (Linux, macOS and Windows bind CDC-ACM
#: by class, not by ID). A product of its own would need IDs of its own.
USB_IDS = (0x16D0, 0x0F3B)


def usb_tx_layout():
    """A byte for the USB IN endpoint: ``data`` and ``last`` (end the packet after it)."""
    return data.StructLayout({"data": 8, "last": 1})


class USBSerialBridge(wiring.Component):
    """LUNA's serial streams (``usb`` domain) to the host link's byte streams (``sync``).

    Parameters
    ----------
    depth : int
        Entries of each :class:`~amaranth.lib.fifo.AsyncFIFO`, a power of two from 4 to 256.

    Attributes
    ----------
    usb_rx : In(stream.Signature(8)), ``usb`` domain
        Bytes from the host (LUNA's ``rx``); ``ready`` drops while the FIFO is full, which
        holds bytes in LUNA's endpoint buffer and then NAKs the host.
    usb_tx : Out(stream.Signature(usb_tx_layout())), ``usb`` domain
        Bytes to the host (LUNA's ``tx``); ``last`` is set on a :data:`FRAME_DELIMITER` and on
        a byte no other follows yet (the FIFO's only entry), so a packet never waits for bytes
        that may not come.
    rx : Out(stream.Signature(8)), ``sync`` domain
        Bytes from the host, in order; none is dropped.
    tx : In(stream.Signature(8)), ``sync`` domain
        Bytes to the host; ``ready`` drops while the FIFO is full.

    Timing: the FIFOs synchronize their pointers through two flip-flops each way, so a byte
    written is offered on the other side 3 to 4 cycles of the reading clock later; each
    side moves one byte a cycle while the FIFO holds bytes (sync) or has room (usb).
    """

    def __init__(self, depth=8):
        if not isinstance(depth, int) or not 4 <= depth <= 256 or depth & (depth - 1):
            raise ValueError(f"USB serial FIFO depth must be a power of two from 4 to 256, "
                             f"not {depth!r}")
        self.depth = depth
        super().__init__({
            "usb_rx": In(stream.Signature(8)),
            "usb_tx": Out(stream.Signature(usb_tx_layout())),
            "rx": Out(stream.Signature(8)),
            "tx": In(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.from_host = from_host = AsyncFIFO(
            width=8, depth=self.depth, w_domain="usb", r_domain="sync")
        m.submodules.to_host = to_host = AsyncFIFO(
            width=8, depth=self.depth, w_domain="sync", r_domain="usb")
        wiring.connect(m, wiring.flipped(self.usb_rx), from_host.w_stream)
        wiring.connect(m, from_host.r_stream, wiring.flipped(self.rx))
        wiring.connect(m, wiring.flipped(self.tx), to_host.w_stream)
        out = self.usb_tx
        m.d.comb += [
            out.valid.eq(to_host.r_rdy), to_host.r_en.eq(out.ready),
            out.payload.data.eq(to_host.r_data),
            out.payload.last.eq((to_host.r_data == FRAME_DELIMITER) | (to_host.r_level == 1)),
        ]
        return m


def usb_pll(clk_in, clk_io, clk_usb, lock):
    """An ``EHXPLLL`` (:class:`~.pll.ECP5PLL`): 48 MHz in, ``clk_io`` 48 MHz (CLKOP, the
    feedback) and ``clk_usb`` 12 MHz (CLKOS), VCO 576 MHz; the outputs' edges align."""
    pll = ECP5PLL(48.0, clki_div=1, clkfb_div=1, clkop_div=12)
    return pll.instance(clk_in, clk_io, lock, secondary=(clk_usb, 48))


class USBClocks(Elaboratable):
    """Drives the ``usb_io`` (48 MHz) and ``usb`` (12 MHz) domains of the enclosing module
    from ``clk48``, the board's 48 MHz clock, through :func:`usb_pll`; each domain is held in
    reset until the PLL locks and released synchronously. ``platform`` None (simulation):
    nothing is driven, the simulator's clocks drive the domains."""

    def __init__(self, clk48):
        self.clk48 = clk48

    def elaborate(self, platform):
        m = Module()
        if platform is None:
            return m
        lock, clk_io, clk_usb = Signal(), Signal(), Signal()
        m.submodules.pll = usb_pll(self.clk48, clk_io, clk_usb, lock)
        for domain, clk, mhz in (("usb_io", clk_io, USB_IO_MHZ), ("usb", clk_usb, USB_CLOCK_MHZ)):
            m.d.comb += ClockSignal(domain).eq(clk)
            m.submodules[f"reset_{domain}"] = ResetSynchronizer(~lock, domain=domain)
            platform.add_clock_constraint(clk, mhz * 1e6)
        return m


class USBPins:
    """The full-speed USB lines as LUNA's gateware PHY reads them: ``d_p`` and ``d_n`` with
    ``i``, ``o``, ``oe``; ``pullup`` with ``o`` (the 1.5 kOhm D+ pull-up that announces a
    full-speed device). :meth:`buffers` connects them to a platform's ``usb`` resource."""

    class _Line:
        def __init__(self, name):
            self.i, self.o, self.oe = (Signal(name=f"{name}_{s}") for s in ("i", "o", "oe"))

    class _Output:
        def __init__(self, name):
            self.o = Signal(name=f"{name}_o")

    def __init__(self):
        self.d_p, self.d_n = self._Line("usb_d_p"), self._Line("usb_d_n")
        self.pullup = self._Output("usb_pullup")

    def buffers(self, m, platform, resource="usb", number=0):
        """Request ``resource`` from ``platform`` and drive these lines through I/O buffers."""
        port = platform.request(resource, number,
                                dir={"d_p": "-", "d_n": "-", "pullup": "-"})
        for name in ("d_p", "d_n"):
            line = getattr(self, name)
            m.submodules[f"usb_{name}"] = buffer = io.Buffer("io", getattr(port, name))
            m.d.comb += [line.i.eq(buffer.i), buffer.o.eq(line.o), buffer.oe.eq(line.oe)]
        m.submodules.usb_pullup = pullup = io.Buffer("o", port.pullup)
        m.d.comb += pullup.o.eq(self.pullup.o)


class USBStreamHost(wiring.Component):
    """:class:`~fieldtune.rtl.soc.SoC` and :class:`~fieldtune.rtl.host.link.HostCore` of a
    configuration behind a :class:`USBSerialBridge`: everything of :class:`USBHostSystem`
    but the USB device, with LUNA's serial streams as ports (what the simulation drives).

    Attributes
    ----------
    usb_rx : In(stream.Signature(8)), usb_tx : Out(stream.Signature(usb_tx_layout()))
        As :class:`USBSerialBridge`'s, in the ``usb`` domain.
    busy, done, error : Out(1)
        A run is in progress; the last run ended; an error flag is set.
    """

    def __init__(self, config, depth=8):
        self.config = config
        self.soc = SoC(config)
        self.core = HostCore(config.host, self.soc.map)
        self.bridge = USBSerialBridge(depth)
        super().__init__({
            "usb_rx": In(stream.Signature(8)),
            "usb_tx": Out(stream.Signature(usb_tx_layout())),
            "busy": Out(1), "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.core = core = self.core
        m.submodules.soc = soc = self.soc
        wiring.connect(m, wiring.flipped(self.usb_rx), bridge.usb_rx)
        wiring.connect(m, bridge.usb_tx, wiring.flipped(self.usb_tx))
        # USB loses nothing and has no framing errors: ferr = lost = 0
        m.d.comb += [core.symbol.valid.eq(bridge.rx.valid),
                     core.symbol.payload.eq(Cat(bridge.rx.payload, Const(0, 2))),
                     bridge.rx.ready.eq(core.symbol.ready)]
        wiring.connect(m, core.byte, bridge.tx)
        wiring.connect(m, core.bus, soc.bus)
        m.d.comb += [self.busy.eq(soc.busy), self.done.eq(soc.done), self.error.eq(soc.error)]
        return m


class USBHostSystem(wiring.Component):
    """The SoC and its host link behind a USB CDC-ACM serial port: LUNA's
    ``USBSerialDevice`` on the board's USB lines, :class:`USBClocks`, :class:`USBStreamHost`
    (see the module documentation).

    Parameters
    ----------
    config : fieldtune.config.DesignConfig
    pins : USBPins or None
        The USB lines; None: request the platform's ``usb`` resource at elaboration.
    depth : int
        Entries of each of the bridge's FIFOs (:class:`USBSerialBridge`).

    Attributes
    ----------
    clk48 : In(1)
        The board's 48 MHz clock, for :class:`USBClocks`.
    busy, done, error : Out(1)
        As :class:`USBStreamHost`'s.

    The device connects (its D+ pull-up) once the PLL locks and LUNA leaves reset. ``sync`` is
    the SoC clock; the bridge's FIFOs cross between it and ``usb``.
    """

    def __init__(self, config, pins=None, depth=8):
        self.config = config
        self.pins = pins
        self.host = USBStreamHost(config, depth)
        super().__init__({"clk48": In(1), "busy": Out(1), "done": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        # LUNA is imported here: boards without USB never need it at import time
        from luna.full_devices import USBSerialDevice

        m = Module()
        m.domains.usb_io = ClockDomain("usb_io", local=True)
        m.domains.usb = ClockDomain("usb", local=True)
        m.submodules.usb_clocks = USBClocks(self.clk48)
        pins = self.pins
        if pins is None:
            pins = USBPins()
            pins.buffers(m, platform)
        vid, pid = USB_IDS
        m.submodules.usb_serial = usb = USBSerialDevice(
            bus=pins, idVendor=vid, idProduct=pid, manufacturer_string="fieldtune",
            product_string="fieldtune host link")
        m.submodules.host = host = self.host
        m.d.comb += [
            usb.connect.eq(1),
            host.usb_rx.payload.eq(usb.rx.payload), host.usb_rx.valid.eq(usb.rx.valid),
            usb.rx.ready.eq(host.usb_rx.ready),
            usb.tx.payload.eq(host.usb_tx.payload.data), usb.tx.valid.eq(host.usb_tx.valid),
            usb.tx.last.eq(host.usb_tx.payload.last), host.usb_tx.ready.eq(usb.tx.ready),
            self.busy.eq(host.busy), self.done.eq(host.done), self.error.eq(host.error),
        ]
        return m
