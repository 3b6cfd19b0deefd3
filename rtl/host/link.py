"""The host link: UART in, frames, commands on the SoC bus, responses, UART out.

::

    rx --> UartRx --> RxFifo --symbol--> FrameReceiver --frame--> CommandDecoder --bus-->
                                          |  header  |  payload buffer  |    | response
    tx <-- UartTx <--byte-- FrameTransmitter <-------------------------------+

:class:`HostCore` is everything between the byte streams (the fast fuzzing tests drive it
directly); :class:`HostLink` adds the UART and the receive FIFO. The payload buffer is one
``Memory`` of ``host.max_payload`` bytes (one block RAM at the default 512) with one read and
one write port: the receiver writes a request's payload into it, the decoder reads a WRITE's
elements from it and writes a READ's into it, and streams a response's payload out of it.
The header lives in the receiver's shift register; the receiver and the transmitter share
one CRC processor (each drives its port to 0 when idle).
"""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..csr.bus import BusSignature
from ..csr.map import SocMap
from .decoder import CommandDecoder
from .framing import FrameReceiver, FrameTransmitter, rx_symbol_layout, new_crc
from .params import HostParams
from .uart import UartRx, UartTx, rx_byte_layout


__all__ = ["HostCore", "HostLink", "RxFifo", "from_config"]


class HostCore(wiring.Component):
    """Received symbols in, response bytes out, the SoC bus as initiator.

    Attributes
    ----------
    symbol : In(stream.Signature(rx_symbol_layout()))
        Received bytes (with framing-error and lost flags), one per cycle at most.
    byte : Out(stream.Signature(8))
        Response bytes (reverse COBS, delimiter last).
    bus : Out(BusSignature(soc_map.addr_width))
    idle : Out(1)
        No frame is being executed or answered (the receiver may be mid-frame).
    """

    def __init__(self, params: HostParams, soc_map):
        self.params, self.map = params, soc_map
        super().__init__({
            "symbol": In(stream.Signature(rx_symbol_layout())),
            "byte": Out(stream.Signature(8)),
            "bus": Out(BusSignature(soc_map.addr_width)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # ``_norw``: a read and a write of one address in one cycle happen only where the
        # read data is not used (the receiver writes while the decoder idles at address 0;
        # a READ's byte is written where the decoder reads), so no collision logic
        m.submodules.buffer_norw = buffer = Memory(shape=8, depth=self.params.max_payload,
                                                   init=[])
        wr = buffer.write_port()
        rd = buffer.read_port()
        m.submodules.receiver = rx = FrameReceiver(self.params.max_payload)
        m.submodules.decoder = dec = CommandDecoder(self.params, self.map)
        m.submodules.transmitter = tx = FrameTransmitter()
        wiring.connect(m, wiring.flipped(self.symbol), rx.symbol)
        wiring.connect(m, rx.frame, dec.frame)
        wiring.connect(m, dec.response, tx.data)
        wiring.connect(m, tx.byte, wiring.flipped(self.byte))
        wiring.connect(m, dec.bus, wiring.flipped(self.bus))
        m.d.comb += [dec.tx_busy.eq(tx.busy), rx.shift.eq(dec.shift),
                     rx.rewind.eq(dec.buf.rewind), rx.advance.eq(dec.buf.advance)]
        # the receiver writes while no frame is pending, the decoder only while one is; both
        # at the receiver's ``tail`` (the decoder's pointer while a frame is pending)
        m.d.comb += [rd.addr.eq(rx.buf_addr), dec.buf.r_data.eq(rd.data),
                     wr.addr.eq(rx.buf_addr),
                     wr.data.eq(Mux(rx.busy, dec.buf.w_data, rx.buf_data)),
                     wr.en.eq(rx.buf_en | dec.buf.w_en)]
        m.submodules.crc = crc = new_crc()
        users = (rx.crc, tx.crc)
        for port in users:
            m.d.comb += [port.crc.eq(crc.crc), port.match.eq(crc.match_detected)]
        for name, target in (("start", crc.start), ("valid", crc.valid), ("data", crc.data)):
            m.d.comb += target.eq(getattr(rx.crc, name) | getattr(tx.crc, name))
        m.d.comb += self.idle.eq(~rx.busy)
        return m


class RxFifo(wiring.Component):
    """Received bytes wait here while the core is busy: ``depth`` symbols in block RAM and one
    in the output register. A byte that finds the FIFO full is dropped and the next byte that
    enters carries ``lost``.

    Timing: a byte written into an empty FIFO is offered on ``symbol`` two cycles later (the
    memory's synchronous read, then the output register); ``symbol`` then offers one symbol
    per cycle while the FIFO holds them. The two pointers carry one bit more than the
    memory's address, so ``wp == rp`` is empty and ``wp - rp == depth`` is full without a
    level counter."""

    def __init__(self, depth):
        self.depth = depth
        super().__init__({
            "byte": In(stream.Signature(rx_byte_layout())),
            "symbol": Out(stream.Signature(rx_symbol_layout())),
        })

    def elaborate(self, platform):
        m = Module()
        bits = (self.depth - 1).bit_length()
        # ``_norw``: the read address is never the one being written (a read needs
        # wp != rp, a write needs the FIFO not full)
        m.submodules.symbols_norw = mem = Memory(shape=rx_symbol_layout(), depth=self.depth,
                                                 init=[])
        wr, rd = mem.write_port(), mem.read_port()
        wp, rp = Signal(bits + 1), Signal(bits + 1)
        lost = Signal()
        full = (wp[:bits] == rp[:bits]) & (wp[bits] != rp[bits])
        load = (wp != rp) & (~self.symbol.valid | self.symbol.ready)
        m.d.comb += [wr.addr.eq(wp[:bits]), wr.data.eq(Cat(self.byte.payload, lost)),
                     wr.en.eq(self.byte.valid & ~full), self.byte.ready.eq(1),
                     rd.addr.eq(rp[:bits]), rd.en.eq(load), self.symbol.payload.eq(rd.data)]
        with m.If(self.byte.valid):
            m.d.sync += lost.eq(full)
            with m.If(~full):
                m.d.sync += wp.eq(wp + 1)
        with m.If(load):
            m.d.sync += [rp.eq(rp + 1), self.symbol.valid.eq(1)]
        with m.Elif(self.symbol.ready):
            m.d.sync += self.symbol.valid.eq(0)
        return m


class HostLink(wiring.Component):
    """The host link with its UART pins (see the module documentation): UART receiver, the
    receive FIFO (``host.rx_fifo`` bytes; none at 0), :class:`HostCore`, UART transmitter.

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        UART 8N1 at ``host.baud`` (``host.clock_hz`` is this domain's clock).
    bus : Out(BusSignature(soc_map.addr_width))
        The SoC bus, as initiator.
    """

    def __init__(self, params: HostParams, soc_map):
        self.params, self.map = params, soc_map
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(BusSignature(soc_map.addr_width)),
        })

    def elaborate(self, platform):
        m = Module()
        bits = self.params.bit_cycles
        m.submodules.uart_rx = uart_rx = UartRx(bits)
        m.submodules.uart_tx = uart_tx = UartTx(bits)
        m.submodules.core = core = HostCore(self.params, self.map)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        if self.params.rx_fifo:
            m.submodules.fifo = fifo = RxFifo(self.params.rx_fifo)
            wiring.connect(m, uart_rx.byte, fifo.byte)
            wiring.connect(m, fifo.symbol, core.symbol)
        else:
            # no FIFO: a byte the core does not take at once is dropped, and the next byte
            # it takes carries ``lost``
            lost = Signal()
            byte = uart_rx.byte
            m.d.comb += [core.symbol.valid.eq(byte.valid),
                         core.symbol.payload.eq(Cat(byte.payload, lost))]
            with m.If(byte.valid):
                m.d.sync += lost.eq(~core.symbol.ready)
        wiring.connect(m, core.byte, uart_tx.byte)
        wiring.connect(m, core.bus, wiring.flipped(self.bus))
        return m


def from_config(config):
    """The host link of a :class:`~fieldtune.config.DesignConfig` onto its SoC's map
    (``fieldtune generate host-link``, ``fieldtune bench hierarchy --block host-link``)."""
    return HostLink(config.host, SocMap(config))
