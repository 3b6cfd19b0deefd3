"""The command decoder: a received frame in, bus accesses, the response as a byte stream out.

It acts on a frame only after the whole frame is in and its CRC matched, and checks everything
(command, address, length, bounds, a run in progress) before the first bus access, so a
refused request never touches the bus; the checks and their order are those of
:meth:`fieldtune.sim.golden.host.HostLinkModel.symbol` (docs/protocol.md). Then it:

* READ / STATUS: reads the words (one register, STATUS's two, or a window's stream at one
  address) and writes each word's low ``element_bytes`` bytes to the payload buffer from
  offset 0, little-endian;
* WRITE: assembles each element from the payload buffer and writes it;
* START: reads ``status`` and writes ``control.start`` unless ``busy``; ABORT writes
  ``control.abort``; ECHO leaves the payload where it is; INFO answers four constant bytes;

and finally streams the response to the transmitter byte by byte: ``seq``, ``cmd`` and
``address`` shifted out of the receiver's header register, ``count`` and ``status``, the
payload from the buffer (or INFO's constants), then the ``end`` beat; it releases the frame
once the transmitter has sent the delimiter. Each bus access waits at most
``host.bus_timeout`` cycles (BUS_TIMEOUT, ``cyc`` dropped).

``count`` is in bytes (protocol 3), so the checks compare and mask, never multiply, and one
buffer pointer ``ptr`` (bytes) tells where a transfer is and when it is complete. The bytes
moved, ``i``, are the response's ``count``: ``ptr`` as each element completes. A resent
WRITE, START or ABORT is answered from ``status`` and ``i`` as the previous good frame left
them: frames refused before their CRC answer from their own flags and leave both alone.

One 32-bit shift register carries every word, shifting a byte at a time toward bit 0: a READ
loads the bus word and shifts its bytes out to the buffer, a WRITE shifts the element's bytes
in at the top and then zeros until the first byte sits in bits 0-7. The bus address is the
request's (one register or a window: it never moves), or STATUS's, START's and ABORT's
registers.

Timing: a WRITE element takes 5 cycles plus its bus access, a READ element its bus access plus
``element_bytes`` cycles (a READ one more at its end); the verdict takes 1 cycle after
``frame.valid``; the response goes out at the transmitter's pace (a byte per UART byte
time), two cycles per payload byte at most.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Array
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from ..csr.bus import BusSignature, DATA_WIDTH
from .framing import frame_layout, response_layout
from .fsm import one_hot
from .params import HostParams
from .protocol import (Command, Status, HEADER, CRC_BYTES, REPLAYED_COMMANDS,
                       REGISTER_BYTES, PROTOCOL_VERSION, INFO_BYTES, SEQ, CMD,
                       ADDRESS, COUNT)


__all__ = ["CommandDecoder"]


#: Bytes shifted through the word register per element (one bus word).
WORD_BYTES = DATA_WIDTH // 8
#: The command codes are 1 .. 2**CODE_BITS - 1, so a known command is told by these bits.
CODE_BITS = 3
if min(Command) < 1 or max(Command) >= 1 << CODE_BITS:
    raise ImportError(f"the host link's command codes must be 1 to {(1 << CODE_BITS) - 1}")


def buffer_port():
    """The decoder's access to the payload buffer at the receiver's ``tail`` (its pointer
    while a frame is pending): ``r_data`` is the byte at the previous cycle's address; a
    write; ``rewind`` sets the pointer to 0, ``advance`` counts it up."""
    return wiring.Signature({
        "r_data": In(8), "w_data": Out(8), "w_en": Out(1), "rewind": Out(1), "advance": Out(1),
    })


class CommandDecoder(wiring.Component):
    """Executes received frames as the SoC bus's initiator (see the module documentation).

    Parameters
    ----------
    params : HostParams
    soc_map : SocMap
        Registers and windows; ``status`` and ``errors`` must be adjacent (STATUS reads both).

    Attributes
    ----------
    frame : In(stream.Signature(frame_layout(max_payload)))
    shift : Out(1)
        Shifts the receiver's header register one byte (the response's first four bytes).
    buf : Out(buffer_port())
    response : Out(stream.Signature(response_layout()))
    tx_busy : In(1)
        The transmitter has not yet sent the response's delimiter.
    bus : Out(BusSignature(soc_map.addr_width))
    """

    def __init__(self, params: HostParams, soc_map):
        self.params, self.map = params, soc_map
        if soc_map.address("errors") != soc_map.address("status") + 1:
            raise ValueError("the host link's STATUS needs the errors register right after "
                             "status")
        last_bits = {w.last_bit for w in soc_map.windows.values() if w.last_bit is not None}
        if len(last_bits) > 1:
            raise ValueError("the host link supports one position of the last bit")
        self.last_mask = 1 << last_bits.pop() if last_bits else 0
        super().__init__({
            "frame": In(stream.Signature(frame_layout(params.max_payload))),
            "shift": Out(1),
            "buf": Out(buffer_port()),
            "response": Out(stream.Signature(response_layout())),
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

    def _checks(self, m, info, plen, capture, duplicate):
        """The frame's checks (docs/protocol.md) and the command decoded one-hot, registered
        while ``capture`` (the decoder is idle; the frame is stable from ``frame.valid`` until
        it is released, and the CRC processor, shared with the transmitter, still holds the
        frame's): ``verdict``, the status a frame with a good CRC gets from its first failing
        check (OK if none), ``refuse``, it is not OK. Returns the check bits and ``eb``, the
        bytes per element (4 for STATUS, 1 for ECHO and INFO)."""
        h = info.header
        # the receiver's flags hold still while the frame is offered: read where used
        c = {"lost": info.lost, "broken": info.broken}
        cmd = h[CMD]
        address, count = Cat(h[ADDRESS], h[ADDRESS + 1]), Cat(h[COUNT], info.count_hi)
        c |= {name: Signal(name=f"chk_{name}") for name in (
            "bad_crc", "refuse", "last", "replay",
            *(f"is_{c.name.lower()}" for c in Command))}
        c["verdict"] = Signal(4, name="chk_verdict")
        eb = Signal(range(REGISTER_BYTES + 1), name="chk_eb")
        known, is_reg, reg_eb, last_window = self._region(m, address)
        # ``count`` is in bytes. A register: exactly one (REGISTER_BYTES); a window: a whole
        # number of elements, not 0, within the payload. A WRITE brings exactly ``count``
        # bytes, a READ none.
        top = len(count) - 1
        if self.params.max_payload == 1 << top:      # past the maximum: no compare
            too_long = info.count_big | (count[top] & count[:top].any())
        else:
            too_long = info.count_big | (count > self.params.max_payload)
        ragged = Signal()
        with m.Switch(reg_eb):
            for n in sorted({w.element_bytes for w in self.map.windows.values()}):
                with m.Case(n):
                    m.d.comb += ragged.eq(self._ragged(count, n))
        bad_window = (count == 0) | too_long | ragged
        bad_register = info.count_big | (count != REGISTER_BYTES)
        has_payload = info.tail != CRC_BYTES
        # past ``known_cmd`` the command's low bits tell the commands apart
        code = cmd[:CODE_BITS]
        is_cmd = {c: code == c for c in Command}
        wide = is_cmd[Command.STATUS]
        single = is_cmd[Command.ECHO] | is_cmd[Command.INFO]
        moves = is_cmd[Command.READ] | is_cmd[Command.WRITE]
        bad_length = Mux(moves, Mux(is_reg, bad_register, bad_window)
                         | Mux(is_cmd[Command.WRITE], plen != count, has_payload),
                         has_payload & ~is_cmd[Command.ECHO])
        verdict = Signal(4)
        with m.If((cmd[CODE_BITS:] != 0) | (code == 0) | info.reserved):
            m.d.comb += verdict.eq(Status.BAD_COMMAND)
        with m.Elif(moves & ~known):
            m.d.comb += verdict.eq(Status.BAD_ADDRESS)
        with m.Elif(bad_length):
            m.d.comb += verdict.eq(Status.BAD_LENGTH)
        with m.Elif(moves & duplicate & ~is_reg):
            m.d.comb += verdict.eq(Status.DUPLICATE)
        with m.If(capture):
            m.d.sync += [
                c["bad_crc"].eq(~info.crc_ok),
                c["verdict"].eq(verdict), c["refuse"].eq(verdict != Status.OK),
                eb.eq(Mux(wide, REGISTER_BYTES, Mux(single, 1, reg_eb))),
                c["last"].eq(last_window & info.last & is_cmd[Command.WRITE]),
                c["replay"].eq(duplicate & Cat(cmd == code for code in REPLAYED_COMMANDS).any()),
                *(c[f"is_{code.name.lower()}"].eq(is_cmd[code]) for code in Command),
            ]
        return c, eb

    @staticmethod
    def _ragged(count, n):
        """``count`` bytes are not a whole number of ``n``-byte elements."""
        if n & (n - 1) == 0:
            return count[:(n - 1).bit_length()].any()
        return count % n != 0

    def elaborate(self, platform):
        m = Module()
        info, buf, bus = self.frame.payload, self.buf, self.bus
        h = info.header
        capture = Signal()
        plen = Signal(range(-HEADER - CRC_BYTES, self.params.max_payload + 1))
        m.d.comb += plen.eq(info.tail - CRC_BYTES)       # payload bytes
        nbytes = range(self.params.max_payload + 1)      # every count fits the payload
        # the previous good frame: its seq and its command's code, 0 (no command) if it was
        # unknown or there was none (a repeat only matters for known commands)
        last_seq, last_code = Signal(8), Signal(CODE_BITS)
        code = h[CMD][:CODE_BITS]
        known_cmd = h[CMD][CODE_BITS:] == 0
        # (an unknown command that matches a code is BAD_COMMAND before a repeat matters)
        duplicate = (last_seq == h[SEQ]) & (last_code == code)
        chk, eb = self._checks(m, info, plen, capture, duplicate)
        status_addr, control_addr = self.map.address("status"), self.map.address("control")
        busy_lsb = self.map.field("status", "busy")[0]

        # what the frame's execution has reached
        status = Signal(4)
        i = Signal(nbytes)                             # bytes moved: the response's count
        ptr = info.tail[:len(Signal(nbytes))]          # payload read / written / sent
        writing, primed = Signal(), Signal()          # writing: the bus access writes
        header, payload = Signal(), Signal()          # the response's header / payload goes out
        k = Signal(range(HEADER))                      # byte of the element / of the header
        word = Signal(DATA_WIDTH)
        timed_out = self._timeout(m)
        limit = Mux(chk["is_status"], 2 * REGISTER_BYTES, Cat(h[COUNT], info.count_hi))
        final = Signal()                               # every byte of the request is moved
        m.d.comb += final.eq(ptr == limit)
        shift_in = Signal(8)                           # the byte that enters word's top
        control = Mux(chk["is_start"], self.map.pack("control", start=1), 0) \
            | Mux(chk["is_abort"], self.map.pack("control", abort=1), 0)
        # the bus address: the request's (READ, WRITE: one register or a window), else the
        # status register (START; STATUS: then errors, once its four bytes are stored) or
        # the control register
        second = Mux(ptr[2], status_addr + 1, status_addr)
        fixed = Mux(writing, control_addr, second)
        m.d.comb += [bus.adr.eq(Mux(chk["is_read"] | chk["is_write"],
                                    Cat(h[ADDRESS], h[ADDRESS + 1]), fixed)),
                     bus.we.eq(writing),
                     bus.dat_w.eq(word | control
                                  | Mux(chk["last"] & final, self.last_mask, 0)),
                     buf.w_data.eq(word[:8])]

        def respond(code=None, elements=None):
            """Answer; ``code`` None: the status is OK, set when the frame was accepted."""
            m.d.sync += k.eq(0)
            if code is not None:
                m.d.sync += status.eq(code)
            if elements is not None:
                m.d.sync += i.eq(elements)
            m.next = "RESPOND"

        def access(on_ack):
            """One bus access at ``cur``; ``on_ack(dat_r)`` runs when it is acknowledged."""
            m.d.comb += bus.cyc.eq(1)
            with m.If(bus.ack):
                on_ack(bus.dat_r)
            with m.Elif(bus.err | timed_out):
                respond(Mux(bus.err, Status.BUS_ERROR, Status.BUS_TIMEOUT))

        def shift():
            m.d.sync += [word.eq(Cat(word[8:], shift_in)), k.eq(k + 1)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += capture.eq(1)
                m.d.sync += [k.eq(0), word.eq(0)]
                with m.If(self.frame.valid):                # the checks register meanwhile
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += buf.rewind.eq(~chk["is_echo"])    # the pointer: the receiver's tail
                with m.If(chk["lost"] | chk["broken"] | chk["bad_crc"]):
                    m.next = "RESPOND"                  # answered from the flags alone
                with m.Else():
                    m.d.sync += [last_seq.eq(h[SEQ]), last_code.eq(Mux(known_cmd, code, 0))]
                    with m.If(chk["replay"]):
                        m.next = "RESPOND"              # status and i as they were
                    with m.Else():
                        m.d.sync += [i.eq(0), status.eq(chk["verdict"])]
                        self._dispatch(m, chk)

            # ECHO and INFO set their count off the verdict's path (ECHO's is the payload's
            # length: the pointer is rewound only after it, in RESPOND)
            with m.State("COUNT"):
                respond(elements=Mux(chk["is_echo"], plen, INFO_BYTES))

            with m.State("LOAD"):       # k = 0..3: read byte k (k < eb); k = 1..4: shift it in
                m.d.comb += shift_in.eq(Mux(k <= eb, buf.r_data, 0))
                with m.If(k < eb):
                    m.d.comb += buf.advance.eq(1)
                with m.If(k != 0):
                    shift()
                with m.Else():
                    m.d.sync += k.eq(1)
                with m.If(k == WORD_BYTES):
                    m.next = "MOVE_BUS"
            with m.State("MOVE_BUS"):
                # ptr: the bytes stored (READ), or loaded with the element in hand (WRITE)
                def moved(dat_r):
                    m.d.sync += k.eq(0)
                    with m.If(writing):
                        m.d.sync += i.eq(ptr)
                        with m.If(final):
                            respond()
                        with m.Else():
                            m.next = "LOAD"
                    with m.Else():
                        m.d.sync += word.eq(dat_r)
                        m.next = "STORE"
                with m.If(~writing):
                    m.d.sync += i.eq(ptr)
                with m.If(~writing & final):
                    respond()
                with m.Else():
                    access(moved)
            with m.State("STORE"):                      # a read word's bytes to the buffer
                m.d.comb += buf.w_en.eq(1)
                m.d.comb += buf.advance.eq(1)
                shift()
                with m.If(k == eb - 1):
                    m.next = "MOVE_BUS"
            with m.State("START_BUS"):
                def started(dat_r):
                    with m.If(dat_r[busy_lsb]):
                        respond(Status.BUSY)
                    with m.Else():
                        m.next = "CONTROL_BUS"
                access(started)
            with m.State("CONTROL_BUS"):
                access(lambda dat_r: respond())

            # a payload (i bytes, maybe none) goes out after READ, STATUS, ECHO and INFO (a
            # frame refused before its CRC has none: its i is a replay's)
            refused = chk["lost"] | chk["broken"] | chk["bad_crc"]
            sends = ~refused & (chk["is_read"] | chk["is_status"] | chk["is_echo"]
                                | chk["is_info"])
            self._answer(m, k, i, ptr, primed, sends, header, payload)
        # accesses: a WRITE's elements, the control register's write (ABORT, START after its
        # status read), reads otherwise
        m.d.comb += writing.eq(chk["is_write"] | fsm.ongoing("CONTROL_BUS"))
        one_hot(fsm)
        self._response_byte(m, header, payload, k, i, status, chk, ptr)
        return m

    def _timeout(self, m):
        """High in the ``bus_timeout``-th cycle of a bus access: the top bit of a count of the
        access's cycles from ``wait_from`` up (no compare)."""
        bus = self.bus
        wait_bits = (self.params.bus_timeout - 1).bit_length()
        wait_from = (1 << wait_bits) - (self.params.bus_timeout - 1)
        waited = Signal(wait_bits + 1, init=wait_from)
        with m.If(bus.cyc & ~bus.ack & ~bus.err):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(wait_from)
        return waited[-1]

    def _answer(self, m, k, i, ptr, primed, sends, header, payload):
        """The states that stream the response (inside the decoder's FSM): RESPOND, the
        header's seven bytes (``k``; the first four shift the receiver's header register);
        PAYLOAD, ``i`` bytes from the buffer (``primed``: the buffer's read data is for
        ``ptr``); END, the end beat; SENDING, until the
        transmitter has sent the delimiter, then the frame is released."""
        out = self.response
        with m.State("RESPOND"):
            m.d.comb += [out.valid.eq(1), header.eq(1), self.shift.eq(out.ready & (k < 4))]
            # the payload is read from 0: held there from the header's second byte on
            m.d.sync += primed.eq(1)
            m.d.comb += self.buf.rewind.eq(1)
            with m.If(out.ready):
                m.d.sync += k.eq(k + 1)
                with m.If(k == HEADER - 1):
                    m.d.sync += k.eq(0)
                    with m.If(sends):
                        m.next = "PAYLOAD"
                    with m.Else():
                        m.next = "END"
        with m.State("PAYLOAD"):                    # i bytes
            sent = ptr == i
            m.d.comb += [out.valid.eq(primed & ~sent), payload.eq(1)]
            m.d.sync += primed.eq(1)
            with m.If(out.valid & out.ready):
                m.d.sync += primed.eq(0)
                m.d.comb += self.buf.advance.eq(1)
            with m.If(sent):
                m.next = "END"
        with m.State("END"):
            m.d.comb += [out.valid.eq(1), out.payload.end.eq(1)]
            with m.If(out.ready):
                m.next = "SENDING"
        with m.State("SENDING"):
            with m.If(~self.tx_busy):
                m.d.comb += self.frame.ready.eq(1)
                m.next = "IDLE"

    @staticmethod
    def _dispatch(m, chk):
        """The CHECK state of a frame with a good CRC, not replayed: answer a refused one
        (``status`` is its verdict), else the command's first state."""
        with m.If(chk["refuse"]):
            m.next = "RESPOND"
        with m.Elif(chk["is_echo"] | chk["is_info"]):
            m.next = "COUNT"
        with m.Elif(chk["is_write"]):
            m.next = "LOAD"
        with m.Elif(chk["is_read"] | chk["is_status"]):
            m.next = "MOVE_BUS"
        with m.Elif(chk["is_start"]):
            m.next = "START_BUS"
        with m.Else():
            m.next = "CONTROL_BUS"

    def _response_byte(self, m, header, payload, k, i, status, chk, ptr):
        """The response's byte: in the header (``k`` = 0 .. 6) ``seq``, ``cmd`` and
        ``address`` as they shift out of the receiver's header register (zeros where none
        arrived), then ``count`` (``i``) and ``status``; a frame refused before its CRC
        answers count 0 and its own status, leaving ``i`` and ``status`` for a replay. In the
        payload the buffer's byte (INFO: its constants). One AND-OR of gated sources."""
        refused = chk["lost"] | chk["broken"] | chk["bad_crc"]
        code = Mux(chk["lost"], Status.OVERFLOW,
                   Mux(chk["broken"], Status.BAD_FRAME,
                       Mux(chk["bad_crc"], Status.BAD_CRC, status)))
        info_bytes = Array([PROTOCOL_VERSION, 0, self.params.max_payload & 0xFF,
                            self.params.max_payload >> 8])
        counted = header & ~refused
        sources = [
            (header & (k < COUNT), self.frame.payload.header[0]),
            (counted & (k == COUNT), i[:8]),
            (counted & (k == COUNT + 1), i[8:]),
            (header & (k == HEADER - 1), code),
            (payload & chk["is_info"], info_bytes[ptr[:2]]),
            (payload & ~chk["is_info"], self.buf.r_data),
        ]
        value = 0
        for select, byte in sources:
            value = value | Mux(select, byte, 0)
        m.d.comb += self.response.payload.data.eq(value)
