"""The adapter MAC array: ``lanes`` signed multipliers with their adapter weight memory.

One pipeline serves every micro-op (:mod:`.ops`); a token is one weight word. See
docs/architecture.md ("Adapter MAC array") for the op table and the timing contract.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Array, Const, Mux, Cat, Value, unsigned, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import MacParams
from .layout import Layout
from .coef import Pow2Scaler, SHIFT_WIDTH
from .ops import Op, Region, Operand, Perturb, Dest, CoefSource, MAC_OP


__all__ = ["AdapterMACArray", "feature_beat_layout", "update_shift", "pipeline_stages"]


def feature_beat_layout(mac: MacParams):
    """A beat of the feature stream: ``lanes`` signed ``Q(fw-ff).ff`` features and ``last``
    (set on the final beat of a sample)."""
    return data.StructLayout({"data": data.ArrayLayout(signed(mac.feature_width), mac.lanes),
                              "last": unsigned(1)})


def update_shift(mac: MacParams):
    """Fixed right shift of update products ``a * b`` (mirrors the golden model)."""
    return mac.coef_width + 1


def _tree_levels(lanes):
    return max(lanes - 1, 0).bit_length()


def pipeline_stages(mac: MacParams):
    """Cycles from issuing a MATVEC word to its result leaving the narrowing stage."""
    return 5 + 2 * int(mac.read_register) + _tree_levels(mac.lanes)


def _lanes(name, shape, n):
    """``n`` signals ``name_0 ...``: lane vectors stay plain signals, because Yosys' ABC9
    trips over a wire named ``x[0]`` next to the bits of a wire ``x`` (YosysHQ/yosys#4349),
    which is how an ``ArrayLayout`` signal is emitted."""
    return [Signal(shape, name=f"{name}_{i}", reset_less=True) for i in range(n)]


def _sat(m, value, width, flag=None, enable=1):
    """``value`` clamped to signed ``width`` bits; drives ``flag`` when clamping (and
    ``enable``). Out of range means the bits above ``width - 1`` differ from the sign: a
    reduction, not a comparison."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = Value.cast(value)
    out = Signal(signed(width))
    if len(v) <= width:
        m.d.comb += out.eq(v)
        if flag is not None:
            m.d.comb += flag.eq(0)
        return out
    top = v[width - 1:]
    over = Signal()
    under = Signal()
    m.d.comb += [over.eq(~v[-1] & top.any()), under.eq(v[-1] & ~top.all()),
                 out.eq(Mux(over, hi, Mux(under, lo, v[:width])))]
    if flag is not None:
        m.d.comb += flag.eq(enable & (over | under))
    return out


def _above(value, select, limit0, limit1):
    """``value > (limit1 if select else limit0)`` with constant limits (a comparison, not
    the sum ``value + n > depth`` it replaces); a negative limit is always exceeded."""
    def above(limit):
        return Const(1) if limit < 0 else value > limit
    return Mux(select, above(limit1), above(limit0)) if limit0 != limit1 else above(limit0)


class _Build(SimpleNamespace):
    """What the sections of :meth:`AdapterMACArray.elaborate` share while one array is
    elaborated: the module, derived sizes and the signals that cross sections."""


class AdapterMACArray(wiring.Component):
    """``lanes`` multiply-accumulate lanes over the adapter weight memory.

    Parameters
    ----------
    params : MacParams

    Attributes
    ----------
    cmd : In(stream.Signature(MAC_OP))
        Micro-ops, checked and taken into a one-deep queue (``ready``: the queue is free,
        and for an UPDATE with an immediate the scaler too); an op starts one cycle after
        the previous one's last word. Invalid
        ops raise ``error`` and are dropped without touching a stream.
    x : In(stream.Signature(feature_beat_layout))
        Features (or the low-rank ``u``), ``lanes`` per beat, signed ``Q(fw-ff).ff``; a beat
        serves the ``rows`` words of its beat. The first of them issues when ``valid`` is
        high, loading the beat into the operand register that holds it for the other rows,
        and the beat is taken the next cycle (``ready`` is a register, high for one cycle
        per ``rows``: no path from the issue logic to the producer), so the producer builds
        the next beat meanwhile. Hence the stream rule matters here: once ``valid`` is high
        it stays, with its payload, until the transfer. An op with one row per beat takes a
        beat every other cycle. ``last`` must mark a sample's final beat (else ``framing`` is
        raised).
    z : In(stream.Signature(ArrayLayout(signed(perturb_width), lanes)))
        Perturbations, signed ``Q(pw-pf).pf``, one beat per weight word (element ``i`` is
        weight ``i``, :mod:`.layout`), for perturbed MATVEC, zeroth-order UPDATE and INIT.
    coef : In(stream.Signature(signed(coef_width)))
        ``dz`` from the loss unit, written to the coefficient memory from entry 0 after each
        BATCH op, scaled by its ``cshift`` on the way (a 4-stage pipeline; ``ready`` drops
        only while COLACC results are written).
    wload : In(stream.Signature(signed(weight_width)))
        Weights for LOAD, one per transfer, in weight order (lane 0 of a word first).
        ``ready`` is a register: a weight is taken the cycle after its word issues, as the
        word reaches stage 1, which reads the payload then (so it is never copied; a weight
        every other cycle at most).
    out : Out(stream.Signature(signed(feature_width)))
        MATVEC results in row order, ``Q(fw-ff).ff``, rounded half up and saturated. A queue
        of ``2 * max(classes, rank * taps)`` entries in the coefficient memory's block RAM
        (at most one result every 3 cycles; :meth:`_out_queue`); a MATVEC starts only when
        its results fit, so back-pressure here stalls issue, never loses a result.
    wdump : Out(stream.Signature(signed(weight_width)))
        Weights for DUMP, one per transfer, in weight order. Readback is a host's serial
        affair, so DUMP spends no logic of its own: each weight goes through the multipliers
        (times 1, the other lanes times 0) and the adder tree, and the next one issues when it
        is taken: :func:`pipeline_stages` cycles a weight.
    idle : Out(1)
        No op active, nothing in flight (results may wait in ``out``).
    saturated, error, framing : Out(1)
        Sticky flags: a value was clamped; an invalid op or a coefficient beyond the ``dz``
        region; a ``last`` marker out of place. Cleared by ``clear``.
    clear : In(1)
        Clears the sticky flags.

    Timing: one weight word per cycle when the streams keep up. MATVEC results appear
    :func:`pipeline_stages` cycles after their last word. UPDATE reads its word again at
    stage 3, adds its rounded product in the lane's one adder (the perturbation's, idle
    then) at stage 4 and writes it in the same cycle; INIT and LOAD write at stage 1; other
    ops wait up to 3 cycles after an UPDATE (the read port), and ops on regions of at most
    4 words wait for an empty pipeline (so no word is read before an earlier op has written
    it). An UPDATE with an immediate is taken only as the scaler takes its immediate (the
    scaler's result register holds it, :meth:`_scaling`), not while the current op is such
    an UPDATE up to the cycle after its last word issued, nor while a ``dz`` is being
    scaled; it then waits in the queue ``|cshift| + 2`` cycles for the scaled value. (Stages
    counted without the optional read register, which adds one or two.)
    """

    def __init__(self, params: MacParams):
        if not isinstance(params, MacParams):
            self._MustUse__silence = True           # never elaborated: no warning for it
            raise TypeError(f"params must be a MacParams, not {type(params).__name__}")
        self.params = params
        self.layout = Layout(params)
        p = params
        super().__init__({
            "cmd": In(stream.Signature(MAC_OP)),
            "x": In(stream.Signature(feature_beat_layout(p))),
            "z": In(stream.Signature(data.ArrayLayout(signed(p.perturb_width), p.lanes))),
            "coef": In(stream.Signature(signed(p.coef_width))),
            "wload": In(stream.Signature(signed(p.weight_width))),
            "out": Out(stream.Signature(signed(p.feature_width))),
            "wdump": Out(stream.Signature(signed(p.weight_width))),
            "idle": Out(1),
            "saturated": Out(1),
            "error": Out(1),
            "framing": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        # one method per section, in pipeline order; ``b`` carries what sections share
        b = _Build()
        self._dimensions(b)
        self._memories(b)
        self._token_pipeline(b)
        self._out_queue(b)
        self._op_queue(b)
        self._issue(b)
        self._promotion(b)
        self._take_ops(b)
        self._scaling(b)
        self._operands(b)
        self._perturb_stage(b)
        self._multipliers(b)
        self._update_path(b)
        self._matvec_path(b)
        self._dump(b)
        self._colacc(b)
        self._flags(b)
        return b.m

    def _dimensions(self, b):
        """Derived widths and sizes, kept on the build state ``b``."""
        p, lay = self.params, self.layout
        m = Module()
        L, C = p.lanes, p.classes
        ww, wf, fw, zw, zf, cw = (p.weight_width, p.weight_frac, p.feature_width,
                                  p.perturb_width, p.perturb_frac, p.coef_width)
        aw = max(ww, cw)
        bw = max(fw, zw, ww)
        zalign = max(fw, zw) - zw
        S = update_shift(p)
        T = _tree_levels(L)
        lowrank = len(lay.regions) == 2
        inner = lay.inner
        ra = lay.regions[0]
        rb = lay.regions[1] if lowrank else ra
        max_rows = max(r.rows for r in lay.regions)
        max_out = max(r.outputs for r in lay.regions)
        max_k = max(r.beats for r in lay.regions)
        kmax = wf - zf
        # the stage-WS adder's term: a shifted perturbation or an update's halved product
        b.term_w = max(zw + kmax + 1, aw + bw - S)
        addr_w = max(lay.words - 1, 1).bit_length()
        cdepth = lay.coef_depth
        caddr_w = max(cdepth, 2).bit_length()
        b.C, b.L, b.S, b.T, b.addr_w, b.aw, b.bw, b.caddr_w = C, L, S, T, addr_w, aw, bw, caddr_w
        b.cdepth, b.cw, b.fw, b.inner, b.kmax, b.lay = cdepth, cw, fw, inner, kmax, lay
        b.lowrank, b.m, b.max_k, b.max_out, b.max_rows = lowrank, m, max_k, max_out, max_rows
        b.p, b.ra, b.rb, b.wf, b.ww, b.zalign, b.zw = p, ra, rb, wf, ww, zalign, zw

    def _memories(self, b):
        """Weight memory, coefficient memory (with the output queue's rows); the sticky
        flags' event lists."""
        L, cdepth, cw, fw, lay, m, max_out = b.L, b.cdepth, b.cw, b.fw, b.lay, b.m, b.max_out
        ww = b.ww
        # -- memories --------------------------------------------------------------------
        # Both are named ``*_norw`` (boards.implement maps them to block RAM with no collision
        # logic): no read whose data is used shares a cycle with a write to its address.
        # Weights: a word is written at stage WS (INIT, LOAD) or WRITE_STAGE (UPDATE) and
        # read at issue (and by UPDATE again at LATE_READ, before its own write); ops walk
        # their region in order, regions of at most WRITE_STAGE words drain the pipeline
        # first, and other ops wait while an UPDATE holds the read port, so a word is read
        # again only cycles after its write. Coefficients: ``dz`` are written at ``coef_wp``
        # and read only below it (an op's ``coef_need`` check), ``v`` is written by COLACC's
        # serial narrowing while nothing issues (``serial_busy`` keeps the pipeline busy);
        # the output queue's rows (_out_queue) are read only once written, a cycle earlier.
        # A flat word (not an ArrayLayout: see _lanes).
        m.submodules.weights_norw = wmem = Memory(shape=unsigned(ww * L), depth=lay.words,
                                                  init=[])
        w_rd = wmem.read_port()
        w_wr = wmem.write_port(granularity=ww)     # a write enable per lane (LOAD)
        # Coefficients, and from ``queue_base`` the output queue: a ring of at least
        # 2 * max_out results (a power of two, aligned: its addresses need no adder), in the
        # same block RAM
        queue_depth = 1 << (2 * max_out - 1).bit_length()
        queue_base = -(-cdepth // queue_depth) * queue_depth
        m.submodules.coefs_norw = cmem = Memory(shape=signed(max(cw, fw)),
                                                depth=queue_base + queue_depth, init=[])
        c_rd = cmem.read_port()
        c_wr = cmem.write_port()

        # -- sticky flags ------------------------------------------------------------------
        sat_events, err_events, framing_event = [], [], Signal()

        def sat_flag():
            f = Signal()
            sat_events.append(f)
            return f
        b.c_rd, b.c_wr, b.err_events = c_rd, c_wr, err_events
        b.queue_base, b.queue_depth = queue_base, queue_depth
        b.framing_event, b.sat_events, b.sat_flag = framing_event, sat_events, sat_flag
        b.w_rd, b.w_wr = w_rd, w_wr

    def _token_pipeline(self, b):
        """The control token of each word, carried down the pipeline stages."""
        L, T, addr_w, m, max_k, max_out = b.L, b.T, b.addr_w, b.m, b.max_k, b.max_out
        max_rows, p = b.max_rows, b.p
        # -- token control, carried down the pipeline --------------------------------------
        # stage 1: memories answer, the perturbation is added and saturated (INIT and LOAD
        # write); 2: multiplier inputs; 3: products; 4: an update's rounded product in the
        # stage-1 adder, written; 3+T: adder-tree sum.
        KIND = data.StructLayout({
            "op": Op, "word": unsigned(addr_w), "row": range(max(max_rows, 2)),
            "outidx": range(max(max_out, 2)), "first": 1, "last": 1, "dest": Dest,
            "mask": unsigned(L), "kb": range(max(max_k, 2)),
        })
        # WS: the stage where a word's weights are available (1 + the optional read
        # register) and added to the perturbation; SAT: where the sum is saturated (INIT and
        # LOAD write there), WS or, with the read register (the fast-clock build), one later
        # (the sum registered); the pipeline behind it: +1 multiplier operands, +2 products,
        # +3 an update's word (read again) and its rounded product meet in the stage-WS
        # adder (UPDATE_ADD), saturated and written at WRITE_STAGE (UPDATE_ADD, or one later
        # with the read register), +2+T adder-tree sum
        R = int(p.read_register)
        WS = 1 + R
        SAT = WS + R
        UPDATE_ADD = SAT + 3
        WRITE_STAGE = UPDATE_ADD + R
        LATE_READ = UPDATE_ADD - 1 - R
        ACC_STAGE = SAT + 2 + T
        n_ctl = max(WRITE_STAGE, ACC_STAGE) + 1
        valid = [Signal(name=f"s{i}_valid") for i in range(n_ctl)]
        ctl = [Signal(KIND, name=f"s{i}_ctl", reset_less=True) for i in range(n_ctl)]
        for i in range(2, n_ctl):
            m.d.sync += [valid[i].eq(valid[i - 1]), ctl[i].eq(ctl[i - 1])]
        b.ACC_STAGE, b.LATE_READ, b.R, b.WRITE_STAGE = ACC_STAGE, LATE_READ, R, WRITE_STAGE
        b.UPDATE_ADD, b.SAT = UPDATE_ADD, SAT
        b.WS, b.ctl, b.valid = WS, ctl, valid

    def _out_queue(self, b):
        """The output queue: MATVEC results wait in the coefficient memory's rows from
        ``queue_base`` and are read one at a time into the ``out`` register.

        A result is written as it leaves the narrowing stage: the write port is the queue's
        first (COLACC's serial writes never meet a result: COLACC drains the pipeline
        first, and nothing issues while they run; a scaled ``dz`` waits a cycle). A queued
        result is read when ``out`` is empty and no read is on its way (``queue_read``, from
        registers only), and an op that reads coefficients does not issue in that cycle:
        at most one result every 3 cycles, 10 per sample against a sample's 280-cycle
        forward at R1."""
        m, fw, c_rd = b.m, b.fw, b.c_rd
        n = b.queue_depth.bit_length() - 1
        wp = Signal(n + 1)              # write and read pointers, with a wrap bit
        rp = Signal(n + 1)
        pending = Signal()              # a read's data arrives this cycle
        b.queue_we, b.queue_wdata = Signal(), Signal(signed(fw))
        b.queue_read = Signal()
        b.queue_raddr, b.queue_waddr = Signal.like(c_rd.addr), Signal.like(c_rd.addr)
        m.d.comb += [b.queue_read.eq((wp != rp) & ~pending & ~self.out.valid),
                     b.queue_raddr.eq(b.queue_base + rp[:n]),
                     b.queue_waddr.eq(b.queue_base + wp[:n])]
        with m.If(b.queue_we):
            m.d.sync += wp.eq(wp + 1)
        with m.If(b.queue_read):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += pending.eq(b.queue_read)
        with m.If(pending):
            m.d.sync += [self.out.valid.eq(1), self.out.payload.eq(c_rd.data)]
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)

    def _op_queue(self, b):
        """The one-deep op queue and the current op, with the op-level start conditions
        and the issue condition ``go``."""
        LATE_READ, c_rd, caddr_w, cdepth = b.LATE_READ, b.c_rd, b.caddr_w, b.cdepth
        framing_event, lay, lowrank, m = b.framing_event, b.lay, b.lowrank, b.m
        max_k, max_out, max_rows, ra, rb = b.max_k, b.max_out, b.max_rows, b.ra, b.rb
        valid, w_rd = b.valid, b.w_rd
        # -- ops: taken into a one-deep queue (with everything derived from them), promoted
        # to the current op when the previous one issues its last word --------------------
        OPX = data.StructLayout({
            "op": MAC_OP, "is_b": 1, "uses_x": 1, "uses_z": 1,
            "reads_coef": 1, "coef_need": range(cdepth + max_out + 1),
            "drain_first": 1,           # wait for an empty pipeline before the first word
            "base": range(lay.words + 1),
        })
        nxt = Signal(OPX)
        nxt_valid = Signal()
        nxt_wait = Signal()             # the immediate is being scaled
        curx = Signal(OPX)
        cur = curx.op
        active = Signal()
        started = Signal()
        # an op's rows, beats and outputs are its region's: constants chosen by ``is_b``
        def dims(x):
            return (Mux(x.is_b, rb.rows, ra.rows), Mux(x.is_b, rb.beats, ra.beats),
                    Mux(x.is_b, rb.outputs, ra.outputs))
        rows, beats, outputs = dims(curx)
        is_b = curx.is_b
        uses_x, uses_z = curx.uses_x, curx.uses_z

        # the walk: beat k, row r; groups of beats (low-rank A: one per tap) with their
        # beat kg, first output gbase and first coefficient crow. With one group per region
        # (dense) the group is the region: kg is k, crow the op's coef_base, gbase 0
        grouped = lowrank or len(ra.groups) > 1
        k = Signal(range(max_k + 1))
        r = Signal(range(max_rows + 1))
        gi = Signal(range(len(ra.groups) + 1))
        kg = Signal(range(max_k + 1)) if grouped else k
        gbase = Signal(range(max_out + max_rows + 1)) if grouped else Const(0)
        word = Signal(range(lay.words + 1))
        crow = Signal(caddr_w + 1) if grouped else curx.op.coef_base
        caddr = Signal(caddr_w + 1)     # coefficient of the current word: row r's
        m.d.comb += caddr.eq(crow + r)
        need_drain = Signal()
        coef_wp = Signal(range(lay.dz_depth + 1))
        credits = Signal(range(2 * max_out + 1), init=2 * max_out)
        dump_busy = Signal()

        kind = cur.op
        # COLACC is a low-rank op (a dense build drops it as invalid, _take_ops): no logic
        # for it there
        colacc = (kind == Op.COLACC) if lowrank else Const(0)
        glens = Array(Const(n, range(max_k + 1)) for _, n in ra.groups)
        glen = Signal(range(max_k + 1))
        glen_next = Signal(range(max_k + 1))
        m.d.comb += [glen.eq(Mux(is_b, rb.beats, glens[gi]) if lowrank else glens[gi]),
                     glen_next.eq(glens[gi + 1])]
        # position flags, kept as registers (off the issue path): r == rows - 1,
        # k == beats - 1, kg == 0, kg == glen - 1
        last_row, last_k, first_kg = Signal(), Signal(), Signal()
        first_row = Signal()            # r == 0: a stream op takes its feature beat here
        # the beat is taken (``x.ready``) a cycle after its first row issued, as that word
        # reaches stage 1: a register, so the MAC's issue logic never reaches the producer
        x_taking = Signal()
        last_kg = Signal() if grouped else last_k
        last_token = Signal()
        m.d.comb += last_token.eq(last_row & last_k)

        # pipeline occupancy (for drains); drained is empty as of the last cycle with no word
        # issued since (conservative by a cycle, and off the issue path)
        serial_busy = Signal()
        empty = Signal()
        drained = Signal()
        m.d.comb += empty.eq(~Cat(*valid[1:]).any() & ~serial_busy)

        # op-level start conditions, checked before the first word. Words are read at issue
        # (updates: again at stage 4) and written at stage 2 (INIT, LOAD) or WRITE_STAGE
        # (UPDATE);
        # ops walk their region in order, so a word written by one op is read by the next at
        # least (region words) cycles later, and only regions of at most WRITE_STAGE words
        # need the pipeline drained in between.
        # The credit and coefficient checks are registered (from the queued op while none is
        # active): they only grow more true until the op's first word, so a cycle-old value
        # is safe.
        op_ok = Signal()
        ok_r = Signal()
        okx = Signal(OPX)
        m.d.comb += okx.eq(Mux(active, curx, nxt))
        m.d.sync += ok_r.eq(
            ~((okx.op.op == Op.MATVEC) & (okx.op.dest == Dest.OUT) & (credits < dims(okx)[2]))
            & ~(okx.reads_coef & (coef_wp < okx.coef_need)))
        m.d.comb += op_ok.eq(ok_r & ~((curx.drain_first | need_drain) & ~drained))

        go = Signal()
        upd_busy = Signal()
        # LOAD issues a word once per transfer, one lane's weight written at a time (_issue)
        load_take = Signal()
        # ... and takes it (``wload.ready``, a register) a cycle later, as the word reaches
        # stage 1, which reads the payload then (no copy of the weight)
        load_taking = Signal()
        m.d.comb += load_take.eq(go & (kind == Op.LOAD))
        m.d.sync += load_taking.eq(load_take)
        m.d.comb += go.eq(
            active & (started | op_ok)
            # a stream op's first row needs a beat not being taken already (a beat serves
            # the op's rows from the operand register, _operands)
            & (~(uses_x & first_row) | (self.x.valid & ~x_taking))
            & (~uses_z | self.z.valid)
            & ((kind != Op.LOAD) | (self.wload.valid & ~load_taking))
            & ~dump_busy
            # a COLACC beat starts when the previous beat's lanes are written
            & ~(colacc & (r == 0) & ~drained)
            # the read port belongs to updates' words in stages 1-4 (read at stage 4)
            & ~((kind != Op.UPDATE) & upd_busy)
            # the coefficient memory's read port belongs to the output queue this cycle
            & ~(b.queue_read & ((kind == Op.UPDATE) | colacc)))
        upd_hist = Signal(LATE_READ)
        m.d.sync += upd_hist.eq(Cat(go & (kind == Op.UPDATE), upd_hist[:-1]))
        m.d.comb += upd_busy.eq(upd_hist.any())
        m.d.sync += drained.eq(empty & ~go)
        m.d.comb += w_rd.addr.eq(word)        # (updates take it at stage 4)
        m.d.comb += [
            self.x.ready.eq(x_taking),
            self.z.ready.eq(go & uses_z),
            self.wload.ready.eq(load_taking),
            c_rd.addr.eq(Mux(b.queue_read, b.queue_raddr, caddr)),
        ]
        m.d.sync += x_taking.eq(go & uses_x & first_row)
        with m.If(go & uses_x & first_row & (self.x.payload.last != last_k)):
            m.d.comb += framing_event.eq(1)
        b.active, b.beats, b.caddr, b.coef_wp, b.credits = active, beats, caddr, coef_wp, credits
        b.crow, b.cur, b.curx, b.dump_busy, b.empty = crow, cur, curx, dump_busy, empty
        b.grouped = grouped
        b.first_kg, b.gbase, b.gi, b.glen, b.glen_next = first_kg, gbase, gi, glen, glen_next
        b.go, b.is_b, b.k, b.kg, b.kind, b.last_k = go, is_b, k, kg, kind, last_k
        b.last_kg, b.last_row, b.last_token, b.load_take = last_kg, last_row, last_token, load_take
        b.first_row, b.x_taking, b.colacc = first_row, x_taking, colacc
        b.dims = dims
        b.need_drain, b.nxt, b.nxt_valid, b.nxt_wait = need_drain, nxt, nxt_valid, nxt_wait
        b.outputs, b.r, b.rows, b.serial_busy, b.started = outputs, r, rows, serial_busy, started
        b.uses_z, b.word = uses_z, word

    def _issue(self, b):
        """The token entering stage 1 and the walk over the region (beat, row, group,
        coefficient address); output credits."""
        L, active, beats, credits, crow = b.L, b.active, b.beats, b.credits, b.crow
        ctl, cur, dump_busy, empty, first_kg = b.ctl, b.cur, b.dump_busy, b.empty, b.first_kg
        gbase, gi, glen, glen_next, go, is_b = b.gbase, b.gi, b.glen, b.glen_next, b.go, b.is_b
        k, kg, kind, last_k, last_kg, last_row = b.k, b.kg, b.kind, b.last_k, b.last_kg, b.last_row
        last_token, lowrank, m, need_drain = b.last_token, b.lowrank, b.m, b.need_drain
        outputs, r, rb, rows, started, valid = b.outputs, b.r, b.rb, b.rows, b.started, b.valid
        word = b.word
        # the token entering stage 1
        pad = rb.padded_lanes if lowrank else 0
        last_mask = (1 << L) - 1 - (((1 << pad) - 1) << (L - pad)) if pad else (1 << L) - 1
        m.d.sync += [
            valid[1].eq(go),
            ctl[1].op.eq(kind), ctl[1].word.eq(word), ctl[1].row.eq(r),
            ctl[1].outidx.eq(gbase + r), ctl[1].dest.eq(cur.dest), ctl[1].kb.eq(k),
            ctl[1].first.eq(Mux(b.colacc, r == 0, first_kg)),
            ctl[1].last.eq(Mux(b.colacc, last_row, last_kg)),
            ctl[1].mask.eq(Mux(is_b & (k == beats - 1), last_mask, (1 << L) - 1)),
        ]

        # LOAD and DUMP issue each word once per lane (``dlane``): LOAD writes one weight at
        # a time (that lane's write enable, _operands), DUMP takes one weight through the
        # multipliers and the adder tree at a time (_dump)
        dlane = Signal(range(L))
        per_lane = Signal()
        step = Signal()                 # the walk moves on to the next word
        m.d.comb += [per_lane.eq((kind == Op.DUMP) | (kind == Op.LOAD)),
                     step.eq(go & (~per_lane | (dlane == L - 1)))]
        with m.If(go & per_lane):
            m.d.sync += dlane.eq(Mux(dlane == L - 1, 0, dlane + 1))
        with m.If(go & (kind == Op.DUMP)):
            m.d.sync += dump_busy.eq(1)
        with m.If(go):
            m.d.sync += started.eq(1)
        with m.If(step):
            m.d.sync += [word.eq(word + 1), r.eq(r + 1)]
            with m.If(~started & (kind == Op.MATVEC) & (cur.dest == Dest.OUT)):
                m.d.sync += credits.eq(credits - outputs + (self.out.valid & self.out.ready))
            m.d.sync += [last_row.eq(Mux(last_row, rows == 1, r == rows - 2)),
                         b.first_row.eq(last_row)]
            with m.If(last_row):
                m.d.sync += [r.eq(0), k.eq(k + 1),
                             last_k.eq(k == beats - 2), first_kg.eq(0)]
                # the next group (with one group per region, the op ends here instead)
                if b.grouped:
                    m.d.sync += [kg.eq(kg + 1), last_kg.eq(kg == glen - 2)]
                    with m.If((kind != Op.COLACC) & last_kg):
                        m.d.sync += [kg.eq(0), gi.eq(gi + 1), gbase.eq(gbase + rows),
                                     crow.eq(crow + rows),
                                     first_kg.eq(1), last_kg.eq(glen_next == 1)]
            with m.If(last_token):
                m.d.sync += [active.eq(0), need_drain.eq(b.colacc)]
        with m.If(~(go & ~started & (kind == Op.MATVEC) & (cur.dest == Dest.OUT))
                  & self.out.valid & self.out.ready):
            m.d.sync += credits.eq(credits + 1)
        with m.If(~active & empty):
            m.d.sync += need_drain.eq(0)
        b.dlane = dlane

    def _promotion(self, b):
        """The queued op becomes current when the previous one issues its last word
        (BATCH acts here, in order)."""
        active, crow, curx = b.active, b.crow, b.curx
        first_kg, gbase, gi, k, kg, last_k = b.first_kg, b.gbase, b.gi, b.k, b.kg, b.last_k
        last_kg, last_row, lowrank, m, nxt = b.last_kg, b.last_row, b.lowrank, b.m, b.nxt
        nxt_valid, nxt_wait, r, ra, rb = b.nxt_valid, b.nxt_wait, b.r, b.ra, b.rb
        started, word = b.started, b.word
        # promotion: the queued op becomes current (BATCH acts here, in order)
        promote = Signal()
        batch_now = Signal()
        # the last BATCH's cshift (dz are stored scaled)
        dz_cshift = Signal(signed(SHIFT_WIDTH))
        m.d.comb += promote.eq(nxt_valid & ~nxt_wait & ~active)
        with m.If(promote):
            m.d.sync += nxt_valid.eq(0)
            with m.If(nxt.op.op == Op.BATCH):
                m.d.comb += batch_now.eq(1)
                m.d.sync += dz_cshift.eq(nxt.op.cshift)
            with m.Else():
                first_glen = (Mux(nxt.is_b, rb.beats, ra.groups[0][1]) if lowrank
                              else ra.groups[0][1])
                m.d.sync += [curx.eq(nxt), active.eq(1), started.eq(0), k.eq(0), r.eq(0),
                             word.eq(nxt.base),
                             last_row.eq(b.dims(nxt)[0] == 1), last_k.eq(b.dims(nxt)[1] == 1),
                             b.first_row.eq(1),
                             first_kg.eq(1)]
                if b.grouped:
                    m.d.sync += [gi.eq(0), kg.eq(0), gbase.eq(0), crow.eq(nxt.op.coef_base),
                                 last_kg.eq(first_glen == 1)]
        b.batch_now, b.dz_cshift, b.promote = batch_now, dz_cshift, promote

    def _take_ops(self, b):
        """Ops taken straight into the queue (when it is free) with their validity checks
        and the fields derived from them; an invalid op is dropped and raises ``error``."""
        WRITE_STAGE, cdepth, cw, err_events = b.WRITE_STAGE, b.cdepth, b.cw, b.err_events
        inner, kmax, lay, lowrank, m, nxt = b.inner, b.kmax, b.lay, b.lowrank, b.m, b.nxt
        nxt_valid, ra, rb = b.nxt_valid, b.ra, b.rb
        # -- taking ops: checked (one bit each) and moved to the queue with the fields
        # derived from them --------------------------------------------------------------
        op = self.cmd.payload
        p_b = (op.region == Region.B) if lowrank else Const(0)
        p_outputs = Mux(p_b, rb.outputs, ra.outputs)
        p_beats = Mux(p_b, rb.beats, ra.beats)
        p_small = Mux(p_b, rb.words <= WRITE_STAGE, ra.words <= WRITE_STAGE)
        is_mv_up = (op.op == Op.MATVEC) | (op.op == Op.UPDATE)
        p_colacc = (op.op == Op.COLACC) if lowrank else Const(0)
        p_local = (op.operand == Operand.LOCAL) & is_mv_up
        checks = Cat(
            (op.region == Region.B) & (0 if lowrank else 1),
            p_local & (1 if not lowrank else (p_beats > lay.local_beats)),
            (op.op == Op.MATVEC) & (op.dest == Dest.LOCAL)
            & (1 if not lowrank else (p_outputs > inner)),
            (op.op == Op.MATVEC) & (op.operand == Operand.Z),
            (op.op == Op.COLACC) & (~p_b if lowrank else 1),
            ((op.op == Op.UPDATE) | (op.op == Op.COLACC))
            & (op.coef_source == CoefSource.MEMORY)
            & _above(op.coef_base, p_b, cdepth - ra.outputs, cdepth - rb.outputs),
            (op.op == Op.COLACC) & _above(op.v_base, 0, cdepth - inner, cdepth - inner),
            (op.op == Op.UPDATE) & (op.coef_source == CoefSource.MEMORY) & (op.cshift != 0),
            (op.op == Op.COLACC) & (op.cshift > cw - 1),
            op.zshift > kmax,
            op.op.as_value() == 7)
        take = Signal()                 # an op moves into the queue (or is dropped)
        bad = Signal()
        # an UPDATE with an immediate is taken only as the scaler takes the immediate
        # (``imm_free``, _scaling): the raw immediate is never stored here
        b.p_imm = p_imm = Signal()
        b.imm_free = imm_free = Signal()
        m.d.comb += [p_imm.eq((op.op == Op.UPDATE) & (op.coef_source == CoefSource.IMM)),
                     self.cmd.ready.eq(~nxt_valid & (~p_imm | imm_free)),
                     take.eq(self.cmd.valid & self.cmd.ready),
                     bad.eq(checks.any())]
        with m.If(take & ~bad):
            m.d.sync += [
                nxt_valid.eq(1), nxt.op.eq(op),
                # a dense build's valid MATVEC goes to OUT (checked above): the destination
                # is then a constant down the pipeline, not a flip-flop in every stage
                *([] if lowrank else [nxt.op.dest.eq(Dest.OUT)]),
                nxt.is_b.eq(p_b), nxt.base.eq(Mux(p_b, rb.base, ra.base)),
                nxt.uses_x.eq(is_mv_up & (op.operand == Operand.STREAM)),
                nxt.uses_z.eq(((op.op == Op.MATVEC) & (op.perturb != Perturb.NONE))
                              | (((op.op == Op.UPDATE) | (op.op == Op.INIT))
                                 & (op.operand == Operand.Z))),
                nxt.reads_coef.eq(((op.op == Op.UPDATE) | p_colacc)
                                  & (op.coef_source == CoefSource.MEMORY)
                                  & (op.coef_base < lay.dz_depth)),
                nxt.coef_need.eq(op.coef_base + p_outputs),
                nxt.drain_first.eq(p_local | p_colacc | p_small),
            ]
        bad_op = Signal()
        m.d.comb += bad_op.eq(take & bad)
        err_events.append(bad_op)
        b.take, b.bad = take, bad

    def _scaling(self, b):
        """One serial power-of-two scaler (:class:`.coef.Pow2Scaler`) for the immediate of an
        UPDATE (first) and the ``dz`` stream; the coefficient memory's write port: COLACC
        results, then the scaled ``dz``."""
        batch_now, c_wr, caddr_w, coef_wp, cw = b.batch_now, b.c_wr, b.caddr_w, b.coef_wp, b.cw
        dz_cshift, err_events, lay, m, sat_flag = b.dz_cshift, b.err_events, b.lay, b.m, b.sat_flag
        take, bad, nxt, nxt_wait, op = b.take, b.bad, b.nxt, b.nxt_wait, self.cmd.payload
        m.submodules.scaler = scaler = Pow2Scaler(cw)
        result = scaler.o.payload
        # the scaled immediate is the scaler's result register (no copy): an UPDATE's
        # immediate goes into the scaler straight from ``cmd`` as the op is taken, which
        # waits while the current op reads the immediate held (``imm_busy``: stage 1 reads
        # it up to the cycle after its last word issued; the scaler writes its result a
        # cycle after taking a value at the earliest). A ``dz`` is scaled only while no
        # immediate is held for the current or the queued op.
        b.imm = result.value
        imm_busy = Signal()
        m.d.comb += imm_busy.eq(b.active & (b.cur.op == Op.UPDATE)
                                & (b.cur.coef_source == CoefSource.IMM))
        imm_held = Signal()
        m.d.comb += imm_held.eq(imm_busy | (b.nxt_valid & (nxt.op.op == Op.UPDATE)
                                            & (nxt.op.coef_source == CoefSource.IMM)))
        job_imm = Signal()              # the scaler's value is the immediate (else a dz)
        imm_req = Signal()
        m.d.comb += [b.imm_free.eq(scaler.i.ready & ~imm_busy),
                     imm_req.eq(self.cmd.valid & ~b.nxt_valid & b.p_imm & ~imm_busy & ~bad)]
        # the op waits in the queue until its immediate is scaled (one per zeroth-order step)
        with m.If(take & ~bad):
            m.d.sync += nxt_wait.eq(b.p_imm)
        m.d.comb += [
            scaler.i.valid.eq(imm_req | (self.coef.valid & ~imm_held)),
            scaler.i.payload.value.eq(Mux(imm_req, op.imm, self.coef.payload)),
            scaler.i.payload.shift.eq(Mux(imm_req, op.cshift, dz_cshift)),
            self.coef.ready.eq(scaler.i.ready & ~imm_req & ~imm_held),
        ]
        with m.If(scaler.i.valid & scaler.i.ready):
            m.d.sync += job_imm.eq(imm_req)
        # COLACC results (lowrank) have the write port first
        ser_we = Signal()
        ser_addr = Signal(caddr_w)
        ser_data = Signal(signed(cw))
        coef_over = Signal()
        m.d.comb += scaler.o.ready.eq(Mux(job_imm, 1, ~(ser_we | b.queue_we)))
        done = scaler.o.valid & scaler.o.ready
        with m.If(done & job_imm):
            m.d.sync += nxt_wait.eq(0)
        clamped = sat_flag()
        m.d.comb += clamped.eq(done & result.clamped)
        with m.If(b.queue_we):
            m.d.comb += [c_wr.addr.eq(b.queue_waddr), c_wr.data.eq(b.queue_wdata),
                         c_wr.en.eq(1)]
        with m.Elif(ser_we):
            m.d.comb += [c_wr.addr.eq(ser_addr), c_wr.data.eq(ser_data), c_wr.en.eq(1)]
        with m.Elif(done & ~job_imm):
            with m.If(coef_wp < lay.dz_depth):
                m.d.comb += [c_wr.addr.eq(coef_wp), c_wr.data.eq(result.value), c_wr.en.eq(1)]
                m.d.sync += coef_wp.eq(coef_wp + 1)
            with m.Else():
                m.d.comb += coef_over.eq(1)
        err_events.append(coef_over)
        with m.If(batch_now):
            m.d.sync += coef_wp.eq(0)
        b.ser_addr, b.ser_data, b.ser_we = ser_addr, ser_data, ser_we

    def _operands(self, b):
        """Stage 0 -> 1: the operands that come with the token; the optional read register."""
        L, R, bw, c_rd, cur, fw, inner = b.L, b.R, b.bw, b.c_rd, b.cur, b.fw, b.inner
        k, kind, lay, lowrank, m = b.k, b.kind, b.lay, b.lowrank, b.m
        uses_z, w_rd, zalign, go, dlane = b.uses_z, b.w_rd, b.zalign, b.go, b.dlane
        # -- stage 0 -> 1: operands that come with the token --------------------------------
        local = Array(Signal(signed(fw), name=f"u{i}") for i in range(max(inner, 1)))
        s1_b = _lanes("s1_b", signed(bw), L)
        kmax = b.kmax
        # the stage-WS adder's term and carry-in: the perturbation shifted, z << zshift, and
        # complemented for MINUS (below), or an update's product (_update_path)
        s1_z = _lanes("s1_term", signed(b.term_w), L)
        s1_neg = _lanes("s1_cin", 1, L)
        # what the stage-WS adder adds to: 0 (INIT), the LOAD word, else the weights read.
        # Flags of issued words only: a bubble leaves the adder to an update (UPDATE_ADD)
        s1_zero, s1_load = Signal(), Signal()
        m.d.sync += [s1_zero.eq(go & (kind == Op.INIT)), s1_load.eq(go & (kind == Op.LOAD))]
        # LOAD: the weight taken (the adder's base in every lane) and the lane it is written to
        s1_wload = self.wload.payload               # held until taken at stage 1 (_op_queue)
        s1_wen = Signal(L)
        m.d.sync += s1_wen.eq(Mux(kind == Op.LOAD, 1 << dlane, (1 << L) - 1))
        if R:
            s1_op = Signal(MAC_OP)
            s1_imm = Signal.like(b.imm)
            m.d.sync += [s1_op.eq(cur), s1_imm.eq(b.imm)]
        else:
            # an op stays current until the cycle after its last word issued (promotion
            # waits for that), so stage 1 reads its fields without a copy
            s1_op, s1_imm = cur, b.imm
        if lowrank:
            beat_vals = [Array((local[kk * L + l] if kk * L + l < inner else Const(0, fw))
                               for kk in range(lay.local_beats)) for l in range(L)]
        # z goes into the stage-WS adder (not an UPDATE's z). An op-level condition, not
        # gated by ``go``: without a word at stage 1 the sum is unused, and the term
        # registers' (wide) reset stays off the issue path
        perturbs = Signal()
        neg = cur.perturb == Perturb.MINUS
        # the right shift of the filled perturbation, kmax - zshift, as narrow as kmax: the
        # op check keeps zshift <= kmax, and a wider amount would cost the shifter a level
        # of sign fill per bit
        zright = Signal(range(kmax + 1))
        m.d.comb += zright.eq(kmax - cur.zshift)
        m.d.comb += perturbs.eq(uses_z & (kind != Op.UPDATE))
        # the second operand: a stream op's feature beat is loaded as the beat's first row
        # issues (with ``valid`` checked by ``go``; the beat is taken a cycle later, ``x.ready``
        # being a register, and its payload holds meanwhile), then held for the beat's other
        # rows: the one copy of the beat in the array. A word at stage 1 reads it as it is
        # replaced (the next beat's first row issuing), so the multipliers' input registers
        # take it directly. Other operands are loaded word by word at issue.
        for l in range(L):
            with m.Switch(kind):
                with m.Case(Op.DUMP):
                    m.d.sync += s1_b[l].eq(dlane == l)      # weight dlane times 1
                with m.Default():
                    with m.Switch(cur.operand):
                        with m.Case(Operand.STREAM):
                            with m.If(b.first_row):
                                m.d.sync += s1_b[l].eq(self.x.payload.data[l])
                        with m.Case(Operand.LOCAL):
                            m.d.sync += s1_b[l].eq(beat_vals[l][k] if lowrank else 0)
                        with m.Case(Operand.Z):
                            m.d.sync += s1_b[l].eq(self.z.payload[l] << zalign)
                        with m.Default():
                            m.d.sync += s1_b[l].eq(0)
            # the perturbation shifted as it is taken (zero when unused: a register reset),
            # off the stage-WS adder's path; MINUS negates it on the way in:
            # -(z << k) = (~z << k | (2**k - 1)) + 1, the complement and the fill ride in the
            # shifter's LUTs, the + 1 is the adder's carry-in
            term, carry = self._shifted(b, l, neg, zright)
            with m.If(perturbs):
                m.d.sync += s1_z[l].eq(term)
            with m.Else():
                m.d.sync += s1_z[l].eq(0)
            m.d.sync += s1_neg[l].eq(perturbs & carry)

        # -- the optional read register: weights (and the coefficient) one stage later, the
        # token's operands delayed to match --------------------------------------------
        if R:
            w_data = Signal.like(w_rd.data)
            c_data = Signal.like(c_rd.data)
            m.d.sync += [w_data.eq(w_rd.data), c_data.eq(c_rd.data)]
            d_b = _lanes("sd_b", signed(bw), L)
            d_z = _lanes("sd_term", signed(b.term_w), L)
            d_neg = _lanes("sd_cin", 1, L)
            d_op, d_imm = Signal(MAC_OP), Signal.like(s1_imm)
            d_zero, d_load = Signal(), Signal()
            d_wload, d_wen = Signal.like(s1_wload), Signal.like(s1_wen)
            m.d.sync += [*(a.eq(b) for a, b in zip(d_b, s1_b)),
                         *(a.eq(b) for a, b in zip(d_z, s1_z)),
                         *(a.eq(b) for a, b in zip(d_neg, s1_neg)),
                         d_op.eq(s1_op), d_imm.eq(s1_imm),
                         d_zero.eq(s1_zero), d_load.eq(s1_load),
                         d_wload.eq(s1_wload), d_wen.eq(s1_wen)]
            s1_b, s1_z, s1_op, s1_imm, s1_neg = d_b, d_z, d_op, d_imm, d_neg
            s1_zero, s1_load, s1_wload, s1_wen = d_zero, d_load, d_wload, d_wen
        else:
            w_data, c_data = w_rd.data, c_rd.data
        b.c_data, b.local, b.s1_b, b.s1_imm, b.s1_op = c_data, local, s1_b, s1_imm, s1_op
        b.s1_z, b.s1_neg, b.w_data = s1_z, s1_neg, w_data
        b.s1_zero, b.s1_load, b.s1_wload, b.s1_wen = s1_zero, s1_load, s1_wload, s1_wen

    def _shifted(self, b, l, neg, zright):
        """Lane ``l``'s perturbation times ``2**zshift`` (``zshift <= kmax``, checked in
        _take_ops), negated when ``neg``: the stage-WS adder's term and carry-in.
        ``perturb_shifter = "logic"``: ``(z << zshift) ^ neg`` and carry-in ``neg`` (``z``
        complemented, placed ``kmax`` up with ``neg`` filling below, shifted right by ``zright
        = kmax - zshift``); ``"multipliers"``: ``z * (±2**zshift)`` in a multiplier of its own
        (SB_MAC16, combinational; ``-z * 2**kmax`` fits the term), carry-in 0."""
        zw, kmax, m = b.zw, b.kmax, b.m
        z = self.z.payload[l]
        if self.params.perturb_shifter == "multipliers":
            if not hasattr(b, "factor"):
                # ±2**zshift, shared by the lanes
                b.factor = Signal(signed(kmax + 2))
                pow2 = Const(1, kmax + 1) << b.cur.zshift
                m.d.comb += b.factor.eq(Mux(neg, -pow2[:kmax + 1], pow2[:kmax + 1]))
            product = Signal(signed(zw + kmax + 1), name=f"zshifted_{l}")
            m.d.comb += product.eq(z * b.factor)
            return product, Const(0)
        zc = z ^ neg.replicate(zw).as_signed()
        filled = Cat(neg.replicate(kmax), zc).as_signed()       # zc << kmax, filled
        return filled >> zright, neg

    def _perturb_stage(self, b):
        """Stage WS: weights and coefficients arrive; the perturbation (or an update's
        product, at UPDATE_ADD) is added; stage SAT: the sum saturated."""
        L, R, SAT, WS, c_data, ctl, cw = b.L, b.R, b.SAT, b.WS, b.c_data, b.ctl, b.cw
        kmax, m, s1_b, s1_imm, s1_op, s1_z = b.kmax, b.m, b.s1_b, b.s1_imm, b.s1_op, b.s1_z
        s1_neg, s1_zero, s1_load, sat_flag = b.s1_neg, b.s1_zero, b.s1_load, b.sat_flag
        aw, bw, S, valid, WRITE_STAGE = b.aw, b.bw, b.S, b.valid, b.WRITE_STAGE
        w_data, ww, zw = b.w_data, b.ww, b.zw
        c1, cs, cu = ctl[WS], ctl[SAT], ctl[WRITE_STAGE]
        # the adder's sum: two signed operands (the weight or LOAD word; the shifted
        # perturbation or an update's halved product) and a carry-in, one bit wider
        sws = max(ww, zw + kmax + 1, aw + bw - S) + 1
        wsum = _lanes("wsum", signed(sws), L)
        wen = b.s1_wen                  # the lanes INIT and LOAD write
        perturbing = Signal()
        # coefficients: from memory as stored (scaled when written), or the immediate
        # (scaled in the queue)
        coef_a = Signal(signed(cw))
        m.d.comb += [
            perturbing.eq((c1.op == Op.INIT)
                          | ((c1.op == Op.MATVEC) & (s1_op.perturb != Perturb.NONE))),
            coef_a.eq(Mux((c1.op == Op.UPDATE) & (s1_op.coef_source == CoefSource.IMM),
                          s1_imm, c_data)),
        ]
        for l in range(L):
            wl = w_data[l * ww:(l + 1) * ww].as_signed()
            base_w = Mux(s1_zero, 0, Mux(s1_load, b.s1_wload, wl))
            # one adder per lane serves the perturbation (stage WS) and the update
            # (UPDATE_ADD): never both in a cycle (an op waits for the read port after an
            # UPDATE), and the idle one's operands are 0
            m.d.comb += wsum[l].eq(base_w + s1_z[l] + s1_neg[l])
        if R:
            # the fast-clock build registers the sum and what goes with it
            s_wsum = _lanes("s_wsum", signed(sws), L)
            s_b = _lanes("s_b", signed(bw), L)
            s_perturbing, s_coef, s_wen = Signal(), Signal(signed(cw)), Signal.like(wen)
            m.d.sync += [*(a.eq(v) for a, v in zip(s_wsum, wsum)),
                         *(a.eq(v) for a, v in zip(s_b, s1_b)),
                         s_perturbing.eq(perturbing), s_coef.eq(coef_a), s_wen.eq(wen)]
            wsum, s1_b, perturbing, coef_a, wen = s_wsum, s_b, s_perturbing, s_coef, s_wen
        upd_write = Signal()            # an UPDATE's sum is saturated and written
        m.d.comb += upd_write.eq(valid[WRITE_STAGE] & (cu.op == Op.UPDATE))
        mask = Signal(L)
        m.d.comb += mask.eq(Mux(upd_write, cu.mask, cs.mask))
        # what INIT and LOAD write (at stage SAT) and UPDATE (at WRITE_STAGE)
        written = _lanes("written", signed(ww), L)
        for l in range(L):
            wp = _sat(m, wsum[l], ww, sat_flag(),
                      ((valid[SAT] & perturbing) | upd_write) & mask[l])
            m.d.comb += written[l].eq(Mux(mask[l], wp, 0))
        b.upd_write, b.s_b, b.wen = upd_write, s1_b, wen
        b.written, b.coef_a = written, coef_a

    def _multipliers(self, b):
        """Stage SAT: the multiplier operands chosen; SAT+1 -> SAT+2: the products."""
        L, SAT, aw, bw, ctl, lowrank, m = b.L, b.SAT, b.aw, b.bw, b.ctl, b.lowrank, b.m
        coef_a, s_b, written = b.coef_a, b.s_b, b.written
        cs = ctl[SAT]
        weights_a = Signal()            # the weights are the first factor (else coefficients)
        m.d.comb += weights_a.eq((cs.op == Op.MATVEC) | (cs.op == Op.DUMP))
        s3_a = _lanes("s3_a", signed(aw), L)
        s3_b = _lanes("s3_b", signed(bw), L)
        for l in range(L):
            m.d.sync += [
                s3_a[l].eq(Mux(weights_a, written[l], coef_a)),
                s3_b[l].eq(Mux(cs.op == Op.COLACC, written[l], s_b[l]) if lowrank
                           else s_b[l]),
            ]

        # -- stage SAT+1 -> SAT+2: the multipliers (DSP blocks: registered inputs and output)
        s4_p = _lanes("s4_p", signed(aw + bw), L)
        for l in range(L):
            m.d.sync += s4_p[l].eq(s3_a[l] * s3_b[l])
        b.cs, b.s4_p = cs, s4_p

    def _update_path(self, b):
        """The update path: the word read again at LATE_READ, its rounded product into the
        stage-WS adder at UPDATE_ADD, saturated and written at WRITE_STAGE."""
        L, LATE_READ, S, UPDATE_ADD = b.L, b.LATE_READ, b.S, b.UPDATE_ADD
        SAT, cs, ctl, written, m, s4_p = b.SAT, b.cs, b.ctl, b.written, b.m, b.s4_p
        term, cin, upd_write = b.s1_z, b.s1_neg, b.upd_write
        valid, w_rd, w_wr, WRITE_STAGE = b.valid, b.w_rd, b.w_wr, b.WRITE_STAGE
        # W - round_half_up(p / 2**S) = floor((2W - p') / 2) with p' = p >> (S - 1)
        # = W + ~(p' >> 1) + ~p'[0]: the product's complement and a carry-in, added to the
        # word read again by the lane's one adder (_perturb_stage; the complement is taken
        # as the product is registered)
        cp = ctl[UPDATE_ADD - 1]
        upd_in = valid[UPDATE_ADD - 1] & (cp.op == Op.UPDATE)
        # into the adder's term and carry registers, which no perturbation needs then (an op
        # issues only LATE_READ cycles after an UPDATE's word)
        with m.If(upd_in):
            for l in range(L):
                m.d.sync += [term[l].eq(~s4_p[l][S:].as_signed()), cin[l].eq(~s4_p[l][S - 1])]
        cl, cu = ctl[LATE_READ], ctl[WRITE_STAGE]
        late_read = valid[LATE_READ] & (cl.op == Op.UPDATE)
        with m.If(late_read):
            m.d.comb += w_rd.addr.eq(cl.word)
        m.d.comb += w_wr.data.eq(Cat(*written))
        with m.If(upd_write):
            m.d.comb += [w_wr.addr.eq(cu.word), w_wr.en.eq(-1)]
        with m.Elif(valid[SAT] & ((cs.op == Op.INIT) | (cs.op == Op.LOAD))):
            m.d.comb += [w_wr.addr.eq(cs.word), w_wr.en.eq(b.wen)]
        with m.Else():
            m.d.comb += w_wr.addr.eq(cs.word)

    def _matvec_path(self, b):
        """Matrix-vector path: adder tree, row accumulators, narrowing."""
        ACC_STAGE, T, aw, bw, ctl, fw = b.ACC_STAGE, b.T, b.aw, b.bw, b.ctl, b.fw
        local, lowrank, m, max_out = b.local, b.lowrank, b.m, b.max_out
        p, s4_p, sat_flag, valid, wf = b.p, b.s4_p, b.sat_flag, b.valid, b.wf
        # -- matrix-vector path: adder tree, row accumulators, narrowing -------------------
        # a dumped weight is the tree's sum, held there until taken (_dump): the tree stands
        # still from its token's stage on (nothing issues behind a DUMP word meanwhile)
        b.tree_hold = Signal()
        m.d.comb += b.tree_hold.eq((valid[ACC_STAGE] & (ctl[ACC_STAGE].op == Op.DUMP))
                                   | (self.wdump.valid & ~self.wdump.ready))
        level = list(s4_p)
        for t in range(T):
            level_next = []
            for i in range(0, len(level), 2):
                v = Signal(signed(aw + bw + t + 1), name=f"tree{t}_{i // 2}", reset_less=True)
                with m.If(~b.tree_hold):
                    m.d.sync += v.eq(level[i] + level[i + 1] if i + 1 < len(level)
                                     else level[i])
                level_next.append(v)
            level = level_next
        b.total = level[0]
        ca, va = ctl[ACC_STAGE], valid[ACC_STAGE]
        # sums start at half an output LSB, so rounding half up is a plain shift at the end
        half_lsb = (1 << wf) >> 1
        acc_new = Signal(signed(p.acc_width))
        (self._acc_memory if p.acc_memory == "bram" else self._acc_flops)(b, acc_new, half_lsb)
        n1_valid, n1_idx, n1_dest = Signal(), Signal(range(max(max_out, 2))), Signal(Dest)
        ends = Signal()
        m.d.comb += ends.eq(va & (ca.op == Op.MATVEC) & ca.last)
        m.d.sync += [n1_valid.eq(ends), n1_idx.eq(ca.outidx), n1_dest.eq(ca.dest)]
        if b.R:
            # the fast-clock build registers the sum, then narrows it
            n1_val = Signal(signed(p.acc_width + 1))
            m.d.sync += n1_val.eq(acc_new >> wf)
            y = _sat(m, n1_val, fw, sat_flag(), n1_valid)
        else:
            # narrowed and saturated before the register (a LUT per flip-flop, rather than
            # the sum's upper bits in flip-flops of their own)
            y = Signal(signed(fw))
            m.d.sync += y.eq(_sat(m, acc_new >> wf, fw, sat_flag(), ends))
        m.d.comb += [b.queue_wdata.eq(y), b.queue_we.eq(n1_valid & (n1_dest == Dest.OUT))]
        if lowrank:
            with m.If(n1_valid & (n1_dest == Dest.LOCAL)):
                m.d.sync += local[n1_idx].eq(y)
        b.n1_valid = n1_valid

    def _acc_flops(self, b, acc_new, half_lsb):
        """Row accumulators in flip-flops: sums start at half an output LSB, so rounding half
        up is a plain shift at the end; a row's accumulator returns to it as the row's sum
        leaves (a constant: the flip-flops' set and reset, no multiplexer before the
        adder)."""
        m, p, lay, max_rows, total = b.m, b.p, b.lay, b.max_rows, b.total
        ca, va = b.ctl[b.ACC_STAGE], b.valid[b.ACC_STAGE]
        accs = [Signal(signed(p.acc_width), name=f"acc{i}", init=half_lsb)
                for i in range(max_rows)]
        restart = Signal(signed(p.acc_width))
        m.d.comb += restart.eq(Mux(ca.last, half_lsb, acc_new))
        if len({reg.rows for reg in lay.regions}) == 1:
            # every op has the same rows, in order: the accumulators rotate, the head is
            # always the arriving word's row (no read multiplexer)
            m.d.comb += acc_new.eq(accs[0] + total)
            with m.If(va & (ca.op == Op.MATVEC)):
                m.d.sync += [accs[i].eq(accs[i + 1]) for i in range(max_rows - 1)]
                m.d.sync += accs[-1].eq(restart)
        else:
            acc_file = Array(accs)
            m.d.comb += acc_new.eq(acc_file[ca.row] + total)
            with m.If(va & (ca.op == Op.MATVEC)):
                m.d.sync += acc_file[ca.row].eq(restart)

    def _acc_memory(self, b, acc_new, half_lsb):
        """Row accumulators in a block RAM (``accs_norw``), addressed by row: a word's row
        is read as the word enters the stage before ACC_STAGE and written with its new sum
        at ACC_STAGE; a group's first beat adds to half an output LSB instead of what is
        stored (so nothing needs clearing, after an abort either). No read meets a write to
        its row: consecutive words of one row are ``rows >= 2`` words apart (``acc_memory``
        is checked for that), and the pipeline advances every cycle."""
        m, p, max_rows, total = b.m, b.p, b.max_rows, b.total
        ca, va = b.ctl[b.ACC_STAGE], b.valid[b.ACC_STAGE]
        m.submodules.accs_norw = mem = Memory(shape=signed(p.acc_width), depth=max_rows,
                                              init=[], attrs={"ram_style": "block"})
        rd, wr = mem.read_port(), mem.write_port()
        if b.lowrank:
            rd_row, wr_row = b.ctl[b.ACC_STAGE - 1].row, ca.row
        else:
            # one region: every MATVEC walks rows 0 .. rows - 1 in order for each beat, so a
            # counter of the MATVEC words entering ACC_STAGE is their row (not carried down
            # the pipeline in every stage's token); an abort resets it with the pipeline
            rd_row = Signal(range(max_rows), name="acc_row")
            wr_row = Signal(range(max_rows), name="acc_wrow")
            cn, vn = b.ctl[b.ACC_STAGE - 1], b.valid[b.ACC_STAGE - 1]
            with m.If(vn & (cn.op == Op.MATVEC)):
                m.d.sync += [rd_row.eq(Mux(rd_row == max_rows - 1, 0, rd_row + 1)),
                             wr_row.eq(rd_row)]
        m.d.comb += [rd.addr.eq(rd_row),
                     acc_new.eq(Mux(ca.first, half_lsb, rd.data) + total),
                     wr.addr.eq(wr_row), wr.data.eq(acc_new),
                     wr.en.eq(va & (ca.op == Op.MATVEC))]

    def _dump(self, b):
        """DUMP: a word's weight ``dlane`` times 1 in its lane, 0 elsewhere, is the adder
        tree's sum; held on ``wdump`` until taken (in the tree's last register, which stands
        still meanwhile: no copy; with one lane, in a register of its own), and then the
        next weight issues."""
        ACC_STAGE, ctl, dump_busy, m, total, valid = (b.ACC_STAGE, b.ctl, b.dump_busy, b.m,
                                                      b.total, b.valid)
        weight = total[:b.ww].as_signed()
        with m.If(valid[ACC_STAGE] & (ctl[ACC_STAGE].op == Op.DUMP)):
            m.d.sync += self.wdump.valid.eq(1)
            if not b.T:
                m.d.sync += self.wdump.payload.eq(weight)
        if b.T:
            m.d.comb += self.wdump.payload.eq(weight)
        with m.If(self.wdump.valid & self.wdump.ready):
            m.d.sync += [self.wdump.valid.eq(0), dump_busy.eq(0)]

    def _colacc(self, b):
        """COLACC: per-lane accumulation over rows, then lane-serial narrowing."""
        C, L, WS, caddr_w, cdepth, ctl, cw = b.C, b.L, b.WS, b.caddr_w, b.cdepth, b.ctl, b.cw
        inner, lowrank, m, max_k, nxt, promote = b.inner, b.lowrank, b.m, b.max_k, b.nxt, b.promote
        s1_op, s4_p, sat_flag, ser_addr = b.s1_op, b.s4_p, b.sat_flag, b.ser_addr
        ser_data, ser_we, serial_busy, valid = b.ser_data, b.ser_we, b.serial_busy, b.valid
        ww = b.ww
        # -- COLACC: per-lane accumulation over rows, then lane-serial narrowing -----------
        if lowrank:
            lacc_w = cw + ww + max(C, 2).bit_length()
            P = b.SAT + 2                                   # the products' stage
            cp = ctl[P]
            laccs = [Signal(signed(lacc_w), name=f"lacc{l}") for l in range(L)]
            snap = Array(Signal(signed(lacc_w), name=f"snap{l}") for l in range(L))
            ser_n = Signal(range(L + 1))
            ser_base = Signal(range(cdepth + max_k * L + 1))
            ser_kb = Signal(range(max(max_k, 2)))
            v_base = [Signal(caddr_w, name=f"v_base{i}") for i in range(P - WS)]
            m.d.sync += v_base[0].eq(s1_op.v_base)          # aligned with stage WS + 1
            m.d.sync += [v.eq(u) for u, v in zip(v_base, v_base[1:])]   # ... P
            m.d.comb += serial_busy.eq(ser_n != 0)
            with m.If(valid[P] & (cp.op == Op.COLACC)):
                for l in range(L):
                    m.d.sync += laccs[l].eq(Mux(cp.first, 0, laccs[l]) + s4_p[l])
                with m.If(cp.last):
                    for l in range(L):
                        m.d.sync += snap[l].eq(Mux(cp.first, 0, laccs[l]) + s4_p[l])
                    m.d.sync += [ser_n.eq(L), ser_kb.eq(cp.kb),
                                 ser_base.eq(v_base[-1] + cp.kb * L)]
            # v = round(sum / 2**(cw - 1 - cshift)), the COLACC's own scale
            col_sh = Signal(range(2 * cw))
            with m.If(promote & (nxt.op.op == Op.COLACC)):
                m.d.sync += col_sh.eq(cw - 1 - nxt.op.cshift)
            lane = Signal(range(L))
            m.d.comb += lane.eq(L - ser_n)
            vr = Signal(signed(lacc_w))
            head = Signal(signed(lacc_w))
            m.d.comb += [head.eq(snap[lane]),
                         vr.eq((head >> col_sh)
                               + Mux(col_sh != 0,
                                     Array(head[min(i, lacc_w - 1)]
                                           for i in range(2 * cw))[col_sh - 1], 0))]
            idx = Signal(range(max_k * L + L + 1))
            m.d.comb += idx.eq(ser_kb * L + lane)
            vsat = _sat(m, vr, cw, sat_flag(), serial_busy & (idx < inner))
            with m.If(serial_busy):
                m.d.sync += ser_n.eq(ser_n - 1)
                m.d.comb += [ser_we.eq(idx < inner), ser_addr.eq(ser_base + lane),
                             ser_data.eq(vsat)]

    def _flags(self, b):
        """Flags and status: events registered first (off the datapath's timing)."""
        active, dump_busy, empty, err_events = b.active, b.dump_busy, b.empty, b.err_events
        framing_event, m, n1_valid, nxt_valid = b.framing_event, b.m, b.n1_valid, b.nxt_valid
        sat_events = b.sat_events
        # -- flags and status: events are registered first (off the datapath's timing) --
        pending = []
        for flag, events in ((self.saturated, sat_events), (self.error, err_events),
                             (self.framing, [framing_event])):
            # each event is registered on its own, then combined: the OR tree stays off the
            # datapath's timing
            held = [Signal(name=f"{flag.name}_event{i}") for i in range(len(events))]
            m.d.sync += [h.eq(e) for h, e in zip(held, events)]
            seen = Signal(name=f"{flag.name}_event")
            m.d.sync += seen.eq(Cat(*held).any())
            pending += [seen, *held]
            with m.If(self.clear):
                m.d.sync += flag.eq(0)
            with m.Elif(seen):
                m.d.sync += flag.eq(1)
        m.d.comb += self.idle.eq(~nxt_valid & ~active & empty & ~n1_valid
                                 & ~dump_busy & ~Cat(*pending).any())
