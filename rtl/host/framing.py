"""Frames in and out of the frame buffer: COBS decoding with CRC check, CRC and COBS encoding.

Both sides share one byte-wide frame buffer (``host.max_payload + 9`` bytes) with the command
decoder through :func:`buffer_port` interfaces; only one of the three uses it at a time, and an
idle user drives its port to 0 (the link ORs them).

:class:`FrameReceiver` takes received symbols (a byte with its UART framing error and a flag
that bytes were lost before it), undoes COBS, stores the decoded bytes from offset 0, shifts
the first seven (the header) into a register and runs CRC-16/XMODEM over everything decoded.
At the delimiter it offers a :func:`frame_layout` description on ``frame`` and takes no symbol
until that is accepted (the decoder accepts it once the response has gone out). An empty frame (two
delimiters) is skipped. Timing: one symbol per cycle.

:class:`FrameTransmitter` is handed the length of a response in the buffer (header and
payload), appends its CRC (one pass over the buffer), then sends it COBS-encoded: per block it
scans ahead for the next zero (at most 254 bytes, one byte per cycle), sends the code byte and
the block's bytes, and ends with the delimiter. ``busy`` stays high until the delimiter is
taken.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from .protocol import HEADER, COBS_BLOCK, DELIMITER, CRC_BYTES


__all__ = ["buffer_port", "crc_port", "rx_symbol_layout", "frame_layout", "FrameReceiver",
           "FrameTransmitter", "new_crc"]


def buffer_port(depth):
    """One user's access to the frame buffer: a synchronous read (``r_data`` is the byte at
    the ``r_addr`` of the previous cycle) and a write."""
    return wiring.Signature({
        "r_addr": Out(range(depth)), "r_data": In(8),
        "w_addr": Out(range(depth)), "w_data": Out(8), "w_en": Out(1),
    })


def crc_port():
    """One user's access to the shared CRC-16/XMODEM processor (:func:`new_crc`; the
    receiver and the transmitter use it in turn, an idle user drives 0): ``start``,
    ``valid``, ``data`` as the processor's; ``crc`` and ``match`` (``match_detected``)."""
    return wiring.Signature({
        "start": Out(1), "valid": Out(1), "data": Out(8),
        "crc": In(16), "match": In(1),
    })


def rx_symbol_layout():
    """A received byte, ``ferr`` (its stop bit was low) and ``lost`` (bytes were dropped
    before it)."""
    return data.StructLayout({"data": 8, "ferr": 1, "lost": 1})


def frame_layout(capacity):
    """A received frame: its first :data:`HEADER` bytes (in place when at least that many
    arrived; a shorter frame is broken and its header is not used), the number of bytes
    decoded, and what went wrong."""
    return data.StructLayout({
        "header": data.ArrayLayout(8, HEADER),
        "length": range(capacity + 2),        # saturates at capacity + 1
        "lost": 1,                            # receive overrun or longer than capacity
        "broken": 1,                          # UART framing error or COBS block cut short
        "crc_ok": 1,
    })


def new_crc():
    """A CRC-16/XMODEM processor over bytes."""
    return catalog.CRC16_XMODEM(data_width=8).create()


class FrameReceiver(wiring.Component):
    """COBS decoding into the frame buffer (see the module documentation)."""

    def __init__(self, capacity):
        self.capacity = capacity
        super().__init__({
            "symbol": In(stream.Signature(rx_symbol_layout())),
            "buf": Out(buffer_port(capacity)),
            "crc": Out(crc_port()),
            "frame": Out(stream.Signature(frame_layout(capacity))),
        })

    def elaborate(self, platform):
        m = Module()
        crc = self.crc
        sym = self.symbol.payload
        info = self.frame.payload
        started = Signal()
        remaining = Signal(8)            # data bytes left in the block
        zero_follows = Signal()          # the block stands for its bytes and a zero
        header = Signal(data.ArrayLayout(8, HEADER))
        length = Signal.like(info.length)
        lost = Signal()
        broken = Signal()
        pending = Signal()
        m.d.comb += [info.header.eq(header), info.length.eq(length), info.lost.eq(lost),
                     info.broken.eq(broken), info.crc_ok.eq(crc.match),
                     self.frame.valid.eq(pending), self.symbol.ready.eq(~pending)]

        take = self.symbol.valid & self.symbol.ready
        emit = Signal()
        byte = Signal(8)
        with m.If(take):
            with m.If(sym.lost):
                m.d.sync += [lost.eq(1), started.eq(1)]
            with m.If(sym.ferr):
                m.d.sync += [broken.eq(1), started.eq(1)]
            with m.Elif(sym.data == DELIMITER):
                with m.If(started | sym.lost):
                    m.d.sync += pending.eq(1)
                    with m.If(remaining != 0):
                        m.d.sync += broken.eq(1)
            with m.Else():
                m.d.sync += started.eq(1)
                with m.If(remaining == 0):           # a code byte
                    m.d.comb += [emit.eq(zero_follows), byte.eq(0)]
                    m.d.sync += [remaining.eq(sym.data - 1),
                                 zero_follows.eq(sym.data != COBS_BLOCK + 1)]
                with m.Else():
                    m.d.comb += [emit.eq(1), byte.eq(sym.data)]
                    m.d.sync += remaining.eq(remaining - 1)

        m.d.comb += [crc.valid.eq(emit), crc.data.eq(byte)]
        with m.If(emit):
            with m.If(length < self.capacity):
                m.d.comb += [self.buf.w_en.eq(1), self.buf.w_addr.eq(length),
                             self.buf.w_data.eq(byte)]
            with m.Else():
                m.d.sync += lost.eq(1)
            with m.If(length <= self.capacity):
                m.d.sync += length.eq(length + 1)
            with m.If(length < HEADER):             # shifts in at the top: byte i ends in [i]
                m.d.sync += header.as_value().eq(Cat(header.as_value()[8:], byte))
        # the release clears last, so it has priority (it never meets a taken symbol, which
        # needs ~pending): a synchronous reset of the flip-flops, not logic in front of them
        with m.If(self.frame.valid & self.frame.ready):
            m.d.sync += [pending.eq(0), started.eq(0), remaining.eq(0), zero_follows.eq(0),
                         length.eq(0), lost.eq(0), broken.eq(0)]
            m.d.comb += crc.start.eq(1)
        return m


class FrameTransmitter(wiring.Component):
    """CRC and COBS encoding out of the frame buffer (see the module documentation).

    Attributes
    ----------
    send : In(stream.Signature(range(capacity - 1)))
        The response's length without CRC; taken when idle.
    byte : Out(stream.Signature(8))
        The encoded bytes, delimiter last.
    busy : Out(1)
    """

    def __init__(self, capacity):
        self.capacity = capacity
        super().__init__({
            "send": In(stream.Signature(range(capacity - CRC_BYTES + 1))),
            "buf": Out(buffer_port(capacity)),
            "crc": Out(crc_port()),
            "byte": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        crc = self.crc
        buf, out = self.buf, self.byte
        body = Signal(range(self.capacity + 1))    # bytes of the response before its CRC
        end = Signal(range(self.capacity + 1))     # bytes to send: response and CRC
        pos = Signal(range(self.capacity + 1))     # first byte of the block
        j = Signal(range(self.capacity + 1))       # scan / send position
        run = Signal(range(COBS_BLOCK + 1))        # bytes in the block
        left = Signal(range(COBS_BLOCK + 1))       # of them still to send
        primed = Signal()
        done = Signal()                            # the block is the last one
        fire = out.valid & out.ready
        # Every compare is between registers (no adder in front of it): the critical paths
        # of the link ran through ``end - 2`` and ``pos + run`` into the buffer's address.

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.send.ready.eq(1)
                with m.If(self.send.valid):
                    m.d.sync += [body.eq(self.send.payload),
                                 end.eq(self.send.payload + CRC_BYTES), j.eq(0), primed.eq(0)]
                    m.d.comb += crc.start.eq(1)
                    m.next = "CRC"
            with m.State("CRC"):                   # CRC over bytes 0 .. body-1
                m.d.comb += [buf.r_addr.eq(j), crc.valid.eq(primed), crc.data.eq(buf.r_data)]
                m.d.sync += [j.eq(j + 1), primed.eq(1)]
                with m.If(j == body):
                    m.next = "CRC_HI"
            with m.State("CRC_HI"):                # j = body + 1
                m.d.comb += [buf.w_addr.eq(body), buf.w_data.eq(crc.crc[8:]), buf.w_en.eq(1)]
                m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [buf.w_addr.eq(j), buf.w_data.eq(crc.crc[:8]),
                             buf.w_en.eq(1), buf.r_addr.eq(0)]
                m.d.sync += [pos.eq(0), j.eq(0), run.eq(0)]
                m.next = "SCAN"
            with m.State("SCAN"):                  # r_data: byte j (unless j == end)
                stop_end = j == end
                stop = stop_end | (buf.r_data == 0) | (run == COBS_BLOCK)
                m.d.comb += buf.r_addr.eq(j + 1)
                with m.If(stop):                   # CODE reads byte pos for DATA
                    m.d.sync += [done.eq(stop_end), j.eq(pos), left.eq(run)]
                    m.next = "CODE"
                with m.Else():
                    m.d.sync += [j.eq(j + 1), run.eq(run + 1)]
            with m.State("CODE"):                  # reads byte pos (r_data not used)
                m.d.comb += [out.valid.eq(1), out.payload.eq(run + 1), buf.r_addr.eq(pos)]
                with m.If(out.ready):
                    m.next = "DATA"
            with m.State("DATA"):                  # r_data: byte j
                with m.If(left == 0):
                    # next block: after the zero, or right after a full block
                    nxt = Signal.like(pos)
                    m.d.comb += nxt.eq(Mux(run == COBS_BLOCK, j, j + 1))
                    m.d.comb += buf.r_addr.eq(nxt)
                    m.d.sync += [pos.eq(nxt), j.eq(nxt), run.eq(0)]
                    with m.If(done):
                        m.next = "DELIMIT"
                    with m.Else():
                        m.next = "SCAN"
                with m.Else():
                    m.d.comb += [out.valid.eq(1), out.payload.eq(buf.r_data),
                                 buf.r_addr.eq(Mux(fire, j + 1, j))]
                    with m.If(fire):
                        m.d.sync += [j.eq(j + 1), left.eq(left - 1)]
            with m.State("DELIMIT"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(DELIMITER)]
                with m.If(out.ready):
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~self.send.ready)
        return m
