"""The training SoC: forward cache, MAC array, loss unit, perturbation engine and sequencer
behind one memory-mapped bus.

::

    bus --> BusDecoder --+-- registers (RegisterBank: run configuration, status, errors, counters)
                         +-- record window --> ForwardCache.wr
                         +-- weight window <-> AdapterMACArray.wload / wdump
    Sequencer --fetch--> SampleRouter --req--> ForwardCache --rd--> SampleRouter --x--> MAC
              --mac_cmd--------------------------------------------------------------> MAC
              --zreq--> PerturbationEngine --z-------------------------------------> MAC
    SampleRouter --cmd (label from a read's last beat), z0 (one per logit)--> SoftmaxCrossEntropy
    MAC.out --logits--> SoftmaxCrossEntropy
    SoftmaxCrossEntropy --dz--> MAC.coef;  --result--> Sequencer (counters, ZO sums)

Registers, windows and error flags are declared as data in :mod:`fieldtune.rtl.csr.map`
(:class:`~fieldtune.rtl.csr.map.SocMap`, built without elaborating anything); the SoC builds
its decoder and register bank from it (docs/architecture.md, "SoC", has it as a table). The
golden model is :class:`fieldtune.sim.golden.soc.SocModel`; the host-side runner is
:mod:`fieldtune.sim.soc_run`.

The forward cache delivers a sample's frozen logits z0 and label with its last feature beat;
the loss unit adds z0 to the MAC array's outputs, so the router captures both from the last
beat of every read that feeds a forward and hands them to the loss unit as its command (a
zeroth-order sample is read once per forward, ``+`` then ``-``).
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, Const, Cat, Mux, Array, ResetInserter, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import built_modes, built_schedule, built_early_stop
from .csr.bus import BusSignature, BusDecoder
from .csr.registers import RegisterBank, store_words
from .csr.map import (SocMap, soc_registers, ERRORS, BLOCK_ERRORS, COUNTER_REGISTERS, WINDOWS,
                      MAGIC, VERSION, BUS_ADDR_WIDTH)
from .cache.params import CacheParams, INDEX_WIDTH, ELEMENT_WIDTH, LOGIT_WIDTH
from .cache.layout import CacheLayout, UNIT_BITS
from .cache.cache import ForwardCache, write_element_layout
from .cache.dequantizer import feature_beat_layout as cache_beat_layout
from .cache.skid import SkidBuffer
from .mac.params import MacParams
from .mac.layout import Layout
from .mac.array import AdapterMACArray, feature_beat_layout as mac_beat_layout
from .loss.params import LossParams
from .loss.unit import SoftmaxCrossEntropy, ZOSign, loss_command_layout
from .perturb.engine import PerturbationEngine
from .sequencer import (Sequencer, Mode, COUNTERS, STORED_COUNTERS, SEQUENCER_ERRORS,
                        fetch_layout)
from .crossblock import check_soc


__all__ = ["SoC", "SampleRouter", "ShiftQueue", "RecordWindow", "WeightWindow", "check_soc",
           "soc_registers", "ERRORS", "COUNTER_REGISTERS", "memory_map_markdown", "BLOCK_ERRORS",
           "WINDOWS", "MAGIC", "VERSION", "from_config"]


# -- glue -------------------------------------------------------------------------------------

class ShiftQueue(wiring.Component):
    """A first-in first-out queue of ``depth`` entries of ``width`` bits with
    :class:`~amaranth.lib.fifo.SyncFIFO`'s ports, in a shift register: ``r_data`` is the
    head's flip-flops (no read multiplexer), an entry is written at the first free place
    (after this cycle's read) and all move down one as the head is read, so each bit's
    flip-flop shares its cell with the LUT choosing between the written value and the
    entry above. For a few entries. Timing: ``w_rdy`` and ``r_rdy`` are registers' decodes;
    an entry written is readable the next cycle."""

    def __init__(self, width, depth):
        self.width, self.depth = width, depth
        super().__init__({"w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
                          "r_en": In(1), "r_data": Out(width), "r_rdy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        entries = [Signal(self.width, name=f"entry{i}") for i in range(self.depth)]
        n = Signal(range(self.depth + 1))
        push, pop = Signal(), Signal()
        m.d.comb += [self.w_rdy.eq(n != self.depth), self.r_rdy.eq(n != 0),
                     self.r_data.eq(entries[0]),
                     push.eq(self.w_en & self.w_rdy), pop.eq(self.r_en & self.r_rdy)]
        with m.If(pop):
            m.d.sync += [a.eq(b) for a, b in zip(entries, entries[1:])]
        for i, entry in enumerate(entries):
            with m.If(push & (n - pop == i)):
                m.d.sync += entry.eq(self.w_data)
        m.d.sync += n.eq(n + push - pop)
        return m


class SampleRouter(wiring.Component):
    """Between the sequencer, the forward cache, the MAC array and the loss unit.

    ``fetch`` requests go to the cache's ``req`` (a tag FIFO remembers what each read is
    for); every beat of a read goes to the MAC array's ``x``. A read that feeds a forward
    also feeds the loss unit: its frozen logits z0 and its label are taken from the beats'
    ``side`` units as the beats pass (:attr:`~.cache.layout.CacheLayout.side_pos`), z0 into
    a ``classes``-entry FIFO (``z0`` offers its head, the loss unit takes one with each
    logit: a ring in one block RAM when a beat carries at most one z0 unit, the 4-lane
    layouts; else a shift register) and the label into a register. On the read's last beat the label
    becomes the loss unit's command (FO: with ``dz``; ZO: the read's sign, restarting the
    sum on a query's first sample; EVAL: neither); that beat waits while the previous
    command is still pending, so commands reach the loss unit in forward order, before their
    logits. The FIFO holds each z0 once: the next sample's units fill its tail while the
    pending sample's drain from its head (they pass some tens of cycles later than the last
    logits leave the MAC array at R1); a beat whose units find it full waits. ``flush``
    drains the cache's read stream (the SoC resets the router's registers meanwhile).

    Timing: combinational from ``rd`` to ``x`` (``x.ready`` is the MAC array's register);
    ``x.valid`` drops only with a transfer (``hold`` rises only with one).
    """

    def __init__(self, cache: CacheParams, mac: MacParams, loss: LossParams):
        self.cache, self.mac, self.loss = cache, mac, loss
        super().__init__({
            "fetch": In(stream.Signature(fetch_layout())),
            "req": Out(stream.Signature(unsigned(INDEX_WIDTH))),
            "rd": In(stream.Signature(cache_beat_layout(cache))),
            "x": Out(stream.Signature(mac_beat_layout(mac))),
            "cmd": Out(stream.Signature(loss_command_layout(loss))),
            "z0": Out(stream.Signature(signed(loss.logit_width))),
            "mode": In(Mode),
            "flush": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tag_layout = data.StructLayout({"forward": 1, "zo": ZOSign, "first": 1})
        # reads in flight: the MAC array's op and its queued one each have theirs (a fetch
        # follows its op in every program), so 4 tags never make the sequencer wait
        m.submodules.tags = tags = ShiftQueue(tag_layout.size, depth=4)
        fetch = self.fetch.payload
        # requests: the cache takes one when it starts the previous one's last beat
        m.d.comb += [
            self.req.valid.eq(self.fetch.valid & tags.w_rdy),
            self.req.payload.eq(fetch.index),
            self.fetch.ready.eq(self.req.ready & tags.w_rdy),
            tags.w_en.eq(self.fetch.valid & self.req.ready & tags.w_rdy),
            tags.w_data.eq(Cat(fetch.forward, fetch.zo, fetch.first)),
        ]
        tag = data.View(tag_layout, tags.r_data)
        rd = self.rd
        pending = Signal()               # a loss command waits for the loss unit
        full = Signal()                  # the beat's z0 units find no room
        hold = Signal()                  # a forward's beat waits for the loss unit
        forward = Signal()
        m.d.comb += [forward.eq(tags.r_rdy & tag.forward),
                     hold.eq(forward & ((rd.payload.last & pending) | full))]

        m.d.comb += [self.x.payload.data.eq(rd.payload.data),
                     self.x.payload.last.eq(rd.payload.last)]
        with m.If(self.flush):
            m.d.comb += rd.ready.eq(1)
        with m.Elif(tags.r_rdy & ~hold):
            m.d.comb += [self.x.valid.eq(rd.valid), rd.ready.eq(self.x.ready)]
        taken = Signal()                 # a beat of a forward's read passes
        m.d.comb += [taken.eq(rd.valid & rd.ready & ~self.flush),
                     tags.r_en.eq(taken & rd.payload.last)]

        label, fresh = self._side_units(m, taken & forward, full)
        held = Signal(loss_command_layout(self.loss))
        m.d.comb += [self.cmd.valid.eq(pending), self.cmd.payload.eq(held),
                     self.cmd.payload.dz.eq(self.mode == Mode.FO),
                     self.z0.valid.eq(pending & ~fresh)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += pending.eq(0)
        with m.If(taken & forward & rd.payload.last):
            m.d.sync += [pending.eq(1), held.label.eq(label), held.zo.eq(tag.zo),
                         held.zo_first.eq(tag.first & (tag.zo == ZOSign.PLUS))]
        m.d.comb += self.idle.eq(~tags.r_rdy & ~pending)
        return m

    def _side_units(self, m, passing, full):
        """The z0 FIFO and the label register, filled from the ``side`` units of a forward's
        beats as they pass (``passing``); ``full``: this beat's z0 units would not fit.
        Returns the label of the beat passing (its own unit on the last beat, else the
        register) and whether the FIFO's head is not yet readable (:meth:`_z0_ring`)."""
        lay, C = CacheLayout(self.cache), self.loss.classes
        rd = self.rd.payload
        units = [rd.side[i * UNIT_BITS:(i + 1) * UNIT_BITS] for i in range(lay.meta_units)]
        beat_of = [lay.words[w].beat for w, _ in lay.side_pos]
        # per beat: its z0 units as (class, unit index in the word), in class order
        on_beat = [[(k, u) for k, (w, u) in enumerate(lay.side_pos[:C]) if beat_of[k] == b]
                   for b in range(lay.beats)]
        width = max(len(us) for us in on_beat)
        count = Array(Const(len(us), range(width + 1)) for us in on_beat)[rd.beat]
        n = Signal(range(C + 1))         # entries held
        pop = Signal()
        base = Signal(range(C + 1))      # where this beat's first unit goes
        m.d.comb += [pop.eq(self.z0.valid & self.z0.ready), full.eq(n + count > C),
                     base.eq(n - pop)]
        m.d.sync += n.eq(base + Mux(passing, count, 0))
        values = []
        for j in range(width):
            unit = Array(Const(us[j][1] if j < len(us) else 0, range(lay.meta_units))
                         for us in on_beat)[rd.beat]
            values.append(Array(units)[unit] if lay.meta_units > 1 else units[0])
        fresh = Const(0)                 # the head is not yet readable
        if width == 1:
            fresh = self._z0_ring(m, passing & (count != 0), values[0], pop, base)
        else:
            entries = [Signal(signed(LOGIT_WIDTH), name=f"z0_{i}") for i in range(C)]
            m.d.comb += self.z0.payload.eq(entries[0])
            with m.If(pop):
                m.d.sync += [entries[i].eq(entries[i + 1]) for i in range(C - 1)]
            for j, value in enumerate(values):
                for i in range(C):
                    with m.If(passing & (j < count) & (base + j == i)):
                        m.d.sync += entries[i].eq(value)
        # the label: from the beat that carries it
        lw, lu = lay.side_pos[C]
        label_beat = lay.words[lw].beat
        label_now = units[lu][:self.cache.label_bits]
        label = Signal(self.cache.label_bits)
        with m.If(passing & (rd.beat == label_beat)):
            m.d.sync += label.eq(label_now)
        return (label_now if label_beat == lay.beats - 1 else label), fresh

    def _z0_ring(self, m, write, value, pop, base):
        """The z0 FIFO in a block RAM (``z0_norw``), for layouts with at most one z0 unit
        per beat (one write a cycle): a ring written at ``wp`` and read at ``rp``, its read
        port addressed with the head after this cycle's ``pop``, so ``z0.payload`` (the
        port's data) is the head. A unit written to the head's address is read a cycle
        later (the port is not transparent): ``fresh`` keeps ``z0.valid`` low meanwhile
        (``base``, the entries left after the pop, is 0 exactly then). The entry count and
        the ``full`` rule are the flip-flop FIFO's (capacity ``classes``)."""
        C = self.loss.classes
        depth = 1 << (C - 1).bit_length()
        m.submodules.z0_norw = mem = Memory(shape=signed(LOGIT_WIDTH), depth=depth, init=[],
                                            attrs={"ram_style": "block"})
        rd, wr = mem.read_port(), mem.write_port()
        wp, rp = Signal(range(depth)), Signal(range(depth))
        fresh = Signal()
        m.d.comb += [rd.addr.eq(rp + pop), wr.addr.eq(wp), wr.data.eq(value), wr.en.eq(write),
                     self.z0.payload.eq(rd.data)]
        m.d.sync += [rp.eq(rp + pop), wp.eq(wp + write), fresh.eq(write & (base == 0))]
        return fresh


def _target_access(m, bus):
    """``access``: a transfer is pending and not yet answered; ``respond(ok, err)``.
    ``dat_r`` returns to 0 after every cycle (the bus protocol: 0 outside ``ack``)."""
    responded = Signal()
    access = Signal()
    m.d.comb += access.eq(bus.cyc & ~responded)
    m.d.sync += [bus.ack.eq(0), bus.err.eq(0), bus.dat_r.eq(0), responded.eq(0)]

    def respond(ok=None, error=None):
        stmts = [responded.eq(1)]
        if ok is not None:
            stmts.append(bus.ack.eq(1))
        if error is not None:
            stmts.append(bus.err.eq(1))
        m.d.sync += stmts
    return access, respond


class RecordWindow(wiring.Component):
    """Bus window onto the forward cache's record stream (two words, see :data:`WINDOWS`).
    A write is answered when the cache takes the element (the bus stalls while the quantizer
    is busy); a write ending a record (``last``) is answered only once the cache has
    committed or dropped the record, so after its ``ack`` the record count and the cache's
    flags are final. A read returns the record count."""

    def __init__(self, cache: CacheParams):
        self.cache = cache
        super().__init__({
            "bus": In(BusSignature(1)),
            "wr": Out(stream.Signature(write_element_layout())),
            "count": In(range(cache.capacity + 1)),
            "writing": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        access, respond = _target_access(m, bus)
        last = Signal()
        m.d.comb += [last.eq(bus.dat_w[ELEMENT_WIDTH] | bus.adr[0]),
                     self.wr.payload.data.eq(bus.dat_w[:ELEMENT_WIDTH]),
                     self.wr.payload.last.eq(last)]
        settling = Signal()              # a record's last element is in; wait for its commit
        with m.If(access & bus.we):
            with m.If(~settling):
                m.d.comb += self.wr.valid.eq(1)
                with m.If(self.wr.ready):
                    with m.If(last):
                        m.d.sync += settling.eq(1)
                    with m.Else():
                        respond(ok=True)
            with m.Elif(~self.writing):
                m.d.sync += settling.eq(0)
                respond(ok=True)
        with m.Elif(access):
            m.d.sync += bus.dat_r.eq(self.count)
            respond(ok=True)
        return m


class WeightWindow(wiring.Component):
    """Bus window onto the MAC array's weights, one weight per bus word (two words, the
    second an alias). During a LOAD run each write is the next weight for ``wload``; during a
    DUMP run each read returns the next weight from ``wdump``, sign-extended. Outside those
    runs accesses are answered with ``err``, so a host never waits on a window nothing feeds.

    ``wload.valid`` is a flip-flop: a write is answered the cycle after the array takes the
    weight. A written weight is not copied: ``wload.payload`` is the bus's ``dat_w``, which
    the host holds until the write is answered. Nor is a dumped one: a read takes the
    array's held ``wdump`` beat into ``dat_r`` as it is answered (``wdump.ready`` is the
    read access, a short path into the array's two handshake flip-flops), and waits while
    none is held.
    """

    def __init__(self, mac: MacParams):
        self.mac = mac
        super().__init__({
            "bus": In(BusSignature(1)),
            "wload": Out(stream.Signature(signed(mac.weight_width))),
            "wdump": In(stream.Signature(signed(mac.weight_width))),
            "loading": In(1),
            "dumping": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        access, respond = _target_access(m, bus)
        ww = self.mac.weight_width
        # load: the written weight waits on the bus (held until the answer) for the array
        pending = Signal()
        m.d.comb += [self.wload.valid.eq(pending), self.wload.payload.eq(bus.dat_w[:ww])]
        with m.If(access & bus.we & ~pending):
            with m.If(self.loading):
                m.d.sync += pending.eq(1)
            with m.Else():
                respond(error=True)
        with m.If(self.wload.valid & self.wload.ready):
            m.d.sync += pending.eq(0)
            respond(ok=True)
        # dump: the array holds the weight until the host reads it
        with m.If(access & ~bus.we):
            with m.If(self.wdump.valid):
                m.d.comb += self.wdump.ready.eq(1)
                m.d.sync += bus.dat_r.eq(self.wdump.payload)
                respond(ok=True)
            with m.Elif(~self.dumping):
                respond(error=True)
        m.d.comb += self.idle.eq(~pending)
        return m


# -- the SoC ----------------------------------------------------------------------------------


class SoC(wiring.Component):
    """The training SoC of a design (see the module documentation).

    Parameters
    ----------
    config
        Anything with ``perturb``, ``cache``, ``mac`` and ``loss`` sections
        (:class:`fieldtune.config.DesignConfig`); checked by :func:`check_soc`.

    Attributes
    ----------
    bus : In(BusSignature(6))
        The host's bus (32-bit words, word addresses; see :mod:`fieldtune.rtl.csr.bus`).
        Registers at 0x00-0x1f (:func:`soc_registers`), the record window at 0x20-0x21, the
        weight window at 0x22-0x23; anything else is answered with ``err``.
    busy, done : Out(1)
        A run is in progress; the last run (or rejected start) has ended.
    error : Out(1)
        Some error flag is set.
    irq : Out(1)
        ``done | error``: what a host waits on.
    """

    def __init__(self, config):
        check_soc(config)
        self.config = config
        self.perturb, self.mac, self.loss = config.perturb, config.mac, config.loss
        # the cache's dequantizer as narrow as the MAC array's beat rate allows
        self.cache = config.cache.for_consumer(Layout(config.mac).regions[0].rows)
        #: Training modes built (``[soc] modes``): without "zo" there is no perturbation
        #: engine.
        self.modes = built_modes(config)
        self.map = SocMap(config)
        self.registers = self.map.registers
        super().__init__({
            "bus": In(BusSignature(BUS_ADDR_WIDTH)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "irq": Out(1),
        })

    def address(self, name):
        """Word address of a register or window by name (:meth:`SocMap.address`)."""
        return self.map.address(name)

    def memory_map(self):
        """The map as data (:meth:`SocMap.memory_map`)."""
        return self.map.memory_map()

    def elaborate(self, platform):
        m = Module()
        mac_p, cache_p, loss_p = self.mac, self.cache, self.loss
        seq = Sequencer(mac_p, loss_p, cache_p, self.perturb, self.modes,
                        built_schedule(self.config), built_early_stop(self.config),
                        store_words=store_words(self.registers))
        b = _Blocks(
            seq=seq,
            engine=(PerturbationEngine(self.perturb, seed_compare=False)
                    if "zo" in self.modes else None),
            cache=ForwardCache(cache_p), mac=AdapterMACArray(mac_p),
            loss=SoftmaxCrossEntropy(loss_p), router=SampleRouter(cache_p, mac_p, loss_p),
            bank=RegisterBank(self.registers, scratch=seq.scratch),
            records=RecordWindow(cache_p),
            weights=WeightWindow(mac_p),
            dec=BusDecoder(BUS_ADDR_WIDTH, self.map.decoder_targets()))
        flush = b.seq.flush
        m.submodules.seq = b.seq
        m.submodules.cache = b.cache
        # an abort resets the datapath; the cache keeps its records (its read side only
        # waits on rd.ready, which the router holds high while flushing)
        if b.engine is not None:
            # reset at every accepted start too: the pool then refills for the run's seed
            # (one fill per run, which estimate_cycles counts) and needs no seed compare
            m.submodules.engine = ResetInserter(flush | seq.accepted)(b.engine)
        m.submodules.mac = ResetInserter(flush)(b.mac)
        m.submodules.loss = ResetInserter(flush)(b.loss)
        m.submodules.router = ResetInserter(flush)(b.router)
        for name in ("bank", "records", "weights", "dec"):
            m.submodules[name] = getattr(b, name)

        wiring.connect(m, wiring.flipped(self.bus), b.dec.bus)
        wiring.connect(m, b.dec.targets["regs"], b.bank.bus)
        wiring.connect(m, b.dec.targets["records"], b.records.bus)
        wiring.connect(m, b.dec.targets["weights"], b.weights.bus)
        buffered = self._datapath(m, b, flush)
        self._control(m, b, buffered)
        self._status(m, b)
        return m

    def _datapath(self, m, b, flush):
        """Streams between the blocks; returns the buffers' "holding a beat" signal."""
        mac_p, seq, mac, cache = self.mac, b.seq, b.mac, b.cache
        # features go from the cache's dequantizer (through the router's steering) straight
        # into the MAC array, whose `x.ready` is a register (it takes a beat as the beat's
        # first word reaches its stage 1 and keeps it for the beat's other rows): the beat is
        # held once in flip-flops between the cache and the multipliers besides the
        # dequantizer's output register. Perturbations reach the MAC array through a
        # registered skid buffer: its issue logic (`z.ready`) would otherwise reach the
        # engine's pipeline enable combinationally.
        holding = Const(0)
        if b.engine is not None:
            z_buffer = SkidBuffer(data.ArrayLayout(signed(mac_p.perturb_width), mac_p.lanes))
            m.submodules.z_buffer = ResetInserter(flush)(z_buffer)
            m.d.comb += [z_buffer.i.valid.eq(b.engine.z.valid),
                         z_buffer.i.payload.eq(b.engine.z.payload.data),
                         b.engine.z.ready.eq(z_buffer.i.ready)]
            wiring.connect(m, z_buffer.o, mac.z)
            wiring.connect(m, seq.zreq, b.engine.request)
            holding = holding | z_buffer.o.valid
        wiring.connect(m, b.records.wr, cache.wr)
        m.d.comb += [b.records.count.eq(cache.count), b.records.writing.eq(cache.writing)]
        wiring.connect(m, seq.fetch, b.router.fetch)
        wiring.connect(m, b.router.req, cache.req)
        wiring.connect(m, cache.rd, b.router.rd)
        wiring.connect(m, b.router.x, mac.x)
        wiring.connect(m, b.router.cmd, b.loss.cmd)
        wiring.connect(m, b.router.z0, b.loss.z0)
        wiring.connect(m, seq.mac_cmd, mac.cmd)
        wiring.connect(m, mac.out, b.loss.logits)
        wiring.connect(m, b.loss.dz, mac.coef)
        wiring.connect(m, b.loss.result, seq.result)
        wiring.connect(m, b.weights.wload, mac.wload)
        wiring.connect(m, mac.wdump, b.weights.wdump)
        m.d.comb += [b.router.mode.eq(seq.mode), b.router.flush.eq(flush)]
        return holding

    def _control(self, m, b, buffered):
        """The sequencer's inputs: strobes, the run registers, completion and progress."""
        seq, mac, cache, regs = b.seq, b.mac, b.cache, b.bank.regs
        streams = [mac.cmd, mac.x, mac.z, mac.coef, mac.out, b.loss.cmd, b.loss.result,
                   cache.req, cache.rd] + ([b.engine.request] if b.engine is not None else [])
        progress = Cat(*(s.valid & s.ready for s in streams)).any()
        m.d.comb += [
            seq.start.eq(regs.control.start),
            seq.abort.eq(regs.control.abort),
            seq.records.eq(cache.count),
            seq.mac_idle.eq(mac.idle),
            seq.datapath_idle.eq(b.router.idle & b.weights.idle & ~buffered),
            seq.engine_busy.eq(b.engine.busy if b.engine is not None else 0),
            seq.progress.eq(progress),
            mac.clear.eq(seq.accepted),
            b.bank.lock.eq(seq.busy),       # the run registers hold still during a run
            b.weights.loading.eq(seq.busy & (seq.mode == Mode.LOAD)),
            b.weights.dumping.eq(seq.busy & (seq.mode == Mode.DUMP)),
        ]
        # the run registers and the stored counters live in the bank's block RAM, where the
        # sequencer reads (and writes) them
        if b.bank.store_words != seq.store_words or b.bank.scratch_base != seq.scratch_base:
            raise AssertionError(f"stored registers {b.bank.stored} are not where the "
                                 f"sequencer reads them: {seq.stored}")
        wiring.connect(m, seq.store, b.bank.store)
        m.d.comb += cache.clear.eq(regs.control.clear_cache & ~seq.busy)

    def _status(self, m, b):
        """Read-only registers, error flags and the status outputs."""
        seq, mac, cache, regs = b.seq, b.mac, b.cache, b.bank.regs
        m.d.comb += [
            regs.status.busy.eq(seq.busy), regs.status.done.eq(seq.done),
            regs.status.records.eq(cache.count),
            regs.next_step.step.eq(seq.next_step), regs.next_cursor.cursor.eq(seq.next_cursor),
        ]
        for c in COUNTERS:
            if c in STORED_COUNTERS:        # in the bank's block RAM (the sequencer's tally)
                continue
            m.d.comb += getattr(regs, COUNTER_REGISTERS[c]).value.eq(getattr(seq.counters, c))
        if seq.early_stop:
            st = regs.stop_status
            m.d.comb += [st.epochs_run.eq(seq.counters.epochs),
                         st.held_out_correct.eq(seq.stop.correct),
                         st.stopped.eq(seq.stop.stopped)]
        errs = regs.errors
        for name in SEQUENCER_ERRORS:
            m.d.comb += getattr(errs, f"{name}_set").eq(getattr(seq.errors, name))
        with m.If((regs.control.clear_cache & seq.busy) | b.bank.locked_write):
            m.d.comb += errs.busy_set.eq(1)
        block_flags = {"mac_error": mac.error, "mac_framing": mac.framing,
                       "mac_saturated": mac.saturated, "cache_overflow": cache.overflow,
                       "cache_record_error": cache.record_error,
                       "cache_read_error": cache.read_error}
        for name, flag in block_flags.items():
            before = Signal(name=f"{name}_before")
            m.d.sync += before.eq(flag)
            m.d.comb += getattr(errs, f"{name}_set").eq(flag & ~before)
        any_error = Cat(*(getattr(errs, name) for name in ERRORS)).any()
        m.d.comb += [regs.status.error.eq(any_error), self.error.eq(any_error),
                     self.busy.eq(seq.busy), self.done.eq(seq.done),
                     self.irq.eq(seq.done | any_error)]


@dataclass
class _Blocks:
    """The SoC's blocks, handed between the sections of :meth:`SoC.elaborate`."""
    seq: Sequencer
    engine: "PerturbationEngine | None"
    cache: ForwardCache
    mac: AdapterMACArray
    loss: SoftmaxCrossEntropy
    router: SampleRouter
    bank: RegisterBank
    records: RecordWindow
    weights: WeightWindow
    dec: BusDecoder


def from_config(config):
    """The SoC of a :class:`~fieldtune.config.DesignConfig` (``fieldtune generate soc``)."""
    return SoC(config)


def memory_map_markdown(soc_map):
    """The memory map (a :class:`SocMap`) as Markdown tables (docs/architecture.md holds the
    default design's; ``fieldtune generate soc -f memory-map`` prints it)."""
    return soc_map.markdown()
