"""Frames in and out: COBS decoding with CRC check, CRC and reverse-COBS encoding.

:class:`FrameReceiver` takes received symbols (a byte with its UART framing error and a flag
that bytes were lost before it), undoes COBS and runs CRC-16/XMODEM over everything decoded.
The header's first five bytes (``seq``, ``cmd``, ``address``, ``count``'s low byte) shift into
a register, of the other two only the bits the decoder reads are kept (:func:`frame_layout`),
the payload goes to the payload buffer (``host.max_payload`` bytes, one block RAM) from
offset 0; the CRC's two bytes land past the buffer's end and are not kept. At the delimiter
it aligns a header that arrived short (zeros shift in behind it, no CRC) and then offers a
:func:`frame_layout` description on ``frame``, taking no symbol until that is accepted. An
empty frame (two delimiters) is skipped. Timing: one symbol per cycle; at most seven cycles
of alignment after the delimiter.

:class:`FrameTransmitter` is handed a response as a byte stream (header, payload, then an
``end`` beat without data). It runs the CRC over the bytes, appends the CRC (most significant
byte first) and sends all of it *reverse COBS* encoded: a block's code byte follows its data
bytes (a zero byte is replaced by the code of the bytes since the previous code; after 254
non-zero bytes a code 0xFF is put in; the final code ends the frame), so nothing is looked
ahead and nothing is buffered. Then the delimiter. Timing: a byte offered is passed on in the
same cycle (``byte.valid`` is ``data.valid``); ``busy`` is high from the first byte taken
until the delimiter is taken.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from .protocol import (HEADER, COBS_BLOCK, DELIMITER, CRC_BYTES, COUNT, FLAGS, Flags,
                       RESERVED_FLAGS)


__all__ = ["crc_port", "rx_symbol_layout", "count_bits", "frame_layout", "response_layout",
           "FrameReceiver", "FrameTransmitter", "new_crc"]


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


def count_bits(max_payload):
    """Bits of a request's ``count`` kept whole: every count that fits the payload."""
    return max_payload.bit_length()


def frame_layout(max_payload):
    """A received frame: its header bytes up to ``count``'s low byte (byte ``i`` in
    ``header[i]``; zeros where none arrived), of the others only what the decoder reads:
    ``count_hi`` (``count``'s bits from 8 up to :func:`count_bits`), ``count_big`` (a higher
    bit of ``count`` is set), ``last`` and ``reserved`` (flag LAST, a reserved flag set);
    ``tail`` = the bytes decoded after the header (payload and CRC; negative: the header
    was short; saturates at ``max_payload + 2``), and what went wrong."""
    return data.StructLayout({
        "header": data.ArrayLayout(8, COUNT + 1),
        "count_hi": max(0, count_bits(max_payload) - 8),
        "count_big": 1, "last": 1, "reserved": 1,
        "tail": range(-HEADER, max_payload + CRC_BYTES + 1),
        "lost": 1,                            # receive overrun or longer than the maximum
        "broken": 1,                          # UART framing error, COBS cut short, < 9 bytes
        "crc_ok": 1,
    })


def response_layout():
    """A response byte, or (``end``) the end of the response (``data`` not used)."""
    return data.StructLayout({"data": 8, "end": 1})


def new_crc():
    """A CRC-16/XMODEM processor over bytes."""
    return catalog.CRC16_XMODEM(data_width=8).create()


class FrameReceiver(wiring.Component):
    """COBS decoding into the header register and the payload buffer (see the module
    documentation).

    Attributes
    ----------
    buf_addr, buf_data, buf_en : Out
        The payload buffer's address (``frame.payload.tail``'s low bits: the receiver's
        writes, and the decoder's accesses while a frame is pending) and the receiver's
        write data and enable.
    shift : In(1)
        While ``frame`` is offered: shift the header one byte toward ``header[0]`` (the
        decoder sends it out that way).
    rewind, advance : In(1)
        While ``frame`` is offered, ``tail`` is the decoder's byte pointer (the receiver and
        the decoder never need theirs at once): set it to 0, count it up.
    busy : Out(1)
        A frame has ended and is not yet released (aligning or offered).
    """

    def __init__(self, max_payload):
        self.max_payload = max_payload
        super().__init__({
            "symbol": In(stream.Signature(rx_symbol_layout())),
            "buf_addr": Out(range(max_payload)), "buf_data": Out(8), "buf_en": Out(1),
            "crc": Out(crc_port()),
            "frame": Out(stream.Signature(frame_layout(max_payload))),
            "shift": In(1), "rewind": In(1), "advance": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        crc = self.crc
        sym = self.symbol.payload
        info = self.frame.payload
        started = Signal()
        remaining = Signal(8, init=1)    # bytes left in the block with its code: 1 = a code
        zero_follows = Signal()          # the block stands for its bytes and a zero
        header = Signal(data.ArrayLayout(8, COUNT + 1))
        hi = len(info.count_hi)
        count_hi, count_big, last, reserved = Signal(hi), Signal(), Signal(), Signal()
        tail = Signal(range(-HEADER, self.max_payload + CRC_BYTES + 1), init=-HEADER)
        lost, broken, pending = Signal(), Signal(), Signal()
        short = tail < 0
        m.d.comb += [info.header.eq(header), info.count_hi.eq(count_hi),
                     info.count_big.eq(count_big), info.last.eq(last),
                     info.reserved.eq(reserved), info.tail.eq(tail), info.lost.eq(lost),
                     info.broken.eq(broken), info.crc_ok.eq(crc.match),
                     self.frame.valid.eq(pending & ~short), self.busy.eq(pending),
                     self.symbol.ready.eq(~pending)]

        take = self.symbol.valid & self.symbol.ready
        emit = Signal()
        byte = Signal(8)
        with m.If(take):
            with m.If(sym.lost):
                m.d.sync += lost.eq(1)
            with m.If(sym.ferr):
                m.d.sync += [broken.eq(1), started.eq(1)]
            with m.Elif(sym.data == DELIMITER):
                with m.If(started):
                    m.d.sync += pending.eq(1)
                    with m.If((remaining != 1) | (tail < CRC_BYTES)):
                        m.d.sync += broken.eq(1)
                with m.Else():                       # nothing of a frame arrived: no frame
                    m.d.sync += lost.eq(0)
            with m.Else():
                m.d.sync += started.eq(1)
                with m.If(remaining == 1):           # a code byte
                    m.d.comb += [emit.eq(zero_follows), byte.eq(0)]
                    m.d.sync += [remaining.eq(sym.data),
                                 zero_follows.eq(sym.data != COBS_BLOCK + 1)]
                with m.Else():
                    m.d.comb += [emit.eq(1), byte.eq(sym.data)]
                    m.d.sync += remaining.eq(remaining - 1)

        full = tail == self.max_payload + CRC_BYTES
        m.d.comb += [crc.valid.eq(emit), crc.data.eq(byte),
                     self.buf_addr.eq(tail), self.buf_data.eq(byte),
                     self.buf_en.eq(emit & (tail >= 0) & (tail < self.max_payload))]
        with m.If(emit & full):
            m.d.sync += lost.eq(1)
        # header byte j arrives at tail = j - HEADER. Bytes 0 .. COUNT shift in at the top
        # (byte i ends in [i]); so do the zeros that align a short header, and the decoder's
        # shifts while it sends the header out. Of the last two only their bits are kept.
        step = (emit & short) | (pending & short)
        with m.If((step & (tail < COUNT + 1 - HEADER)) | self.shift):
            m.d.sync += header.as_value().eq(Cat(header.as_value()[8:], byte))
        with m.If(step & (tail == COUNT + 1 - HEADER)):
            m.d.sync += [count_hi.eq(byte[:hi]), count_big.eq(byte[hi:].any())]
        with m.If(step & (tail == FLAGS - HEADER)):
            m.d.sync += [last.eq((byte & Flags.LAST).any()),
                         reserved.eq((byte & RESERVED_FLAGS).any())]
        with m.If((emit & ~full) | (pending & short) | (self.frame.valid & self.advance)):
            m.d.sync += tail.eq(tail + 1)
        with m.If(self.frame.valid & self.rewind):
            m.d.sync += tail.eq(0)
        # the release clears last, so it has priority (it never meets a taken symbol, which
        # needs ~pending): a synchronous reset of the flip-flops, not logic in front of them
        with m.If(self.frame.valid & self.frame.ready):
            m.d.sync += [pending.eq(0), started.eq(0), remaining.eq(1), zero_follows.eq(0),
                         tail.eq(-HEADER), lost.eq(0), broken.eq(0)]
            m.d.comb += crc.start.eq(1)
        return m


class FrameTransmitter(wiring.Component):
    """CRC and reverse-COBS encoding of a response stream (see the module documentation).

    Attributes
    ----------
    data : In(stream.Signature(response_layout()))
        The response: its bytes, then one beat with ``end``; ``data.payload.data`` must be 0
        in the end beat and while nothing is offered (it feeds the CRC processor's data
        ungated, which the receiver uses meanwhile).
    byte : Out(stream.Signature(8))
        The encoded bytes, delimiter last.
    busy : Out(1)
    """

    def __init__(self):
        super().__init__({
            "data": In(stream.Signature(response_layout())),
            "crc": Out(crc_port()),
            "byte": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        crc, src, out = self.crc, self.data, self.byte
        # one more than the non-zero bytes since the last code: the code that ends them here
        run = Signal(range(COBS_BLOCK + 2), init=1)
        run_full = run == COBS_BLOCK + 1
        busy = Signal()
        in_crc = Signal()                          # the CRC's bytes go out
        b = Signal(8)                              # the byte to encode
        offered = Signal()
        taken = Signal()
        # ``data`` is 0 unless a byte is offered (the end beat and an idle source included),
        # so it drives the CRC's data without a gate, and the final code encodes it as a zero
        m.d.comb += [b.eq(Mux(in_crc, crc.crc[8:], src.payload.data)), crc.data.eq(b),
                     out.payload.eq(Mux(run_full | (b == 0), run, b)),
                     out.valid.eq(offered), taken.eq(offered & out.ready & ~run_full)]
        with m.If(offered & out.ready):
            m.d.sync += run.eq(Mux(run_full | (b == 0), 1, run + 1))

        with m.FSM():
            with m.State("BODY"):
                # the first byte of a response restarts the CRC (the receiver's is done)
                # ``ready`` from registers only (not from ``valid``): a short path into the
                # decoder's counters
                m.d.comb += [offered.eq(src.valid & ~src.payload.end),
                             src.ready.eq(out.ready & ~run_full), crc.start.eq(taken & ~busy),
                             crc.valid.eq(taken)]
                with m.If(taken):
                    m.d.sync += busy.eq(1)
                with m.If(src.valid & src.ready & src.payload.end):
                    m.next = "CRC_HI"
            # each CRC byte also enters the CRC: after the high byte the register's high byte
            # is the old low byte (the table entry of a zero index is 0), so both CRC bytes
            # are read from crc[8:]
            with m.State("CRC_HI"):
                m.d.comb += [in_crc.eq(1), offered.eq(1), crc.valid.eq(taken)]
                with m.If(taken):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [in_crc.eq(1), offered.eq(1)]
                with m.If(taken):
                    m.next = "CODE"
            with m.State("CODE"):                  # the final code: as if a zero followed
                m.d.comb += offered.eq(1)
                with m.If(taken):
                    m.next = "DELIMIT"
            with m.State("DELIMIT"):
                m.d.comb += [out.valid.eq(1), out.payload.eq(DELIMITER)]
                with m.If(out.ready):
                    m.d.sync += busy.eq(0)
                    m.next = "BODY"
        m.d.comb += self.busy.eq(busy)
        return m
