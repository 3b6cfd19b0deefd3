"""The packer: the quantizer's codes into code words, block scales into meta units."""

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat
from amaranth.lib import stream
from amaranth.lib.wiring import In, Out

from .component import CacheComponent
from .layout import MANT_BITS, UNIT_BITS
from .quantizer import code_layout


__all__ = ["Packer"]


class Packer(CacheComponent):
    """Pack one sample's codes, as the quantizer offers them, into memory writes.

    Codes enter a shift register at its top lane, so after ``L`` codes lane 0 holds the
    first (the last word of a sample whose ``F`` is not a multiple of ``L`` is aligned as
    it completes, its padding lanes zero): the word waits in that register, as the write
    data, until the memory takes it. A block's first code also offers its scale
    (``mant | exp << MANT_BITS``) for every ``(word, unit mask)`` of the layout's
    :attr:`~.layout.CacheLayout.scale_ops`, in order. The sample index of the writes is the
    caller's (the record slot).

    Attributes
    ----------
    i : In(stream.Signature(code_layout(params)))
    word, word_index, word_valid : Out
        A completed code word, its word index within the sample, and whether it waits.
    word_taken : In(1)
        The word is written (this cycle's data, the next cycle's write).
    scale, scale_word, scale_mask, scale_valid : Out
        A scale unit to write into meta word ``scale_word`` under ``scale_mask``.
    scale_taken : In(1)
    sample_done : Out(1)
        The sample's last word and scale are written.
    sample_taken : In(1)
        Acknowledges ``sample_done``.

    Timing
    ------
    ``i.ready`` is low while a word or a scale waits; a code is taken the cycle after both
    are taken. ``word`` and ``scale`` hold until the cycle after they are taken.
    """

    def __init__(self, params):
        def members(p):
            lay = self.layout
            return {
                "i": In(stream.Signature(code_layout(p))),
                "word": Out(lay.code_width),
                "word_index": Out(range(lay.beats)),
                "word_valid": Out(1),
                "word_taken": In(1),
                "scale": Out(UNIT_BITS),
                "scale_word": Out(range(max(lay.meta_words, 2))),
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
        L, F, cb = lay.lanes, lay.features, lay.code_bits
        code = self.i.payload
        lane = Signal(range(L))
        last_pending = Signal()             # the sample's last code is in
        accept = Signal()
        last_feature = code.last
        completes = (lane == L - 1) | last_feature
        m.d.comb += [self.i.ready.eq(~self.word_valid & ~self.scale_valid),
                     accept.eq(self.i.valid & self.i.ready),
                     self.sample_done.eq(last_pending & ~self.word_valid & ~self.scale_valid)]
        shifted = Cat(self.word[cb:], code.code)
        tail = F % L                        # codes in a short last word
        with m.If(accept):
            m.d.sync += [self.word.eq(shifted), lane.eq(Mux(completes, 0, lane + 1))]
            if tail:
                with m.If(last_feature):
                    m.d.sync += self.word.eq(Cat(self.word[cb * (L - tail + 1):], code.code))
            with m.If(completes):
                m.d.sync += self.word_valid.eq(1)
            with m.If(last_feature):
                m.d.sync += last_pending.eq(1)
        with m.If(self.word_taken):
            m.d.sync += [self.word_valid.eq(0),
                         self.word_index.eq(Mux(self.word_index == lay.beats - 1, 0,
                                                self.word_index + 1))]
        with m.If(self.sample_taken):
            m.d.sync += last_pending.eq(0)
        if p.scaled:
            self._scales(m, accept)
        return m

    def _scales(self, m, accept):
        """The block scale writes: one pointer walks the layout's scale ops in order, each
        block's run of ops offered at its first code."""
        lay = self.layout
        ops = lay.scale_ops
        last_of_block = [i == len(ops) - 1 or ops[i + 1][0] != ops[i][0]
                         for i in range(len(ops))]
        assert [b for b, _, _ in ops] == sorted(b for b, _, _ in ops)
        assert {b for b, _, _ in ops} == set(range(len(lay.blocks))), "a block without scale"
        op = Signal(range(len(ops)))
        m.d.comb += [
            self.scale_word.eq(Array(Const(w, self.scale_word.shape()) for _, w, _ in ops)[op]),
            self.scale_mask.eq(Array(Const(k, lay.meta_units) for _, _, k in ops)[op]),
        ]
        code = self.i.payload
        with m.If(accept & code.first):
            m.d.sync += [self.scale.eq(code.mant | (code.exp << MANT_BITS)),
                         self.scale_valid.eq(1)]
        with m.If(self.scale_taken):
            m.d.sync += [op.eq(Mux(op == len(ops) - 1, 0, op + 1)),
                         self.scale_valid.eq(~Const(sum(1 << i for i, last
                                                        in enumerate(last_of_block) if last),
                                                    len(ops)).bit_select(op, 1))]
