"""The forward cache: write records, read them back as ``L`` features per cycle.

Write side
    ``wr`` carries records as a stream of 16-bit elements: the ``F`` features of the sample
    (raw, saturated to the quantizer's input format), then the ``C`` frozen logits z0 (signed
    Q8.8, stored as they are), then the label (``0 <= label < C``), with ``last`` set on the
    label and only there. A record is committed (``count`` increments) once its codes, scales
    and side units are all in memory. A record is dropped, ``record_error`` set and earlier
    records left intact, when ``last`` comes early (the writer resynchronizes at once; missing
    features are filled in, uncounted, so the quantizer's block count stays aligned), when the label
    lacks ``last`` (elements are then dropped up to the next ``last``), or when the label is out
    of range. A complete record arriving when ``count == capacity`` is dropped with
    ``overflow`` set; nothing wraps around. ``wr.ready`` drops while the quantizer codes a
    block (:func:`~.quantizer.block_cycles`) and after each label until the record is
    committed; a logit or the label is taken in the cycle its memory write is done (at the
    earliest the cycle after it is offered).

Read side
    ``req`` takes sample indices, one per sample. For each, ``rd`` streams ``beats =
    ceil(F / L)`` beats of :func:`~.dequantizer.feature_beat_layout`, ``beats`` beats per
    sample without bubbles (also across samples, requests given in time), after a constant
    latency of :func:`read_latency` cycles. An index ``>= count`` sets ``read_error`` and streams
    a sample of zeros marked ``error`` (so a consumer counting beats never hangs).
    Back-pressure on ``rd`` stalls the whole read pipeline; nothing is lost.

Read buffer
    Every memory operation is decided a cycle ahead and held in a command register that drives
    the ports, and reads are decoupled from the dequantizer's ``ready`` so that ``rd.ready``
    never reaches the memory ports. A dequantizer taking a beat every :attr:`beat_cycles`
    ``>= ROUND_TRIP`` cycles (the SoC's) needs one word in flight: the next read is issued once
    the word before it has been taken, and the word waits on the memory's own outputs (they
    hold while the port is not read). A full-rate dequantizer gets a small buffer with bypass
    instead, one entry per read in flight.

Memories
    Two :class:`amaranth.lib.memory.Memory` (layout in :class:`~.layout.CacheLayout`): codes,
    one word per beat with a write enable per lane (written whole in block RAM,
    :func:`~.packer.codes_per_write`), and meta
    (scales and side units, 16-bit write granularity), a meta word at the offset of the beat
    that reads it. So both memories share one address, the sample index beside the beat
    (strides of powers of two), and one command register: a beat's read takes both words; a
    write is one code (into its lane), one scale unit or one side unit (z0, label), and no
    word is assembled in flip-flops. The address is shared by the read and write ports, so
    each memory maps to single-port SPRAM as well as to block RAM; reads have priority and
    writes wait for a free cycle. With ``memory = "spram"`` the memories carry ``ram_style =
    "huge"`` and names ending in ``_spram`` (the implementation flow drops their all-zero
    initial value, which SPRAM cannot have; the cache never uses a lane or a unit it has not
    written: padding lanes are zeroed by the dequantizer, meta offsets without a word are read
    and ignored). Block RAM builds (ECP5, fast clocks) also put skid buffers on ``wr`` and
    ``req`` and register the words read.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import ELEMENT_WIDTH, INDEX_WIDTH
from .component import CacheComponent
from .layout import CacheLayout, UNIT_BITS, MANT_BITS, EXP_BITS
from .quantizer import Quantizer
from .dequantizer import (Dequantizer, feature_beat_layout, packed_beat_layout,
                          LATENCY as DEQUANTIZER_LATENCY, latency as dequantizer_latency)
from .skid import SkidBuffer
from .packer import Packer, codes_per_write
from ..mac.layout import Layout


__all__ = ["ForwardCache", "write_element_layout", "read_latency", "READ_LATENCY",
           "ROUND_TRIP", "drain_bound", "single_read"]


#: Cycles from a beat taken by the dequantizer to the next beat offered, one word in flight:
#: the read issued, the command register, the memory read, one more at a sample boundary
#: (the next request taken); one more with block RAM (the register after the memories).
ROUND_TRIP = 4


def single_read(params):
    """Whether one word in flight keeps up with the dequantizer (see the module docs)."""
    return params.beat_cycles >= ROUND_TRIP + (params.memory == "bram")


def read_latency(params):
    """Cycles from a request's transfer on ``req`` to its first beat being valid on ``rd``:
    one to start the sample, the memory command register, the memory read, then the
    dequantizer (:func:`~.dequantizer.latency`); with block RAM (``memory = "bram"``) also
    the request buffer, the register after the memories and (full rate) the beat buffer
    before the dequantizer."""
    bram = params.memory == "bram"
    return 3 + 2 * bram + (bram and not single_read(params)) + dequantizer_latency(params)


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
    saturated : Out(1)
        The quantizer's strobe: a feature taken this cycle was saturated or clamped (see
        :class:`~.quantizer.Quantizer`; no counter in the cache, the SoC reads none).
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
            "saturated": Out(1),
            "writing": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        # one method per section; ``b`` carries what sections share
        b = _Build()
        self._setup(b)
        self._requests(b)
        if single_read(self.params):
            self._single_read(b)
        else:
            self._buffered_read(b)
        self._ports(b)
        self._front_end(b)
        return b.m

    def _memory(self, m, name, width, depth, granularity):
        """One of the record memories: ``NAME_spram`` (SPRAM), else ``NAME_norw``: block RAM
        without collision logic (``boards/implement.py``), since no cycle reads and writes it:
        its ports share one command register that grants a write only where no read is
        issued (:meth:`_ports`)."""
        spram = self.params.memory == "spram"
        mem = Memory(shape=unsigned(width), depth=depth, init=[],
                     attrs={"ram_style": "huge"} if spram else None)
        m.submodules[f"{name}_spram" if spram else f"{name}_norw"] = mem
        wp = mem.write_port(granularity=granularity)
        rp = mem.read_port(transparent_for=())
        return wp, rp

    def _input(self, m, name, port, shape):
        """The stream behind input ``port``: through a skid buffer in block RAM builds (so its
        ``ready`` is a register at ECP5 clock rates), else the port itself."""
        if self.params.memory != "bram":
            return wiring.flipped(port)
        m.submodules[name] = buffer = SkidBuffer(shape)
        wiring.connect(m, wiring.flipped(port), buffer.i)
        return buffer.o

    def _setup(self, b):
        """Inputs, quantizer, packer, dequantizer, memories and the record slot."""
        b.m = m = Module()
        b.p = p = self.params
        b.lay = lay = self.layout
        b.wr = self._input(m, "wr_buffer", self.wr, write_element_layout())
        b.req = self._input(m, "req_buffer", self.req, unsigned(INDEX_WIDTH))
        m.submodules.quantizer = b.quant = quant = Quantizer(p)
        m.submodules.packer = b.packer = packer = Packer(p)
        wiring.connect(m, quant.o, packer.i)
        m.submodules.dequantizer = b.dequantizer = Dequantizer(p)
        m.d.comb += self.saturated.eq(quant.saturated)
        b.code_wp, b.code_rp = self._memory(m, "codes", lay.code_width,
                                            p.capacity * lay.code_stride,
                                            granularity=lay.code_bits * codes_per_write(p))
        b.meta_wp, b.meta_rp = self._memory(m, "meta", lay.meta_width,
                                            p.capacity * lay.meta_stride,
                                            granularity=UNIT_BITS)
        b.count = Signal(range(p.capacity + 1))
        b.slot_ok = Signal()
        b.slot = b.count[:(p.capacity - 1).bit_length()]   # where the record being written goes
        m.d.comb += [self.count.eq(b.count), b.slot_ok.eq(b.count < p.capacity)]

    def _requests(self, b):
        """The sample being read: index, error and beat counter; ``step`` moves to the next
        beat (at its read with a buffer, when it is taken with one word in flight). A beat's
        read takes its code word and the meta word at the same address (layout's
        :attr:`~.layout.CacheLayout.meta_offsets`), used or not."""
        m, lay, req, p = b.m, b.lay, b.req, b.p
        b.active = active = Signal()
        # the index's address bits: the dequantizer passes no index on (a consumer knows
        # what it asked for), and an index beyond them is an error, found at the request
        b.index_bits = (p.capacity - 1).bit_length()
        b.r_index, b.r_error = r_index, r_error = Signal(max(b.index_bits, 1)), Signal()
        b.r_beat = r_beat = Signal(range(lay.beats))
        b.issuing, b.step, b.req_ready = Signal(), Signal(), Signal()
        at_last = r_beat == lay.beats - 1   # the sample's last beat
        b.read = Signal()
        m.d.comb += [b.read.eq(b.issuing & ~r_error), req.ready.eq(b.req_ready)]
        b.done_sample = b.step & at_last
        with m.If(b.step):
            m.d.sync += r_beat.eq(r_beat + 1)
        taken = Signal()
        # index >= count, compared on count's width only
        index, width = req.payload, len(b.count)
        beyond = index[width:].any() | (index[:width] >= b.count)
        b.bad_request = Signal()            # sets `read_error` (with `clear`, _front_end)
        m.d.comb += [taken.eq(req.valid & req.ready), b.bad_request.eq(taken & beyond)]
        # flags written as their next value (see _single_read)
        m.d.sync += active.eq(taken | (active & ~b.done_sample))
        with m.If(taken):
            m.d.sync += [r_index.eq(index), r_error.eq(beyond), r_beat.eq(0)]

    def _single_read(self, b):
        """One word in flight: the word waits on the memory outputs (a register after them
        with block RAM) with the read registers describing it; the next read is issued once
        it has been taken."""
        m, to = b.m, b.dequantizer.i
        outstanding = Signal()              # a read issued and its word not yet taken
        present = Signal()                  # that word is on the outputs
        issued = Signal()
        pop = Signal()
        m.d.comb += [b.issuing.eq(b.active & ~outstanding), pop.eq(to.valid & to.ready),
                     b.step.eq(pop), b.req_ready.eq(~b.active)]
        # the beat and index registers hold until the word is taken: they address the read
        b.read_addr = Cat(b.r_beat, b.r_index[:b.index_bits])
        # set-and-clear flags written as their next value (an enable would take a cell of
        # its own beside the flip-flop); a word is never issued or present as it is taken
        m.d.sync += [issued.eq(b.issuing), outstanding.eq((outstanding | b.issuing) & ~pop)]
        words = Cat(b.code_rp.data, b.meta_rp.data)
        if b.p.memory == "bram":
            held = Signal.like(words, reset_less=True)
            arrived = Signal()
            m.d.sync += [arrived.eq(issued), present.eq((present | arrived) & ~pop)]
            with m.If(arrived):
                m.d.sync += held.eq(words)
            words = held
        else:
            m.d.sync += present.eq((present | issued) & ~pop)
        m.d.comb += [to.valid.eq(present),
                     Cat(to.payload.codes, to.payload.meta).eq(words),
                     to.payload.beat.eq(b.r_beat), to.payload.index.eq(b.r_index),
                     to.payload.error.eq(b.r_error)]
        wiring.connect(m, b.dequantizer.o, wiring.flipped(self.rd))

    def _buffered_read(self, b):
        """A full-rate dequantizer: reads issued ahead into a buffer with bypass, one entry
        per read in flight plus one; a read is issued only if its word will have room, judged
        from registers alone."""
        m, p, lay = b.m, b.p, b.lay
        bram = p.memory == "bram"
        if bram:
            m.submodules.beat_buffer = beat_buffer = SkidBuffer(packed_beat_layout(p))
            wiring.connect(m, beat_buffer.o, b.dequantizer.i)
            to = beat_buffer.i
        else:
            to = b.dequantizer.i
        beat_info = data.StructLayout({"beat": range(lay.beats), "index": len(b.r_index),
                                       "error": 1})
        issued, arrived, landed = Signal(), Signal(), Signal()
        issued_info, arrived_info = Signal(beat_info), Signal(beat_info)
        depth = 4 if bram else 3
        level = Signal(range(depth + 1))
        held = Array(Signal(to.payload.shape(), name=f"held{i}") for i in range(depth))
        incoming = Signal(to.payload.shape(), reset_less=bram)
        capture = [incoming.codes.eq(b.code_rp.data), incoming.meta.eq(b.meta_rp.data),
                   incoming.beat.eq(arrived_info.beat), incoming.index.eq(arrived_info.index),
                   incoming.error.eq(arrived_info.error), landed.eq(arrived)]
        m.d.sync += capture if bram else []
        m.d.comb += [] if bram else capture
        m.d.comb += [to.valid.eq((level != 0) | landed),
                     to.payload.eq(Mux(level != 0, held[0], incoming))]
        pop, push = Signal(), Signal()
        m.d.comb += [pop.eq(to.valid & to.ready), push.eq(landed & ~((level == 0) & pop))]
        with m.If(pop & (level != 0)):
            m.d.sync += [held[i].eq(held[i + 1]) for i in range(depth - 1)]
        with m.If(push):
            m.d.sync += held[level - (pop & (level != 0))].eq(incoming)
        m.d.sync += level.eq(level + push - (pop & (level != 0)))
        # words issued and not yet taken (level + issued + arrived + landed), in a register
        occupancy = Signal(range(depth + 1))
        m.d.comb += [b.issuing.eq(b.active & (occupancy != depth)), b.step.eq(b.issuing),
                     b.req_ready.eq(~b.active | b.done_sample)]
        m.d.sync += occupancy.eq(occupancy + b.issuing - pop)
        m.d.sync += [issued.eq(b.issuing), issued_info.beat.eq(b.r_beat),
                     issued_info.index.eq(b.r_index), issued_info.error.eq(b.r_error),
                     arrived.eq(issued), arrived_info.eq(issued_info)]
        b.read_addr = Cat(issued_info.beat, issued_info.index[:b.index_bits])
        wiring.connect(m, b.dequantizer.o, wiring.flipped(self.rd))

    def _ports(self, b):
        """One command register for both memories, which share their address: a beat's read
        first, else one write, in this order: a scale unit, a code (into its lane), a side
        unit. An operation is decided a cycle ahead; the address is then the read's (its
        registers, :attr:`read_addr`) or the record slot's (``count``, which moves only
        after the record's last write) beside the registered word of the write. The write
        data are held by their sources until the write (a code's in a register here, since
        the quantizer may offer the next at once)."""
        m, lay, packer, p = b.m, b.lay, b.packer, b.p
        b.side_req, b.side_written = Signal(), Signal()
        b.side_unit, b.side_data = Signal(range(p.classes + 1)), Signal(UNIT_BITS)
        offsets = lay.meta_offsets
        unit_beat = Array(Const(offsets[w], range(lay.beats)) for w, _ in lay.side_pos)
        unit_index = Array(Const(i, range(max(lay.meta_units, 2))) for _, i in lay.side_pos)
        scale_grant, code_grant, side_grant, scale_written = Signal(), Signal(), Signal(), \
            Signal()
        m.d.comb += [scale_grant.eq(packer.scale_valid & ~b.read),
                     code_grant.eq(packer.code_valid & ~b.read),
                     side_grant.eq(b.side_req & ~b.read & ~packer.scale_valid
                                   & ~packer.code_valid),
                     packer.scale_taken.eq(scale_grant), packer.code_taken.eq(code_grant)]
        # the packer's word whenever it offers a write (scale or code), else the side unit's
        word = Mux(packer.scale_valid | packer.code_valid, packer.word, unit_beat[b.side_unit])
        unit_mask = Mux(packer.scale_valid, packer.scale_mask,
                        Const(1, lay.meta_units) << unit_index[b.side_unit])

        re, wword = Signal(), Signal(range(lay.beats))
        code_we, meta_we = Signal.like(b.code_wp.en), Signal.like(b.meta_wp.en)
        # 4-bit code books hold a code on the quantizer's output for the cycle after its
        # transfer, the write's; pass-through ones offer the next at once, and a word
        # assembled in the packer moves on with the transfer: a register
        code = packer.code
        if not p.scaled or codes_per_write(p) > 1:
            code = Signal.like(packer.code, reset_less=True)
            with m.If(code_grant):
                m.d.sync += code.eq(packer.code)
        addr = Mux(re, b.read_addr, Cat(wword, b.slot))
        m.d.sync += [wword.eq(word), re.eq(b.read),
                     code_we.eq(Mux(code_grant & b.slot_ok, packer.lane_mask, 0)),
                     meta_we.eq(Mux((scale_grant | side_grant) & b.slot_ok, unit_mask, 0)),
                     scale_written.eq(scale_grant), b.side_written.eq(side_grant)]
        # Reads and writes never coincide; saying so in the read enables lets the synthesizer
        # see it (single-port SPRAM leaves its output unchanged on writes).
        for wp, rp, we in ((b.code_wp, b.code_rp, code_we), (b.meta_wp, b.meta_rp, meta_we)):
            m.d.comb += [rp.addr.eq(addr), wp.addr.eq(addr), rp.en.eq(re & ~we.any()),
                         wp.en.eq(we)]
        # a scale unit's bits above the scale (MANT_BITS + EXP_BITS) are never read: they
        # take the side unit's, and only the scale's bits are selected
        scale_bits = MANT_BITS + EXP_BITS
        unit = Cat(Mux(scale_written, packer.scale[:scale_bits], b.side_data[:scale_bits]),
                   b.side_data[scale_bits:])
        m.d.comb += [b.code_wp.data.eq(code.replicate(len(packer.lane_mask))),
                     b.meta_wp.data.eq(unit.replicate(lay.meta_units))]

    def _front_end(self, b):
        """Write side: the front end, records checked, counted and committed."""
        m, p, wr, count, quant = b.m, b.p, b.wr, b.count, b.quant
        C = p.classes
        # the side unit being written: logits, then the label (the quantizer tells the
        # sample's last feature)
        pos = Signal(range(C + 1))
        label = pos == C
        last_feature = quant.last_in
        bad, dropped, accept, committing = Signal(), Signal(), Signal(), Signal()
        # a record is open from its first accepted element until it is committed or dropped
        record_open = Signal()
        element = wr.payload
        features = quant.i
        m.d.comb += accept.eq(wr.valid & wr.ready)

        # a side unit (logit, label) is written while the element waits on `wr`, and taken
        # in the cycle of its write (its data are the element's)
        m.d.comb += [b.side_data.eq(element.data), b.side_unit.eq(pos),
                     features.payload.eq(element.data)]

        # The front end's states, one flip-flop each, each written as its next value (set as
        # the state is entered, cleared as it is left): a LUT beside each flip-flop, no
        # shared enable. FEATURES: the sample's features into the quantizer; PAD: fill in
        # the features a short record lacks, keeping blocks aligned (whatever `wr` holds,
        # not counted: the record is dropped, its slot written over); SIDE: the logits,
        # then the label; SKIP: elements dropped up to the next `last`; DRAIN: wait for the
        # record's codes, then commit or drop it.
        st = SimpleNamespace(**{name: Signal(init=name == "features", name=f"st_{name}")
                                for name in ("features", "pad", "side", "skip", "drain")})
        last = element.last
        # 0 <= label < C: the label's bits, the others all zero
        bits = p.label_bits
        out_of_range = element.data[bits:].any() | (element.data[:bits] >= C)
        padded = features.ready & last_feature          # PAD's last filler taken
        m.d.comb += [features.valid.eq((st.features & wr.valid) | st.pad),
                     quant.pad.eq(st.pad),
                     b.side_req.eq(st.side & wr.valid & ~b.side_written),
                     wr.ready.eq((st.features & features.ready) | (st.side & b.side_written)
                                 | st.skip),
                     committing.eq(st.drain & b.packer.sample_done),
                     b.packer.sample_taken.eq(committing)]
        taken = SimpleNamespace(**{name: getattr(st, name) & accept
                                   for name in ("features", "side", "skip")})
        ends_side = taken.side & (label | last)         # the label, or `last` early
        m.d.sync += [
            st.features.eq(committing | (st.features & ~(accept & (last | last_feature)))),
            st.pad.eq((taken.features & last & ~last_feature) | (st.pad & ~padded)),
            st.side.eq((taken.features & ~last & last_feature) | (st.side & ~ends_side)),
            st.skip.eq((taken.side & label & ~last) | (st.skip & ~(accept & last))),
            st.drain.eq((taken.features & last & last_feature) | (st.pad & padded)
                        | (taken.side & last) | (taken.skip & last)
                        | (st.drain & ~committing)),
        ]
        with m.If(taken.side):
            m.d.sync += pos.eq(pos + 1)
        # a record is bad: `last` among the features or early among the side units, the
        # label without `last`, or out of range
        bad_now = (taken.features & last) | (ends_side & (~label | ~last | out_of_range))
        m.d.sync += [bad.eq((bad | bad_now) & ~committing),
                     dropped.eq(Mux(self.clear, record_open, dropped) & ~committing)]
        with m.If(committing):
            m.d.sync += pos.eq(0)
        # the record committed is complete and good (not dropped by `clear`); it is counted
        # or overflows. The sticky flags are written as their next value, `clear` last.
        complete, good = Signal(), Signal()
        m.d.comb += [complete.eq(committing & ~dropped), good.eq(complete & ~bad)]
        with m.If(good & b.slot_ok):
            m.d.sync += count.eq(count + 1)
        m.d.sync += [
            self.record_error.eq((self.record_error | (complete & bad)) & ~self.clear),
            self.overflow.eq((self.overflow | (good & ~b.slot_ok)) & ~self.clear),
            self.read_error.eq((self.read_error | b.bad_request) & ~self.clear),
        ]

        m.d.sync += record_open.eq((record_open | accept) & ~committing)
        # an element waiting in the input buffer counts; one offered on `wr` is the writer's
        # (so `writing` does not depend on `wr.valid` combinationally)
        buffered = wr.valid if p.memory == "bram" else 0
        m.d.comb += self.writing.eq(buffered | record_open)
        with m.If(self.clear):
            m.d.sync += count.eq(0)


def from_config(config):
    """``fieldtune generate forward-cache`` (and ``bench hierarchy --block forward-cache``): the
    forward cache of ``config.cache`` as the SoC builds it, its dequantizer as narrow as the
    MAC array's beat rate allows (:meth:`~.params.CacheParams.for_consumer`)."""
    return ForwardCache(config.cache.for_consumer(Layout(config.mac).regions[0].rows))
