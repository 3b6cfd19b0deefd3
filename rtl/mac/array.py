"""The adapter MAC array: ``lanes`` signed multipliers with their adapter weight memory.

One pipeline serves every micro-op (:mod:`.ops`); a token is one weight word. See
docs/architecture.md ("Adapter MAC array") for the op table and the timing contract.
"""

from amaranth.hdl import Module, Signal, Array, Const, Mux, Cat, unsigned, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory
from amaranth.lib.fifo import SyncFIFOBuffered

from .params import MacParams
from .layout import Layout
from .ops import Op, Region, Operand, Perturb, Dest, CoefSource, MAC_OP, IMM_WIDTH


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
    return 3 + _tree_levels(mac.lanes) + 2


def _sat(m, value, width, flag=None, enable=1):
    """``value`` clamped to signed ``width`` bits; drives ``flag`` when clamping (and
    ``enable``)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    out = Signal(signed(width))
    over, under = value > hi, value < lo
    m.d.comb += out.eq(Mux(over, hi, Mux(under, lo, value)))
    if flag is not None:
        m.d.comb += flag.eq(enable & (over | under))
    return out


class AdapterMACArray(wiring.Component):
    """``lanes`` multiply-accumulate lanes over the adapter weight memory.

    Parameters
    ----------
    params : MacParams

    Attributes
    ----------
    cmd : In(stream.Signature(MAC_OP))
        Micro-ops. An op is taken when the previous one has issued its last word, so ops
        follow each other without a gap; invalid ops raise ``error`` and are dropped.
    x : In(stream.Signature(feature_beat_layout))
        Features (or the low-rank ``u``), ``lanes`` per beat, signed ``Q(fw-ff).ff``; a beat is
        held for the ``rows`` words of its beat and taken with the last of them (``ready`` is
        high for one cycle per ``rows``). ``last`` must mark a sample's final beat (else
        ``framing`` is raised).
    z : In(stream.Signature(ArrayLayout(signed(perturb_width), lanes)))
        Perturbations, signed ``Q(pw-pf).pf``, one beat per weight word (element ``i`` is
        weight ``i``, :mod:`.layout`), for perturbed MATVEC, zeroth-order UPDATE and INIT.
    z0 : In(stream.Signature(signed(feature_width)))
        Frozen logits (``Q(fw-ff).ff``), taken one per row during the first beat of a MATVEC
        with ``init_z0``.
    coef : In(stream.Signature(signed(coef_width)))
        ``dz`` from the loss unit, written to the coefficient memory from entry 0 after each
        BATCH op (``ready`` drops only while COLACC results are written).
    wload : In(stream.Signature(ArrayLayout(signed(weight_width), lanes)))
        Weight words for LOAD.
    out : Out(stream.Signature(signed(feature_width)))
        MATVEC results in row order, ``Q(fw-ff).ff``, rounded half up and saturated. A FIFO
        of ``2 * max(classes, rank * taps)`` entries; a MATVEC starts only when its results
        fit, so back-pressure here stalls issue, never loses a result.
    wdump : Out(stream.Signature(ArrayLayout(signed(weight_width), lanes)))
        Weight words for DUMP.
    idle : Out(1)
        No op active, nothing in flight (results may wait in ``out``).
    saturated, error, framing : Out(1)
        Sticky flags: a value was clamped; an invalid op or a coefficient beyond the ``dz``
        region; a ``last`` marker out of place. Cleared by ``clear``.
    clear : In(1)
        Clears the sticky flags.

    Timing: one weight word per cycle when the streams keep up. MATVEC results appear
    :func:`pipeline_stages` cycles after their last word; updates write 4 cycles after the
    read, and a read of a word still being written waits (scoreboard).
    """

    def __init__(self, params: MacParams):
        if not isinstance(params, MacParams):
            raise TypeError(f"params must be a MacParams, not {type(params).__name__}")
        self.params = params
        self.layout = Layout(params)
        p = params
        super().__init__({
            "cmd": In(stream.Signature(MAC_OP)),
            "x": In(stream.Signature(feature_beat_layout(p))),
            "z": In(stream.Signature(data.ArrayLayout(signed(p.perturb_width), p.lanes))),
            "z0": In(stream.Signature(signed(p.feature_width))),
            "coef": In(stream.Signature(signed(p.coef_width))),
            "wload": In(stream.Signature(data.ArrayLayout(signed(p.weight_width), p.lanes))),
            "out": Out(stream.Signature(signed(p.feature_width))),
            "wdump": Out(stream.Signature(data.ArrayLayout(signed(p.weight_width), p.lanes))),
            "idle": Out(1),
            "saturated": Out(1),
            "error": Out(1),
            "framing": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
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
        addr_w = max(lay.words - 1, 1).bit_length()
        cdepth = lay.coef_depth
        caddr_w = max(cdepth, 2).bit_length()

        # -- memories --------------------------------------------------------------------
        m.submodules.weights = wmem = Memory(shape=data.ArrayLayout(signed(ww), L),
                                             depth=lay.words, init=[])
        w_rd = wmem.read_port()
        w_wr = wmem.write_port()
        m.submodules.coefs = cmem = Memory(shape=signed(cw), depth=cdepth, init=[])
        c_rd = cmem.read_port()
        c_wr = cmem.write_port()
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=fw, depth=2 * max_out)
        m.d.comb += [self.out.valid.eq(fifo.r_rdy), self.out.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.out.ready)]

        # -- sticky flags ------------------------------------------------------------------
        sat_events, err_events, framing_event = [], [], Signal()

        def sat_flag():
            f = Signal()
            sat_events.append(f)
            return f

        # -- token control, carried down the pipeline --------------------------------------
        KIND = data.StructLayout({
            "op": Op, "word": unsigned(addr_w), "row": range(max(max_rows, 2)),
            "outidx": range(max(max_out, 2)), "first": 1, "last": 1, "dest": Dest,
            "mask": unsigned(L), "kb": range(max(max_k, 2)), "z0": signed(fw),
        })
        n_ctl = max(4, 3 + T) + 1
        valid = [Signal(name=f"s{i}_valid") for i in range(n_ctl)]
        ctl = [Signal(KIND, name=f"s{i}_ctl") for i in range(n_ctl)]
        for i in range(1, n_ctl):
            m.d.sync += [valid[i].eq(valid[i - 1]), ctl[i].eq(ctl[i - 1])]

        # -- op register and issue counters -------------------------------------------------
        cur = Signal(MAC_OP)
        active = Signal()
        started = Signal()
        k = Signal(range(max_k + 1))
        r = Signal(range(max_rows + 1))
        gi = Signal(range(len(ra.groups) + 1))
        kg = Signal(range(max_k + 1))
        gbase = Signal(range(max_out + max_rows + 1))
        word = Signal(range(lay.words + 1))
        need_drain = Signal()
        coef_wp = Signal(range(lay.dz_depth + 1))
        credits = Signal(range(2 * max_out + 1), init=2 * max_out)
        dump_busy = Signal()

        is_b = Signal()
        m.d.comb += is_b.eq(cur.region == Region.B) if lowrank else is_b.eq(0)
        rows = Signal(range(max_rows + 1))
        beats = Signal(range(max_k + 1))
        outputs = Signal(range(max_out + 1))
        glen = Signal(range(max_k + 1))
        base = Signal(range(lay.words + 1))
        glens = Array(Const(n, range(max_k + 1)) for _, n in ra.groups)
        m.d.comb += [
            rows.eq(Mux(is_b, rb.rows, ra.rows)), beats.eq(Mux(is_b, rb.beats, ra.beats)),
            outputs.eq(Mux(is_b, rb.outputs, ra.outputs)),
            glen.eq(Mux(is_b, rb.beats, glens[gi])), base.eq(Mux(is_b, rb.base, ra.base)),
        ]

        kind = cur.op
        uses_x = Signal()
        uses_local = Signal()
        uses_z = Signal()
        uses_z0 = Signal()
        m.d.comb += [
            uses_x.eq(((kind == Op.MATVEC) | (kind == Op.UPDATE))
                      & (cur.operand == Operand.STREAM)),
            uses_local.eq(((kind == Op.MATVEC) | (kind == Op.UPDATE))
                          & (cur.operand == Operand.LOCAL)),
            uses_z.eq(((kind == Op.MATVEC) & (cur.perturb != Perturb.NONE))
                      | (((kind == Op.UPDATE) | (kind == Op.INIT))
                         & (cur.operand == Operand.Z))),
            uses_z0.eq((kind == Op.MATVEC) & cur.init_z0 & (kg == 0)),
        ]
        last_row = r == rows - 1
        last_token = last_row & (k == beats - 1)

        # pipeline occupancy (for drains)
        serial_busy = Signal()
        empty = Signal()
        m.d.comb += empty.eq(~Cat(*valid[1:]).any() & ~serial_busy)

        # op-level start conditions, checked before the first word
        op_ok = Signal()
        coef_need = Signal(range(cdepth + max_out + 1))
        m.d.comb += coef_need.eq(cur.coef_base + outputs)
        reads_coef = (((kind == Op.UPDATE) | (kind == Op.COLACC))
                      & (cur.coef_source == CoefSource.MEMORY) & (cur.coef_base < lay.dz_depth))
        m.d.comb += op_ok.eq(
            ~((kind == Op.MATVEC) & (cur.dest == Dest.OUT) & (credits < outputs))
            & ~(reads_coef & (coef_wp < coef_need))
            & ~((uses_local | need_drain | (kind == Op.COLACC)) & ~empty))

        # scoreboard: a word still on its way to the write port cannot be read
        hazard = Signal()
        writes = [valid[i] & ((ctl[i].op == Op.UPDATE) | (ctl[i].op == Op.INIT)
                              | (ctl[i].op == Op.LOAD)) & (ctl[i].word == word)
                  for i in range(1, 5)]
        m.d.comb += hazard.eq(Cat(*writes).any())

        go = Signal()
        m.d.comb += go.eq(
            active & (started | op_ok) & ~hazard
            & (~uses_x | self.x.valid) & (~uses_z | self.z.valid) & (~uses_z0 | self.z0.valid)
            & ((kind != Op.LOAD) | self.wload.valid) & ((kind != Op.DUMP) | ~dump_busy)
            # a COLACC beat starts when the previous beat's lanes are written
            & ~((kind == Op.COLACC) & (r == 0) & ~empty))
        m.d.comb += [
            self.x.ready.eq(go & uses_x & last_row),
            self.z.ready.eq(go & uses_z),
            self.z0.ready.eq(go & uses_z0),
            self.wload.ready.eq(go & (kind == Op.LOAD)),
            w_rd.addr.eq(word),
            c_rd.addr.eq(Mux(kind == Op.COLACC, cur.coef_base + r, cur.coef_base + gbase + r)),
        ]
        with m.If(go & uses_x & last_row & (self.x.payload.last != (k == beats - 1))):
            m.d.comb += framing_event.eq(1)

        # the token entering stage 1
        pad = rb.padded_lanes if lowrank else 0
        last_mask = (1 << L) - 1 - (((1 << pad) - 1) << (L - pad)) if pad else (1 << L) - 1
        m.d.sync += [
            valid[0].eq(0),
            valid[1].eq(go),
            ctl[1].op.eq(kind), ctl[1].word.eq(word), ctl[1].row.eq(r),
            ctl[1].outidx.eq(gbase + r), ctl[1].dest.eq(cur.dest), ctl[1].kb.eq(k),
            ctl[1].first.eq(Mux(kind == Op.COLACC, r == 0, kg == 0)),
            ctl[1].last.eq(Mux(kind == Op.COLACC, last_row, kg == glen - 1)),
            ctl[1].mask.eq(Mux(is_b & (k == beats - 1), last_mask, (1 << L) - 1)),
            ctl[1].z0.eq(Mux(uses_z0, self.z0.payload, 0)),
        ]

        with m.If(go):
            m.d.sync += [started.eq(1), word.eq(word + 1), r.eq(r + 1)]
            with m.If(~started & (kind == Op.MATVEC) & (cur.dest == Dest.OUT)):
                m.d.sync += credits.eq(credits - outputs + (self.out.valid & self.out.ready))
            with m.If(last_row):
                m.d.sync += [r.eq(0), k.eq(k + 1), kg.eq(kg + 1)]
                with m.If(kg == glen - 1):
                    m.d.sync += [kg.eq(0), gi.eq(gi + 1), gbase.eq(gbase + rows)]
            with m.If(last_token):
                m.d.sync += [active.eq(0), need_drain.eq(kind == Op.COLACC)]
            with m.If(kind == Op.DUMP):
                m.d.sync += dump_busy.eq(1)
        with m.If(~(go & ~started & (kind == Op.MATVEC) & (cur.dest == Dest.OUT))
                  & self.out.valid & self.out.ready):
            m.d.sync += credits.eq(credits + 1)
        with m.If(~active & empty):
            m.d.sync += need_drain.eq(0)

        # -- taking ops ------------------------------------------------------------------
        op = self.cmd.payload
        reg_b = op.region == Region.B
        o_outputs = Mux(reg_b, rb.outputs, ra.outputs) if lowrank else ra.outputs
        o_beats = Mux(reg_b, rb.beats, ra.beats) if lowrank else ra.beats
        local_op = (op.operand == Operand.LOCAL) & ((op.op == Op.MATVEC) | (op.op == Op.UPDATE))
        bad = Signal()
        m.d.comb += bad.eq(
            (reg_b & (0 if lowrank else 1))
            | (local_op & (1 if not lowrank else (o_beats > lay.local_beats)))
            | ((op.op == Op.MATVEC) & (op.dest == Dest.LOCAL)
               & (1 if not lowrank else (o_outputs > inner)))
            | ((op.op == Op.MATVEC) & (op.operand == Operand.Z))
            | ((op.op == Op.COLACC) & (~reg_b if lowrank else 1))
            | (((op.op == Op.UPDATE) | (op.op == Op.COLACC))
               & (op.coef_source == CoefSource.MEMORY) & (op.coef_base + o_outputs > cdepth))
            | ((op.op == Op.COLACC) & (op.v_base + inner > cdepth))
            | (op.zshift > kmax)
            | (op.op.as_value() == 7))
        m.d.comb += self.cmd.ready.eq(~active | (go & last_token))
        with m.If(self.cmd.valid & self.cmd.ready):
            with m.If(bad | (op.op == Op.BATCH)):
                pass
            with m.Else():
                m.d.sync += [cur.eq(op), active.eq(1), started.eq(0), k.eq(0), r.eq(0),
                             gi.eq(0), kg.eq(0), gbase.eq(0),
                             word.eq(Mux(reg_b, rb.base, ra.base) if lowrank else ra.base)]
        bad_op = Signal()
        m.d.comb += bad_op.eq(self.cmd.valid & self.cmd.ready & bad)
        err_events.append(bad_op)

        # coefficient write port: COLACC results first, then the dz stream
        batch_now = self.cmd.valid & self.cmd.ready & ~bad & (op.op == Op.BATCH)
        ser_we = Signal()
        ser_addr = Signal(caddr_w)
        ser_data = Signal(signed(cw))
        coef_over = Signal()
        m.d.comb += self.coef.ready.eq(~ser_we)
        with m.If(ser_we):
            m.d.comb += [c_wr.addr.eq(ser_addr), c_wr.data.eq(ser_data), c_wr.en.eq(1)]
        with m.Elif(self.coef.valid):
            with m.If(coef_wp < lay.dz_depth):
                m.d.comb += [c_wr.addr.eq(coef_wp), c_wr.data.eq(self.coef.payload),
                             c_wr.en.eq(1)]
                m.d.sync += coef_wp.eq(coef_wp + 1)
            with m.Else():
                m.d.comb += coef_over.eq(1)
        err_events.append(coef_over)
        with m.If(batch_now):
            m.d.sync += coef_wp.eq(0)

        # -- stage 0 -> 1: operands that come with the token --------------------------------
        local = Array(Signal(signed(fw), name=f"u{i}") for i in range(max(inner, 1)))
        s1_b = Signal(data.ArrayLayout(signed(bw), L))
        s1_z = Signal(data.ArrayLayout(signed(zw), L))
        s1_op = Signal(MAC_OP)
        m.d.sync += s1_op.eq(cur)
        for l in range(L):
            with m.Switch(kind):
                with m.Case(Op.LOAD):
                    m.d.sync += s1_b[l].eq(self.wload.payload[l])
                with m.Default():
                    with m.Switch(cur.operand):
                        with m.Case(Operand.STREAM):
                            m.d.sync += s1_b[l].eq(self.x.payload.data[l])
                        with m.Case(Operand.LOCAL):
                            if lowrank:
                                beat_vals = Array(
                                    (local[kk * L + l] if kk * L + l < inner else Const(0, fw))
                                    for kk in range(lay.local_beats))
                                m.d.sync += s1_b[l].eq(beat_vals[k])
                            else:
                                m.d.sync += s1_b[l].eq(0)
                        with m.Case(Operand.Z):
                            m.d.sync += s1_b[l].eq(self.z.payload[l] << zalign)
                        with m.Default():
                            m.d.sync += s1_b[l].eq(0)
            m.d.sync += s1_z[l].eq(Mux(uses_z, self.z.payload[l], 0))

        # -- stage 1: weights and coefficients arrive; perturb, scale, choose operands ------
        s2_a = Signal(data.ArrayLayout(signed(aw), L))
        s2_b = Signal(data.ArrayLayout(signed(bw), L))
        s2_w = Signal(data.ArrayLayout(signed(ww), L))
        c1 = ctl[1]
        sign_minus = s1_op.perturb == Perturb.MINUS
        perturbing = (c1.op == Op.INIT) | ((c1.op == Op.MATVEC) & (s1_op.perturb != Perturb.NONE))
        # coefficient a = sat(round(coef * 2**cshift)), shared by all lanes
        cin_w = max(IMM_WIDTH, cw)
        cin = Signal(signed(cin_w))
        m.d.comb += cin.eq(Mux(s1_op.coef_source == CoefSource.IMM, s1_op.imm, c_rd.data))
        cs = s1_op.cshift
        left = Signal(signed(cin_w + 32))
        right = Signal(signed(cin_w + 1))
        rsh = Signal(range(33))
        m.d.comb += [rsh.eq(-cs),
                     left.eq(cin << Mux(cs >= 0, cs, 0).as_unsigned()),
                     right.eq((cin + ((Const(1, unsigned(33)) << rsh) >> 1)) >> rsh)]
        scaled = Mux((c1.op == Op.COLACC) | (cs >= 0), Mux(c1.op == Op.COLACC, cin, left), right)
        coef_a = _sat(m, scaled, cw, sat_flag(),
                      valid[1] & (c1.op == Op.UPDATE))
        with m.If(valid[1] & (c1.op == Op.DUMP)):
            m.d.sync += [self.wdump.valid.eq(1), self.wdump.payload.eq(w_rd.data)]
        with m.If(self.wdump.valid & self.wdump.ready):
            m.d.sync += [self.wdump.valid.eq(0), dump_busy.eq(0)]
        for l in range(L):
            wl = w_rd.data[l]
            zsh = Signal(signed(zw + kmax + 1))
            m.d.comb += zsh.eq(s1_z[l] << s1_op.zshift)
            base_w = Mux(c1.op == Op.INIT, 0, wl)
            moved = Signal(signed(max(ww, zw + kmax) + 2))
            m.d.comb += moved.eq(Mux(sign_minus, base_w - zsh, base_w + zsh))
            wp = _sat(m, moved, ww, sat_flag(), valid[1] & perturbing & c1.mask[l])
            wp_m = Mux(c1.mask[l], Mux(perturbing, wp, wl), 0)
            m.d.sync += [
                s2_a[l].eq(Mux(c1.op == Op.MATVEC, wp_m, coef_a)),
                s2_b[l].eq(Mux(c1.op == Op.COLACC, wl, s1_b[l])),
                s2_w[l].eq(Mux(c1.op == Op.INIT, wp_m, Mux(c1.op == Op.LOAD, s1_b[l], wl))),
            ]

        # -- stage 2 -> 3: the multipliers (DSP blocks: registered inputs and output) -------
        s3_p = Signal(data.ArrayLayout(signed(aw + bw), L))
        s3_w = Signal(data.ArrayLayout(signed(ww), L))
        for l in range(L):
            m.d.sync += [s3_p[l].eq(s2_a[l] * s2_b[l]), s3_w[l].eq(s2_w[l])]

        # -- update path: stage 4 rounds, then writes -----------------------------------------
        dw = aw + bw - S + 1
        s4_d = Signal(data.ArrayLayout(signed(max(dw, 2)), L))
        s4_w = Signal(data.ArrayLayout(signed(ww), L))
        for l in range(L):
            m.d.sync += [s4_d[l].eq((s3_p[l] + (1 << (S - 1))) >> S), s4_w[l].eq(s3_w[l])]
        c4 = ctl[4]
        new = Signal(data.ArrayLayout(signed(ww), L))
        for l in range(L):
            diff = Signal(signed(max(ww, dw) + 1))
            m.d.comb += diff.eq(s4_w[l] - s4_d[l])
            nl = _sat(m, diff, ww, sat_flag(), valid[4] & (c4.op == Op.UPDATE) & c4.mask[l])
            m.d.comb += new[l].eq(Mux(c4.mask[l], Mux(c4.op == Op.UPDATE, nl, s4_w[l]), 0))
        m.d.comb += [w_wr.addr.eq(c4.word), w_wr.data.eq(new),
                     w_wr.en.eq(valid[4] & ((c4.op == Op.UPDATE) | (c4.op == Op.INIT)
                                            | (c4.op == Op.LOAD)))]

        # -- matrix-vector path: adder tree, row accumulators, narrowing -------------------
        level = [s3_p[l] for l in range(L)]
        for t in range(T):
            nxt = []
            for i in range(0, len(level), 2):
                v = Signal(signed(aw + bw + t + 1), name=f"tree{t}_{i // 2}")
                m.d.sync += v.eq(level[i] + level[i + 1] if i + 1 < len(level) else level[i])
                nxt.append(v)
            level = nxt
        total = level[0]
        ca, va = ctl[3 + T], valid[3 + T]
        accs = Array(Signal(signed(p.acc_width), name=f"acc{i}") for i in range(max_rows))
        acc_new = Signal(signed(p.acc_width))
        m.d.comb += acc_new.eq(Mux(ca.first, ca.z0 << wf, accs[ca.row]) + total)
        n1_valid, n1_val, n1_idx, n1_dest = (Signal(), Signal(signed(p.acc_width + 1)),
                                            Signal(range(max(max_out, 2))), Signal(Dest))
        with m.If(va & (ca.op == Op.MATVEC)):
            m.d.sync += accs[ca.row].eq(acc_new)
        m.d.sync += [n1_valid.eq(va & (ca.op == Op.MATVEC) & ca.last),
                     n1_val.eq((acc_new + (1 << (wf - 1) if wf else 0)) >> wf),
                     n1_idx.eq(ca.outidx), n1_dest.eq(ca.dest)]
        y = _sat(m, n1_val, fw, sat_flag(), n1_valid)
        m.d.comb += [fifo.w_data.eq(y), fifo.w_en.eq(n1_valid & (n1_dest == Dest.OUT))]
        if lowrank:
            with m.If(n1_valid & (n1_dest == Dest.LOCAL)):
                m.d.sync += local[n1_idx].eq(y)

        # -- COLACC: per-lane accumulation over rows, then lane-serial narrowing -----------
        if lowrank:
            lacc_w = cw + ww + max(C, 2).bit_length()
            c3 = ctl[3]
            laccs = [Signal(signed(lacc_w), name=f"lacc{l}") for l in range(L)]
            snap = Array(Signal(signed(lacc_w), name=f"snap{l}") for l in range(L))
            ser_n = Signal(range(L + 1))
            ser_base = Signal(range(cdepth + L + 1))
            ser_kb = Signal(range(max(max_k, 2)))
            v_base = Signal(caddr_w)
            m.d.sync += v_base.eq(s1_op.v_base)
            m.d.comb += serial_busy.eq(ser_n != 0)
            v_base2 = Signal(caddr_w)       # aligned with stage 3
            m.d.sync += v_base2.eq(v_base)
            with m.If(valid[3] & (c3.op == Op.COLACC)):
                for l in range(L):
                    m.d.sync += laccs[l].eq(Mux(c3.first, 0, laccs[l]) + s3_p[l])
                with m.If(c3.last):
                    for l in range(L):
                        m.d.sync += snap[l].eq(Mux(c3.first, 0, laccs[l]) + s3_p[l])
                    m.d.sync += [ser_n.eq(L), ser_kb.eq(c3.kb),
                                 ser_base.eq(v_base2 + c3.kb * L)]
            sh = cw - 1
            lane = Signal(range(L))
            m.d.comb += lane.eq(L - ser_n)
            vr = Signal(signed(lacc_w))
            m.d.comb += vr.eq((snap[lane] + (1 << (sh - 1))) >> sh)
            idx = Signal(range(max_k * L + L + 1))
            m.d.comb += idx.eq(ser_kb * L + lane)
            vsat = _sat(m, vr, cw, sat_flag(), serial_busy & (idx < inner))
            with m.If(serial_busy):
                m.d.sync += ser_n.eq(ser_n - 1)
                m.d.comb += [ser_we.eq(idx < inner), ser_addr.eq(ser_base + lane),
                             ser_data.eq(vsat)]

        # -- flags and status -----------------------------------------------------------
        for flag, events in ((self.saturated, sat_events), (self.error, err_events),
                             (self.framing, [framing_event])):
            with m.If(self.clear):
                m.d.sync += flag.eq(0)
            with m.Elif(Cat(*events).any()):
                m.d.sync += flag.eq(1)
        m.d.comb += self.idle.eq(~active & empty & ~n1_valid & ~dump_busy)
        return m
