"""The training SoC: forward cache, MAC array, loss unit, perturbation engine and sequencer
behind one memory-mapped bus.

::

    bus --> BusDecoder --+-- registers (RegisterBank: run configuration, status, errors, counters)
                         +-- record window --> ForwardCache.wr
                         +-- weight window <-> AdapterMACArray.wload / wdump
    Sequencer --fetch--> SampleRouter --req--> ForwardCache --rd--> SampleRouter --x--> MAC
              --mac_cmd--------------------------------------------------------------> MAC
              --zreq--> PerturbationEngine --z-------------------------------------> MAC
    SampleRouter --cmd (z0, label from a read's last beat)--> SoftmaxCrossEntropy
    MAC.out --logits--> SoftmaxCrossEntropy
    SoftmaxCrossEntropy --dz--> MAC.coef;  --result--> Sequencer (counters, ZO sums)

Registers, windows and error flags are declared as data (:func:`soc_registers`,
:data:`WINDOWS`, :data:`ERRORS`); :meth:`SoC.memory_map` generates the map
(docs/architecture.md, "SoC", has it as a table). The golden model is
:class:`fieldtune.sim.golden.soc.SocModel`; the host-side runner is
:mod:`fieldtune.sim.soc_run`.

The forward cache delivers a sample's frozen logits z0 and label with its last feature beat;
the loss unit adds z0 to the MAC array's outputs, so the router captures both from the last
beat of every read that feeds a forward and hands them to the loss unit as its command (a
zeroth-order sample is read once per forward, ``+`` then ``-``).
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, Cat, ResetInserter, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.fifo import SyncFIFO

from .params import TrainParams, built_modes
from .csr.bus import BusSignature, BusDecoder
from .csr.registers import Field, Register, RegisterBank
from .cache.params import CacheParams, INDEX_WIDTH, ELEMENT_WIDTH, LOGIT_WIDTH, LOGIT_FRAC
from .cache.cache import ForwardCache, write_element_layout
from .cache.dequantizer import feature_beat_layout as cache_beat_layout
from .cache.layout import CacheLayout
from .cache.skid import SkidBuffer
from .mac.params import MacParams
from .mac.layout import Layout
from .mac.array import AdapterMACArray, feature_beat_layout as mac_beat_layout
from .loss.params import LossParams
from .loss.unit import SoftmaxCrossEntropy, ZOSign, loss_command_layout
from .perturb.params import PerturbParams
from .perturb.engine import PerturbationEngine
from .sequencer import (Sequencer, Mode, COUNTERS, SEQUENCER_ERRORS, fetch_layout,
                        default_watchdog)


__all__ = ["SoC", "SampleRouter", "RecordWindow", "WeightWindow", "check_soc",
           "soc_registers", "ERRORS", "COUNTER_REGISTERS", "memory_map_markdown",
           "BLOCK_ERRORS", "WINDOWS", "MAGIC", "VERSION", "from_config"]


#: ``id.magic``: what a host reads first to know it talks to a fieldtune SoC.
MAGIC = 0xF17E
#: ``id.version``: the register map's version.
VERSION = 1

#: Sticky flags the SoC raises from its blocks (rising edges of their own flags).
BLOCK_ERRORS = {
    "mac_error": "the MAC array rejected an op or a coefficient overflowed its memory",
    "mac_framing": "a feature beat's last marker was out of place",
    "mac_saturated": "the MAC array clamped a value (warning: training saturated)",
    "cache_overflow": "a record arrived with the cache full (dropped)",
    "cache_record_error": "a malformed record (early or missing last, bad label; dropped)",
    "cache_read_error": "a sample index beyond the records was read",
}
#: Every error flag of the ``errors`` register, bit 0 first: name -> meaning.
ERRORS = {**SEQUENCER_ERRORS, **BLOCK_ERRORS}

#: Register of each counter (run configuration names are taken).
COUNTER_REGISTERS = {"cycles": "cycles", "samples": "samples", "epochs": "epochs_done",
                     "steps": "steps_done", "loss_sum": "loss_sum", "correct": "correct"}
COUNTER_DOCS = {
    "cycles": "clock cycles of the run",
    "samples": "forwards through the loss unit (ZO: two per sample and query)",
    "epochs": "FO epochs; ZO passes of the cursor over the records",
    "steps": "optimizer steps (mini-batch updates)",
    "loss_sum": "sum of those forwards' losses, bits Q.loss_frac",
    "correct": "those forwards with argmax == label",
}

#: Memory windows after the registers: name -> (word offset from the window base, doc).
WINDOWS = {
    "records": ("write: one element of the cache's record stream (bits 15:0 data, "
                "bit 16 last; the odd word forces last); read: records cached"),
    "weights": ("LOAD run: each write is the next weight (word-major, lane-minor, bits "
                "weight_width-1:0); DUMP run: each read is the next weight, sign-extended; "
                "err outside those runs"),
}


def soc_registers(mac: MacParams, cache: CacheParams, perturb: PerturbParams):
    """The register map as data (word addresses follow this order). Reset values of the
    run configuration are :class:`~fieldtune.rtl.params.TrainParams`' defaults, so they do
    not depend on a design's ``[train]`` table (the runner writes every field)."""
    t = TrainParams()
    lay = Layout(mac)
    return (
        Register("id", [Field("magic", 16, "ro", doc=f"{MAGIC:#06x}"),
                        Field("version", 8, "ro", doc="register map version")],
                 doc="identification"),
        Register("geometry", [Field("lanes", 8, "ro", doc="MAC lanes (weights per word)"),
                              Field("classes", 8, "ro", doc="classes (logits)"),
                              Field("beats", 16, "ro", doc="cache beats per sample")],
                 doc="datapath geometry"),
        Register("capacity", [Field("records", 17, "ro", doc="forward cache capacity"),
                              Field("regions", 2, "ro", doc="weight regions")],
                 doc="cache capacity"),
        Register("weights", [Field("words", 24, "ro", doc="weight words (lanes weights each)")],
                 doc="adapter weight memory size"),
        Register("control", [Field("start", 1, "w1p", doc="start a run of `mode`"),
                             Field("abort", 1, "w1p", doc="abort the run"),
                             Field("clear_cache", 1, "w1p", doc="forget every record")],
                 doc="strobes"),
        Register("status", [Field("busy", 1, "ro", doc="a run is in progress"),
                            Field("done", 1, "ro", doc="the last run ended"),
                            Field("error", 1, "ro", doc="an error flag is set"),
                             Field("records", 17, "ro", doc="records in the cache")],
                 doc="status"),
        Register("errors", [Field(name, 1, "w1c", doc=doc) for name, doc in ERRORS.items()],
                 doc="sticky error flags, write 1 to clear"),
        Register("mode", [Field("mode", 3, "rw", doc="0 FO, 1 ZO, 2 EVAL, 3 LOAD, 4 DUMP")],
                 doc="what the next start runs"),
        Register("epochs", [Field("epochs", 10, "rw", init=t.epochs)], doc="FO epochs"),
        Register("batch", [Field("batch", 9, "rw", init=t.batch)],
                 doc="mini-batch size (power of two)"),
        Register("shifts", [Field("lr_shift", 5, "rw", init=t.lr_shift, doc="FO eta = 2**-n"),
                            Field("eps_shift", 5, "rw", init=t.eps_shift,
                                  doc="ZO epsilon = 2**-n"),
                            Field("zo_lr_shift", 5, "rw", init=t.zo_lr_shift,
                                  doc="ZO eta = 2**-n")],
                 doc="learning rates and perturbation scale (TrainParams)"),
        Register("seed", [Field("seed", 32, "rw", init=t.seed)], doc="perturbation seed"),
        Register("steps", [Field("steps", 20, "rw", init=t.steps)], doc="ZO step budget"),
        Register("queries", [Field("queries", 5, "rw", init=t.queries)],
                 doc="ZO queries per step"),
        Register("zo_step", [Field("step", 32, "rw")],
                 doc="ZO perturbation step of the run's first query"),
        Register("zo_cursor", [Field("cursor", INDEX_WIDTH, "rw")],
                 doc="ZO first sample of the run's first mini-batch"),
        Register("eval_range", [Field("first", INDEX_WIDTH, "rw", doc="first record"),
                                Field("count", INDEX_WIDTH, "rw", doc="records")],
                 doc="EVAL records first .. first+count-1"),
        Register("watchdog", [Field("budget", 32, "rw",
                                    init=default_watchdog(mac, cache, perturb))],
                 doc="cycles without datapath progress before a run is aborted"),
        Register("next_step", [Field("step", 32, "ro")],
                 doc="ZO: perturbation step after the run (write it to zo_step to go on)"),
        Register("next_cursor", [Field("cursor", INDEX_WIDTH, "ro")],
                 doc="ZO: cursor after the run (write it to zo_cursor to go on)"),
        *(Register(COUNTER_REGISTERS[c], [Field("value", 32, "ro")],
                   doc=f"counter: {COUNTER_DOCS[c]} (saturating)") for c in COUNTERS),
    )


def _mismatch(field, value, expected, why):
    raise ValueError(f"{field} must be {expected} ({why}), not {value}")


def check_soc(config):
    """Cross-section rules of a SoC (``config``: anything with ``perturb``, ``cache``,
    ``mac``, ``loss`` sections); raises ValueError naming the field."""
    p, c, mac, loss = config.perturb, config.cache, config.mac, config.loss
    for name, cls in (("perturb", PerturbParams), ("cache", CacheParams), ("mac", MacParams),
                      ("loss", LossParams)):
        if not isinstance(getattr(config, name), cls):
            raise ValueError(f"{name} must be a {cls.__name__}, "
                             f"not {type(getattr(config, name)).__name__}")
    if c.lanes != mac.lanes:
        _mismatch("cache.lanes", c.lanes, mac.lanes, "mac.lanes")
    if p.lanes != mac.lanes:
        _mismatch("perturb.lanes", p.lanes, mac.lanes, "mac.lanes")
    if c.taps != mac.taps:
        _mismatch("cache.taps", list(c.taps), list(mac.taps), "mac.taps")
    if (c.out_width, c.out_frac) != (mac.feature_width, mac.feature_frac):
        _mismatch("cache.out_width/out_frac", f"{c.out_width}/{c.out_frac}",
                  f"{mac.feature_width}/{mac.feature_frac}",
                  "the MAC array's feature format")
    if (p.width, p.frac_bits) != (mac.perturb_width, mac.perturb_frac):
        _mismatch("perturb.width/frac_bits", f"{p.width}/{p.frac_bits}",
                  f"{mac.perturb_width}/{mac.perturb_frac}",
                  "mac.perturb_width/perturb_frac")
    rows = Layout(mac).regions[0].rows         # words per feature beat of the MAC array
    if c.beat_cycles > rows:
        raise ValueError(f"cache.dequantizer_lanes must be 0 or at least "
                         f"{-(-c.lanes // rows)} (a beat every {rows} cycles for the MAC "
                         f"array), not {c.dequantizer_lanes}")
    dim = Layout(mac).dimension
    if p.dimension != dim:
        _mismatch("perturb.dimension", p.dimension, dim, "the adapter weights, padding included")
    if len({c.classes, mac.classes, loss.classes}) != 1:
        _mismatch("cache.classes and mac.classes", f"{c.classes}/{mac.classes}",
                  loss.classes, "loss.classes")
    if (loss.logit_width, loss.logit_frac) != (LOGIT_WIDTH, LOGIT_FRAC):
        _mismatch("loss.logit_width/logit_frac", f"{loss.logit_width}/{loss.logit_frac}",
                  f"{LOGIT_WIDTH}/{LOGIT_FRAC}", "the cache's frozen logits z0")
    if (loss.logit_width, loss.logit_frac) != (mac.feature_width, mac.feature_frac):
        _mismatch("loss.logit_width/logit_frac", f"{loss.logit_width}/{loss.logit_frac}",
                  f"{mac.feature_width}/{mac.feature_frac}", "the MAC array's result format")
    if loss.prob_frac + 1 > mac.coef_width:
        _mismatch("mac.coef_width", mac.coef_width, f"at least {loss.prob_frac + 1}",
                  "dz is signed Q1.prob_frac")


# -- glue -------------------------------------------------------------------------------------

class SampleRouter(wiring.Component):
    """Between the sequencer, the forward cache, the MAC array and the loss unit.

    ``fetch`` requests go to the cache's ``req`` (a tag FIFO remembers what each read is
    for); every beat of a read goes to the MAC array's ``x``. On the last beat of a read that
    feeds a forward, the sample's z0 and label are captured into the loss unit's command
    (FO: with ``dz``; ZO: the read's sign, restarting the sum on a query's first sample;
    EVAL: neither); that beat waits while the previous command is still pending, so commands
    reach the loss unit in forward order, before their logits. ``flush`` drains the cache's
    read stream (the SoC resets the router's registers meanwhile).
    """

    def __init__(self, cache: CacheParams, mac: MacParams, loss: LossParams):
        self.cache, self.mac, self.loss = cache, mac, loss
        super().__init__({
            "fetch": In(stream.Signature(fetch_layout())),
            "req": Out(stream.Signature(unsigned(INDEX_WIDTH))),
            "rd": In(stream.Signature(cache_beat_layout(cache))),
            "x": Out(stream.Signature(mac_beat_layout(mac))),
            "cmd": Out(stream.Signature(loss_command_layout(loss))),
            "mode": In(Mode),
            "flush": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tag_layout = data.StructLayout({"forward": 1, "zo": ZOSign, "first": 1})
        m.submodules.tags = tags = SyncFIFO(width=tag_layout.size, depth=8)
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
        hold = Signal()                  # the last beat of a forward's read waits for it
        m.d.comb += hold.eq(rd.payload.last & tag.forward & pending)

        m.d.comb += [self.x.payload.data.eq(rd.payload.data),
                     self.x.payload.last.eq(rd.payload.last)]
        with m.If(self.flush):
            m.d.comb += rd.ready.eq(1)
        with m.Elif(tags.r_rdy & ~hold):
            m.d.comb += [self.x.valid.eq(rd.valid), rd.ready.eq(self.x.ready)]
        taken = rd.valid & rd.ready & ~self.flush
        m.d.comb += tags.r_en.eq(taken & rd.payload.last)

        held = Signal(loss_command_layout(self.loss))
        m.d.comb += [self.cmd.valid.eq(pending), self.cmd.payload.eq(held),
                     self.cmd.payload.dz.eq(self.mode == Mode.FO)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += pending.eq(0)
        with m.If(taken & rd.payload.last & tag.forward):
            m.d.sync += [pending.eq(1), held.z0.eq(rd.payload.z0),
                         held.label.eq(rd.payload.label), held.zo.eq(tag.zo),
                         held.zo_first.eq(tag.first & (tag.zo == ZOSign.PLUS))]
        m.d.comb += self.idle.eq(~tags.r_rdy & ~pending)
        return m


def _target_access(m, bus):
    """``access``: a transfer is pending and not yet answered; ``respond(ok, err)``."""
    responded = Signal()
    access = Signal()
    m.d.comb += access.eq(bus.cyc & ~responded)
    m.d.sync += [bus.ack.eq(0), bus.err.eq(0), responded.eq(0)]

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

    Both streams pass registers (``wload.valid`` and ``wdump.ready`` are flip-flops), so no
    combinational path runs from the bus into the MAC array: a write is answered the cycle
    after the array takes the weight, a read as soon as a dumped weight is held.
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
        # load: the written weight waits in a register until the array takes it
        pending = Signal()
        held_w = Signal(signed(ww))
        m.d.comb += [self.wload.valid.eq(pending), self.wload.payload.eq(held_w)]
        with m.If(access & bus.we & ~pending):
            with m.If(self.loading):
                m.d.sync += [held_w.eq(bus.dat_w[:ww]), pending.eq(1)]
            with m.Else():
                respond(error=True)
        with m.If(self.wload.valid & self.wload.ready):
            m.d.sync += pending.eq(0)
            respond(ok=True)
        # dump: one weight held for the host
        have = Signal()
        held_r = Signal(signed(ww))
        m.d.comb += self.wdump.ready.eq(~have)
        with m.If(self.wdump.valid & ~have):
            m.d.sync += [held_r.eq(self.wdump.payload), have.eq(1)]
        with m.If(access & ~bus.we):
            with m.If(have):
                m.d.sync += [bus.dat_r.eq(held_r), have.eq(0)]
                respond(ok=True)
            with m.Elif(~self.dumping):
                respond(error=True)
        m.d.comb += self.idle.eq(~pending & ~have)
        return m


# -- the SoC ----------------------------------------------------------------------------------

#: Word address of the first window; the register bank sits below it.
WINDOW_BASE = 0x20


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
        self.registers = soc_registers(self.mac, self.cache, self.perturb)
        self.bank_width = max(1, (len(self.registers) - 1).bit_length())
        if 1 << self.bank_width > WINDOW_BASE:
            raise ValueError("the register map outgrew the space below the windows")
        self.windows = {"records": (WINDOW_BASE, 1), "weights": (WINDOW_BASE + 2, 1)}
        super().__init__({
            "bus": In(BusSignature(6)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "irq": Out(1),
        })

    def address(self, name):
        """Word address of a register or window by name."""
        if name in self.windows:
            return self.windows[name][0]
        for i, r in enumerate(self.registers):
            if r.name == name:
                return i
        raise KeyError(name)

    def memory_map(self):
        """``{"registers": RegisterBank.memory_map(), "windows": [{name, address, words,
        doc}]}``."""
        bank = RegisterBank(self.registers)
        bank._MustUse__silence = True            # built for its map only, never elaborated
        return {"registers": bank.memory_map(),
                "windows": [{"name": n, "address": a, "words": 1 << w, "doc": WINDOWS[n]}
                            for n, (a, w) in self.windows.items()]}

    def elaborate(self, platform):
        m = Module()
        mac_p, cache_p, loss_p = self.mac, self.cache, self.loss
        b = _Blocks(
            seq=Sequencer(mac_p, loss_p, cache_p, self.perturb, self.modes),
            engine=PerturbationEngine(self.perturb) if "zo" in self.modes else None,
            cache=ForwardCache(cache_p), mac=AdapterMACArray(mac_p),
            loss=SoftmaxCrossEntropy(loss_p), router=SampleRouter(cache_p, mac_p, loss_p),
            bank=RegisterBank(self.registers), records=RecordWindow(cache_p),
            weights=WeightWindow(mac_p),
            dec=BusDecoder(6, [("regs", 0, self.bank_width),
                               *((n, a, w) for n, (a, w) in self.windows.items())]))
        flush = b.seq.flush
        m.submodules.seq = b.seq
        m.submodules.cache = b.cache
        # an abort resets the datapath; the cache keeps its records (its read side only
        # waits on rd.ready, which the router holds high while flushing)
        if b.engine is not None:
            m.submodules.engine = ResetInserter(flush)(b.engine)
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
        """Streams between the blocks; returns the skid buffers' "holding a beat" signal."""
        mac_p, seq, mac, cache = self.mac, b.seq, b.mac, b.cache
        # perturbations and features reach the MAC array through skid buffers: its issue
        # logic (`ready`) would otherwise reach the engine's pipeline enable and the cache's
        # dequantizer combinationally
        x_buffer = SkidBuffer(mac_beat_layout(mac_p))
        m.submodules.x_buffer = ResetInserter(flush)(x_buffer)
        wiring.connect(m, x_buffer.o, mac.x)
        holding = x_buffer.o.valid
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
        wiring.connect(m, b.router.x, x_buffer.i)
        wiring.connect(m, b.router.cmd, b.loss.cmd)
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
            b.weights.loading.eq(seq.busy & (seq.mode == Mode.LOAD)),
            b.weights.dumping.eq(seq.busy & (seq.mode == Mode.DUMP)),
        ]
        cfg = seq.settings
        m.d.comb += [
            cfg.mode.eq(regs.mode.mode), cfg.epochs.eq(regs.epochs.epochs),
            cfg.batch.eq(regs.batch.batch), cfg.lr_shift.eq(regs.shifts.lr_shift),
            cfg.eps_shift.eq(regs.shifts.eps_shift),
            cfg.zo_lr_shift.eq(regs.shifts.zo_lr_shift), cfg.seed.eq(regs.seed.seed),
            cfg.steps.eq(regs.steps.steps), cfg.queries.eq(regs.queries.queries),
            cfg.step.eq(regs.zo_step.step), cfg.cursor.eq(regs.zo_cursor.cursor),
            cfg.eval_first.eq(regs.eval_range.first), cfg.eval_count.eq(regs.eval_range.count),
            cfg.watchdog.eq(regs.watchdog.budget),
        ]
        m.d.comb += cache.clear.eq(regs.control.clear_cache & ~seq.busy)

    def _status(self, m, b):
        """Read-only registers, error flags and the status outputs."""
        mac_p, cache_p, seq, mac, cache = self.mac, self.cache, b.seq, b.mac, b.cache
        regs, lay = b.bank.regs, Layout(mac_p)
        m.d.comb += [
            regs.id.magic.eq(MAGIC), regs.id.version.eq(VERSION),
            regs.geometry.lanes.eq(mac_p.lanes), regs.geometry.classes.eq(mac_p.classes),
            regs.geometry.beats.eq(CacheLayout(cache_p).beats),
            regs.capacity.records.eq(cache_p.capacity),
            regs.capacity.regions.eq(len(lay.regions)),
            regs.weights.words.eq(lay.words),
            regs.status.busy.eq(seq.busy), regs.status.done.eq(seq.done),
            regs.status.records.eq(cache.count),
            regs.next_step.step.eq(seq.next_step), regs.next_cursor.cursor.eq(seq.next_cursor),
        ]
        for c in COUNTERS:
            m.d.comb += getattr(regs, COUNTER_REGISTERS[c]).value.eq(getattr(seq.counters, c))
        errs = regs.errors
        for name in SEQUENCER_ERRORS:
            m.d.comb += getattr(errs, f"{name}_set").eq(getattr(seq.errors, name))
        with m.If(regs.control.clear_cache & seq.busy):
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


def memory_map_markdown(soc):
    """The memory map of ``soc`` as Markdown tables (docs/architecture.md holds the default
    design's; ``python -m fieldtune.rtl.soc`` prints it)."""
    mm = soc.memory_map()
    lines = ["| word | register | field | bits | access | reset | meaning |",
             "|---|---|---|---|---|---|---|"]
    for reg in mm["registers"]:
        first = True
        for f in reg["fields"]:
            hi = f["lsb"] + f["width"] - 1
            bits = f"{hi}:{f['lsb']}" if f["width"] > 1 else f"{f['lsb']}"
            reset = f"{f['init']:#x}" if f["access"] == "rw" else ""
            lines.append(f"| {reg['address']:#04x} | {reg['name'] if first else ''} | "
                         f"{f['name']} | {bits} | {f['access']} | {reset} | "
                         f"{f['doc'] or (reg['doc'] if first else '')} |")
            first = False
    lines += ["", "| word | window | words | what |", "|---|---|---|---|"]
    for w in mm["windows"]:
        lines.append(f"| {w['address']:#04x} | {w['name']} | {w['words']} | {w['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":              # pragma: no cover - documentation helper
    from ..config import DesignConfig
    soc = SoC(DesignConfig())
    soc._MustUse__silence = True
    print(memory_map_markdown(soc), end="")
