"""The packer: the quantizer's codes and block scales into memory writes, one unit at a time."""

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .component import CacheComponent
from .layout import MANT_BITS, UNIT_BITS
from .quantizer import code_layout


__all__ = ["Packer", "codes_per_write"]


def codes_per_write(params):
    """Codes written together: one (a write enable per lane) in SPRAM, whose enables are
    nibbles; a whole code word in block RAM, where byte enables are 9 bits wide on ECP5's
    DP16KD (lane or byte enables would split the code memory into narrower slices: one
    DP16KD more at L = 32), so nothing is gained there by writing less than a word."""
    return 1 if params.memory == "spram" else params.lanes


class Packer(CacheComponent):
    """Place one sample's codes, as the quantizer offers them, in the code memory's lanes.

    Nothing is assembled in flip-flops: each code is written on its own, into its lane of its
    code word (the code memory has a write enable per lane, ``granularity = code_bits``), so
    the packer only counts lanes and words; in block RAM, a word is written whole
    (:func:`codes_per_write`), its codes held meanwhile. A block's first code first
    offers the block's scale (``mant | exp << MANT_BITS``, straight from the quantizer's held
    output) for every ``(word, unit mask)`` of the layout's
    :attr:`~.layout.CacheLayout.scale_ops`, in order; the code is offered once they are
    taken. The sample index of the writes is the caller's
    (the record slot).

    Attributes
    ----------
    i : In(stream.Signature(code_layout(params)))
    code, lane_mask, code_valid : Out
        The codes offered (:func:`codes_per_write`, lane order), the write enable of their
        lanes (one-hot, a bit per ``codes_per_write`` lanes), and whether they are offered.
    word : Out(range(beats))
        Where the write offered goes within the sample's stride: the code word of the codes
        offered, or the offset of the meta word of the scale op offered
        (:attr:`~.layout.CacheLayout.meta_offsets`: the beat that reads it).
    code_taken : In(1)
        The code is taken (transferred from ``i`` this cycle); the taker registers it.
    scale, scale_mask, scale_valid : Out
        A scale unit to write under ``scale_mask`` into the meta word at ``word``.
    scale_taken : In(1)
        The scale op is taken; it is written the next cycle, with ``scale`` still held.
    sample_done : Out(1)
        The sample's last code has been taken (and so every scale op before it).
    sample_taken : In(1)
        Acknowledges ``sample_done``.

    Timing
    ------
    Combinational from ``i`` to the offers; ``i.ready`` is ``code_taken``. ``scale`` holds
    (it is the quantizer's output) until the block's first code is taken, which is never
    before the cycle after its last scale op was taken.
    """

    def __init__(self, params):
        def members(p):
            lay = self.layout
            return {
                "i": In(stream.Signature(code_layout(p))),
                "code": Out(p.code_bits * codes_per_write(p)),
                "lane_mask": Out(lay.lanes // codes_per_write(p)),
                "word": Out(range(lay.beats)),
                "code_valid": Out(1),
                "code_taken": In(1),
                "scale": Out(UNIT_BITS),
                "scale_mask": Out(lay.meta_units),
                "scale_valid": Out(1),
                "scale_taken": In(1),
                "sample_done": Out(1),
                "sample_taken": In(1),
            }
        super().__init__(params, members)     # CacheComponent sets self.layout first

    def elaborate(self, platform):
        m = Module()
        p, lay = self.params, self.layout
        L, F, g = lay.lanes, lay.features, codes_per_write(p)
        code = self.i.payload
        lane = Signal(range(L))
        word_index = Signal(range(lay.beats))       # the code word being filled
        taken, writes = Signal(), Signal()
        completes = (lane == L - 1) | code.last             # the code word is complete
        m.d.comb += [writes.eq(completes | (lane % g == g - 1)),
                     self.lane_mask.eq(Const(1, L // g) << (lane // g)),
                     self.code_valid.eq(self.i.valid & ~self.scale_valid & writes),
                     # a code that completes no write waits in `held`, taken at once
                     self.i.ready.eq(self.code_taken | (~self.scale_valid & ~writes)),
                     taken.eq(self.i.valid & self.i.ready)]
        if g > 1:
            # the group's codes enter at the top, so its first is in lane 0 when it completes;
            # a short last group (F % g codes) is aligned down as it completes
            cb = lay.code_bits
            held = Signal(cb * (g - 1))
            with m.If(taken & ~writes):
                m.d.sync += held.eq(Cat(held[cb:], code.code))
            m.d.comb += self.code.eq(Cat(held, code.code))
            tail = F % g
            if tail:
                with m.If(code.last):
                    m.d.comb += self.code.eq(Cat(held[cb * (g - tail):], code.code))
        else:
            m.d.comb += self.code.eq(code.code)
        with m.If(taken):
            m.d.sync += lane.eq(Mux(completes, 0, lane + 1))
            with m.If(completes):
                m.d.sync += word_index.eq(Mux(code.last, 0, word_index + 1))
        # set and cleared as its next value (no enable LUT beside a lone flip-flop)
        m.d.sync += self.sample_done.eq((self.sample_done | (taken & code.last))
                                        & ~self.sample_taken)
        m.d.comb += self.word.eq(word_index)
        if p.scaled:
            self._scales(m, word_index, taken)
        return m

    def _scales(self, m, word_index, taken):
        """The block scale writes: one pointer walks the layout's scale ops in order, each
        block's run of ops offered at its first code, before the code. Where every op's meta
        word is read on the beat of its block's first code (R1's layouts), the word is the
        code word's index: no table."""
        lay = self.layout
        ops = lay.scale_ops
        last_of_block = [i == len(ops) - 1 or ops[i + 1][0] != ops[i][0]
                         for i in range(len(ops))]
        assert [b for b, _, _ in ops] == sorted(b for b, _, _ in ops)
        assert {b for b, _, _ in ops} == set(range(len(lay.blocks))), "a block without scale"
        op = Signal(range(len(ops)))
        scaled = Signal()                   # the offered first code's scale ops are taken
        code = self.i.payload
        offsets = lay.meta_offsets
        if any(offsets[w] != lay.blocks[b][0] // lay.lanes for b, w, _ in ops):
            with m.If(self.scale_valid):
                m.d.comb += self.word.eq(Array(Const(offsets[w], self.word.shape())
                                               for _, w, _ in ops)[op])
        m.d.comb += [
            self.scale_mask.eq(Array(Const(k, self.layout.meta_units) for _, _, k in ops)[op]),
            self.scale.eq(code.mant | (code.exp << MANT_BITS)),
            self.scale_valid.eq(self.i.valid & code.first & ~scaled),
        ]
        with m.If(taken):                   # the first code, written or held
            m.d.sync += scaled.eq(0)
        with m.If(self.scale_taken):
            m.d.sync += [op.eq(Mux(op == len(ops) - 1, 0, op + 1)),
                         scaled.eq(Const(sum(1 << i for i, last in enumerate(last_of_block)
                                             if last), len(ops)).bit_select(op, 1))]
