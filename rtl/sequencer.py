"""The training sequencer: the epoch, mini-batch and query loops of the SoC, as micro-ops.

:class:`Sequencer` turns one *run* (a start with the run-time configuration latched from the
registers) into the streams the datapath of :class:`~fieldtune.rtl.soc.SoC` consumes:

* ``mac_cmd``: micro-ops for the :class:`~fieldtune.rtl.mac.AdapterMACArray`, exactly the
  programs of :func:`fieldtune.sim.golden.train.fo_program` / ``zo_program`` (the golden
  model of the SoC composes those);
* ``fetch``: sample reads from the forward cache: the features go to the MAC array's ``x``
  stream; a read for a forward also makes the SoC's sample router issue the loss unit's
  command (the sample's frozen logits z0 and label, which the cache delivers with the last
  beat; the zeroth-order sign);
* ``zreq``: perturbation requests ``(seed, step)`` (each forward of a zeroth-order query and
  its update replay the same step).

It consumes the loss unit's ``result`` stream (counters, the zeroth-order sums). Runs:

=========  ===============================================================================
mode       what a run does
=========  ===============================================================================
``FO``     ``epochs`` passes over the cached records ``0 .. records-1`` in mini-batches of
           ``batch`` (a short last batch still divides by ``batch``): per mini-batch BATCH,
           the forwards (MATVEC, read), then the updates (UPDATE, read).
``ZO``     ``steps`` steps; step ``s`` uses the mini-batch at the cursor (which advances by
           ``batch`` and wraps to 0 when the next batch would start past the records). Per
           step, per query ``i < queries``: for every sample the forward at ``W + eps z`` and
           at ``W - eps z`` with ``z`` of perturbation step ``p = step + s*queries + i``; then
           per query the update ``W -= round_half_up(g_i / queries) * 2**-cshift * z`` with
           ``z`` replayed (``g_i``: the loss unit's sum of ``L+ - L-`` over the batch).
``EVAL``   one forward per record ``first .. first+count-1`` (no update): loss and accuracy
           land in the counters.
``LOAD``   LOAD ops for every weight region; the host writes the words through the weight
           window.
``DUMP``   DUMP ops for every weight region; the host reads the words.
=========  ===============================================================================

Illegal configurations set error strobes (:data:`SEQUENCER_ERRORS`) and start nothing: the
run ends at once with ``done``. A start while busy is flagged and ignored. The watchdog
aborts a FO/ZO/EVAL run after ``watchdog`` cycles without a transfer on any datapath stream
(the SoC's ``progress`` input); the host may abort any run. An abort raises ``flush`` for
:attr:`Sequencer.flush_cycles` cycles (the SoC resets the datapath with it) and ends the run.

Timing: one action (op, fetch, request) per cycle when its stream is ready; the sequencer
waits on back-pressure, never drops anything. ``done`` rises when everything issued has
completed (MAC array idle, every loss result received, the datapath idle).
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, signed, unsigned
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import TrainParams
from .mac.params import MacParams
from .mac.layout import Layout
from .mac.array import update_shift
from .mac.ops import (Op, Region, Operand, Perturb, Dest, CoefSource, MAC_OP, IMM_WIDTH,
                      mac_op)
from .loss.params import LossParams
from .loss.unit import loss_result_layout, ZOSign
from .loss.tables import zo_sum_width
from .cache.params import CacheParams, INDEX_WIDTH
from .cache.layout import CacheLayout
from .cache.cache import drain_bound
from .perturb.params import PerturbParams
from .perturb.engine import Request


__all__ = ["Mode", "RUN_CONFIG", "COUNTERS", "SEQUENCER_ERRORS", "MAX_QUERIES", "MAX_BATCH",
           "CSHIFT_MIN", "CSHIFT_MAX", "fetch_layout", "coef_shift_constants", "Sequencer",
           "default_watchdog"]


class Mode(enum.Enum, shape=3):
    """What a run does (the ``mode`` register); values 5 to 7 are illegal."""
    FO = 0
    ZO = 1
    EVAL = 2
    LOAD = 3
    DUMP = 4


#: Most zeroth-order queries per step (``TrainParams.queries``).
MAX_QUERIES = 16
#: Largest mini-batch (``TrainParams.batch``; the loss unit's sum holds 256 pairs).
MAX_BATCH = 256
#: Range of the MAC array's signed 6-bit ``cshift`` field.
CSHIFT_MIN, CSHIFT_MAX = -32, 31

#: The run-time configuration, latched from the registers at start.
RUN_CONFIG = data.StructLayout({
    "mode": 3,
    "epochs": 10,
    "batch": 9,
    "lr_shift": 5,
    "eps_shift": 5,
    "zo_lr_shift": 5,
    "seed": 32,
    "steps": 20,
    "queries": 5,
    "step": 32,
    "cursor": INDEX_WIDTH,
    "eval_first": INDEX_WIDTH,
    "eval_count": INDEX_WIDTH,
    "watchdog": 32,
})

#: Counters of a run (32-bit, saturating at 2**32 - 1), reset by every accepted start.
COUNTERS = ("cycles", "samples", "epochs", "steps", "loss_sum", "correct")
COUNTER_WIDTH = 32

#: Error strobes of the sequencer, in register bit order, with their meaning.
SEQUENCER_ERRORS = {
    "bad_mode": "mode is not FO, ZO, EVAL, LOAD or DUMP",
    "zero_epochs": "FO with epochs = 0",
    "bad_batch": "batch is not a power of two, or above mac.max_batch (FO) or 256 (ZO)",
    "batch_count": "batch larger than the cached records (FO, ZO)",
    "bad_shift": "lr_shift / eps_shift / zo_lr_shift give a scaling the MAC array cannot do",
    "bad_steps": "ZO with steps = 0, queries = 0 or queries > 16",
    "bad_cursor": "ZO cursor not below the cached records",
    "eval_range": "EVAL range empty or beyond the cached records",
    "bad_watchdog": "watchdog budget 0 (FO, ZO, EVAL)",
    "busy": "start (or cache clear) while a run is busy: ignored",
    "watchdog": "a run made no progress for watchdog cycles: aborted",
    "aborted": "the host aborted a run",
}


def fetch_layout():
    """A sample read: cache ``index``; ``forward`` (a loss command goes with it: the read
    feeds a forward whose result the loss unit takes); ``zo`` (the zeroth-order sign of that
    forward's loss); ``first`` (the first sample of a zeroth-order query: the sum restarts)."""
    return data.StructLayout({"index": unsigned(INDEX_WIDTH), "forward": 1, "zo": ZOSign,
                              "first": 1})


def coef_shift_constants(mac: MacParams, loss: LossParams):
    """``(C_FO, C_A, C_ZO, K0)``: the scaling of a first-order update is
    ``cs = C_FO - lr_shift - log2(batch)`` (the BATCH op stores ``dz`` scaled by it; low-rank
    ``A``: ``C_A - ...``, so COLACC scales ``v`` by the constant ``C_A - C_FO``), the
    ``cshift`` of a zeroth-order update ``C_ZO - zo_lr_shift - log2(batch) + eps_shift``, and
    the perturbation's ``zshift`` ``K0 - eps_shift`` (mirrors
    :func:`fieldtune.sim.golden.train.fo_coef_shifts` / ``zo_coef_shift`` /
    :func:`fieldtune.sim.golden.mac.zshift_for`; a test holds them equal)."""
    us, wf, ff = update_shift(mac), mac.weight_frac, mac.feature_frac
    v_frac = loss.prob_frac + wf - (mac.coef_width - 1)
    z_align = max(mac.feature_width, mac.perturb_width) - mac.perturb_width
    c_fo = us + wf - loss.prob_frac - ff
    c_a = us + wf - v_frac - ff
    c_zo = us + wf - loss.loss_frac - (mac.perturb_frac + z_align) - 1
    return c_fo, c_a, c_zo, wf - mac.perturb_frac


def default_watchdog(mac: MacParams, cache: CacheParams, perturb: PerturbParams):
    """Reset value of the watchdog budget: a power of two at least 65,536 and 8 times the
    longest legitimate pause of the datapath (a pool fill plus a MATVEC and a cache read)."""
    pause = 8 * (Layout(mac).words + perturb.pool_size + CacheLayout(cache).beats + 256)
    return max(1 << 16, 1 << (pause - 1).bit_length())


def _sat_add(a, b, width=COUNTER_WIDTH):
    """``a + b`` saturating at ``2**width - 1`` (counters never wrap)."""
    s = a + b
    return Mux(s[width:].any(), (1 << width) - 1, s[:width])


class Sequencer(wiring.Component):
    """Runs FO, ZO, EVAL, LOAD and DUMP (see the module documentation).

    Parameters
    ----------
    mac : MacParams
    loss : LossParams
    cache : CacheParams

    Attributes
    ----------
    start, abort : In(1)
        Strobes (the ``control`` register's ``w1p`` bits).
    settings : In(RUN_CONFIG)
        The registers; latched on ``start``.
    records : In(range(capacity + 1))
        Records in the forward cache; latched on ``start``.
    mac_cmd : Out(stream.Signature(MAC_OP))
    fetch : Out(stream.Signature(fetch_layout()))
    zreq : Out(stream.Signature(Request))
    result : In(stream.Signature(loss_result_layout))
        Always ready.
    mac_idle, datapath_idle, engine_busy, progress : In(1)
        Completion (``done`` waits for all three) and watchdog inputs.
    mode : Out(Mode)
        The mode of the current (or last) run.
    busy, done : Out(1)
        ``busy`` from start to the end of the run; ``done`` from the end of a run (or of a
        rejected start) to the next accepted start.
    accepted : Out(1)
        Strobe: a run was accepted (clears the MAC array's flags and the window lanes).
    flush : Out(1)
        Datapath reset during an abort.
    counters : Out(COUNTERS)
    next_step, next_cursor : Out
        Zeroth order: the perturbation step and cursor the next run continues from.
    errors : Out(SEQUENCER_ERRORS)
        One-cycle strobes.
    """

    def __init__(self, mac: MacParams, loss: LossParams, cache: CacheParams,
                 perturb: PerturbParams):
        for name, value, cls in (("mac", mac, MacParams), ("loss", loss, LossParams),
                                 ("cache", cache, CacheParams),
                                 ("perturb", perturb, PerturbParams)):
            if not isinstance(value, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        self.mac, self.loss, self.cache, self.perturb = mac, loss, cache, perturb
        self.layout = Layout(mac)
        c_fo, c_a, _, _ = coef_shift_constants(mac, loss)
        #: COLACC's ``cshift`` (low-rank first order): ``v`` scaled for A's update.
        self.colacc_cshift = c_a - c_fo
        if len(self.layout.regions) == 2 and not CSHIFT_MIN <= self.colacc_cshift \
                <= mac.coef_width - 1:
            raise ValueError(f"mac.coef_width must be at least {self.colacc_cshift + 1} for "
                             f"low-rank adapters, not {mac.coef_width}")
        #: Cycles ``flush`` stays high: every beat the cache may still hold drains.
        self.flush_cycles = drain_bound(cache, 2) + 16
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "settings": In(RUN_CONFIG),
            "records": In(range(cache.capacity + 1)),
            "mac_cmd": Out(stream.Signature(MAC_OP)),
            "fetch": Out(stream.Signature(fetch_layout())),
            "zreq": Out(stream.Signature(Request)),
            "result": In(stream.Signature(loss_result_layout(loss))),
            "mac_idle": In(1),
            "datapath_idle": In(1),
            "engine_busy": In(1),
            "progress": In(1),
            "mode": Out(Mode),
            "busy": Out(1),
            "done": Out(1),
            "accepted": Out(1),
            "flush": Out(1),
            "counters": Out(data.StructLayout({c: COUNTER_WIDTH for c in COUNTERS})),
            "next_step": Out(32),
            "next_cursor": Out(INDEX_WIDTH),
            "errors": Out(data.StructLayout({e: 1 for e in SEQUENCER_ERRORS})),
        })

    # -- programs ---------------------------------------------------------------------------

    def _programs(self, r):
        """Per mode, the phases of micro-actions (see :meth:`elaborate`); ``r`` holds the
        run registers the dynamic op fields come from."""
        lowrank = len(self.layout.regions) == 2
        C = self.mac.classes

        def op(kind, region=Region.W, **fields):
            return ("op", dict(op=kind, region=region, **fields))

        FEED, ZREQ = ("fetch", False, ZOSign.NONE), ("zreq",)
        losses = {Perturb.NONE: ZOSign.NONE, Perturb.PLUS: ZOSign.PLUS,
                  Perturb.MINUS: ZOSign.MINUS}

        def forward(sign=Perturb.NONE):
            z = dict(perturb=sign, zshift=r["k"]) if sign != Perturb.NONE else {}
            read = ("fetch", True, losses[sign])
            if not lowrank:
                return [op(Op.MATVEC, Region.W, operand=Operand.STREAM, **z), read]
            return [op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL, **z), read,
                    op(Op.MATVEC, Region.B, operand=Operand.LOCAL, **z)]

        # dz are stored scaled by the update's shift (BATCH), v by COLACC's (cs_a - cs)
        if not lowrank:
            fo = [("once", [op(Op.BATCH, cshift=r["cs"])]),
                  ("each", forward()),
                  ("each", [op(Op.UPDATE, Region.W, operand=Operand.STREAM,
                               coef_base=r["cb"]), FEED])]
        else:
            fo = [("once", [op(Op.BATCH, cshift=r["cs"])]),
                  ("each", forward()),
                  ("each", [op(Op.COLACC, Region.B, coef_base=r["cb"], v_base=r["vb"],
                               cshift=self.colacc_cshift)]),
                  ("each", [op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL),
                            FEED,
                            op(Op.UPDATE, Region.B, operand=Operand.LOCAL, coef_base=r["cb"])]),
                  ("each", [op(Op.UPDATE, Region.A, operand=Operand.STREAM,
                               coef_base=r["vb"]), FEED])]
        zo_forward = [("each", [ZREQ, *forward(Perturb.PLUS), ZREQ, *forward(Perturb.MINUS)])]
        zo_update = [("once", [ZREQ] + [op(Op.UPDATE, Region(i), operand=Operand.Z,
                                           coef_source=CoefSource.IMM, imm=r["g"],
                                           cshift=r["cs_z"])
                                        for i in range(len(self.layout.regions))])]
        evaluate = [("each", forward())]
        regions = [Region(i) for i in range(len(self.layout.regions))]
        load = [("once", [op(Op.LOAD, reg) for reg in regions])]
        dump = [("once", [op(Op.DUMP, reg) for reg in regions])]
        del C
        return {"FO": fo, "ZF": zo_forward, "ZU": zo_update, "EV": evaluate, "LD": load,
                "DP": dump}

    # -- gateware ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        mac, loss, lay = self.mac, self.loss, self.layout
        C = mac.classes
        inner = lay.inner
        lowrank = len(lay.regions) == 2
        c_fo, c_a, c_zo, k0 = coef_shift_constants(mac, loss)
        gw = zo_sum_width(loss)
        IW = INDEX_WIDTH

        cfg = Signal(RUN_CONFIG)
        records = Signal(range(self.cache.capacity + 1))
        mode = cfg.mode                  # latched with the configuration at start
        m.d.comb += self.mode.eq(mode)

        # -- run registers ----------------------------------------------------------------
        log2b = Signal(range(9))
        cs = Signal(signed(8))
        cs_z = Signal(signed(8))
        k = Signal(signed(7))
        base = Signal(IW + 1)            # FO: batch start; ZO: cursor; EVAL: first record
        nb = Signal(IW + 1)              # samples in the current batch / range
        n = Signal(IW + 1)               # sample within the phase
        sample = Signal(IW + 1)          # base + n
        cb = Signal(16)                  # n * classes: dz of sample n
        vb = Signal(16)                  # v_base + n * rank * taps: v of sample n
        epoch = Signal(10)
        zstep = Signal(20)
        qi = Signal(range(MAX_QUERIES + 1))
        pstep = Signal(32)
        g = Signal(signed(IMM_WIDTH))
        outstanding = Signal(IW + 2)     # MATVEC results not yet through the loss unit
        wd = Signal(32)
        flush_count = Signal(range(self.flush_cycles + 1))
        regs = {"cs": cs[:6], "cs_z": cs_z[:6], "k": k[:5], "cb": cb,
                "vb": vb, "g": g}

        counters = self.counters
        m.d.comb += [self.next_step.eq(pstep), self.next_cursor.eq(base)]

        # -- states -----------------------------------------------------------------------
        programs = self._programs(regs)
        names = ["IDLE", "CHECK", "FO_BATCH", "FO_NEXT", "ZO_STEP", "ZF_NEXT", "ZU_WAIT",
                 "ZU_READ", "ZU_DIV", "ZU_NEXT", "STEP_END", "EV_START", "DRAIN", "ABORT"]
        actions = {}                     # state -> (action, next state, phase start, each)
        entries = {}
        for prog, phases in programs.items():
            first_states = []
            for p, (_, acts) in enumerate(phases):
                first_states.append(f"{prog}{p}_0")
            entries[prog] = first_states[0]
            for p, (kind, acts) in enumerate(phases):
                for a, act in enumerate(acts):
                    name = f"{prog}{p}_{a}"
                    names.append(name)
                    if a + 1 < len(acts):
                        nxt = f"{prog}{p}_{a + 1}"
                    else:
                        nxt = None       # end of the phase: loop or next phase
                    actions[name] = (act, nxt, first_states[p], kind,
                                     first_states[p + 1] if p + 1 < len(phases) else None)
        state = Signal(range(len(names)))
        S = {name: i for i, name in enumerate(names)}
        continuation = {"FO": "FO_NEXT", "ZF": "ZF_NEXT", "ZU": "ZU_NEXT", "EV": "DRAIN",
                        "LD": "DRAIN", "DP": "DRAIN"}

        def goto(name):
            m.d.sync += state.eq(S[name])

        def begin_phase():
            m.d.sync += [n.eq(0), sample.eq(base), cb.eq(0), vb.eq(lay.v_base)]

        busy = Signal()
        m.d.comb += [busy.eq(state != S["IDLE"]), self.busy.eq(busy)]

        # -- results: counters and zeroth-order sums --------------------------------------
        m.submodules.gmem = gmem = Memory(shape=signed(gw), depth=MAX_QUERIES, init=[])
        g_wr = gmem.write_port()
        g_rd = gmem.read_port(transparent_for=())
        res_n = Signal(IW + 2)
        res_q = Signal(range(MAX_QUERIES + 1))
        res = self.result.payload
        m.d.comb += [self.result.ready.eq(1), g_wr.addr.eq(res_q), g_wr.data.eq(res.zo_sum)]
        got = Signal()
        m.d.comb += got.eq(self.result.valid)
        with m.If(got):
            m.d.sync += [counters.samples.eq(_sat_add(counters.samples, 1)),
                         counters.loss_sum.eq(_sat_add(counters.loss_sum, res.loss)),
                         counters.correct.eq(_sat_add(counters.correct, res.correct))]
            with m.If(mode == Mode.ZO):
                with m.If(res_n == 2 * nb - 1):
                    m.d.comb += g_wr.en.eq(1)
                    m.d.sync += [res_n.eq(0), res_q.eq(res_q + 1)]
                with m.Else():
                    m.d.sync += res_n.eq(res_n + 1)
        issued_out = Signal()            # a MATVEC with results on `out` was accepted
        m.d.sync += outstanding.eq(outstanding + issued_out - got)
        with m.If(busy & (state != S["CHECK"])):
            m.d.sync += counters.cycles.eq(_sat_add(counters.cycles, 1))

        # -- checks at start --------------------------------------------------------------
        err = self.errors
        batch = cfg.batch
        pow2 = Signal()
        m.d.comb += pow2.eq((batch != 0) & ((batch & (batch - 1)) == 0))
        lb = Signal(range(9))
        for i in range(9):
            with m.If(batch[i]):
                m.d.comb += lb.eq(i)
        cs_fo_v = Signal(signed(9))
        cs_z_v = Signal(signed(9))
        k_v = Signal(signed(7))
        m.d.comb += [cs_fo_v.eq(c_fo - cfg.lr_shift - lb),
                     cs_z_v.eq(c_zo - cfg.zo_lr_shift - lb + cfg.eps_shift),
                     k_v.eq(k0 - cfg.eps_shift)]
        is_fo, is_zo, is_ev = (cfg.mode == Mode.FO, cfg.mode == Mode.ZO, cfg.mode == Mode.EVAL)
        fo_shift_bad = (cs_fo_v < CSHIFT_MIN) | (cs_fo_v > CSHIFT_MAX)
        zo_shift_bad = ((k_v < 0) | (cs_z_v < CSHIFT_MIN) | (cs_z_v > CSHIFT_MAX))
        checks = {
            "bad_mode": cfg.mode > Mode.DUMP.value,
            "zero_epochs": is_fo & (cfg.epochs == 0),
            "bad_batch": (is_fo & (~pow2 | (batch > mac.max_batch)))
                         | (is_zo & (~pow2 | (batch > MAX_BATCH))),
            "batch_count": (is_fo | is_zo) & (batch > records),
            "bad_shift": (is_fo & fo_shift_bad) | (is_zo & zo_shift_bad),
            "bad_steps": is_zo & ((cfg.steps == 0) | (cfg.queries == 0)
                                  | (cfg.queries > MAX_QUERIES)),
            "bad_cursor": is_zo & (cfg.cursor >= records),
            "eval_range": is_ev & ((cfg.eval_count == 0)
                                   | (cfg.eval_first + cfg.eval_count > records)),
            "bad_watchdog": (is_fo | is_zo | is_ev) & (cfg.watchdog == 0),
        }
        check_bits = Signal(len(checks))
        m.d.comb += check_bits.eq(Cat(*checks.values()))

        # -- watchdog and abort -----------------------------------------------------------
        watched = busy & (state != S["CHECK"]) & (state != S["ABORT"]) \
            & ((mode == Mode.FO) | (mode == Mode.ZO) | (mode == Mode.EVAL))
        with m.If(~watched | self.progress):
            m.d.sync += wd.eq(0)
        with m.Else():
            m.d.sync += wd.eq(wd + 1)
        wd_fire = Signal()
        m.d.comb += wd_fire.eq(watched & (wd >= cfg.watchdog - 1) & ~self.progress)

        m.d.comb += self.accepted.eq(0)
        with m.If(busy & self.start):
            m.d.comb += err.busy.eq(1)

        # -- the state machine ------------------------------------------------------------
        imm_div = _Divider(m, gw, MAX_QUERIES)

        with m.Switch(state):
            with m.Case(S["IDLE"]):
                with m.If(self.start):
                    m.d.sync += [cfg.eq(self.settings), records.eq(self.records),
                                 self.done.eq(0)]
                    goto("CHECK")
            with m.Case(S["CHECK"]):
                with m.If(check_bits.any()):
                    for i, name in enumerate(checks):
                        m.d.comb += getattr(err, name).eq(check_bits[i])
                    m.d.sync += self.done.eq(1)
                    goto("IDLE")
                with m.Else():
                    m.d.comb += self.accepted.eq(1)
                    m.d.sync += [log2b.eq(lb), cs.eq(cs_fo_v),
                                 cs_z.eq(cs_z_v), k.eq(k_v),
                                 outstanding.eq(0), epoch.eq(0), zstep.eq(0), qi.eq(0),
                                 res_n.eq(0), res_q.eq(0)]
                    m.d.sync += [getattr(counters, c).eq(0) for c in COUNTERS]
                    with m.Switch(cfg.mode):
                        with m.Case(Mode.FO):
                            m.d.sync += base.eq(0)
                            goto("FO_BATCH")
                        with m.Case(Mode.ZO):
                            m.d.sync += [base.eq(cfg.cursor), pstep.eq(cfg.step)]
                            goto("ZO_STEP")
                        with m.Case(Mode.EVAL):
                            m.d.sync += base.eq(cfg.eval_first)
                            goto("EV_START")
                        with m.Case(Mode.LOAD):
                            goto(entries["LD"])
                        with m.Default():
                            goto(entries["DP"])

            # -- first order --
            with m.Case(S["FO_BATCH"]):
                left = records - base
                m.d.sync += nb.eq(Mux(left < batch, left, batch))
                begin_phase()
                goto(entries["FO"])
            with m.Case(S["FO_NEXT"]):
                m.d.sync += counters.steps.eq(_sat_add(counters.steps, 1))
                nxt = base + batch
                with m.If(nxt >= records):
                    m.d.sync += [counters.epochs.eq(_sat_add(counters.epochs, 1)),
                                 epoch.eq(epoch + 1), base.eq(0)]
                    with m.If(epoch + 1 == cfg.epochs):
                        goto("DRAIN")
                    with m.Else():
                        goto("FO_BATCH")
                with m.Else():
                    m.d.sync += base.eq(nxt)
                    goto("FO_BATCH")

            # -- zeroth order --
            with m.Case(S["ZO_STEP"]):
                left = records - base
                m.d.sync += [nb.eq(Mux(left < batch, left, batch)), qi.eq(0), res_n.eq(0),
                             res_q.eq(0)]
                begin_phase()
                goto(entries["ZF"])
            with m.Case(S["ZF_NEXT"]):
                begin_phase()
                with m.If(qi + 1 == cfg.queries):
                    m.d.sync += qi.eq(0)
                    goto("ZU_WAIT")
                with m.Else():
                    m.d.sync += qi.eq(qi + 1)
                    goto(entries["ZF"])
            with m.Case(S["ZU_WAIT"]):
                m.d.comb += g_rd.addr.eq(qi)
                with m.If(res_q > qi):
                    goto("ZU_READ")
            with m.Case(S["ZU_READ"]):
                with m.If(cfg.queries == 1):
                    m.d.sync += g.eq(g_rd.data)
                    goto(entries["ZU"])
                with m.Else():
                    imm_div.load(g_rd.data, cfg.queries)
                    goto("ZU_DIV")
            with m.Case(S["ZU_DIV"]):
                with m.If(imm_div.step()):
                    m.d.sync += g.eq(imm_div.result)
                    goto(entries["ZU"])
            with m.Case(S["ZU_NEXT"]):
                with m.If(qi + 1 == cfg.queries):
                    goto("STEP_END")
                with m.Else():
                    m.d.sync += qi.eq(qi + 1)
                    goto("ZU_WAIT")
            with m.Case(S["STEP_END"]):
                m.d.sync += [counters.steps.eq(_sat_add(counters.steps, 1)),
                             pstep.eq(pstep + cfg.queries), zstep.eq(zstep + 1)]
                nxt = base + batch
                with m.If(nxt >= records):
                    m.d.sync += [base.eq(0), counters.epochs.eq(_sat_add(counters.epochs, 1))]
                with m.Else():
                    m.d.sync += base.eq(nxt)
                with m.If(zstep + 1 == cfg.steps):
                    goto("DRAIN")
                with m.Else():
                    goto("ZO_STEP")

            # -- evaluation --
            with m.Case(S["EV_START"]):
                m.d.sync += nb.eq(cfg.eval_count)
                begin_phase()
                goto(entries["EV"])

            # -- completion --
            with m.Case(S["DRAIN"]):
                with m.If((outstanding == 0) & self.mac_idle & self.datapath_idle
                          & ~self.engine_busy):
                    m.d.sync += self.done.eq(1)
                    goto("IDLE")
            with m.Case(S["ABORT"]):
                m.d.comb += self.flush.eq(1)
                m.d.sync += flush_count.eq(flush_count + 1)
                with m.If(flush_count == self.flush_cycles - 1):
                    m.d.sync += [self.done.eq(1), flush_count.eq(0), outstanding.eq(0)]
                    goto("IDLE")

            # -- micro-actions --
            for name, (act, nxt, phase_first, kind, next_phase) in actions.items():
                prog = name.split("_")[0].rstrip("0123456789")
                with m.Case(S[name]):
                    accepted = self._action(m, act, regs, sample, n, cfg, pstep, qi,
                                            issued_out)
                    with m.If(accepted):
                        if nxt is not None:
                            goto(nxt)
                        else:
                            last = (n + 1 >= nb) if kind == "each" else Const(1)
                            with m.If(last):
                                begin_phase()
                                goto(next_phase if next_phase is not None
                                     else continuation[prog])
                            with m.Else():
                                m.d.sync += [n.eq(n + 1), sample.eq(sample + 1),
                                             cb.eq(cb + C), vb.eq(vb + inner)]
                                goto(phase_first)

        # abort (host or watchdog) overrides whatever the state machine chose
        with m.If(busy & (state != S["CHECK"]) & (state != S["ABORT"])
                  & (self.abort | wd_fire)):
            m.d.comb += [err.aborted.eq(self.abort), err.watchdog.eq(wd_fire & ~self.abort)]
            m.d.sync += [state.eq(S["ABORT"]), flush_count.eq(0)]
        return m

    def _action(self, m, act, regs, sample, n, cfg, pstep, qi, issued_out):
        """Drive one micro-action's stream; returns the signal that says it was taken."""
        if act[0] == "fetch":
            s = self.fetch
            m.d.comb += [s.valid.eq(1), s.payload.index.eq(sample),
                         s.payload.forward.eq(act[1]), s.payload.zo.eq(act[2]),
                         s.payload.first.eq(n == 0)]
            return s.ready
        if act[0] == "zreq":
            s = self.zreq
            m.d.comb += [s.valid.eq(1), s.payload.seed.eq(cfg.seed),
                         s.payload.step.eq(pstep + qi)]
            return s.ready
        fields = act[1]
        s = self.mac_cmd
        p = s.payload
        m.d.comb += s.valid.eq(1)
        # every field driven (the op's defaults for the rest): undriven bits are x in a
        # Verilog simulator
        for key, value in {**_OP_DEFAULTS, **fields}.items():
            m.d.comb += getattr(p, key).eq(value)
        if fields["op"] == Op.MATVEC and fields.get("dest", Dest.OUT) == Dest.OUT:
            m.d.comb += issued_out.eq(s.ready)
        return s.ready


#: Field values of an op not given by a program (mac_op's defaults).
_OP_DEFAULTS = {k: v for k, v in mac_op(Op.MATVEC).items() if k != "op"}


class _Divider:
    """``round_half_up(g / q) = floor((2g + q) / 2q)`` for a signed ``g`` and ``1 <= q <= 16``,
    one quotient bit per cycle (restoring division of magnitudes)."""

    def __init__(self, m, gw, qmax):
        self.m = m
        self.nw = gw + 2                 # 2g + q
        dw = (2 * qmax).bit_length()
        self.num = Signal(self.nw)       # magnitude, shifted out as the quotient shifts in
        self.den = Signal(dw)
        self.rem = Signal(dw + 1)
        self.neg = Signal()
        self.count = Signal(range(self.nw + 1))
        self.result = Signal(signed(IMM_WIDTH))
        m.d.comb += self.result.eq(Mux(self.neg, -self.num.as_signed(), self.num.as_signed()))

    def load(self, g, q):
        m, nw = self.m, self.nw
        num = Signal(signed(nw + 1))
        m.d.comb += num.eq((g << 1) + q)
        den = q << 1
        m.d.sync += [self.neg.eq(num < 0), self.den.eq(den), self.rem.eq(0),
                     self.count.eq(nw),
                     self.num.eq(Mux(num < 0, -num + den - 1, num)[:nw])]

    def step(self):
        """Advance one bit; returns a signal high in the cycle the quotient is complete."""
        m, nw = self.m, self.nw
        r2 = Signal(len(self.rem) + 1)
        m.d.comb += r2.eq(Cat(self.num[nw - 1], self.rem))
        fits = r2 >= self.den
        with m.If(self.count != 0):
            m.d.sync += [self.count.eq(self.count - 1),
                         self.rem.eq(Mux(fits, r2 - self.den, r2)),
                         self.num.eq(Cat(fits, self.num[:nw - 1]))]
        return self.count == 0
