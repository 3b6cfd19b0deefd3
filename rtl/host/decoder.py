"""The command decoder: a received frame in, bus accesses, a response in the frame buffer out.

It acts on a frame only after the whole frame is in the buffer and its CRC matched, and checks
everything (command, address, length, bounds, a run in progress) before the first bus access,
so a refused request never touches the bus; the checks and their order are those of
:meth:`fieldtune.sim.golden.host.HostLinkModel.symbol` (docs/protocol.md). Then it:

* READ / STATUS: reads the words (registers upward, a window's stream at one address) and
  writes each word's low ``element_bytes`` bytes after the header, little-endian;
* WRITE: assembles each element from the payload and writes it;
* START: reads ``status`` and writes ``control.start`` unless ``busy``; ABORT writes
  ``control.abort``; ECHO leaves the payload where it is; INFO writes four constant bytes;

and finally writes the response's ``count`` and ``status`` over the request's (``seq``,
``cmd`` and ``address`` stay where the receiver put them; header bytes that never arrived are
written 0), hands the length to the transmitter, and releases the frame once the response has
gone out. Each bus access waits at most ``host.bus_timeout`` cycles (BUS_TIMEOUT, ``cyc``
dropped).

One 32-bit shift register carries every word, shifting a byte at a time toward bit 0: a READ
loads the bus word and shifts its bytes out to the buffer, a WRITE shifts the element's bytes
in at the top and then zeros until the first byte sits in bits 0-7. One buffer pointer serves
both: the payload read (WRITE) and the response written (READ) both start after the header.
One counter ``i`` counts the elements moved and becomes the response's ``count``.

Timing: a WRITE element takes 5 cycles plus its bus access, a READ element its bus access plus
``element_bytes`` cycles; the verdict takes 1 cycle after ``frame.valid``, the response header
7 cycles.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from ..csr.bus import BusSignature, DATA_WIDTH
from .framing import buffer_port, frame_layout
from .params import HostParams
from .protocol import (Command, Status, Flags, HEADER, OVERHEAD, CRC_BYTES, REPLAYED_COMMANDS,
                       RESERVED_FLAGS, REGISTER_BYTES, PROTOCOL_VERSION, INFO_BYTES, SEQ, CMD,
                       ADDRESS, COUNT, FLAGS, STATUS)


__all__ = ["CommandDecoder"]


#: Bytes shifted through the word register per element (one bus word).
WORD_BYTES = DATA_WIDTH // 8


class CommandDecoder(wiring.Component):
    """Executes received frames as the SoC bus's initiator (see the module documentation).

    Parameters
    ----------
    params : HostParams
    soc_map : SocMap
        Registers and windows; ``status`` and ``errors`` must be adjacent (STATUS reads both).
    """

    def __init__(self, params: HostParams, soc_map):
        self.params, self.map = params, soc_map
        self.capacity = params.frame_bytes
        if soc_map.address("errors") != soc_map.address("status") + 1:
            raise ValueError("the host link's STATUS needs the errors register right after "
                             "status")
        last_bits = {w.last_bit for w in soc_map.windows.values() if w.last_bit is not None}
        if len(last_bits) > 1:
            raise ValueError("the host link supports one position of the last bit")
        self.last_mask = 1 << last_bits.pop() if last_bits else 0
        super().__init__({
            "frame": In(stream.Signature(frame_layout(self.capacity))),
            "buf": Out(buffer_port(self.capacity)),
            "send": Out(stream.Signature(range(self.capacity - 1))),
            "tx_busy": In(1),
            "bus": Out(BusSignature(soc_map.addr_width)),
        })

    def _region(self, m, address):
        """``(known, is_reg, eb, last_window)`` of a 16-bit address: in a register or a
        window, which, its element bytes, whether the window has a ``last`` bit."""
        aw = self.map.addr_width
        near = address[aw:] == 0
        low = address[:aw]
        nregs = len(self.map.registers)
        known, is_reg, last_window = Signal(), Signal(), Signal()
        eb = Signal(range(REGISTER_BYTES + 1))
        m.d.comb += is_reg.eq(near & (low < nregs))
        with m.If(is_reg):
            m.d.comb += [known.eq(1), eb.eq(REGISTER_BYTES)]
        for w in self.map.windows.values():
            with m.Elif(near & ((low >> w.addr_width) == (w.address >> w.addr_width))):
                m.d.comb += [known.eq(1), eb.eq(w.element_bytes),
                             last_window.eq(w.last_bit is not None)]
        return known, is_reg, eb, last_window

    def _checks(self, m, info, capture, duplicate):
        """The frame's checks (docs/protocol.md) and the command decoded one-hot, registered
        while ``capture`` (the decoder is idle; the frame is stable from ``frame.valid`` until
        it is released, and the CRC processor, shared with the transmitter, still holds the
        frame's), so the verdict only reads flip-flops: a few LUT levels of single bits.
        Returns the check bits (``step``: the bus address moves per element, registers and
        STATUS) and ``eb``, the element bytes (4 for STATUS and INFO)."""
        h = info.header
        cmd, flags = h[CMD], h[FLAGS]
        address, count = Cat(h[ADDRESS], h[ADDRESS + 1]), Cat(h[COUNT], h[COUNT + 1])
        c = {name: Signal(name=f"chk_{name}") for name in (
            "lost", "broken", "bad_crc", "known_cmd", "bad_flags", "known", "is_reg", "step",
            "bad_length", "crosses", "payload", "last", "replay", "duplicate",
            *(f"is_{c.name.lower()}" for c in Command))}
        eb = Signal(range(REGISTER_BYTES + 1), name="chk_eb")
        known, is_reg, reg_eb, last_window = self._region(m, address)
        # elements fit the payload, and a WRITE's payload holds exactly them
        sizes = sorted({REGISTER_BYTES, *(w.element_bytes for w in self.map.windows.values())})
        fits, count_bytes = Signal(), Signal(range(self.params.max_payload + 1))
        with m.Switch(reg_eb):
            for n in sizes:
                with m.Case(n):
                    m.d.comb += [fits.eq(count <= self.params.max_payload // n),
                                 count_bytes.eq(count * n)]
        payload_len = info.length - OVERHEAD
        want = Mux(cmd == Command.WRITE, count_bytes, 0)
        # registers only: the burst's end, with count already known to fit (<= max/4)
        nregs = len(self.map.registers)
        reg_count = count[:(self.params.max_payload // REGISTER_BYTES).bit_length()]
        wide = cmd == Command.STATUS
        with m.If(capture):
            m.d.sync += [
                c["lost"].eq(info.lost),
                c["broken"].eq(info.broken | (info.length < OVERHEAD)),
                c["bad_crc"].eq(~info.crc_ok),
                c["known_cmd"].eq(Cat(cmd == code for code in Command).any()),
                c["bad_flags"].eq((flags & RESERVED_FLAGS).any()),
                c["known"].eq(known), c["is_reg"].eq(is_reg), c["step"].eq(is_reg | wide),
                eb.eq(Mux(wide | (cmd == Command.INFO), REGISTER_BYTES, reg_eb)),
                c["bad_length"].eq((count == 0) | ~fits | (payload_len != want)),
                c["crosses"].eq(address[:self.map.bank_width] + reg_count > nregs),
                c["payload"].eq(info.length != OVERHEAD),
                c["last"].eq(last_window & (flags & Flags.LAST).any() & (cmd == Command.WRITE)),
                c["duplicate"].eq(duplicate),
                c["replay"].eq(duplicate & Cat(cmd == code for code in REPLAYED_COMMANDS).any()),
                *(c[f"is_{code.name.lower()}"].eq(cmd == code) for code in Command),
            ]
        return c, eb

    def elaborate(self, platform):
        m = Module()
        info, buf, bus = self.frame.payload, self.buf, self.bus
        h = info.header
        seq, cmd = h[SEQ], h[CMD]
        capture = Signal()
        elems = range(self.params.max_payload + 1)       # every count fits the payload
        last_seq, last_cmd = Signal(8), Signal(8)         # the previous good frame
        last_status, last_count, last_valid = Signal(4), Signal(elems), Signal()
        duplicate = last_valid & (last_seq == seq) & (last_cmd == cmd)
        chk, eb = self._checks(m, info, capture, duplicate)
        status_addr, control_addr = self.map.address("status"), self.map.address("control")
        busy_lsb = self.map.field("status", "busy")[0]

        # what the frame's execution has reached
        status = Signal(4)
        i = Signal(elems)                              # elements moved: the response's count
        ptr = Signal(range(self.capacity + 1))         # payload read / response written
        cur = Signal(self.map.addr_width)              # bus address
        writing = Signal()
        k = Signal(range(HEADER))                      # byte of the element / of the header
        word = Signal(DATA_WIDTH)
        waited = Signal(range(self.params.bus_timeout + 1))
        n = Mux(chk["is_status"], 2, Cat(h[COUNT], h[COUNT + 1])[:len(i)])
        final = i + 1 == n                             # the element in hand is the last
        shift_in = Signal(8)                           # the byte that enters word's top
        m.d.comb += [bus.adr.eq(cur), bus.we.eq(writing),
                     bus.dat_w.eq(word | Mux(chk["last"] & final, self.last_mask, 0))]

        def respond(code, elements=None):
            m.d.sync += [status.eq(code), k.eq(0)]
            if elements is not None:
                m.d.sync += i.eq(elements)
            m.next = "RESPOND"

        def access(on_ack):
            """One bus access at ``cur``; ``on_ack(dat_r)`` runs when it is acknowledged."""
            m.d.comb += bus.cyc.eq(1)
            with m.If(bus.ack):
                on_ack(bus.dat_r)
            with m.Elif(bus.err):
                respond(Status.BUS_ERROR)
            with m.Elif(waited == self.params.bus_timeout - 1):
                respond(Status.BUS_TIMEOUT)

        def shift():
            m.d.sync += [word.eq(Cat(word[8:], shift_in)), k.eq(k + 1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += capture.eq(1)
                m.d.sync += [ptr.eq(HEADER), i.eq(0), k.eq(0), writing.eq(0)]
                with m.If(self.frame.valid):                # the checks register meanwhile
                    m.next = "CHECK"
            with m.State("CHECK"):
                self._verdict(m, chk, respond, last_status, last_count)
            # set-ups of the accepted commands (one cycle each, off the verdict's path)
            with m.State("ECHO"):
                m.d.sync += ptr.eq(info.length - CRC_BYTES)
                respond(Status.OK, info.length - OVERHEAD)
            with m.State("MOVE"):
                address = Cat(h[ADDRESS], h[ADDRESS + 1])
                m.d.sync += [cur.eq(address), writing.eq(chk["is_write"])]
                with m.If(chk["is_write"]):
                    m.next = "LOAD"
                with m.Else():
                    m.next = "MOVE_BUS"
            with m.State("STATUS"):
                m.d.sync += cur.eq(status_addr)
                m.next = "MOVE_BUS"
            with m.State("INFO"):
                m.d.sync += word.eq(PROTOCOL_VERSION | self.params.max_payload << 16)
                m.next = "STORE"
            with m.State("START"):
                m.d.sync += cur.eq(status_addr)
                m.next = "START_BUS"
            with m.State("ABORT"):
                m.d.sync += [cur.eq(control_addr), writing.eq(1),
                             word.eq(self.map.pack("control", abort=1))]
                m.next = "CONTROL_BUS"

            with m.State("LOAD"):       # k = 0..3: read byte k (k < eb); k = 1..4: shift it in
                m.d.comb += [buf.r_addr.eq(ptr), shift_in.eq(Mux(k <= eb, buf.r_data, 0))]
                with m.If(k < eb):
                    m.d.sync += ptr.eq(ptr + 1)
                with m.If(k != 0):
                    shift()
                with m.Else():
                    m.d.sync += k.eq(1)
                with m.If(k == WORD_BYTES):
                    m.next = "MOVE_BUS"
            with m.State("MOVE_BUS"):
                def moved(dat_r):
                    m.d.sync += [cur.eq(cur + chk["step"]), k.eq(0)]
                    with m.If(writing):
                        m.d.sync += i.eq(i + 1)
                        with m.If(final):
                            respond(Status.OK)
                        with m.Else():
                            m.next = "LOAD"
                    with m.Else():
                        m.d.sync += word.eq(dat_r)
                        m.next = "STORE"
                access(moved)
            with m.State("STORE"):                      # a read word's bytes to the response
                m.d.comb += [buf.w_addr.eq(ptr), buf.w_data.eq(word[:8]), buf.w_en.eq(1)]
                m.d.sync += ptr.eq(ptr + 1)
                shift()
                with m.If(k == eb - 1):
                    m.d.sync += i.eq(i + 1)
                    with m.If(chk["is_info"]):
                        respond(Status.OK, INFO_BYTES)
                    with m.Elif(final):
                        respond(Status.OK)
                    with m.Else():
                        m.next = "MOVE_BUS"
            with m.State("START_BUS"):
                def started(dat_r):
                    with m.If(dat_r[busy_lsb]):
                        respond(Status.BUSY)
                    with m.Else():
                        m.d.sync += [cur.eq(control_addr), writing.eq(1),
                                     word.eq(self.map.pack("control", start=1))]
                        m.next = "CONTROL_BUS"
                access(started)
            with m.State("CONTROL_BUS"):
                access(lambda dat_r: respond(Status.OK))

            with m.State("RESPOND"):
                self._header(m, k, i, status, info.length, writing, ptr)
            with m.State("SEND"):
                m.d.comb += [self.send.valid.eq(1), self.send.payload.eq(ptr)]
                with m.If(self.send.ready):
                    m.next = "SENDING"
            with m.State("SENDING"):
                with m.If(~self.tx_busy):
                    m.d.comb += self.frame.ready.eq(1)
                    with m.If(~chk["lost"] & ~chk["broken"] & ~chk["bad_crc"]):
                        m.d.sync += [last_seq.eq(seq), last_cmd.eq(cmd), last_status.eq(status),
                                     last_count.eq(i), last_valid.eq(1)]
                    m.next = "IDLE"
        # cycles of the bus access in progress (a counter with a synchronous reset)
        with m.If(bus.cyc & ~bus.ack & ~bus.err):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        return m

    @staticmethod
    def _verdict(m, chk, respond, last_status, last_count):
        """The CHECK state: the first failing check answers, or the command's set-up state."""
        with m.If(chk["lost"]):
            respond(Status.OVERFLOW)
        with m.Elif(chk["broken"]):
            respond(Status.BAD_FRAME)
        with m.Elif(chk["bad_crc"]):
            respond(Status.BAD_CRC)
        with m.Elif(chk["replay"]):
            respond(last_status, last_count)
        with m.Elif(~chk["known_cmd"] | chk["bad_flags"]):
            respond(Status.BAD_COMMAND)
        with m.Elif(chk["is_echo"]):
            m.next = "ECHO"
        with m.Elif(chk["is_read"] | chk["is_write"]):
            with m.If(~chk["known"]):
                respond(Status.BAD_ADDRESS)
            with m.Elif(chk["bad_length"]):
                respond(Status.BAD_LENGTH)
            with m.Elif(chk["is_reg"] & chk["crosses"]):
                respond(Status.BAD_ADDRESS)
            with m.Elif(chk["duplicate"] & ~chk["is_reg"]):
                respond(Status.DUPLICATE)
            with m.Else():
                m.next = "MOVE"
        with m.Elif(chk["payload"]):
            respond(Status.BAD_LENGTH)
        with m.Elif(chk["is_status"]):
            m.next = "STATUS"
        with m.Elif(chk["is_info"]):
            m.next = "INFO"
        with m.Elif(chk["is_start"]):
            m.next = "START"
        with m.Else():
            m.next = "ABORT"

    def _header(self, m, k, i, status, length, writing, ptr):
        """The RESPOND state, ``k`` = 0 .. 6: header byte ``k`` of the response. ``seq``,
        ``cmd`` and ``address`` are the request's, already in the buffer where they arrived
        (0 is written where none did); then ``count`` (``i``) and ``status``. A WRITE's
        response has no payload: the pointer goes back to the header's end."""
        buf = self.buf
        m.d.comb += [buf.w_addr.eq(k), buf.w_en.eq((k >= COUNT) | (k >= length))]
        with m.Switch(k):
            with m.Case(COUNT):
                m.d.comb += buf.w_data.eq(i[:8])
            with m.Case(COUNT + 1):
                m.d.comb += buf.w_data.eq(i[8:])
            with m.Case(STATUS):
                m.d.comb += buf.w_data.eq(status)
        with m.If(writing):
            m.d.sync += ptr.eq(HEADER)
        m.d.sync += k.eq(k + 1)
        with m.If(k == HEADER - 1):
            m.next = "SEND"
