"""Softmax cross-entropy loss unit: ``dz = softmax(z) - onehot(y)``, the loss in bits, argmax.

See :mod:`fieldtune.rtl.loss.tables` for the base-2 arithmetic and docs/numerics.md for the
formats and the error against float.
"""

from amaranth.hdl import Module, Signal, Const, Mux, Cat, unsigned, signed
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from ..perturb.arith import const_mul
from .params import LossParams
from .tables import (LOG2E, LOG2E_FRAC, exp2_table, log2_table, diff_width, sum_width,
                     exponent_width, loss_width, zo_sum_width)


__all__ = ["SoftmaxCrossEntropy", "ZOSign", "loss_command_layout", "loss_result_layout"]


class ZOSign(enum.Enum, shape=2):
    """What a vector's loss does to the zeroth-order sum."""
    NONE = 0
    PLUS = 1      # loss at W + eps*z: added
    MINUS = 2     # loss at W - eps*z: subtracted


def _label_width(p):
    return max(p.classes - 1, 1).bit_length()


def loss_command_layout(p: LossParams):
    """Per vector: ``label``; ``dz`` (emit ``dz`` on the ``dz`` stream); ``zo`` (a
    :class:`ZOSign`); ``zo_first`` (the sum restarts at this vector). The sample's frozen
    logits come on their own stream (``z0``), one per logit."""
    return data.StructLayout({"label": unsigned(_label_width(p)), "dz": unsigned(1),
                              "zo": ZOSign, "zo_first": unsigned(1)})


def loss_result_layout(p: LossParams):
    """Per vector: ``loss`` (bits, unsigned ``Q.loss_frac``), ``argmax`` (first maximum),
    ``correct`` (argmax == label), ``zo_sum`` (signed ``Q.loss_frac``: running sum of
    ``+L`` / ``-L`` since the last ``zo_first``)."""
    return data.StructLayout({"loss": unsigned(loss_width(p)),
                              "argmax": unsigned(_label_width(p)),
                              "correct": unsigned(1),
                              "zo_sum": signed(zo_sum_width(p))})


def _exponent_constant(p):
    """``(k, shift)`` with ``round_half_up(d * LOG2E, LOG2E_FRAC + logit_frac - loss_frac) ==
    round_half_up(d * k, shift)`` for every ``d``: ``LOG2E``'s trailing zeros taken out of both
    (fewer adder bits), keeping ``shift >= 1`` when there is a rounding at all."""
    shift = LOG2E_FRAC + p.logit_frac - p.loss_frac
    k = LOG2E
    while k % 2 == 0 and shift > 1:
        k, shift = k >> 1, shift - 1
    return k, shift


def _multiply_steps(p):
    """Cycles of the serial multiplication by ``log2 e`` (one bit of the constant a cycle,
    and at least up to the rounding position)."""
    k, shift = _exponent_constant(p)
    return max(k.bit_length(), shift)


def _round_half_up(value, shift):
    """``value / 2**shift`` rounded half up, for ``value >= 0``: drop ``shift - 1`` bits first,
    so the rounding is an incrementer on what is left."""
    if shift == 0:
        return value
    return (value[shift - 1:] + 1)[1:]


class _Pipe:
    """The exponent pipeline's signals (see :meth:`SoftmaxCrossEntropy._exponent_pipeline`)."""

    def __init__(self, C, tw):
        self.advance = Signal()                     # every stage moves
        self.preread = Signal()                     # the class memory reads (no stage moves)
        self.first = Signal()                       # the first pass (sums S)
        self.issue = Signal(range(C + 1))           # classes issued in this pass
        self.issuing = Signal()
        self.valid = [Signal(name=f"e_valid{i}") for i in (1, 2, 3)]
        self.lab = [Signal(name=f"e_label{i}") for i in (1, 2, 3)]   # the class is the label
        self.t = Signal(unsigned(tw), name="e_t2")         # t of stage 2
        self.texp = Signal(unsigned(tw + 1), name="e_texp2")   # t + log2 S (combinational)
        self.pick = Signal()                        # serial: the class memory reads the label
        self.start = Signal()                       # serial: multiply the class read (label)
        self.busy = None                            # serial: the multiplier runs
        self.multiplying = Signal()                 # serial: a pass (the multiplier issues)


class _Held:
    """Stage 4: ``2**-x`` of a class, loaded from stage 3 on ``load`` (see
    :meth:`SoftmaxCrossEntropy._barrel` and :meth:`~SoftmaxCrossEntropy._shifter`), held while
    ``pending`` until ``take`` (``final``: the value is ready)."""

    def __init__(self, load):
        self.load = load
        self.take = Signal()
        self.pending = Signal()
        self.label = Signal()                       # the value is the label's
        self.final = None                           # value ready (combinational)
        self.value = None                           # 2**-x, unsigned Q1.prob_frac
        self.sum_next = None                        # S -> S + value


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
        logit is taken (the command is transferred with it). The forward cache's last beat
        of a sample carries its ``z0`` and ``label``.
    z0 : In(stream.Signature(signed(logit_width)))
        The vector's frozen logits, signed ``Q(lw-lf).lf``, class order: one is taken with
        each logit (a logit waits for its ``z0``), so the unit keeps no copy of them and
        selects none (the SoC's router shifts them out of the one register that holds them).
    logits : In(stream.Signature(signed(logit_width)))
        ``classes`` adapter outputs per vector, class order, signed ``Q(lw-lf).lf`` (the MAC
        array's ``out`` stream); the unit's logits are ``sat(out + z0)``.
    dz : Out(stream.Signature(signed(prob_frac + 1)))
        ``classes`` values ``softmax - onehot`` in signed ``Q1.prob_frac``, class order, when
        the command asks for them (first order).
    result : Out(stream.Signature(loss_result_layout))
        One per vector, after its ``dz``.

    Structure (area first: one of each operator, per-class values in block RAM):
    a received logit ``sat(out + z0)`` is registered, then compared with the running maximum
    (one subtractor, ``max - x``, serves this compare and the passes' differences) and
    written to the class memory (``C`` logits: one 16-bit block RAM by default), which each
    pass reads in class order, one class ahead of its use. One exponent pipeline serves both
    passes over the classes: the clamped difference ``d`` (unsigned, :func:`~.tables.
    diff_width` bits), ``t = round(d * log2 e)`` (``Q.loss_frac``), the table address of
    ``t + log2 S`` (``log2 S`` is 0 in the first pass), the ``2**-x`` table and its rounding
    shift (``Q1.prob_frac``). The first pass sums ``S``; ``log2 S`` is the leading one of
    ``S`` (a few positions: ``2**prob_frac <= S <= classes * 2**prob_frac``) and the
    ``log2(1 + f)`` table, concatenated; the second pass emits ``dz`` (when asked) and takes
    the loss ``t_label + log2 S`` as the label's class passes stage 2. ``t`` is a pipelined
    shift-and-add tree in both passes and the shift a barrel shifter, or (``serial``, the
    default) one adder taking a bit of the constant a cycle, in both passes (the class
    memory keeps the logits: no write-back of ``t``, see :meth:`_serial_front`), and the
    shift one bit a cycle in the register that holds ``2**-x`` (:meth:`_shifter`). Serial,
    the loss is not a register: after the passes the multiplier takes the label's logit
    once more and holds its ``t``, so the loss is ``t + log2 S`` of its product (the
    zeroth-order sum takes it as the multiplication ends, before the result: that sum's
    register is the payload); without ``dz`` there is no second pass.

    Timing: ``classes`` cycles to receive (one per logit) and 1 more for the last compare,
    ``classes + 5`` for the first pass (its sum takes registered values), 2 for the
    logarithm, ``classes + 4`` for the second (without back-pressure on ``dz``), 1 for the
    result: :meth:`latency` = ``3 * classes + 13`` cycles per vector (43 at 10 classes, below
    the 70 cycles of an R1 forward at 32 lanes). Serial: ``classes * (1 + steps) + 4`` for
    the first pass (``steps`` = 15 for the default formats) plus its last class's shifts, 2
    for the logarithm, with ``dz`` ``classes * (1 + steps) + 4`` for the second pass plus
    its last class's shifts and the others' past ``steps - 2``, ``2 + steps`` for the
    label's ``t``, 1 for the result: 195 cycles at 10 classes without ``dz`` (the
    zeroth-order forwards'), 359 with, plus the shifts (at most 15 + 15 + 9 * 2: 407
    cycles, below the 560 of an R1 forward at 4 lanes, the UP5K's; at 8 lanes, 280, a
    first-order vector shows). ``z0`` is valid when its logit comes. Meanwhile ``logits.ready`` and
    ``z0.ready`` are low outside the receive phase.
    ``dz`` and ``result`` hold under back-pressure; nothing is lost.
    """

    def __init__(self, params: LossParams):
        if not isinstance(params, LossParams):
            self._MustUse__silence = True           # never elaborated: no warning for it
            raise TypeError(f"params must be a LossParams, not {type(params).__name__}")
        self.params = params
        super().__init__({
            "cmd": In(stream.Signature(loss_command_layout(params))),
            "z0": In(stream.Signature(signed(params.logit_width))),
            "logits": In(stream.Signature(signed(params.logit_width))),
            "dz": Out(stream.Signature(signed(params.prob_frac + 1))),
            "result": Out(stream.Signature(loss_result_layout(params))),
        })

    @staticmethod
    def latency(params, *, dz=True, shifts=(0, ())):
        """Cycles from a vector's first logit (sent back to back, ``dz`` and ``result``
        always ready) to its result's transfer (``dz``: the command asks for ``dz``).

        Serial: stage 4 shifts one bit a cycle (:meth:`_shifter`), so the count depends on
        the data: ``shifts = (last, second)``, the shifts of the first pass's last class
        and those of the second pass's classes in class order (each ``n mod 16`` of its
        ``2**-x``, ``n`` the integer part of ``x``; 0 where ``2**-x`` is 0; at most 15).
        The second pass multiplies a class every ``1 + steps`` cycles; a class's shifts
        past ``steps - 2`` hold the next one back, and the last one's all count. Without
        ``dz`` there is no second pass."""
        C = params.classes
        if not params.serial:
            return 3 * C + 13
        last, second = shifts
        steps = _multiply_steps(params)
        # receive C + 1, first pass C * (1 + steps) + 4 + last, logarithm 2, the label's
        # multiplication 2 + steps, result 1
        cycles = C + 1 + C * (1 + steps) + 4 + last + 2 + (2 + steps) + 1
        if not dz:
            return cycles
        second = list(second) or [0] * C
        held = sum(max(0, n - (steps - 2)) for n in second[:-1])
        # the second pass C * (1 + steps) + 3, its shifts, the label's read 1
        return cycles + C * (1 + steps) + 3 + held + second[-1] + 1

    def elaborate(self, platform):
        p = self.params
        m = Module()
        C, lw, pf = p.classes, p.logit_width, p.prob_frac
        tw = exponent_width(p)

        m.submodules.exp_table = exp_mem = Memory(shape=unsigned(pf + 1), depth=1 << p.exp_bits,
                                                  init=exp2_table(p))
        m.submodules.log_table = log_mem = Memory(shape=unsigned(p.loss_frac),
                                                  depth=1 << p.exp_bits, init=log2_table(p))
        exp_rd = exp_mem.read_port()
        log_rd = log_mem.read_port()
        # log2 S = Cat(table value, integer part): the table stays below 1.0
        assert max(log2_table(p)) < 1 << p.loss_frac

        label = Signal(unsigned(_label_width(p)))
        want_dz, zo = Signal(), Signal(ZOSign)
        zmin = -(1 << (lw - 1))
        zmax = Signal(signed(lw), init=zmin)
        argmax = Signal(range(C))
        s = Signal(unsigned(sum_width(p)))
        loss = Signal(unsigned(loss_width(p)))   # serial: the label's t + log2 S
        zo_sum = Signal(signed(zo_sum_width(p)))

        # -- the class memory and the one subtractor ----------------------------------------
        # Per class a logit: block RAM, not flip-flops (a register per bit would be a logic
        # cell of its own). "_norw": only the receive phase writes, and it reads nothing.
        m.submodules.classes_norw = classes = Memory(
            shape=unsigned(lw), depth=C, init=[], attrs={"ram_style": "block"})
        store, fetch = classes.write_port(), classes.read_port()
        accepting = Signal()            # logits.ready
        received, received_class, count = self._receive(m, accepting)
        receiving = Signal()            # compare received logits and store them
        x = Signal(signed(lw))          # compared with zmax: received, or read in a pass
        diff = Signal(signed(lw + 1))
        m.d.comb += [diff.eq(zmax - x),
                     x.eq(Mux(receiving, received.payload, fetch.data[:lw].as_signed())),
                     store.addr.eq(received_class), store.data.eq(received.payload),
                     store.en.eq(receiving & received.valid)]
        with m.If(receiving & received.valid & diff[-1]):   # x > zmax: the first one stays
            m.d.sync += [zmax.eq(x), argmax.eq(received_class)]

        pipe = _Pipe(C, tw)
        if p.serial:
            m.d.comb += loss.eq(pipe.texp)
        m.d.comb += fetch.en.eq(pipe.advance | pipe.preread)
        if p.serial:
            self._serial_front(m, pipe, diff, fetch, label)
        else:
            self._parallel_front(m, pipe, diff, fetch, label)
        known = Signal()                # S is final (the logarithm and the second pass)
        log2s = self._log2(m, s, log_rd, known)
        n = self._exponent_back(m, pipe, log2s, exp_rd)
        # Stage 4 takes 2**-x in both passes (``load``) and holds it while ``pending``: the
        # first pass sums it (the table, its shift and rounding and the adder of S would
        # otherwise be one path, the UP5K's and the ECP5's critical one), the second emits
        # dz = sat(value - [label] * 2**pf) from it. For value <= 2**pf the label's is
        # negative but at value 2**pf (0), any other saturates at value 2**pf (2**pf - 1).
        out = _Held(pipe.advance & pipe.valid[2])
        if p.serial:
            self._shifter(m, out, n, exp_rd)
        else:
            self._barrel(m, out, n, exp_rd)
        with m.If(out.load):
            m.d.sync += [out.label.eq(pipe.lab[2]), out.pending.eq(1)]
        with m.Elif(out.take):
            m.d.sync += out.pending.eq(0)
        value = out.value
        m.d.comb += self.dz.payload.eq(Cat(value[:pf] | (value[pf] & ~out.label).replicate(pf),
                                           out.label & ~value[pf]))
        drained = ~Cat(*pipe.valid).any() & (pipe.issue == C)   # stage 4 aside

        # -- the zeroth-order sum: +-loss, committed with the result (serial: before it) ----
        active = zo != ZOSign.NONE
        minus = zo == ZOSign.MINUS
        zsw = len(zo_sum)
        addend = Cat(loss & active.replicate(len(loss)), Const(0, zsw - len(loss)))
        zo_next = Signal.like(zo_sum)       # zo_sum + loss, zo_sum - loss = zo_sum + ~loss + 1
        m.d.comb += zo_next.eq(zo_sum + (addend ^ minus.replicate(zsw)).as_signed() + minus)

        # the payload outside the phase that presents it (no gating by the phase)
        m.d.comb += [self.result.payload.loss.eq(loss),
                     self.result.payload.argmax.eq(argmax),
                     self.result.payload.correct.eq(argmax == label),
                     self.result.payload.zo_sum.eq(zo_sum if p.serial else zo_next)]
        with m.FSM(name="phase"):
            with m.State("RECV"):
                m.d.comb += [receiving.eq(1), accepting.eq(self.cmd.valid)]
                with m.If(self.logits.valid & self.logits.ready & (count == C - 1)):
                    cmd = self.cmd.payload
                    m.d.comb += self.cmd.ready.eq(1)
                    m.d.sync += [label.eq(cmd.label), want_dz.eq(cmd.dz), zo.eq(cmd.zo),
                                 s.eq(0), pipe.issue.eq(0)]
                    with m.If(cmd.zo_first & (cmd.zo != ZOSign.NONE)):
                        m.d.sync += zo_sum.eq(0)
                    m.next = "MAX"
            with m.State("MAX"):                    # the last logit meets the maximum
                m.d.comb += [receiving.eq(1), pipe.preread.eq(1)]
                m.next = "EXP"
            with m.State("EXP"):
                m.d.comb += [pipe.advance.eq(1), pipe.first.eq(1), pipe.multiplying.eq(1),
                             out.take.eq(out.final)]
                with m.If(out.take):
                    m.d.sync += s.eq(out.sum_next(s))
                with m.If(drained & ~out.pending):
                    m.next = "LOG"
            with m.State("LOG"):                    # the log2(1 + f) table reads
                m.d.comb += known.eq(1)
                m.d.sync += pipe.issue.eq(0)
                m.next = "LOG2"
            with m.State("LOG2"):
                m.d.comb += [known.eq(1), pipe.preread.eq(1)]
                if p.serial:                        # no dz: the label's t alone, no pass
                    m.d.comb += pipe.pick.eq(~want_dz)
                    m.next = "PICK"
                    with m.If(want_dz):
                        m.next = "SOFT"
                else:
                    m.next = "SOFT"
            with m.State("SOFT"):
                m.d.comb += [known.eq(1), out.take.eq(out.final & (self.dz.ready | ~want_dz)),
                             pipe.advance.eq(~out.pending | out.take),
                             pipe.multiplying.eq(1), self.dz.valid.eq(out.final & want_dz)]
                with m.If(pipe.advance):
                    if not p.serial:
                        with m.If(pipe.valid[1] & pipe.lab[1]):
                            m.d.sync += loss.eq(pipe.texp)      # the label's t + log2 S
                    with m.If(drained):
                        m.next = "LABEL" if p.serial else "RESULT"
            if p.serial:
                with m.State("LABEL"):              # the class memory reads the label
                    m.d.comb += [known.eq(1), pipe.preread.eq(1), pipe.pick.eq(1)]
                    m.next = "PICK"
                with m.State("PICK"):               # the multiplier takes the label's logit
                    m.d.comb += [known.eq(1), pipe.preread.eq(1), pipe.pick.eq(1),
                                 pipe.start.eq(1)]
                    m.next = "LOSS"
                with m.State("LOSS"):               # t of the label: the loss, once done;
                    m.d.comb += [known.eq(1), pipe.preread.eq(1), pipe.pick.eq(1)]
                    with m.If(~pipe.busy):          # the sum takes it before the result
                        with m.If(active):          # (its payload is the register)
                            m.d.sync += zo_sum.eq(zo_next)
                        m.next = "RESULT"
            with m.State("RESULT"):
                if p.serial:                        # loss = the multiplier's t + log2 S
                    m.d.comb += known.eq(1)
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.d.sync += [zmax.eq(zmin), argmax.eq(0)]
                    if not p.serial:
                        m.d.sync += zo_sum.eq(zo_next)
                    m.next = "RECV"
        return m

    def _receive(self, m, accepting):
        """The receive stage: ``sat(out + z0)`` of an accepted logit and its ``z0`` (taken
        together) into a register (so the adder ends at a flip-flop, not at the compare with
        the maximum). Returns the register as a ``(valid, payload)`` pair, its class and
        ``count``, the class of the next logit."""
        p = self.params
        C, lw = p.classes, p.logit_width
        count = Signal(range(C))
        received = stream.Signature(signed(lw)).create()
        received_class = Signal(range(C))
        take = self.logits.valid & self.logits.ready
        m.d.comb += [self.logits.ready.eq(accepting & self.z0.valid),
                     self.z0.ready.eq(accepting & self.logits.valid)]
        total = Signal(signed(lw + 1))
        m.d.comb += total.eq(self.logits.payload + self.z0.payload)
        overflow = total[lw] ^ total[lw - 1]
        saturated = Mux(overflow, Cat((~total[lw]).replicate(lw - 1), total[lw]), total[:lw])
        m.d.sync += received.valid.eq(take)
        with m.If(take):
            m.d.sync += [received.payload.eq(saturated), received_class.eq(count),
                         count.eq(Mux(count == C - 1, 0, count + 1))]
        return received, received_class, count

    def _parallel_front(self, m, pipe, diff, fetch, label):
        """Stage 0 (issue): class ``issue``, whose logit the class memory read the cycle
        before (``fetch`` reads ahead: the class issued next) and whose ``diff = max - z`` is
        clamped into stage 1's ``d``; stage 2: ``t = round(d * log2 e)`` in shifts and adds.
        Every register moves on ``advance``; both passes issue a class a cycle."""
        p = self.params
        dw = diff_width(p)
        d = Signal(unsigned(dw))
        k, shift = _exponent_constant(p)
        clamp = diff[dw:].any()         # diff >= 0 in the passes; diff_clamp = 2**dw - 1
        m.d.comb += [pipe.issuing.eq(pipe.advance & (pipe.issue < p.classes)),
                     fetch.addr.eq(pipe.issue + pipe.issuing)]
        with m.If(pipe.advance):
            m.d.sync += [
                pipe.valid[0].eq(pipe.issuing), pipe.lab[0].eq(pipe.issue == label),
                d.eq(diff[:dw] | clamp.replicate(dw)),
                pipe.valid[1].eq(pipe.valid[0]), pipe.lab[1].eq(pipe.lab[0]),
                pipe.t.eq(_round_half_up(const_mul(d, k)[:dw + k.bit_length()], shift)),
            ]
            with m.If(pipe.issuing):
                m.d.sync += pipe.issue.eq(pipe.issue + 1)

    def _serial_front(self, m, pipe, diff, fetch, label):
        """Both passes: per class, the clamped ``d = max - z`` of the logit the class memory
        read (``fetch``: class ``issue``) is taken (one cycle), then multiplied by ``k``
        (:func:`_exponent_constant`) least significant bit first, one bit a cycle: ``P = (P
        + k_i * d) / 2``, started at ``P = 2**(shift - 1)`` (the rounding's half: adding it
        there or as a carry at step ``shift - 1`` gives the same floors); the bits shifted
        out are kept from bit ``shift`` on, so after ``steps`` cycles ``P`` is
        ``round_half_up(d * k, shift)``. In the passes ``P`` starts ``h * 2**shift`` higher
        too, ``h`` the half of stage 3's rounding to ``exp_bits`` fraction bits, so it ends
        at ``t + h`` and stage 3 needs no incrementer (:meth:`_exponent_back`). That step
        issues ``P`` (``push``): stage 2's ``t`` is ``P`` until the next class starts, and
        ``fetch`` reads the next class. The
        second pass multiplies again (the class memory keeps the logits): a push waits for
        ``advance`` (stage 4 may hold a ``dz`` under back-pressure) and the next class
        starts once stage 2 is free. ``d`` is not a register: the read port holds the
        class's entry while the multiplier runs (it reads class ``issue`` every cycle).
        ``start`` (with ``pick``: ``fetch`` reads the label) multiplies the label's logit
        alone, without ``h``: ``P`` is then the label's ``t``, held for the loss."""
        p = self.params
        C, dw = p.classes, diff_width(p)
        k, shift = _exponent_constant(p)
        steps = _multiply_steps(p)
        low = steps - shift                 # bits of P below d's (the product's bits
        d = Signal(unsigned(dw))            # shift .. steps - 1)
        # P starts at the rounding's half; in the passes also at the half of the table
        # address's rounding (t + log2 S to exp_bits fraction bits) times 2**shift, so
        # stage 3 takes t + half + log2 S without an incrementer of its own
        half = (1 << (shift - 1)) if shift else 0
        s3 = p.loss_frac - p.exp_bits
        biased = half + ((1 << (s3 - 1) << shift) if s3 else 0)
        uw = max(dw, biased.bit_length())   # P's upper part stays <= max(d, start)
        product = Signal(low + uw)          # P
        busy = pipe.busy = Signal()
        step = Signal(range(steps))
        total = Signal(uw + 1)
        m.d.comb += total.eq(product[low:] + Mux(Const(k, steps).bit_select(step, 1), d, 0))
        t = Signal(low + uw)                # P's next value, t once pushed
        m.d.comb += t.eq(Cat(product[1:low], total) if low else total[1:])
        clamp = diff[dw:].any()
        m.d.comb += d.eq(diff[:dw] | clamp.replicate(dw))
        last = busy & (step == steps - 1)
        finish = last & (pipe.advance | pipe.pick)    # a push waits for the pipeline
        push = Signal()
        m.d.comb += push.eq(finish & ~pipe.pick)
        start = pipe.start | (pipe.multiplying & ~busy & (pipe.issue < C)
                              & (~pipe.valid[1] | pipe.advance))
        with m.If(start):
            m.d.sync += [product.eq(Mux(pipe.pick, half << low, biased << low)), step.eq(0),
                         busy.eq(1)]
        with m.If(busy & (~last | finish)):
            m.d.sync += [product.eq(t), step.eq(step + 1)]
            with m.If(last):
                m.d.sync += busy.eq(0)
        m.d.comb += [pipe.issuing.eq(push),
                     fetch.addr.eq(Mux(pipe.pick, label, pipe.issue + push)),
                     pipe.t.eq(product)]
        with m.If(pipe.advance):
            m.d.sync += [pipe.valid[1].eq(pipe.issuing), pipe.lab[1].eq(pipe.issue == label)]
            with m.If(pipe.issuing):
                m.d.sync += pipe.issue.eq(pipe.issue + 1)

    def _exponent_back(self, m, pipe, log2s, exp_rd):
        """Stage 3: from stage 2's ``t + log2 S`` (the loss takes the label's), the table
        address of it rounded half up to ``exp_bits`` fraction bits (the memory reads it;
        serial, stage 2's ``t`` already carries the half, see :meth:`_serial_front`) and
        the integer part ``n`` (registered; saturated at ``2**nw - 1 >= prob_frac + 2``,
        where every value is 0). Every register moves on ``advance``. Returns ``n``."""
        p = self.params
        tw, eb = exponent_width(p), p.exp_bits
        nw = (p.prob_frac + 2).bit_length()
        n = Signal(unsigned(nw))
        texp = pipe.texp
        m.d.comb += texp.eq(pipe.t + log2s)
        tr = Signal(unsigned(tw + 2 - (p.loss_frac - eb)))     # texp in Q.exp_bits
        # serial: the passes' t carries the rounding's half (see _serial_front)
        rounded = texp >> (p.loss_frac - eb) if p.serial else \
            _round_half_up(texp, p.loss_frac - eb)
        m.d.comb += [tr.eq(rounded),
                     exp_rd.addr.eq(tr[:eb]), exp_rd.en.eq(pipe.advance)]
        with m.If(pipe.advance):
            m.d.sync += [pipe.valid[2].eq(pipe.valid[1]), pipe.lab[2].eq(pipe.lab[1]),
                         n.eq(tr[eb:eb + nw] | tr[eb + nw:].any().replicate(nw))]
        return n

    def _barrel(self, m, out, n, exp_rd):
        """Stage 4, parallel: ``2**-x`` = the table value ``T`` shifted right by ``n``,
        rounded half up, combinationally into the register on ``load``:
        ``round_half_up(T >> n) == ((2T >> n) + 1) >> 1``, and 0 once ``n >= prob_frac + 2``
        (``T <= 2**prob_frac``), as the golden model's ``min(n, prob_frac + 2)`` gives. The
        value is final as soon as it is loaded."""
        p = self.params
        held = Signal(unsigned(p.prob_frac + 1))
        with m.If(out.load):
            m.d.sync += held.eq(((Cat(0, exp_rd.data) >> n) + 1)[1:])
        out.final, out.value = out.pending, held
        out.sum_next = lambda s: s + held

    def _shifter(self, m, out, n, exp_rd):
        """Stage 4, serial: ``X = 2T >> n`` one bit a cycle in the register that holds it
        (no barrel shifter): loaded with ``2T`` (``2T >> 16`` for ``n >= 16``, 0 once ``n >=
        prob_frac + 2``) and shifted ``n mod 16`` times, then ``2**-x = (X + 1) >> 1 =
        X[1:] + X[0]`` (the sum of S takes ``X[0]`` as its carry in; ``dz`` an incrementer).

        Timing: ``1 + (n mod 16)`` cycles from ``load`` to ``final``, at most 16: the first
        pass issues a class every ``1 + steps >= 16`` cycles (the multiplier's), so its
        shifts end before the next class arrives; the second pass waits for them."""
        p = self.params
        pf = p.prob_frac
        assert _multiply_steps(p) >= 15
        held = Signal(pf + 2)               # 2T >> the shifts so far
        rem = Signal(4)                     # shifts left
        twice = Cat(0, exp_rd.data)
        dead = n >= pf + 2
        big = n[4:].any() & ~dead if len(n) > 4 else Const(0)
        with m.If(out.load):
            m.d.sync += [held.eq(Mux(dead, 0, Mux(big, twice >> 16, twice))),
                         rem.eq(Mux(dead, 0, n[:4]))]
        with m.Elif(rem != 0):
            m.d.sync += [held.eq(held >> 1), rem.eq(rem - 1)]
        out.final = out.pending & (rem == 0)
        out.value = Signal(pf + 1)
        m.d.comb += out.value.eq(held[1:] + held[0])
        out.sum_next = lambda s: (Cat(held[0], s) + Cat(held[0], held[1:]))[1:1 + len(s)]

    def _log2(self, m, s, log_rd, known):
        """``log2 S`` (unsigned ``Q.loss_frac``) while ``known``, else 0 (the first pass),
        from ``S`` and the ``log2(1 + f)`` table: no 18-bit register holds it. For
        ``2**prob_frac <= S`` the integer part is the leading one's position (at
        ``prob_frac .. sum_width - 1``: a small multiplexer, not a barrel shifter); the
        ``exp_bits`` bits after it, rounded half up (a carry out of them adds one to the
        integer part), address the table. Unless ``known`` the table reads its entry 0,
        ``log2 1 = 0``, and the integer part is 0; both are registered (the table's read
        and a 3-bit register), so the value is valid from the second cycle of ``known``
        (``S`` stable from the cycle before)."""
        p = self.params
        pf, eb, sw = p.prob_frac, p.exp_bits, len(s)
        assert log2_table(p)[0] == 0
        ext = Cat(Signal(eb + 1), s)                   # S << (eb + 1)
        pos = Signal(range(sw - pf))                   # the leading one minus prob_frac
        for i in range(pf + 1, sw):
            with m.If(s[i]):
                m.d.comb += pos.eq(i - pf)
        window = Signal(eb + 1)                        # the eb bits after the one, the next
        with m.Switch(pos):
            for i in range(pf, sw):
                with m.Case(i - pf):
                    m.d.comb += window.eq(ext[i:i + eb + 1])
        fr = Signal(unsigned(eb + 1))
        m.d.comb += [fr.eq(window[1:] + window[0]), log_rd.en.eq(1),
                     log_rd.addr.eq(fr[:eb] & known.replicate(eb))]
        # the integer part is registered like the table's value (the path from S through
        # the normalization would otherwise run on through the exponent pipeline's adder)
        integer = Signal(len(pos) + 1)
        m.d.sync += integer.eq((pos + fr[eb]) & known.replicate(len(integer)))
        log2s = Signal(unsigned(exponent_width(self.params)))
        m.d.comb += log2s.eq(Cat(log_rd.data, integer))
        return log2s
