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

and finally writes the response header over the request's (``seq``, ``cmd``, ``address``
kept, ``count`` and ``status`` new), hands the length to the transmitter, and releases the
frame once the response has gone out. Each bus access waits at most ``host.bus_timeout``
cycles (BUS_TIMEOUT, ``cyc`` dropped).

Timing: a WRITE element takes ``element_bytes + 1`` cycles plus its bus access, a READ element
its bus access plus ``element_bytes`` cycles.
"""

from amaranth.hdl import Module, Signal, Mux, Cat
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

from ..csr.bus import BusSignature, DATA_WIDTH
from .framing import buffer_port, frame_layout
from .params import HostParams
from .protocol import (Command, Status, Flags, HEADER, OVERHEAD, REPLAYED_COMMANDS,
                       RESERVED_FLAGS, REGISTER_BYTES, PROTOCOL_VERSION, INFO_BYTES, SEQ, CMD,
                       ADDRESS, COUNT, FLAGS)


__all__ = ["CommandDecoder"]


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
        super().__init__({
            "frame": In(stream.Signature(frame_layout(self.capacity))),
            "buf": Out(buffer_port(self.capacity)),
            "send": Out(stream.Signature(range(self.capacity - 1))),
            "tx_busy": In(1),
            "bus": Out(BusSignature(soc_map.addr_width)),
        })

    def _checks(self, m, info, capture, duplicate):
        """The frame's checks (docs/protocol.md) and the command decoded one-hot, registered
        while ``capture`` (the decoder is idle; the frame is stable from ``frame.valid`` until
        it is released, and the CRC processor, shared with the transmitter, still holds the
        frame's), so the decoder's first state only reads flip-flops: its verdict is a few
        LUT levels of single bits, not compares of header bytes."""
        h = info.header
        cmd, flags = h[CMD], h[FLAGS]
        address, count = Cat(h[ADDRESS], h[ADDRESS + 1]), Cat(h[COUNT], h[COUNT + 1])
        payload_len = Signal(range(self.capacity + 2))
        m.d.comb += payload_len.eq(info.length - OVERHEAD)
        nregs = len(self.map.registers)
        c = {name: Signal(name=f"chk_{name}") for name in (
            "lost", "broken", "bad_crc", "known_cmd", "bad_flags", "known", "is_reg",
            "bad_length", "crosses", "payload", "last", "replay", "duplicate",
            *(f"is_{c.name.lower()}" for c in Command))}
        eb = Signal(range(REGISTER_BYTES + 1), name="chk_eb")
        known, reg_eb = Signal(), Signal.like(eb)
        last_window = Signal()
        with m.If(address < nregs):
            m.d.comb += [known.eq(1), reg_eb.eq(REGISTER_BYTES)]
        for w in self.map.windows.values():
            with m.Elif((address >> w.addr_width) == (w.address >> w.addr_width)):
                m.d.comb += [known.eq(1), reg_eb.eq(w.element_bytes),
                             last_window.eq(w.last_bit is not None)]
        # elements fit the payload, and a WRITE's payload holds exactly them
        sizes = sorted({REGISTER_BYTES, *(w.element_bytes for w in self.map.windows.values())})
        fits, count_bytes = Signal(), Signal(range(self.capacity * REGISTER_BYTES + 1))
        with m.Switch(reg_eb):
            for n in sizes:
                with m.Case(n):
                    m.d.comb += [fits.eq(count <= self.params.max_payload // n),
                                 count_bytes.eq(count[:self.capacity.bit_length()] * n)]
        want = Mux(cmd == Command.WRITE, count_bytes, 0)
        with m.If(capture):
            m.d.sync += [
                c["lost"].eq(info.lost),
                c["broken"].eq(info.broken | (info.length < OVERHEAD)),
                c["bad_crc"].eq(~info.crc_ok),
                c["known_cmd"].eq(Cat(cmd == code for code in Command).any()),
                c["bad_flags"].eq((flags & RESERVED_FLAGS).any()),
                c["known"].eq(known), c["is_reg"].eq(address < nregs), eb.eq(reg_eb),
                c["bad_length"].eq((count == 0) | ~fits | (payload_len != want)),
                c["crosses"].eq((address < nregs) & (address + count > nregs)),
                c["payload"].eq(payload_len != 0),
                c["last"].eq(last_window & (flags & Flags.LAST).any()),
                c["duplicate"].eq(duplicate),
                c["replay"].eq(duplicate & Cat(cmd == code for code in REPLAYED_COMMANDS).any()),
                *(c[f"is_{code.name.lower()}"].eq(cmd == code) for code in Command),
            ]
        return c, eb, payload_len

    def elaborate(self, platform):
        m = Module()
        info, buf, bus = self.frame.payload, self.buf, self.bus
        h = info.header
        seq, cmd = h[SEQ], h[CMD]
        address = Cat(h[ADDRESS], h[ADDRESS + 1])
        capture = Signal()
        elems = range(self.params.max_payload + 1)        # every count fits the payload
        last_seq, last_cmd = Signal(8), Signal(8)      # the previous good frame
        last_status, last_count, last_valid = Signal(4), Signal(elems), Signal()
        duplicate = last_valid & (last_seq == seq) & (last_cmd == cmd)
        chk, eb, payload_len = self._checks(m, info, capture, duplicate)
        last_bits = {w.last_bit for w in self.map.windows.values() if w.last_bit is not None}
        if len(last_bits) > 1:
            raise ValueError("the host link supports one position of the last bit")
        last_mask = 1 << last_bits.pop() if last_bits else 0
        status_addr = self.map.address("status")
        busy_lsb = self.map.field("status", "busy")[0]

        # what the frame's execution has reached
        status = Signal(4)
        count_out = Signal(elems)
        ptr = Signal(range(self.capacity + 1))         # end of the response
        rptr = Signal(range(self.capacity + 1))        # WRITE: payload byte being read
        cur = Signal(self.map.addr_width)              # bus address
        step = Signal()                                # 1: registers, 0: a window
        writing = Signal()
        n_elems = Signal(elems)
        i = Signal(elems)                              # elements done
        ebr = Signal(range(5))
        k = Signal(range(6))
        word = Signal(DATA_WIDTH)
        mark_last = Signal()                           # the final element carries last
        waited = Signal(range(self.params.bus_timeout + 1))

        def respond(code, elements=None):
            m.d.sync += [status.eq(code), k.eq(0)]
            if elements is not None:
                m.d.sync += count_out.eq(elements)
            m.next = "RESPOND"

        def access(we, data, on_ack):
            """One bus access at ``cur``; ``on_ack(dat_r)`` runs when it is acknowledged."""
            m.d.comb += [bus.cyc.eq(1), bus.we.eq(we), bus.adr.eq(cur), bus.dat_w.eq(data)]
            with m.If(bus.ack):
                on_ack(bus.dat_r)
            with m.Elif(bus.err):
                respond(Status.BUS_ERROR, i)
            with m.Elif(waited == self.params.bus_timeout - 1):
                respond(Status.BUS_TIMEOUT, i)

        def start_move(write, address_, n, nbytes, step_, last_):
            m.d.sync += [writing.eq(write), cur.eq(address_), n_elems.eq(n), ebr.eq(nbytes),
                         step.eq(step_), mark_last.eq(last_), i.eq(0), k.eq(0), word.eq(0),
                         rptr.eq(HEADER)]
            with m.If(write):
                m.next = "LOAD"
            with m.Else():
                m.next = "MOVE_BUS"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += capture.eq(1)
                m.d.sync += [ptr.eq(HEADER), count_out.eq(0), i.eq(0)]
                with m.If(self.frame.valid):                # the checks register meanwhile
                    m.next = "CHECK"
            with m.State("CHECK"):                      # the verdict: a code or a set-up
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
                    with m.Elif(chk["crosses"]):
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

            # set-ups of the accepted commands (one cycle each, off the verdict's path)
            with m.State("ECHO"):
                m.d.sync += ptr.eq(HEADER + payload_len)
                respond(Status.OK, payload_len)
            with m.State("MOVE"):
                count = Cat(h[COUNT], h[COUNT + 1])
                start_move(chk["is_write"], address, count, eb, chk["is_reg"], chk["last"])
            with m.State("STATUS"):
                start_move(0, status_addr, 2, REGISTER_BYTES, 1, 0)
            with m.State("INFO"):
                m.d.sync += [word.eq(PROTOCOL_VERSION | self.params.max_payload << 16),
                             ebr.eq(INFO_BYTES), k.eq(0), n_elems.eq(1), i.eq(0)]
                m.next = "STORE"
            with m.State("START"):
                m.d.sync += cur.eq(status_addr)
                m.next = "START_BUS"
            with m.State("ABORT"):
                m.d.sync += [cur.eq(self.map.address("control")),
                             word.eq(self.map.pack("control", abort=1))]
                m.next = "CONTROL_BUS"

            with m.State("LOAD"):                       # element i's bytes from the payload
                m.d.comb += buf.r_addr.eq(rptr)
                with m.If(k != ebr):
                    m.d.sync += rptr.eq(rptr + 1)
                with m.Switch(k):
                    for b in range(1, 5):
                        with m.Case(b):
                            m.d.sync += word[8 * (b - 1):8 * b].eq(buf.r_data)
                m.d.sync += k.eq(k + 1)
                with m.If(k == ebr):
                    m.next = "MOVE_BUS"
            with m.State("MOVE_BUS"):
                def moved(dat_r):
                    m.d.sync += [i.eq(i + 1), cur.eq(cur + step), k.eq(0)]
                    with m.If(writing):
                        m.d.sync += word.eq(0)
                        with m.If(i + 1 == n_elems):
                            respond(Status.OK, n_elems)
                        with m.Else():
                            m.next = "LOAD"
                    with m.Else():
                        m.d.sync += word.eq(dat_r)
                        m.next = "STORE"
                final = writing & mark_last & (i + 1 == n_elems)
                access(writing, word | Mux(final, last_mask, 0), moved)
            with m.State("STORE"):                      # a read word's bytes to the response
                m.d.comb += [buf.w_addr.eq(ptr), buf.w_data.eq(word[:8]), buf.w_en.eq(1)]
                m.d.sync += [ptr.eq(ptr + 1), word.eq(word >> 8), k.eq(k + 1)]
                with m.If(k == ebr - 1):
                    with m.If(chk["is_info"]):
                        respond(Status.OK, INFO_BYTES)
                    with m.Elif(i == n_elems):
                        respond(Status.OK, n_elems)
                    with m.Else():
                        m.next = "MOVE_BUS"
            with m.State("START_BUS"):
                def started(dat_r):
                    with m.If(dat_r[busy_lsb]):
                        respond(Status.BUSY)
                    with m.Else():
                        m.d.sync += [cur.eq(self.map.address("control")),
                                     word.eq(self.map.pack("control", start=1))]
                        m.next = "CONTROL_BUS"
                access(0, 0, started)
            with m.State("CONTROL_BUS"):
                access(1, word, lambda dat_r: respond(Status.OK))

            with m.State("RESPOND"):                    # the header over the request's
                fields = [seq, cmd, h[ADDRESS], h[ADDRESS + 1], count_out[:8], count_out[8:],
                          status]
                m.d.comb += [buf.w_addr.eq(k), buf.w_en.eq(1)]
                with m.Switch(k):
                    for b, value in enumerate(fields):
                        with m.Case(b):
                            m.d.comb += buf.w_data.eq(value)
                m.d.sync += k.eq(k + 1)
                with m.If(k == HEADER - 1):
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.send.valid.eq(1), self.send.payload.eq(ptr)]
                with m.If(self.send.ready):
                    m.next = "SENDING"
            with m.State("SENDING"):
                with m.If(~self.tx_busy):
                    m.d.comb += self.frame.ready.eq(1)
                    with m.If(~chk["lost"] & ~chk["broken"] & ~chk["bad_crc"]):
                        m.d.sync += [last_seq.eq(seq), last_cmd.eq(cmd), last_status.eq(status),
                                     last_count.eq(count_out), last_valid.eq(1)]
                    m.next = "IDLE"
        # cycles of the bus access in progress (a counter with a synchronous reset)
        with m.If(bus.cyc & ~bus.ack & ~bus.err):
            m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        return m
