"""The quantizer: feature values in, codes and block scales out.

Numerics (the golden model :mod:`fieldtune.sim.golden.cache` states them in full): each
feature is saturated to signed ``Q(in_width-in_frac).in_frac`` (and clamped to zero for an
unsigned code book); a 4-bit code book scales each block by ``M * 2**E`` (6-bit mantissa rounded
up, 4-bit exponent) and picks the nearest integer level, ties to the upper code:
``code = #{k in 1..15 : floor(x * 2**7 / 2**E) >= T[k] * M}`` (``T`` the Q1.7 midpoints).

Serial datapath
    The quantizer runs once per record as features are written; training epochs only read the
    cache. So it is built for area, one adder at a time, with the block in one memory
    (:func:`buffer_layout`: an SPRAM of its own beside the cache's with ``memory = "spram"``,
    so the UP5K's scarce block RAM is not spent on 32 values; else a block RAM):

    1. FILL: the block's values are written into the buffer as they arrive, one per cycle.
       PEAK: they are read back, one per cycle, for the largest magnitude ``a`` (so the
       producer's handshake and the magnitude comparison are separate paths at the UP5K's
       clock rates). The peak starts at 1, so an all-zero block gets ``M = 1, E = 0``.
    2. SCALE: ``a`` is shifted left one bit per cycle until its top bit (``2**(in_width-1)``)
       is set or ``E``, counting down from ``in_width - MANT_BITS``, reaches 0; then
       ``M = a[top 6 bits] + (any lower bit set)`` (a ceiling: ``E = max(0, bitlen(a) - 6)``,
       ``M = ceil(a / 2**E)``), renormalized when it reaches ``2**MANT_BITS``.
    3. Per value, a long division: for an integer ``T[k]`` and ``M > 0``,
       ``floor(x * 2**7 / 2**E) >= T[k] * M`` iff ``q >= T[k]`` with
       ``q = floor(floor(x * 2**7 / 2**E) / M)``, and ``-128 <= q <= 128`` (``|x| <= a <=
       M * 2**E``). DIVIDE feeds the bits of ``x`` below its sign, from the top down to bit
       ``E - 7`` (zeros below bit 0), into a 6-bit remainder ``R``: ``t = 2R + bit``, the
       quotient bit ``t >= M``, then ``R = t - M`` or ``t``; ``in_width + 6 - E`` steps.
       ``R`` starts at 0, or at ``M - 1`` for a negative ``x`` (the remainder the infinite
       run of sign bits leaves: floor division in two's complement). The value register
       shifts left as its bits are fed and takes the quotient bits at the bottom, so its low
       9 bits end as ``q``.
    4. SEARCH: with the buffer in block RAM, unsigned code books (``0 <= q <= 128``) read
       the code of ``q`` from a table of 129 codes in the buffer (:func:`code_lookup`).
       Otherwise a binary search over the (non-decreasing) ``T[k]``, one code bit per cycle
       from the top: ``code |= b`` if ``q >= T[code | b]``, for ``b = 8, 4, 2, 1``. The
       output register holds the probe ``code | b`` meanwhile, and ``T[probe]`` is a
       16-entry table in logic (a LUT4 per bit, addressed by that register alone). Either
       way the code is the number of midpoints ``q`` passes: exactly the golden model's
       count. Every value takes all the steps, so the comparison feeds the code (and the
       buffer address), never the state machine.

    One ``value`` register is the running largest magnitude (PEAK), the normalizing shifter
    (SCALE) and the dividend with the quotient (DIVIDE, SEARCH); the search's code is the
    output register itself. Nothing of width beyond the input's is kept: no per-block
    products (session 7 computed 15 midpoints ``C[k]`` per block in a 24-bit accumulator).
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat, signed, unsigned
from amaranth.lib import stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import ELEMENT_WIDTH
from .component import CacheComponent
from .codebooks import LEVEL_FRAC, thresholds, threshold_width
from .layout import CacheLayout, MANT_BITS, EXP_BITS


__all__ = ["Quantizer", "code_layout", "buffer_layout", "code_lookup", "block_cycles"]


#: Midpoints per code book (codes 0..15), and the binary search's steps over them.
MIDPOINTS = 15
CODE_STEPS = 4
#: Bits of the quotient ``q`` the search compares: signed, ``-2**7 <= q <= 2**7`` (Q1.7).
QUOTIENT_BITS = LEVEL_FRAC + 3
#: Where a code lookup table starts in the block buffer (:func:`buffer_layout`).
LOOKUP_BASE = 1 << LEVEL_FRAC
#: The phases of a 4-bit code book's quantizer (module documentation), one flip-flop each.
PHASES = ("FILL", "PEAK", "SCALE", "LOAD", "ALIGN", "DIVIDE", "SEARCH")


def code_layout(params):
    """Payload of the quantizer's output: one code with its block's scale.

    ``code`` (``code_bits``; two's complement for the pass-through code books), ``mant`` and
    ``exp`` (the block scale, zero for pass-through), ``first`` (first feature of its block)
    and ``last`` (last feature of its sample).
    """
    return data.StructLayout({
        "code": unsigned(params.code_bits),
        "mant": unsigned(MANT_BITS),
        "exp": unsigned(EXP_BITS),
        "first": 1,
        "last": 1,
    })


def buffer_layout(params):
    """``(shape, depth, base)`` of the quantizer's block buffer (4-bit code books): the
    values of the block being coded at ``0 .. max_block - 1`` as they arrived (saturated to
    ``in_width``; an unsigned code book's clamp to zero is applied as a value is loaded),
    then, with :func:`code_lookup` only, the code of each quotient ``q`` at ``base + q``
    (``base = 64``, ``0 <= q <= 128``: the memory's initial value). One word holds a value or
    a code (signed ``in_width``); ``base`` is ``None`` without a table.

    With ``memory = "spram"`` the buffer is named ``buffer_spram`` (an SPRAM, which has no
    initial value: hence no table), else ``buffer_norw`` (block RAM without collision logic,
    see ``boards/implement.py``): only FILL writes, into the values, while no read is
    enabled (SPRAM) or the read port addresses the table (block RAM)."""
    shape = signed(params.in_width)
    if code_lookup(params):
        return shape, LOOKUP_BASE + (1 << (LEVEL_FRAC + 1)) + 1, LOOKUP_BASE
    return shape, CacheLayout(params).max_block, None


def code_lookup(params):
    """Whether the quantizer looks a code up instead of searching for it: an unsigned code
    book (``0 <= q <= 128``: 129 codes) whose blocks fit below :data:`LOOKUP_BASE`, with
    the buffer in block RAM (an SPRAM cannot hold the table)."""
    return (params.unsigned and params.memory != "spram"
            and CacheLayout(params).max_block <= LOOKUP_BASE)


def block_cycles(params, n):
    """Most cycles a block of ``n`` values takes from its first value accepted to its last
    code offered (4-bit code books; an always-ready consumer): fill, peak (``n + 1``), at
    most ``in_width - MANT_BITS + 1`` for the scale, then per value a read, a load, at most
    ``in_width + 6`` division steps (``in_width + 6 - E``) and 4 search steps (2 for a
    lookup)."""
    w = params.in_width
    search = 2 if code_lookup(params) else CODE_STEPS
    return 2 * n + 1 + w - MANT_BITS + 1 + n * (2 + w + 6 + search)


class Quantizer(CacheComponent):
    """Quantize a stream of features, one sample after another, into codes.

    Parameters
    ----------
    params : CacheParams

    Attributes
    ----------
    i : In(stream.Signature(signed(16)))
        Raw features in sample order (tap 0 first); samples follow each other with no marker,
        the quantizer counts ``features`` per sample.
    o : Out(stream.Signature(code_layout(params)))
        One code per feature, in the same order.
    saturated : Out(1)
        The feature ``i`` transfers this cycle is saturated to ``in_width`` or clamped to
        zero (unsigned code books) or saturated to 8 bits (``pass8``), and not a filler. A
        strobe, no counter: the SoC does not read one (the golden model's ``saturations``
        counts these strobes; a test bench counts them).
    last_in : Out(1)
        The next value ``i`` takes is the last of its sample (so a writer needs no feature
        counter of its own).
    pad : In(1)
        The values taken are fillers (the rest of a dropped record): no ``saturated``.

    Timing
    ------
    Pass-through code books: one cycle from ``i`` to ``o``, one value per cycle. 4-bit code
    books (see the module documentation): ``i.ready`` is high, and one value is taken per
    cycle, only while a block fills; then the block is coded, its codes offered one at a time
    within :func:`block_cycles`, and ``i.ready`` rises again once the block's last code has
    been offered. A code stays on ``o.payload`` for the cycle after its transfer (a writer
    may decide its write a cycle ahead). ``o.payload.mant``/``exp`` are the current block's
    scale: the next block's scale is computed only once ``o`` is empty. Back-pressure on
    ``o`` stalls the search; nothing is lost.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "i": In(stream.Signature(signed(ELEMENT_WIDTH))),
            "o": Out(stream.Signature(code_layout(p))),
            "saturated": Out(1),
            "last_in": Out(1),
            "pad": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # Input narrowing, shared by every code book.
        raw = self.i.payload
        lo, hi = -(1 << (p.in_width - 1)), (1 << (p.in_width - 1)) - 1
        narrow = Signal(signed(p.in_width))     # saturated to in_width
        x = Signal(signed(p.in_width))          # and clamped to 0 for an unsigned code book
        saturated = Signal()
        # comparisons with constants on bits, not carry chains; a full-width input has
        # nothing to saturate
        over = (raw > hi) if p.in_width < ELEMENT_WIDTH else Const(0)
        under = (raw < lo) if p.in_width < ELEMENT_WIDTH else Const(0)
        negative = raw[-1]
        m.d.comb += [narrow.eq(Mux(over, hi, Mux(under, lo, raw))),
                     x.eq(Mux(negative, 0, narrow) if p.unsigned else narrow),
                     saturated.eq(over | (negative if p.unsigned else under))]

        bump = self.saturated
        if p.scaled:
            self._elaborate_scaled(m, narrow, saturated, bump)
        else:
            self._elaborate_pass(m, x, saturated, bump)
        return m

    # -- pass-through -----------------------------------------------------------------------

    def _elaborate_pass(self, m, x, saturated, bump):
        p = self.params
        code = Signal(signed(p.code_bits))
        sat8 = Signal()
        if p.codebook == "pass8":
            shift = p.pass8_frac - p.in_frac
            wide = Signal(signed(p.in_width + max(shift, 0) + 1))
            if shift >= 0:
                m.d.comb += wide.eq(x << shift)
            else:
                m.d.comb += wide.eq((x + (1 << (-shift - 1))) >> -shift)
            with m.If(wide > 127):
                m.d.comb += [code.eq(127), sat8.eq(1)]
            with m.Elif(wide < -128):
                m.d.comb += [code.eq(-128), sat8.eq(1)]
            with m.Else():
                m.d.comb += code.eq(wide)
        else:
            m.d.comb += code.eq(x)

        feature = Signal(range(p.features))
        accept = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     bump.eq(accept & (saturated | sat8) & ~self.pad),
                     self.last_in.eq(feature == p.features - 1)]
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(accept):
            m.d.sync += [self.o.payload.code.eq(code),
                         self.o.payload.last.eq(feature == p.features - 1),
                         self.o.payload.first.eq(0),
                         feature.eq(Mux(feature == p.features - 1, 0, feature + 1))]

    # -- 4-bit code books -------------------------------------------------------------------

    def _elaborate_scaled(self, m, narrow, saturated, bump):
        p, lay = self.params, self.layout
        w = p.in_width
        shape, depth, base = buffer_layout(p)
        lookup = code_lookup(p)
        if p.memory == "spram":
            m.submodules.buffer_spram = buffer = Memory(shape=shape, depth=depth, init=[],
                                                        attrs={"ram_style": "huge"})
        else:
            tvals = thresholds(p.codebook)
            table = [sum(q >= t for t in tvals[1:]) for q in range(depth - base)] \
                if lookup else []
            m.submodules.buffer_norw = buffer = Memory(
                shape=shape, depth=depth, init=[0] * (base or 0) + table)
        wr = buffer.write_port()
        rd = buffer.read_port(transparent_for=())
        out = self.o.payload
        # one flip-flop per phase, so that every select of the datapath is one bit
        phase = Signal(len(PHASES), init=1)
        at = SimpleNamespace(**{name: phase[i] for i, name in enumerate(PHASES)})

        nblocks = len(lay.blocks)
        block = Signal(range(nblocks))
        pos = Signal(range(lay.max_block))          # value within the block
        at_end, last_block = Signal(), Signal()     # pos is the block's last value
        ends = {n - 1 for _, n in lay.blocks}
        end = Array(Const(n - 1, range(lay.max_block)) for _, n in lay.blocks)[block] \
            if len(ends) > 1 else ends.pop()
        mant = Signal(MANT_BITS)
        exp = Signal(EXP_BITS)
        # counts down: E as `value` is normalized (SCALE), from in_width + 5 to E, a step per
        # bit fed (DIVIDE: the bit fed is in_width + 5 - steps places below the sign, data
        # while steps >= 7), then the code bit probed (SEARCH)
        steps = Signal(range(w + 6))
        # datapath registers set before use: no domain reset, which leaves the flip-flops'
        # reset pin to the functional clear (an AND per bit otherwise). `value` is the
        # running largest magnitude (PEAK), is shifted up to normalize it (SCALE), then holds
        # the value being coded and takes the quotient's bits (DIVIDE, SEARCH).
        value = Signal(signed(w + (not p.unsigned)), reset_less=True)
        remainder = Signal(MANT_BITS, reset_less=True)
        # `o` empty: a code offered stays on `o.payload` for the cycle after its transfer
        free, accept, peaking, divided = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [at_end.eq(pos == end), last_block.eq(block == nblocks - 1),
                     self.last_in.eq(last_block & at_end), free.eq(~self.o.valid),
                     out.mant.eq(mant), out.exp.eq(exp),
                     # `i.ready` is the FILL flip-flop; only FILL writes, the value at `pos`
                     self.i.ready.eq(at.FILL), accept.eq(self.i.valid & at.FILL),
                     bump.eq(accept & saturated & ~self.pad), wr.en.eq(accept),
                     wr.addr.eq(pos), wr.data.eq(narrow)]

        # PEAK: a value read back is on `rd.data` the next cycle, then folded into `value`
        stored = rd.data[:w].as_signed()
        negative = stored[-1]
        # unsigned code books: a negative value never passes the peak (>= 1), and its sign
        # stays on top of `value` while it is divided: it codes as 0
        operand = stored if p.unsigned else Mux(peaking & negative, -stored, stored)
        at_least = Signal()
        m.d.comb += at_least.eq(value >= operand)
        # SCALE: `value` shifted up until its top bit is set or E is 0, once the previous
        # block's codes are taken and the last value folded
        scaling = at.SCALE & ~self.o.valid & ~peaking
        shift = Signal()
        m.d.comb += shift.eq(scaling & ~value[w - 1] & steps.any())
        scaled = scaling & ~shift
        # DIVIDE: t = 2R + the value's bit below its sign (bit E - 7 is the last fed; below
        # bit 0 zeros, not the quotient bits that have come round); a quotient bit t >= M
        assert LEVEL_FRAC + 1 == 0b111                 # steps >= 7, on bits
        data = steps[3:].any() | steps[:3].all()
        fed = Cat(value[w - 2] & data, remainder)
        difference = Signal(signed(MANT_BITS + 2))
        quotient_bit = Signal()
        m.d.comb += [difference.eq(fed - mant), quotient_bit.eq(~difference[-1])]
        coded = at.SEARCH & (steps[:2] == 0)
        m.d.comb += divided.eq(at.DIVIDE & (steps == exp))
        if lookup:
            self._lookup(m, at, rd, pos, value, coded)
        else:
            self._search(m, at, rd, pos, value, steps, free, accept)

        m.d.sync += peaking.eq(at.PEAK)
        with m.If(accept & at_end):                 # the peak starts at 1: an all-zero
            m.d.sync += value.eq(1)                 # block's scale is M = 1, E = 0
        with m.Elif((peaking & ~at_least) | (at.ALIGN & free)):
            m.d.sync += value.eq(operand)
        with m.Elif(shift | at.DIVIDE):
            m.d.sync += value.eq(Cat(quotient_bit & at.DIVIDE, value[:-1]))
            if p.unsigned:
                with m.If(at.DIVIDE):               # the sign stays
                    m.d.sync += value[-1].eq(value[-1])
        with m.If(at.ALIGN):                        # M - 1: the sign bits' remainder
            m.d.sync += remainder.eq(0 if p.unsigned else Mux(negative, mant - 1, 0))
        with m.Elif(at.DIVIDE):
            m.d.sync += remainder.eq(Mux(quotient_bit, difference, fed))
        with m.If(accept | at.PEAK | coded):
            m.d.sync += pos.eq(Mux(at_end, 0, pos + 1))
        with m.If(scaled):                          # M = ceil(a / 2**E), renormalized
            rounded = value[w - MANT_BITS:w] + value[:w - MANT_BITS].any()
            m.d.sync += [mant.eq(Mux(rounded[MANT_BITS], 1 << (MANT_BITS - 1), rounded)),
                         exp.eq(steps + rounded[MANT_BITS])]
        with m.If(at.PEAK & at_end):                # SCALE: E counts down in `steps`
            m.d.sync += steps.eq(w - MANT_BITS)
        with m.If(shift | at.DIVIDE | at.SEARCH):
            m.d.sync += steps.eq(steps - 1)
        with m.If(at.ALIGN & free):                 # the code offered has been taken
            m.d.sync += steps.eq(w + 5)
        with m.If(divided):
            m.d.sync += steps.eq(1 if lookup else CODE_STEPS - 1)
        # `o.valid` and `first` written as their next value (no enable LUT beside a lone
        # flip-flop): a code is offered from `coded` until taken; `first` from the block's
        # scale (`o` is empty then) until its first code is taken
        m.d.sync += [self.o.valid.eq(coded | (self.o.valid & ~self.o.ready)),
                     out.first.eq(scaled | (out.first & ~(self.o.valid & self.o.ready)))]
        with m.If(coded):
            m.d.sync += out.last.eq(self.last_in)
            with m.If(at_end):
                m.d.sync += block.eq(Mux(last_block, 0, block + 1))
        self._phases(m, at, accept, at_end, scaled, divided, free, coded)

    def _lookup(self, m, at, rd, pos, value, coded):
        """SEARCH, unsigned code books: the code of ``q`` read at ``LOOKUP_BASE + q`` (a
        cycle to read, then the code); a negative value (its sign on top of ``value``)
        codes as 0."""
        q = value[:LEVEL_FRAC + 2]                  # 0 <= q <= 2**(LEVEL_FRAC + 1)
        assert LOOKUP_BASE == 1 << LEVEL_FRAC       # q + 64, no carry beyond bit 7
        entry = Cat(q[:LEVEL_FRAC], ~q[LEVEL_FRAC], q[LEVEL_FRAC] | q[LEVEL_FRAC + 1])
        m.d.comb += [rd.addr.eq(Mux(at.PEAK | at.LOAD, pos, entry)),
                     # the port holds the value loaded while ALIGN waits for `o`
                     rd.en.eq(~at.ALIGN)]
        with m.If(coded):
            m.d.sync += self.o.payload.code.eq(Mux(value[-1], 0, rd.data[:CODE_STEPS]))

    def _search(self, m, at, rd, pos, value, steps, free, accept):
        """SEARCH: a binary search over the midpoints, one code bit per cycle from the top
        (bit ``steps`` of the code and those below it still to be decided). The output
        register holds the probe (the code so far with that bit set), the midpoint it
        names comes from a table in logic, and the buffer is read only for the values
        (PEAK, LOAD; never while FILL writes, as single-port SPRAM requires), so its output
        holds the value loaded until the next LOAD."""
        p, probe = self.params, self.o.payload.code
        tvals = thresholds(p.codebook)
        frac = LEVEL_FRAC + 1
        passes = Signal()
        if p.unsigned:
            # 0 < T[k] < 2**7 and 0 <= q <= 2**7 (its sign on top of `value`): the low 7
            # bits compared, q = 2**7 passing all
            assert 0 < min(tvals[1:]) and max(tvals[1:]) < 1 << frac
            midpoint = Signal(frac)
            q = value[:frac + 1]
            m.d.comb += passes.eq(~value[-1] & (q[frac] | (q[:frac] >= midpoint)))
        else:
            midpoint = Signal(signed(threshold_width(p.codebook)))
            m.d.comb += passes.eq(value[:QUOTIENT_BITS].as_signed() >= midpoint)
        with m.Switch(probe):
            for k in range(1, MIDPOINTS + 1):
                with m.Case(k):
                    m.d.comb += midpoint.eq(tvals[k])
        m.d.comb += [
                     rd.addr.eq(pos), rd.en.eq((at.PEAK | at.LOAD) & ~accept)]
        bit = Signal(CODE_STEPS)            # the bit probed
        m.d.comb += bit.eq(Const(1, CODE_STEPS) << steps[:2])
        with m.If(at.ALIGN & free):
            m.d.sync += probe.eq(1 << (CODE_STEPS - 1))
        with m.If(at.SEARCH):               # keep the bit if q passes, probe the next one
            m.d.sync += probe.eq(Mux(passes, probe, probe & ~bit) | (bit >> 1))

    @staticmethod
    def _phases(m, at, accept, at_end, scaled, divided, free, coded):
        """The phase sequence (module documentation): per block FILL, PEAK, SCALE, then per
        value LOAD, ALIGN, DIVIDE, SEARCH. Each phase's flip-flop is set as the phase is
        entered and cleared as it is left, written as its next value: a LUT of its own
        beside it (one enable shared by all would leave the flip-flops alone in their
        cells). The conditions each include their phase, so one phase is active at a time."""
        moves = {                           # phase: (entered, left)
            "FILL": (coded & at_end, accept & at_end),
            "PEAK": (accept & at_end, at.PEAK & at_end),
            "SCALE": (at.PEAK & at_end, scaled),
            "LOAD": (scaled | (coded & ~at_end), at.LOAD),
            "ALIGN": (at.LOAD, at.ALIGN & free),
            "DIVIDE": (at.ALIGN & free, divided),
            "SEARCH": (divided, coded),
        }
        assert tuple(moves) == PHASES
        for name, (entered, left) in moves.items():
            bit = getattr(at, name)
            m.d.sync += bit.eq(entered | (bit & ~left))


def from_config(config):
    """``fieldtune generate quantizer``: the quantizer of ``config.cache``."""
    return Quantizer(config.cache)
