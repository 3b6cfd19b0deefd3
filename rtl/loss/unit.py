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
        One command per logit vector, presented before its logits and held until its last
        logit is taken (the command is transferred with it): the unit reads ``z0`` from the
        payload while it receives the logits rather than keeping a copy. The forward cache's
        last beat of a sample carries its ``z0`` and ``label``.
    logits : In(stream.Signature(signed(logit_width)))
        ``classes`` adapter outputs per vector, class order, signed ``Q(lw-lf).lf`` (the MAC
        array's ``out`` stream); the unit's logits are ``sat(out + z0)``.
    dz : Out(stream.Signature(signed(prob_frac + 1)))
        ``classes`` values ``softmax - onehot`` in signed ``Q1.prob_frac``, class order, when
        the command asks for them (first order).
    result : Out(stream.Signature(loss_result_layout))
        One per vector, after its ``dz``.

    Structure (area first: nothing is indexed at random, one of each operator): the logits
    shift into a ring of registers that rotates once per pass; one exponent pipeline serves
    both passes over the classes: difference to the maximum and its clamp, ``t = d * log2 e``
    (shifts and adds), the table address of ``t + log2 S`` (``log2 S`` is 0 in the first
    pass), the ``2**-x`` table, its shift. The first pass sums ``S`` and keeps the label's
    ``t``; the second emits ``dz``. ``log2 S`` needs no barrel shifter: ``2**prob_frac <= S <
    classes * 2**prob_frac`` leaves the leading one a few positions to choose from.

    Timing: ``classes`` cycles to receive, ``classes + 4`` for the first pass, 2 for the
    logarithm, ``classes + 4`` for ``dz`` (when asked, without back-pressure) and 1 for the
    result: about ``3 * classes + 12`` cycles per vector (42 at 10 classes, below the 70
    cycles of an R1 forward at 32 lanes), during which ``logits.ready`` is low outside the
    receive phase. ``dz`` and ``result`` hold under back-pressure; nothing is lost.
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
        C, lw, tf, pf = p.classes, p.logit_width, p.loss_frac, p.prob_frac
        tw = exponent_width(p)
        sw = pf + 1 + max(C - 1, 1).bit_length()          # S = sum of up to C values <= 1.0

        m.submodules.exp_table = exp_mem = Memory(shape=unsigned(pf + 1), depth=1 << p.exp_bits,
                                                  init=exp2_table(p))
        m.submodules.log_table = log_mem = Memory(shape=unsigned(tf), depth=1 << p.exp_bits,
                                                  init=log2_table(p))
        exp_rd = exp_mem.read_port()
        log_rd = log_mem.read_port()

        label = Signal(unsigned(_label_width(p)))
        want_dz, zo, zo_first = Signal(), Signal(ZOSign), Signal()
        ring = [Signal(signed(lw), name=f"z{i}") for i in range(C)]   # ring[0]: the head
        zmax = Signal(signed(lw))
        argmax = Signal(range(C))
        count = Signal(range(C))
        s = Signal(unsigned(sw))
        log2s = Signal(unsigned(tw))
        t_label = Signal(unsigned(tw))
        loss = Signal(unsigned(loss_width(p)))
        zo_sum = Signal(signed(zo_sum_width(p)))

        # -- the exponent pipeline, shared by both passes ----------------------------------
        advance = Signal()              # the pipeline's enable
        issue = Signal(range(C + 1))    # classes issued in this pass
        issuing = Signal()
        m.d.comb += issuing.eq(advance & (issue < C))
        rotate_in = Signal(signed(lw))  # what enters the ring's tail when it moves
        moving = Signal()
        m.d.comb += rotate_in.eq(ring[0])
        with m.If(moving):
            m.d.sync += [ring[C - 1].eq(rotate_in)] + [ring[i].eq(ring[i + 1])
                                                        for i in range(C - 1)]
        pipe = self._exponent_pipeline(m, advance, issue, issuing, ring[0], zmax, log2s, exp_rd)
        value = pipe["value"]           # 2**-(t_c + log2 S) of the class in stage 3
        drained = ~pipe["busy"] & (issue == C)
        onehot = Mux(pipe["class"] == label, 1 << pf, 0)
        dz_value = Signal(signed(pf + 2))
        m.d.comb += dz_value.eq(value - onehot)

        def start_pass():
            return [issue.eq(0)]

        with m.FSM(name="phase"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.next = "RECV"
            with m.State("RECV"):
                m.d.comb += self.logits.ready.eq(1)
                z0 = Array(self.cmd.payload.z0[i] for i in range(C))
                lo, hi = -(1 << (lw - 1)), (1 << (lw - 1)) - 1
                total = Signal(signed(lw + 1))
                logit = Signal(signed(lw))
                m.d.comb += [total.eq(self.logits.payload + z0[count]),
                             logit.eq(Mux(total > hi, hi, Mux(total < lo, lo, total))),
                             rotate_in.eq(logit), moving.eq(self.logits.valid)]
                with m.If(self.logits.valid):
                    m.d.sync += count.eq(count + 1)
                    with m.If((count == 0) | (logit > zmax)):
                        m.d.sync += [zmax.eq(logit), argmax.eq(count)]
                    with m.If(count == C - 1):
                        cmd = self.cmd.payload
                        m.d.comb += self.cmd.ready.eq(1)
                        m.d.sync += [label.eq(cmd.label), want_dz.eq(cmd.dz), zo.eq(cmd.zo),
                                     zo_first.eq(cmd.zo_first), count.eq(0), s.eq(0),
                                     log2s.eq(0), *start_pass()]
                        m.next = "EXP"
            with m.State("EXP"):
                m.d.comb += [advance.eq(1), moving.eq(issuing)]
                with m.If(pipe["valid"]):
                    m.d.sync += s.eq(s + value)
                with m.If(pipe["t_valid"] & (pipe["t_class"] == label)):
                    m.d.sync += t_label.eq(pipe["t"])
                with m.If(drained):
                    m.next = "LOG"
            with m.State("LOG"):
                m.d.sync += log2s.eq(self._log2_start(m, s, log_rd, sw) << tf)
                m.next = "LOG2"
            with m.State("LOG2"):
                total = Signal(unsigned(tw))
                m.d.comb += total.eq(log2s + log_rd.data)
                value_loss = Signal(unsigned(tw + 1))
                m.d.comb += value_loss.eq(total + t_label)
                m.d.sync += [log2s.eq(total), loss.eq(value_loss), *start_pass()]
                base = Mux(zo_first, 0, zo_sum)
                with m.Switch(zo):
                    with m.Case(ZOSign.PLUS):
                        m.d.sync += zo_sum.eq(base + value_loss)
                    with m.Case(ZOSign.MINUS):
                        m.d.sync += zo_sum.eq(base - value_loss)
                with m.If(want_dz):
                    m.next = "DZ"
                with m.Else():
                    m.next = "RESULT"
            with m.State("DZ"):
                m.d.comb += [advance.eq(~self.dz.valid | self.dz.ready), moving.eq(issuing)]
                with m.If(advance):
                    m.d.sync += [self.dz.valid.eq(pipe["valid"]),
                                 self.dz.payload.eq(Mux(dz_value > (1 << pf) - 1, (1 << pf) - 1,
                                                        dz_value))]
                    with m.If(drained):
                        m.next = "RESULT"
            with m.State("RESULT"):
                m.d.comb += [self.result.valid.eq(1),
                             self.result.payload.loss.eq(loss),
                             self.result.payload.argmax.eq(argmax),
                             self.result.payload.correct.eq(argmax == label),
                             self.result.payload.zo_sum.eq(zo_sum)]
                with m.If(self.result.ready):
                    m.next = "IDLE"
        return m

    def _exponent_pipeline(self, m, advance, issue, issuing, head, zmax, log2s, exp_rd):
        """Stage 0 (issue): the ring's head, class ``issue``; 1: ``d = min(zmax - z, clamp)``;
        2: ``t = round(d * log2 e)``; 3: the table address of ``t + log2 S`` (the memory
        reads it); then, combinationally, ``2**-(t + log2 S)`` = the table value shifted
        right by the integer part, rounded half up. Every register moves on ``advance``."""
        p = self.params
        C, lw, tf, pf, eb = p.classes, p.logit_width, p.loss_frac, p.prob_frac, p.exp_bits
        tw = exponent_width(p)
        sh_t = LOG2E_FRAC + p.logit_frac - tf
        d_clamp = diff_clamp(p)
        valid = [Signal(name=f"e_valid{i}") for i in range(1, 4)]
        cls = [Signal(range(C), name=f"e_class{i}") for i in range(1, 4)]
        d = Signal(unsigned(lw + 1))
        t = Signal(unsigned(tw))
        n = Signal(range(pf + 3))
        diff = Signal(unsigned(lw + 1))
        m.d.comb += diff.eq(zmax - head)
        texp = Signal(unsigned(tw + 1))
        m.d.comb += texp.eq(t + log2s)
        sh = tf - eb
        tr = Signal(unsigned(tw + 1))
        m.d.comb += [tr.eq((texp + ((1 << sh) >> 1)) >> sh), exp_rd.addr.eq(tr[:eb]),
                     exp_rd.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [
                valid[0].eq(issuing), cls[0].eq(issue),
                d.eq(Mux(diff > d_clamp, d_clamp, diff)),
                valid[1].eq(valid[0]), cls[1].eq(cls[0]),
                t.eq((_const_mul(d, LOG2E) + ((1 << sh_t) >> 1)) >> sh_t),
                valid[2].eq(valid[1]), cls[2].eq(cls[1]),
                n.eq(Mux(tr >> eb > pf + 2, pf + 2, tr >> eb)),
            ]
            with m.If(issuing):
                m.d.sync += issue.eq(issue + 1)
        half = Signal(unsigned(pf + 2))
        m.d.comb += half.eq((Const(1, unsigned(pf + 3)) << n) >> 1)
        value = Signal(unsigned(pf + 1))
        m.d.comb += value.eq((exp_rd.data + half) >> n)
        return {"value": value, "valid": valid[2], "class": cls[2], "t": t,
                "t_valid": valid[1], "t_class": cls[1], "busy": Cat(*valid).any()}

    def _log2_start(self, m, s, log_rd, sw):
        """``log2 S`` for ``S >= 2**prob_frac``: addresses the ``log2(1 + f)`` table with the
        ``exp_bits`` bits after the leading one (rounded half up) and returns the integer
        part. ``S < classes * 2**prob_frac``, so the leading one is at ``prob_frac ..
        sw - 1``: a small multiplexer, not a barrel shifter."""
        p = self.params
        pf, eb = p.prob_frac, p.exp_bits
        ext = Cat(Const(0, eb + 1), s)                 # S << (eb + 1)
        pos = Signal(range(sw))
        m.d.comb += pos.eq(pf)
        for i in range(pf + 1, sw):
            with m.If(s[i]):
                m.d.comb += pos.eq(i)
        window = Signal(eb + 1)                        # the eb bits after the one, the next
        with m.Switch(pos):
            for i in range(pf, sw):
                with m.Case(i):
                    m.d.comb += window.eq(ext[i:i + eb + 1])
        fr = Signal(unsigned(eb + 1))
        m.d.comb += [fr.eq(window[1:] + window[0]), log_rd.addr.eq(fr[:eb])]
        return pos - pf + fr[eb]
