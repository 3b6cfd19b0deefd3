"""Softmax cross-entropy loss unit: ``dz = softmax(z) - onehot(y)``, the loss in bits, argmax.

See :mod:`fieldtune.rtl.loss.tables` for the base-2 arithmetic and docs/numerics.md for the
formats and the error against float.
"""

from amaranth.hdl import Module, Signal, Array, Const, Mux, Cat, unsigned, signed
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import LossParams
from .tables import (LOG2E, LOG2E_FRAC, exp2_table, log2_table, diff_clamp, exponent_width,
                     loss_width, zo_sum_width)


__all__ = ["SoftmaxCrossEntropy", "ZOSign", "loss_command_layout", "loss_result_layout"]


class ZOSign(enum.Enum, shape=2):
    """What a vector's loss does to the zeroth-order sum."""
    NONE = 0
    PLUS = 1      # loss at W + eps*z: added
    MINUS = 2     # loss at W - eps*z: subtracted


def _label_width(p):
    return max(p.classes - 1, 1).bit_length()


def loss_command_layout(p: LossParams):
    """Per vector: ``z0`` (the sample's frozen logits, signed ``Q(lw-lf).lf``, added to the
    incoming adapter outputs with saturation); ``label``; ``dz`` (emit ``dz`` on the ``dz``
    stream); ``zo`` (a :class:`ZOSign`); ``zo_first`` (the sum restarts at this vector)."""
    return data.StructLayout({"z0": data.ArrayLayout(signed(p.logit_width), p.classes),
                              "label": unsigned(_label_width(p)), "dz": unsigned(1),
                              "zo": ZOSign, "zo_first": unsigned(1)})


def loss_result_layout(p: LossParams):
    """Per vector: ``loss`` (bits, unsigned ``Q.loss_frac``), ``argmax`` (first maximum),
    ``correct`` (argmax == label), ``zo_sum`` (signed ``Q.loss_frac``: running sum of
    ``+L`` / ``-L`` since the last ``zo_first``)."""
    return data.StructLayout({"loss": unsigned(loss_width(p)),
                              "argmax": unsigned(_label_width(p)),
                              "correct": unsigned(1),
                              "zo_sum": signed(zo_sum_width(p))})


def _const_mul(value, k):
    """``value * k`` for a constant ``k >= 0`` as a balanced tree of shifted adds (so the
    synthesizer never spends a DSP block on it)."""
    terms = [value << i for i in range(k.bit_length()) if (k >> i) & 1]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class SoftmaxCrossEntropy(wiring.Component):
    """Loss unit for ``classes`` logits (the golden model is
    :func:`fieldtune.sim.golden.loss.softmax_xent`).

    Parameters
    ----------
    params : LossParams

    Attributes
    ----------
    cmd : In(stream.Signature(loss_command_layout))
        One command per logit vector, taken before its logits (the forward cache's last beat
        of a sample carries its ``z0`` and ``label``).
    logits : In(stream.Signature(signed(logit_width)))
        ``classes`` adapter outputs per vector, class order, signed ``Q(lw-lf).lf`` (the MAC
        array's ``out`` stream); the unit's logits are ``sat(out + z0)``.
    dz : Out(stream.Signature(signed(prob_frac + 1)))
        ``classes`` values ``softmax - onehot`` in signed ``Q1.prob_frac``, class order, when
        the command asks for them (first order).
    result : Out(stream.Signature(loss_result_layout))
        One per vector, after its ``dz``.

    Timing: a vector takes ``classes`` cycles to receive, ``classes + 4`` for the exponents
    and their sum, 3 for the logarithm, ``classes + 2`` for ``dz`` (when asked, without
    back-pressure) and 1 for the result: about ``3 * classes + 10`` cycles, during which
    ``logits.ready`` is low outside the receive phase. ``dz`` and ``result`` hold under
    back-pressure; nothing is lost.
    """

    def __init__(self, params: LossParams):
        if not isinstance(params, LossParams):
            self._MustUse__silence = True           # never elaborated: no warning for it
            raise TypeError(f"params must be a LossParams, not {type(params).__name__}")
        self.params = params
        super().__init__({
            "cmd": In(stream.Signature(loss_command_layout(params))),
            "logits": In(stream.Signature(signed(params.logit_width))),
            "dz": Out(stream.Signature(signed(params.prob_frac + 1))),
            "result": Out(stream.Signature(loss_result_layout(params))),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C, lw, tf, pf, eb = p.classes, p.logit_width, p.loss_frac, p.prob_frac, p.exp_bits
        tw = exponent_width(p)
        sw = pf + 1 + max(C - 1, 1).bit_length()          # S = sum of up to C values <= 1.0

        m.submodules.exp_table = exp_mem = Memory(shape=unsigned(pf + 1), depth=1 << eb,
                                                  init=exp2_table(p))
        m.submodules.log_table = log_mem = Memory(shape=unsigned(tf), depth=1 << eb,
                                                  init=log2_table(p))
        exp_rd = exp_mem.read_port()
        log_rd = log_mem.read_port()

        cmd = Signal(loss_command_layout(p))
        z = Array(Signal(signed(lw), name=f"z{i}") for i in range(C))
        t = Array(Signal(unsigned(tw), name=f"t{i}") for i in range(C))
        zmax = Signal(signed(lw))
        argmax = Signal(range(C))
        count = Signal(range(C + 1))
        s = Signal(unsigned(sw))
        log2s = Signal(unsigned(tw))
        zo_sum = Signal(signed(zo_sum_width(p)))
        loss = Signal(unsigned(loss_width(p)))

        # -- exponent pipeline: class c -> d -> t -> table address -> 2**-t -------------------
        def exp_address(texp):
            """Round ``texp`` (Q.tf) half up to eb fraction bits: (integer part, index)."""
            sh = tf - eb
            tr = Signal(unsigned(tw + 1))
            m.d.comb += tr.eq((texp + ((1 << sh) >> 1)) >> sh)
            n = Signal(range(pf + 3))
            m.d.comb += n.eq(Mux(tr >> eb > pf + 2, pf + 2, tr >> eb))
            return n, tr[:eb]

        def shifted(v, n):
            """``round(v / 2**n)`` half up, for a table value ``v`` and shift ``n``."""
            half = Signal(unsigned(pf + 2))
            m.d.comb += half.eq((Const(1, unsigned(pf + 3)) << n) >> 1)
            return (v + half) >> n

        phase = Signal(range(8))
        IDLE, RECV, EXP, LOG, LOG2, DZ, RESULT = range(7)

        # stage registers of the exponent pipeline
        e_valid = Signal(4)
        e_c = [Signal(range(C), name=f"e_c{i}") for i in range(3)]
        e_d = Signal(unsigned(lw + 1))
        e_t = Signal(unsigned(tw))
        e_n = Signal(range(pf + 3))

        # stage registers of the dz pipeline
        a_valid = Signal()
        a_c = Signal(range(C))
        a_n = Signal(range(pf + 3))

        d_clamp = diff_clamp(p)
        sh_t = LOG2E_FRAC + p.logit_frac - tf
        issue = Signal(range(C + 1))

        with m.Switch(phase):
            with m.Case(IDLE):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cmd.eq(self.cmd.payload), count.eq(0), phase.eq(RECV)]
            with m.Case(RECV):
                m.d.comb += self.logits.ready.eq(1)
                z0 = Array(cmd.z0[i] for i in range(C))
                lo, hi = -(1 << (lw - 1)), (1 << (lw - 1)) - 1
                total = Signal(signed(lw + 1))
                logit = Signal(signed(lw))
                m.d.comb += [total.eq(self.logits.payload + z0[count]),
                             logit.eq(Mux(total > hi, hi, Mux(total < lo, lo, total)))]
                with m.If(self.logits.valid):
                    m.d.sync += [z[count].eq(logit), count.eq(count + 1)]
                    with m.If((count == 0) | (logit > zmax)):
                        m.d.sync += [zmax.eq(logit), argmax.eq(count)]
                    with m.If(count == C - 1):
                        m.d.sync += [phase.eq(EXP), issue.eq(0), s.eq(0), e_valid.eq(0)]
            with m.Case(EXP):
                # stage 0: clamped difference
                go = Signal()
                m.d.comb += go.eq(issue < C)
                diff = Signal(unsigned(lw + 1))
                m.d.comb += diff.eq(zmax - z[issue])
                m.d.sync += [e_d.eq(Mux(diff > d_clamp, d_clamp, diff)), e_c[0].eq(issue),
                             issue.eq(Mux(go, issue + 1, issue))]
                # stage 1: t = round(d * log2 e), stored
                prod = _const_mul(e_d, LOG2E)
                m.d.sync += [e_t.eq((prod + ((1 << sh_t) >> 1)) >> sh_t), e_c[1].eq(e_c[0])]
                # stage 2: table address
                with m.If(e_valid[1]):
                    m.d.sync += t[e_c[1]].eq(e_t)
                n, idx = exp_address(e_t)
                m.d.comb += exp_rd.addr.eq(idx)
                m.d.sync += e_n.eq(n)
                # stage 3: 2**-t, summed
                with m.If(e_valid[2]):
                    m.d.sync += s.eq(s + shifted(exp_rd.data, e_n))
                m.d.sync += e_valid.eq(Cat(go, e_valid[:-1]))
                with m.If(~go & (e_valid == 0b1000)):
                    m.d.sync += phase.eq(LOG)
            with m.Case(LOG):
                # log2(S): leading one, left-justify, round the next eb bits half up
                pos = Signal(range(sw))
                for i in range(sw):
                    with m.If(s[i]):
                        m.d.comb += pos.eq(i)
                aw = sw + eb + 1
                aligned = Signal(unsigned(aw))
                lead = Signal(range(sw))
                m.d.comb += [lead.eq(sw - 1 - pos), aligned.eq((s << (eb + 1)) << lead)]
                fr = Signal(unsigned(eb + 1))
                m.d.comb += fr.eq(aligned[aw - 1 - eb:aw - 1] + aligned[aw - 2 - eb])
                k = Signal(unsigned(tw))
                m.d.comb += [k.eq(pos - pf + fr[eb]), log_rd.addr.eq(fr[:eb])]
                m.d.sync += [log2s.eq(k << tf), phase.eq(LOG2)]
            with m.Case(LOG2):
                total = Signal(unsigned(tw))
                m.d.comb += total.eq(log2s + log_rd.data)
                m.d.sync += [log2s.eq(total), loss.eq(total + t[cmd.label]),
                             phase.eq(Mux(cmd.dz, DZ, RESULT)), issue.eq(0), a_valid.eq(0)]
                with m.Switch(cmd.zo):
                    with m.Case(ZOSign.PLUS):
                        m.d.sync += zo_sum.eq(Mux(cmd.zo_first, 0, zo_sum)
                                              + total + t[cmd.label])
                    with m.Case(ZOSign.MINUS):
                        m.d.sync += zo_sum.eq(Mux(cmd.zo_first, 0, zo_sum)
                                              - total - t[cmd.label])
            with m.Case(DZ):
                # two stages with a common enable: address (t_c + log2 S), then
                # p = 2**-(t_c + log2 S), dz = p - onehot on the output register.
                advance = Signal()
                m.d.comb += advance.eq(~self.dz.valid | self.dz.ready)
                n, idx = exp_address(t[issue] + log2s)
                m.d.comb += [exp_rd.addr.eq(idx), exp_rd.en.eq(advance)]
                prob = Signal(unsigned(pf + 1))
                m.d.comb += prob.eq(shifted(exp_rd.data, a_n))
                value = Signal(signed(pf + 2))
                m.d.comb += value.eq(prob - Mux(a_c == cmd.label, 1 << pf, 0))
                with m.If(advance):
                    m.d.sync += [a_valid.eq(issue < C), a_c.eq(issue), a_n.eq(n),
                                 issue.eq(Mux(issue < C, issue + 1, issue)),
                                 self.dz.valid.eq(a_valid),
                                 self.dz.payload.eq(Mux(value > (1 << pf) - 1, (1 << pf) - 1,
                                                        value))]
                    with m.If(~a_valid & (issue == C) & (~self.dz.valid | self.dz.ready)):
                        m.d.sync += [phase.eq(RESULT), self.dz.valid.eq(0)]
            with m.Case(RESULT):
                m.d.comb += [self.result.valid.eq(1),
                             self.result.payload.loss.eq(loss),
                             self.result.payload.argmax.eq(argmax),
                             self.result.payload.correct.eq(argmax == cmd.label),
                             self.result.payload.zo_sum.eq(zo_sum)]
                with m.If(self.result.ready):
                    m.d.sync += phase.eq(IDLE)
        return m

