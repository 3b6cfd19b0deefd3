"""The forward cache: write records, read them back as ``L`` features per cycle.

Write side
    ``wr`` carries records as a stream of 16-bit elements: the ``F`` features of the sample
    (raw, saturated to the quantizer's input format), then the ``C`` frozen logits z0 (signed
    Q8.8, stored as they are), then the label (``0 <= label < C``), with ``last`` set on the
    label and only there. A record is committed (``count`` increments) once its codes, scales
    and side units are all in memory. A record is dropped, ``record_error`` set and earlier
    records left intact, when ``last`` comes early (the writer resynchronizes at once; missing
    features are fed to the quantizer as zeros so its block count stays aligned), when the label
    lacks ``last`` (elements are then dropped up to the next ``last``), or when the label is out
    of range. A complete record arriving when ``count == capacity`` is dropped with
    ``overflow`` set; nothing wraps around. ``wr.ready`` drops while the quantizer is busy and
    after each label until the record is committed (about one block's worth of cycles).

Read side
    ``req`` takes sample indices, one per sample, back to back. For each, ``rd`` streams
    ``beats = ceil(F / L)`` beats of :func:`~.dequantizer.feature_beat_layout`: a new request
    is accepted on the last beat of the previous one, so consecutive samples stream without
    bubbles, ``beats`` cycles per sample after a constant latency of :func:`read_latency`
    cycles. An index ``>= count`` sets ``read_error`` and streams a sample of zeros marked
    ``error`` (so a consumer counting beats never hangs). Back-pressure on ``rd`` stalls the
    whole read pipeline; nothing is lost.

Memories
    Two :class:`amaranth.lib.memory.Memory` (layout in :class:`~.layout.CacheLayout`): codes,
    one word per beat, and meta (scales and side units, 16-bit write granularity). Each has one
    address shared by its read and write ports, so it maps to single-port SPRAM as well as to
    block RAM; reads have priority and writes wait for a free cycle. With
    ``memory = "spram"`` the memories carry ``ram_style = "huge"`` and names ending in
    ``_spram`` (the implementation flow drops their all-zero initial value, which SPRAM cannot
    have; the cache never reads a word it has not written).
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Const, Array, Mux, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import ELEMENT_WIDTH, INDEX_WIDTH
from .component import CacheComponent
from .layout import CacheLayout, MANT_BITS, UNIT_BITS
from .quantizer import Quantizer, SATURATION_BITS, code_layout
from .dequantizer import (Dequantizer, feature_beat_layout, packed_beat_layout,
                          LATENCY as DEQUANTIZER_LATENCY, latency as dequantizer_latency)
from .skid import SkidBuffer
from .arith import const_mul


__all__ = ["ForwardCache", "write_element_layout", "read_latency", "READ_LATENCY",
           "drain_bound"]


def read_latency(params):
    """Cycles from a request's transfer on ``req`` to its first beat being valid on ``rd``:
    the input buffer, one to start the sample, the memory command register, the memory read,
    then the dequantizer (:func:`~.dequantizer.latency`); with block RAM
    (``memory = "bram"``) also the register after the memories and the beat buffer before the
    dequantizer."""
    return (6 if params.memory == "bram" else 4) + dequantizer_latency(params)


#: The longest :func:`read_latency` of a full-rate dequantizer (block RAM).
READ_LATENCY = 6 + DEQUANTIZER_LATENCY


def drain_bound(params, samples):
    """Cycles within which ``samples`` requested samples have left ``rd`` when it is always
    ready: the longest read latency, then ``beats * beat_cycles`` per sample."""
    return (READ_LATENCY + params.beat_cycles - 1
            + samples * CacheLayout(params).beats * params.beat_cycles)


def write_element_layout():
    """One element of the write stream: ``data`` (signed 16-bit) and ``last`` (record end)."""
    return data.StructLayout({"data": signed(ELEMENT_WIDTH), "last": 1})


class _Build(SimpleNamespace):
    """What the sections of :meth:`ForwardCache.elaborate` share while one cache is
    elaborated: the module, sizes, ports and the signals that cross sections."""


class ForwardCache(CacheComponent):
    """Quantizer, packed cache memory and streaming dequantizer (see the module docs).

    Parameters
    ----------
    params : CacheParams

    Attributes
    ----------
    wr : In(stream.Signature(write_element_layout()))
    req : In(stream.Signature(unsigned(16)))
    rd : Out(stream.Signature(feature_beat_layout(params)))
    count : Out(range(capacity + 1))
        Records committed.
    overflow, record_error, read_error : Out(1)
        Sticky flags (see the module docs), cleared by ``clear``.
    saturations : Out(16)
        Features saturated or clamped by the quantizer (saturating counter), cleared by
        ``clear``.
    writing : Out(1)
        A record is in flight on the write side (elements buffered, or a record begun and not
        yet committed or dropped); low means ``count`` and the flags are final.
    clear : In(1)
        Forget every record and flag. A record in flight is dropped silently.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "wr": In(stream.Signature(write_element_layout())),
            "req": In(stream.Signature(unsigned(INDEX_WIDTH))),
            "rd": Out(stream.Signature(feature_beat_layout(p))),
            "count": Out(range(p.capacity + 1)),
            "overflow": Out(1),
            "record_error": Out(1),
            "read_error": Out(1),
            "saturations": Out(SATURATION_BITS),
            "writing": Out(1),
            "clear": In(1),
        })

    def _memory(self, m, name, width, depth, granularity=None):
        spram = self.params.memory == "spram"
        mem = Memory(shape=unsigned(width), depth=depth, init=[],
                     attrs={"ram_style": "huge"} if spram else None)
        m.submodules[f"{name}_spram" if spram else name] = mem
        wp = mem.write_port(granularity=granularity) if granularity else mem.write_port()
        rp = mem.read_port(transparent_for=())
        return wp, rp

    def elaborate(self, platform):
        # one method per section; ``b`` carries what sections share
        b = _Build()
        self._setup(b)
        self._read_side(b)
        self._packer(b)
        self._front_end(b)
        return b.m

    def _setup(self, b):
        """Input buffers, quantizer, dequantizer, the memories and their command registers."""
        m = Module()
        p, lay = self.params, self.layout
        F, C, L = lay.features, p.classes, p.lanes
        cap = p.capacity

        # Both inputs pass a skid buffer, so their `ready` is a register.
        m.submodules.wr_buffer = wr_buffer = SkidBuffer(write_element_layout())
        m.submodules.req_buffer = req_buffer = SkidBuffer(unsigned(INDEX_WIDTH))
        wiring.connect(m, wiring.flipped(self.wr), wr_buffer.i)
        wiring.connect(m, wiring.flipped(self.req), req_buffer.i)
        wr, req = wr_buffer.o, req_buffer.o

        m.submodules.quantizer = quant = Quantizer(p)
        # Features reach the quantizer through a skid buffer: the record state machine sees a
        # registered ready.
        m.submodules.feature_buffer = feature_buffer = SkidBuffer(signed(ELEMENT_WIDTH))
        wiring.connect(m, feature_buffer.o, quant.i)
        features = feature_buffer.i
        m.submodules.dequantizer = dequantizer = Dequantizer(p)
        # Block RAM builds aim at ECP5's 120 MHz: beats reach the dequantizer through a skid
        # buffer, so `rd.ready`, which stalls the dequantizer's pipeline, stops there, and the
        # words read are registered as they leave the memories (DP16KD has a 5.6 ns
        # clock-to-output without its output register, which the synthesizer does not infer).
        # SPRAM builds (iCE40 UP5K, 48 MHz, nearly full) save those ~400 logic cells.
        bram = p.memory == "bram"
        if bram:
            m.submodules.beat_buffer = beat_buffer = SkidBuffer(packed_beat_layout(p))
            wiring.connect(m, beat_buffer.o, dequantizer.i)
            to_dequantizer = beat_buffer.i
        else:
            to_dequantizer = dequantizer.i
        m.d.comb += [self.saturations.eq(quant.saturations), quant.clear.eq(self.clear)]

        code_wp, code_rp = self._memory(m, "codes", lay.code_width, cap * lay.beats)

        def command(wp, rp, read, raddr, write_enable, waddr, wdata):
            """Register a memory's next operation; returns the port connections."""
            addr = Signal.like(rp.addr)
            re = Signal()
            we = Signal.like(wp.en)
            wd = Signal.like(wp.data)
            m.d.sync += [addr.eq(Mux(read, raddr, waddr)), re.eq(read), we.eq(write_enable),
                         wd.eq(wdata)]
            # Reads and writes never coincide; saying so in the read enable lets the
            # synthesizer see it (single-port SPRAM leaves its output unchanged on writes).
            return [rp.addr.eq(addr), wp.addr.eq(addr), rp.en.eq(re & ~we.any()),
                    wp.en.eq(we), wp.data.eq(wd)]

        meta_wp, meta_rp = self._memory(m, "meta", lay.meta_width, cap * lay.meta_words,
                                        granularity=UNIT_BITS)

        count = Signal(range(cap + 1))
        m.d.comb += self.count.eq(count)
        slot_ok = Signal()
        m.d.comb += slot_ok.eq(count < cap)
        # Addresses of record `count`, kept beside it rather than multiplied out.
        code_base = Signal(range(cap * lay.beats + 1))
        meta_base = Signal(range(cap * lay.meta_words + 1))
        b.C, b.F, b.L, b.bram, b.cap, b.code_base = C, F, L, bram, cap, code_base
        b.code_rp, b.code_wp, b.command, b.count = code_rp, code_wp, command, count
        b.dequantizer, b.features, b.lay, b.m = dequantizer, features, lay, m
        b.meta_base, b.meta_rp, b.meta_wp, b.p, b.quant = meta_base, meta_rp, meta_wp, p, quant
        b.req, b.slot_ok, b.to_dequantizer, b.wr = req, slot_ok, to_dequantizer, wr

    def _read_side(self, b):
        """Read side: requests, memory reads issued ahead, the read buffer, the dequantizer."""
        bram, cap, code_rp, count, dequantizer = b.bram, b.cap, b.code_rp, b.count, b.dequantizer
        lay, m, meta_rp, req, to_dequantizer = b.lay, b.m, b.meta_rp, b.req, b.to_dequantizer
        # -- read side ----------------------------------------------------------------------
        active = Signal()
        r_index = Signal(INDEX_WIDTH)
        r_error = Signal()
        r_beat = Signal(range(lay.beats))
        r_code = Signal(range(cap * lay.beats))
        r_meta = Signal(range(cap * lay.meta_words))
        # Every memory operation is decided a cycle ahead and held in a command register that
        # drives the ports (SPRAMs sit far from the logic on iCE40). Reads are decoupled from
        # the dequantizer's ready by a buffer with bypass, one entry per read in flight plus
        # one: a read is issued only if its word will have room, judged from registers alone,
        # so `rd.ready` never reaches the memory ports or the write arbitration.
        beat_info = data.StructLayout({"beat": range(lay.beats), "index": INDEX_WIDTH,
                                       "error": 1})
        issued = Signal()                   # a read is in the command register
        issued_info = Signal(beat_info)
        arrived = Signal()                  # its word is on the memory outputs
        arrived_info = Signal(beat_info)
        depth = 4 if bram else 3
        landed = Signal()                   # its word is in `incoming`
        level = Signal(range(depth + 1))
        held = Array(Signal(to_dequantizer.payload.shape(), name=f"held{i}")
                     for i in range(depth))
        incoming = Signal(to_dequantizer.payload.shape(), reset_less=bram)
        capture = [incoming.codes.eq(code_rp.data), incoming.meta.eq(meta_rp.data),
                   incoming.beat.eq(arrived_info.beat), incoming.index.eq(arrived_info.index),
                   incoming.error.eq(arrived_info.error), landed.eq(arrived)]
        if bram:
            m.d.sync += capture
        else:
            m.d.comb += capture
        m.d.comb += [to_dequantizer.valid.eq((level != 0) | landed),
                     to_dequantizer.payload.eq(Mux(level != 0, held[0], incoming))]
        pop = Signal()
        push = Signal()
        m.d.comb += [pop.eq(to_dequantizer.valid & to_dequantizer.ready),
                     push.eq(landed & ~((level == 0) & pop))]
        with m.If(pop & (level != 0)):
            m.d.sync += [held[i].eq(held[i + 1]) for i in range(depth - 1)]
        with m.If(push):
            m.d.sync += held[level - (pop & (level != 0))].eq(incoming)
        m.d.sync += level.eq(level + push - (pop & (level != 0)))

        issuing = Signal()
        # Words issued and not yet taken by the dequantizer (level + issued + arrived + landed),
        # counted in a register; `at_last` says r_beat is the sample's last beat.
        occupancy = Signal(range(depth + 1))
        at_last = Signal()
        m.d.comb += issuing.eq(active & (occupancy != depth))
        m.d.sync += occupancy.eq(occupancy + issuing - pop)
        last_issue = Signal()
        m.d.comb += last_issue.eq(issuing & at_last)
        # Meta words are read in address order, so the address is a counter; whether a beat
        # reads one is looked up a beat ahead, keeping both off the memory address path.
        reads_meta = Const(sum(1 << j for j, w in enumerate(lay.meta_read) if w is not None),
                           lay.beats)
        beat_reads_meta = Signal()
        code_rd = Signal()
        meta_rd = Signal()
        m.d.comb += [
            code_rd.eq(issuing & ~r_error),
            meta_rd.eq(issuing & ~r_error & beat_reads_meta),
            req.ready.eq(~active | last_issue),
        ]
        m.d.sync += [issued.eq(issuing), issued_info.beat.eq(r_beat),
                     issued_info.index.eq(r_index), issued_info.error.eq(r_error),
                     arrived.eq(issued), arrived_info.eq(issued_info)]
        with m.If(issuing):
            m.d.sync += [r_beat.eq(r_beat + 1), r_code.eq(r_code + 1),
                         at_last.eq(r_beat == lay.beats - 2),
                         beat_reads_meta.eq(reads_meta.bit_select(r_beat + 1, 1))]
        with m.If(meta_rd):
            m.d.sync += r_meta.eq(r_meta + 1)
        with m.If(req.valid & req.ready):
            index = req.payload
            m.d.sync += [active.eq(1), r_index.eq(index), r_error.eq(index >= count),
                         r_beat.eq(0), r_code.eq(const_mul(index, lay.beats)),
                         r_meta.eq(const_mul(index, lay.meta_words)),
                         beat_reads_meta.eq(lay.meta_read[0] is not None),
                         at_last.eq(lay.beats == 1)]
            with m.If(index >= count):
                m.d.sync += self.read_error.eq(1)
        with m.Elif(last_issue):
            m.d.sync += active.eq(0)
        wiring.connect(m, dequantizer.o, wiring.flipped(self.rd))
        b.code_rd, b.meta_rd, b.r_code, b.r_meta = code_rd, meta_rd, r_code, r_meta

    def _packer(self, b):
        """Write side: the packer, codes into words and block scales into meta units."""
        F, L, cap, code_base, code_rd, code_rp = b.F, b.L, b.cap, b.code_base, b.code_rd, b.code_rp
        code_wp, command, lay, m, meta_base, p = b.code_wp, b.command, b.lay, b.m, b.meta_base, b.p
        quant, r_code, r_meta, slot_ok = b.quant, b.r_code, b.r_meta, b.slot_ok
        # -- write side: packer (codes and scales) ------------------------------------------
        code_req = Signal()
        code_req_addr = Signal(range(cap * lay.beats + 1))
        code_req_data = Signal(lay.code_width)
        code_grant = Signal()
        m.d.comb += code_grant.eq(code_req & ~code_rd)
        m.d.comb += [
            *command(code_wp, code_rp, code_rd, r_code, code_grant & slot_ok, code_req_addr,
                     code_req_data),
        ]

        cb = lay.code_bits
        word = Signal(lay.code_width)
        lane = Signal(range(L))
        word_index = Signal(range(lay.beats))
        merged = Signal(lay.code_width)
        # The codes pass a skid buffer so that the memory arbitration never reaches into the
        # quantizer's pipeline enables.
        m.submodules.code_buffer = code_buffer = SkidBuffer(code_layout(p))
        wiring.connect(m, quant.o, code_buffer.i)
        codes = code_buffer.o
        qo = codes.payload
        m.d.comb += merged.eq(word)
        m.d.comb += merged.word_select(lane, cb).eq(qo.code)

        # Scale writes: every (word, unit mask) of the layout for the block just started.
        ops = lay.scale_ops
        nblocks = max(len(lay.blocks), 1)
        op_first = [next((i for i, op in enumerate(ops) if op[0] >= b), len(ops))
                    for b in range(nblocks + 1)]
        op_ptr = Signal(range(len(ops) + 1))
        op_end = Signal(range(len(ops) + 1))
        op_scale = Signal(UNIT_BITS)
        op_addr = Signal.like(r_meta)
        op_unit_mask = Signal(lay.meta_units)
        block = Signal(range(nblocks + 1))
        ops_busy = Signal()         # op_ptr != op_end, kept as a register
        has_ops = Const(sum(1 << b for b in range(nblocks) if op_first[b] != op_first[b + 1]),
                        nblocks)
        op_req = Signal()
        op_word = Array(Const(w, range(max(lay.meta_words, 2))) for _, w, _ in ops) if ops \
            else Array([Const(0, 1)])
        op_mask = Array(Const(mask, lay.meta_units) for _, _, mask in ops) if ops \
            else Array([Const(0, 1)])
        m.d.comb += op_req.eq(ops_busy)

        accept_code = Signal()
        m.d.comb += [
            # Registers only: a completed word waits a cycle for its write, so the read side's
            # memory use never reaches the packer's enables.
            codes.ready.eq(~code_req & ~ops_busy),
            accept_code.eq(codes.valid & codes.ready),
        ]
        last_word_pending = Signal()
        codes_done = Signal()
        with m.If(code_grant):
            m.d.sync += code_req.eq(0)
        with m.If(accept_code):
            first_of_sample = qo.feature == 0
            cur_lane = Mux(first_of_sample, 0, lane)
            completes = (cur_lane == L - 1) | (qo.feature == F - 1)
            with m.If(completes):
                m.d.sync += [code_req.eq(1), code_req_data.eq(merged),
                             code_req_addr.eq(code_base + Mux(first_of_sample, 0, word_index)),
                             word.eq(0), lane.eq(0),
                             word_index.eq(Mux(first_of_sample, 0, word_index) + 1)]
            with m.Else():
                m.d.sync += [word.eq(merged), lane.eq(cur_lane + 1),
                             word_index.eq(Mux(first_of_sample, 0, word_index))]
            with m.If(qo.feature == F - 1):
                m.d.sync += last_word_pending.eq(1)
            if p.scaled:
                with m.If(qo.first):
                    cur_block = Mux(first_of_sample, 0, block)
                    first_op = Array(Const(v, range(len(ops) + 1)) for v in op_first)[cur_block]
                    m.d.sync += [
                        op_ptr.eq(first_op),
                        op_addr.eq(meta_base + op_word[first_op]),
                        op_unit_mask.eq(op_mask[first_op]),
                        op_end.eq(Array(Const(v, range(len(ops) + 1)) for v in op_first)
                                  [cur_block + 1]),
                        op_scale.eq(qo.mant | (qo.exp << MANT_BITS)),
                        block.eq(cur_block + 1),
                        ops_busy.eq(has_ops.bit_select(cur_block, 1)),
                    ]
        with m.If(last_word_pending & ~code_req & ~ops_busy & ~accept_code):
            m.d.sync += [codes_done.eq(1), last_word_pending.eq(0)]
        b.codes_done, b.op_addr, b.op_end, b.op_mask = codes_done, op_addr, op_end, op_mask
        b.op_ptr, b.op_req, b.op_scale, b.op_unit_mask = op_ptr, op_req, op_scale, op_unit_mask
        b.op_word, b.ops_busy = op_word, ops_busy

    def _front_end(self, b):
        """Write side: the front end, records checked, counted and committed."""
        C, F, code_base, codes_done, command = b.C, b.F, b.code_base, b.codes_done, b.command
        count, features, lay, m, meta_base = b.count, b.features, b.lay, b.m, b.meta_base
        meta_rd, meta_rp, meta_wp, op_addr = b.meta_rd, b.meta_rp, b.meta_wp, b.op_addr
        op_end, op_mask, op_ptr, op_req = b.op_end, b.op_mask, b.op_ptr, b.op_req
        op_scale, op_unit_mask, op_word = b.op_scale, b.op_unit_mask, b.op_word
        ops_busy, r_meta, slot_ok, wr = b.ops_busy, b.r_meta, b.slot_ok, b.wr
        # -- write side: front end (records) ------------------------------------------------
        side_req = Signal()
        side_addr = Signal.like(r_meta)
        side_mask = Signal(lay.meta_units)
        side_data = Signal(UNIT_BITS)
        unit_word = Array(Const(w, range(max(lay.meta_words, 2))) for w, _ in lay.side_pos)
        unit_index = Array(Const(i, range(max(lay.meta_units, 2))) for _, i in lay.side_pos)
        op_grant = Signal()
        side_grant = Signal()
        m.d.comb += [op_grant.eq(op_req & ~meta_rd), side_grant.eq(side_req & ~meta_rd & ~op_req)]
        meta_waddr = Signal.like(r_meta)
        meta_wdata = Signal(lay.meta_width)
        meta_wmask = Signal(lay.meta_units)
        with m.If(op_req):
            m.d.comb += [meta_waddr.eq(op_addr),
                         meta_wdata.eq(op_scale.replicate(lay.meta_units)),
                         meta_wmask.eq(op_unit_mask)]
        with m.Else():
            m.d.comb += [meta_waddr.eq(side_addr),
                         meta_wdata.eq(side_data.replicate(lay.meta_units)),
                         meta_wmask.eq(side_mask)]
        m.d.comb += [
            *command(meta_wp, meta_rp, meta_rd, r_meta,
                     Mux((op_grant | side_grant) & slot_ok, meta_wmask, 0), meta_waddr,
                     meta_wdata),
        ]
        with m.If(op_grant):
            m.d.sync += [op_ptr.eq(op_ptr + 1), ops_busy.eq(op_ptr + 1 != op_end),
                         op_addr.eq(meta_base + op_word[op_ptr + 1]),
                         op_unit_mask.eq(op_mask[op_ptr + 1])]
        with m.If(side_grant):
            m.d.sync += side_req.eq(0)

        pos = Signal(range(max(F, C)))
        # pos_end: pos is the last position of the current part (feature F-1, logit C-1),
        # kept as a register beside pos so that no comparator sits in the handshake path.
        pos_end = Signal(init=F == 1)
        bad = Signal()
        dropped = Signal()
        element = wr.payload
        accept = Signal()
        m.d.comb += accept.eq(wr.valid & wr.ready)

        # A side unit's address is looked up in the cycle after it arrives (`side_new`), so
        # the lookup and the add sit between registers.
        side_new = Signal()
        side_unit = Signal(range(C + 1))
        side_busy = Signal()
        m.d.comb += side_busy.eq(side_new | side_req)
        with m.If(side_new):
            m.d.sync += [side_new.eq(0), side_req.eq(1),
                         side_addr.eq(meta_base + unit_word[side_unit]),
                         side_mask.eq(Const(1, lay.meta_units) << unit_index[side_unit])]

        def side_write(unit, value):
            m.d.sync += [side_new.eq(1), side_unit.eq(unit), side_data.eq(value)]

        committing = Signal()
        with m.FSM():
            with m.State("FEATURES"):
                m.d.comb += [features.valid.eq(wr.valid), features.payload.eq(element.data),
                             wr.ready.eq(features.ready)]
                with m.If(accept):
                    m.d.sync += [pos.eq(pos + 1), pos_end.eq(pos == F - 2)]
                    with m.If(element.last):
                        m.d.sync += bad.eq(1)
                        with m.If(pos_end):
                            m.next = "DRAIN"
                        with m.Else():
                            m.next = "PAD"
                    with m.Elif(pos_end):
                        m.d.sync += [pos.eq(0), pos_end.eq(C == 1)]
                        m.next = "LOGITS"
            with m.State("PAD"):
                # Feed zeros for the features a short record lacks, keeping blocks aligned.
                m.d.comb += [features.valid.eq(1), features.payload.eq(0)]
                with m.If(features.ready):
                    m.d.sync += [pos.eq(pos + 1), pos_end.eq(pos == F - 2)]
                    with m.If(pos_end):
                        m.next = "DRAIN"
            with m.State("LOGITS"):
                m.d.comb += wr.ready.eq(~side_busy)
                with m.If(accept):
                    side_write(pos, element.data)
                    m.d.sync += [pos.eq(pos + 1), pos_end.eq(pos == C - 2)]
                    with m.If(element.last):
                        m.d.sync += bad.eq(1)
                        m.next = "DRAIN"
                    with m.Elif(pos_end):
                        m.next = "LABEL"
            with m.State("LABEL"):
                m.d.comb += wr.ready.eq(~side_busy)
                with m.If(accept):
                    side_write(C, element.data)
                    with m.If(~element.last):
                        m.d.sync += bad.eq(1)
                        m.next = "SKIP"
                    with m.Else():
                        with m.If((element.data < 0) | (element.data >= C)):
                            m.d.sync += bad.eq(1)
                        m.next = "DRAIN"
            with m.State("SKIP"):
                m.d.comb += wr.ready.eq(1)
                with m.If(accept & element.last):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += committing.eq(codes_done & ~side_busy)
                with m.If(committing):
                    m.d.sync += [codes_done.eq(0), pos.eq(0), pos_end.eq(F == 1), bad.eq(0),
                                 dropped.eq(0)]
                    with m.If(~dropped & ~self.clear):
                        with m.If(bad):
                            m.d.sync += self.record_error.eq(1)
                        with m.Elif(slot_ok):
                            m.d.sync += [count.eq(count + 1),
                                         code_base.eq(code_base + lay.beats),
                                         meta_base.eq(meta_base + lay.meta_words)]
                        with m.Else():
                            m.d.sync += self.overflow.eq(1)
                    m.next = "FEATURES"

        # A record is open from its first accepted element until it is committed or dropped.
        record_open = Signal()
        with m.If(committing):
            m.d.sync += record_open.eq(0)
        with m.Elif(accept):
            m.d.sync += record_open.eq(1)
        in_flight = record_open & ~committing
        m.d.comb += self.writing.eq(wr.valid | record_open)
        with m.If(self.clear):
            m.d.sync += [count.eq(0), code_base.eq(0), meta_base.eq(0), self.overflow.eq(0),
                         self.record_error.eq(0), self.read_error.eq(0), dropped.eq(in_flight)]


def from_config(config):
    """``fieldtune generate forward-cache``: the forward cache of ``config.cache``."""
    return ForwardCache(config.cache)
