"""The quantizer: feature values in, codes and block scales out.

Numerics (the golden model :mod:`fieldtune.sim.golden.cache` states them in full): each
feature is saturated to signed ``Q(in_width-in_frac).in_frac`` (and clamped to zero for an
unsigned code book); a 4-bit code book scales each block by ``M * 2**E`` (6-bit mantissa rounded
up, 4-bit exponent) and picks the nearest integer level, ties to the upper code.

Code-book search
    Not 16 comparisons in a row: a pipelined binary search over the 15 midpoints. Once per
    block, the scaled midpoints ``T[k] * M`` are computed into registers (one multiplier, 15
    cycles). Stage ``s`` (s = 0..3) then compares ``floor(x * 2**7 / 2**E)`` against the
    midpoint ``t`` chosen by the code bits decided so far (``t = 8``; then 4 or 12; then 2, 6,
    10 or 14; then odd): one multiplexer and one comparator per stage, a value every cycle.
    The comparison is exact: for integer ``Y``, ``Y * 2**E <= X`` iff ``Y <= floor(X / 2**E)``.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat, signed, unsigned
from amaranth.lib import stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import ELEMENT_WIDTH
from .component import CacheComponent
from .codebooks import LEVEL_FRAC, thresholds, threshold_width
from .layout import MANT_BITS, EXP_BITS
from .arith import shift_add_mul


__all__ = ["Quantizer", "code_layout", "SATURATION_BITS"]


#: Width of the saturating counter of saturated or clamped features.
SATURATION_BITS = 16


def code_layout(params):
    """Payload of the quantizer's output: one code with its block's scale.

    ``code`` (``code_bits``; two's complement for the pass-through code books), ``mant`` and
    ``exp`` (the block scale, zero for pass-through), ``feature`` (index within the sample)
    and ``first`` (first feature of its block).
    """
    return data.StructLayout({
        "code": unsigned(params.code_bits),
        "mant": unsigned(MANT_BITS),
        "exp": unsigned(EXP_BITS),
        "feature": range(params.features),
        "first": 1,
    })


class _Build(SimpleNamespace):
    """What the sections of :meth:`Quantizer._elaborate_scaled` share while one quantizer is
    elaborated: the module, sizes and the signals that cross sections."""


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
    saturations : Out(16)
        Features saturated to ``in_width`` or clamped to zero (unsigned code books) or
        saturated to 8 bits (``pass8``); saturates at 65535.
    clear : In(1)
        Zeroes ``saturations``.

    Timing
    ------
    Pass-through code books: one cycle from ``i`` to ``o``, one value per cycle. 4-bit code
    books: a block is buffered (two banks, so the next block fills while one is coded); coding
    it takes 4 cycles for the scale, 17 for the scaled midpoints, then one cycle per value
    through a 9-stage search pipeline, which must drain before the next block's midpoints are
    computed: about ``n + 30`` cycles for a block of ``n`` values (the write side is not on
    the training loop's critical path: records are written once). ``i.ready`` drops only while
    both banks are full; ``o`` back-pressure stalls the pipeline and loses nothing.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "i": In(stream.Signature(signed(ELEMENT_WIDTH))),
            "o": Out(stream.Signature(code_layout(p))),
            "saturations": Out(SATURATION_BITS),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # Input narrowing, shared by every code book.
        raw = self.i.payload
        lo, hi = -(1 << (p.in_width - 1)), (1 << (p.in_width - 1)) - 1
        x = Signal(signed(p.in_width))
        saturated = Signal()
        with m.If(raw > hi):
            m.d.comb += [x.eq(hi), saturated.eq(1)]
        with m.Elif(raw < (0 if p.unsigned else lo)):
            m.d.comb += [x.eq(0 if p.unsigned else lo), saturated.eq(1)]
        with m.Else():
            m.d.comb += x.eq(raw)

        count = Signal(SATURATION_BITS)
        bump = Signal()
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(bump & (count != (1 << SATURATION_BITS) - 1)):
            m.d.sync += count.eq(count + 1)
        m.d.comb += self.saturations.eq(count)

        if p.scaled:
            self._elaborate_scaled(m, x, saturated, bump)
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
                     bump.eq(accept & (saturated | sat8))]
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(accept):
            m.d.sync += [self.o.payload.code.eq(code), self.o.payload.feature.eq(feature),
                         self.o.payload.first.eq(0),
                         feature.eq(Mux(feature == p.features - 1, 0, feature + 1))]

    # -- 4-bit code books -------------------------------------------------------------------

    def _elaborate_scaled(self, m, x, saturated, bump):
        # one method per section; ``b`` carries what sections share
        b = _Build(m=m, x=x, saturated=saturated, bump=bump)
        self._block_buffer(b)
        self._fill_side(b)
        self._coder(b)
        self._search(b)

    def _block_buffer(self, b):
        """The two-bank block buffer and the block lengths."""
        m = b.m
        p, lay = self.params, self.layout
        nblocks = len(lay.blocks)
        maxb = lay.max_block
        m.submodules.buffer = buffer = Memory(shape=signed(p.in_width), depth=2 * maxb,
                                              init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(transparent_for=())
        lengths = Array(Const(n - 1, range(maxb)) for _, n in lay.blocks)
        b.lengths, b.maxb, b.nblocks, b.p, b.rd, b.wr = lengths, maxb, nblocks, p, rd, wr

    def _fill_side(self, b):
        """Fill side: the block written into bank ``fill_bank``, its largest magnitude tracked."""
        bump, lengths, m, maxb, nblocks, p = b.bump, b.lengths, b.m, b.maxb, b.nblocks, b.p
        saturated, wr, x = b.saturated, b.wr, b.x
        # Fill side: write the block into bank `fill_bank`, tracking its largest magnitude.
        fill_bank = Signal()
        full = Signal(2)
        pos = Signal(range(maxb))
        block = Signal(range(nblocks))
        amax = Signal(p.in_width)
        info_amax = Array(Signal(p.in_width, name=f"amax{b}") for b in range(2))
        info_block = Array(Signal(range(nblocks), name=f"block{b}") for b in range(2))
        # An input register holds the narrowed value and its magnitude, so the negation and
        # the running-maximum comparison take a cycle each.
        in_valid = Signal()
        in_x = Signal.like(x)
        magnitude = Signal(p.in_width)
        fill_ready = Signal()
        m.d.comb += [fill_ready.eq(~full.bit_select(fill_bank, 1)),
                     self.i.ready.eq(~in_valid | fill_ready)]
        with m.If(self.i.ready):
            m.d.sync += [in_valid.eq(self.i.valid), in_x.eq(x),
                         magnitude.eq(Mux(x < 0, -x, x))]
        m.d.comb += bump.eq(self.i.valid & self.i.ready & saturated)
        new_amax = Signal(p.in_width)
        m.d.comb += new_amax.eq(Mux((pos != 0) & (amax > magnitude), amax, magnitude))
        accept = in_valid & fill_ready
        m.d.comb += [
            wr.addr.eq(Mux(fill_bank, maxb, 0) + pos),
            wr.data.eq(in_x),
            wr.en.eq(accept),
        ]
        done_block = Signal()   # set by the coder when it frees a bank
        free_bank = Signal()
        set_full = Signal(2)
        clr_full = Signal(2)
        with m.If(accept):
            m.d.sync += amax.eq(new_amax)
            with m.If(pos == lengths[block]):
                m.d.sync += [
                    info_amax[fill_bank].eq(new_amax), info_block[fill_bank].eq(block),
                    fill_bank.eq(~fill_bank), pos.eq(0),
                    block.eq(Mux(block == nblocks - 1, 0, block + 1)),
                ]
                m.d.comb += set_full.bit_select(fill_bank, 1).eq(1)
            with m.Else():
                m.d.sync += pos.eq(pos + 1)
        with m.If(done_block):
            m.d.comb += clr_full.bit_select(free_bank, 1).eq(1)
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        b.done_block, b.free_bank, b.full, b.info_amax = done_block, free_bank, full, info_amax
        b.info_block = info_block

    def _coder(self, b):
        """Coder: the block's scale and its 15 scaled midpoints, then its values."""
        done_block, free_bank, full, info_amax = b.done_block, b.free_bank, b.full, b.info_amax
        info_block, lengths, m, maxb, nblocks = b.info_block, b.lengths, b.m, b.maxb, b.nblocks
        p, rd = b.p, b.rd
        # Coder: scale of the block, its 15 scaled midpoints, then its values through the
        # search pipeline.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        code_bank = Signal()
        cur_amax = Signal(p.in_width + 1)
        cur_block = Signal(range(nblocks))
        e0 = Signal(EXP_BITS)
        mant = Signal(MANT_BITS)
        exp = Signal(EXP_BITS)
        q = Signal(range(maxb))
        issuing = Signal()
        busy = Signal()        # values of the block are still in the search pipeline
        m.d.comb += free_bank.eq(code_bank)

        # E0 = max(0, bitlen(a) - MANT_BITS), by a priority encoder over the magnitude bits.
        bitlen = Signal(range(p.in_width + 2))
        for i in range(p.in_width + 1):
            with m.If(cur_amax[i]):
                m.d.comb += bitlen.eq(i + 1)
        # M = ceil(a / 2**E0), renormalized when it rounds up to 2**MANT_BITS; never 0. The
        # rounding add and the shift take a cycle each.
        biased = Signal(p.in_width + 2)
        rounded = Signal(p.in_width + 2)
        m.d.comb += rounded.eq(biased >> e0)

        # Scaled midpoints T[k] * M, k = 1..15, one per cycle through a 3-stage multiplier
        # (midpoint select; two half-mantissa products; their sum), so that no stage is deeper
        # than a 48 MHz cycle on iCE40.
        tvals = thresholds(p.codebook)
        twidth = threshold_width(p.codebook)
        bound_shape = signed(twidth + MANT_BITS + 1)
        bounds = Array(Signal(bound_shape, name=f"bound{k}") for k in range(16))
        k = Signal(range(16))
        count_bounds = Signal(range(17))
        tconst = Array(Const(tvals[i] if i else 0, signed(twidth)) for i in range(16))
        half = MANT_BITS // 2
        t_sel = Signal(signed(twidth))
        t_lo = Signal(signed(twidth + half + 1))
        t_hi = Signal(signed(twidth + half + 1))
        k1 = Signal(range(16))
        k2 = Signal(range(16))
        m.d.sync += [t_sel.eq(tconst[k]), k1.eq(k),
                     t_lo.eq(shift_add_mul(t_sel, mant[:half])),
                     t_hi.eq(shift_add_mul(t_sel, mant[half:])), k2.eq(k1)]
        with m.If(k2 != 0):
            m.d.sync += bounds[k2].eq(t_lo + (t_hi << half))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(full.bit_select(code_bank, 1) & ~busy):
                    m.d.sync += [cur_amax.eq(info_amax[code_bank]),
                                 cur_block.eq(info_block[code_bank])]
                    m.next = "EXPONENT"
            with m.State("EXPONENT"):
                m.d.sync += e0.eq(Mux(bitlen > MANT_BITS, bitlen - MANT_BITS, 0))
                m.next = "ROUND"
            with m.State("ROUND"):
                m.d.sync += biased.eq(cur_amax + (Const(1, 1) << e0) - 1)
                m.next = "MANTISSA"
            with m.State("MANTISSA"):
                with m.If(rounded == 1 << MANT_BITS):
                    m.d.sync += [mant.eq(1 << (MANT_BITS - 1)), exp.eq(e0 + 1)]
                with m.Else():
                    m.d.sync += [mant.eq(Mux(rounded == 0, 1, rounded)), exp.eq(e0)]
                m.d.sync += [q.eq(0), k.eq(1), count_bounds.eq(0)]
                m.next = "BOUNDS"
            with m.State("BOUNDS"):
                # k walks 1..15, then two idle steps let the multiplier pipeline empty.
                m.d.sync += count_bounds.eq(count_bounds + 1)
                m.d.sync += k.eq(Mux(count_bounds < 14, count_bounds + 2, 0))
                with m.If(count_bounds == 16):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issuing.eq(1)
                with m.If(advance):
                    m.d.sync += q.eq(q + 1)
                    with m.If(q == lengths[cur_block]):
                        m.d.comb += done_block.eq(1)
                        m.d.sync += code_bank.eq(~code_bank)
                        m.next = "IDLE"

        m.d.comb += [rd.addr.eq(Mux(code_bank, maxb, 0) + q), rd.en.eq(advance)]
        b.advance, b.bounds, b.busy, b.exp, b.issuing, b.k = advance, bounds, busy, exp, issuing, k
        b.mant, b.q = mant, q

    def _search(self, b):
        """The search pipeline: buffer read, aligned input, four search stages, output."""
        advance, bounds, busy, exp, issuing = b.advance, b.bounds, b.busy, b.exp, b.issuing
        m, mant, p, q, rd = b.m, b.mant, b.p, b.q, b.rd
        # Pipeline: R (buffer read) -> X (aligned input) -> 4 search stages -> o. The
        # midpoint registers must not change under values in flight: `busy` holds the next
        # block's BOUNDS phase until the pipeline has drained. So the scale (`mant`, `exp`)
        # stays put while a block is in flight and is not carried along; neither is the
        # feature index, which an output counter reproduces (codes leave in feature order).
        meta = data.StructLayout({"first": 1})
        r_valid = Signal()
        r_meta = Signal(meta)
        with m.If(advance):
            m.d.sync += [r_valid.eq(issuing), r_meta.first.eq(q == 0)]

        # |x| <= M * 2**E, so floor(x * 2**7 / 2**E) fits in 7 + MANT_BITS bits plus a sign.
        xs_width = LEVEL_FRAC + 1 + MANT_BITS + 1
        stage_valid = Signal()
        stage_meta = Signal(meta)
        stage_xs = Signal(signed(xs_width))
        with m.If(advance):
            m.d.sync += [stage_valid.eq(r_valid), stage_meta.eq(r_meta),
                         stage_xs.eq((rd.data << (LEVEL_FRAC + 1)) >> exp)]
        in_flight = [r_valid, stage_valid]

        def register(name, valid, values):
            """One pipeline register: ``values`` (name -> value), moved when `advance`."""
            regs = {k: Signal.like(v, name=f"{name}_{k}") for k, v in values.items()}
            reg_valid = Signal(name=f"{name}_valid")
            with m.If(advance):
                m.d.sync += reg_valid.eq(valid)
                m.d.sync += [regs[k].eq(v) for k, v in values.items()]
            in_flight.append(reg_valid)
            return reg_valid, regs

        code = Const(0, 0)
        for s in range(4):
            step = 1 << (3 - s)
            # Midpoint index for each prefix decided so far; from the second stage on, the
            # midpoint is selected in a cycle of its own and compared in the next.
            choices = [bounds[prefix * 2 * step + step] for prefix in range(1 << s)]
            if s == 0:
                bound = choices[0]
            else:
                stage_valid, regs = register(f"select{s}", stage_valid, {
                    "meta": stage_meta, "xs": stage_xs, "code": code,
                    "bound": Array(choices)[code]})
                stage_meta, stage_xs, code, bound = (regs["meta"], regs["xs"], regs["code"],
                                                     regs["bound"])
            bit = Signal(name=f"bit{s}")
            m.d.comb += bit.eq(stage_xs >= bound)
            decided = Cat(bit, code)         # the new bit is the least significant so far
            if s < 3:
                stage_valid, regs = register(f"compare{s}", stage_valid, {
                    "meta": stage_meta, "xs": stage_xs, "code": decided})
                stage_meta, stage_xs, code = regs["meta"], regs["xs"], regs["code"]
            else:
                feature = Signal(range(p.features))
                with m.If(advance):
                    m.d.sync += [
                        self.o.valid.eq(stage_valid),
                        self.o.payload.code.eq(decided),
                        self.o.payload.mant.eq(mant),
                        self.o.payload.exp.eq(exp),
                        self.o.payload.feature.eq(feature),
                        self.o.payload.first.eq(stage_meta.first),
                    ]
                    with m.If(stage_valid):
                        m.d.sync += feature.eq(Mux(feature == p.features - 1, 0, feature + 1))
        m.d.comb += busy.eq(issuing | Cat(*in_flight).any())


def from_config(config):
    """``fieldtune generate quantizer``: the quantizer of ``config.cache``."""
    return Quantizer(config.cache)
