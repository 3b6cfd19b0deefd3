"""Where every bit of a cached sample lives: blocks, beats, memory words and read schedule.

The layout is pure Python, computed once from :class:`~.params.CacheParams`; the gateware
(:mod:`.quantizer`, :mod:`.dequantizer`, :mod:`.cache`) and the golden model
(:mod:`fieldtune.sim.golden.cache`) both build their tables from it, so they cannot disagree.

A sample (record) is ``F`` features (the taps, in order), ``C`` frozen logits z0 and a label.

Blocks
    Each tap is cut into blocks of ``block_size`` features (the last block of a tap may be
    shorter), or is one block when ``block_size == 0``. Blocks never span taps. A 4-bit code
    book stores one scale per block; the pass-through code books store none.

Beats and the code memory
    The read side streams ``L = lanes`` features per beat: beat ``j`` carries features
    ``j*L .. j*L+L-1``; a sample takes ``beats = ceil(F / L)`` beats and lanes past ``F`` in the
    last beat are padding (they read back as 0). The code memory has one word per beat,
    ``L * code_bits`` wide, lane 0 in the least significant bits; sample ``i``'s words are at
    ``i * code_stride .. i * code_stride + beats - 1`` (``code_stride``: ``beats`` rounded up
    to a power of two, so an address is the sample index and the word index side by side).

Scale slots
    Lanes are grouped by ``g`` (the greatest common divisor of ``L`` and every block
    boundary), so the ``L / g`` lane groups of every beat each lie inside one block. A
    *scale word* has one 16-bit unit per lane group (a *slot*): mantissa in bits 0-5, exponent
    in bits 6-9. Consecutive beats whose slots name the same blocks share a scale word.

Meta memory and read schedule
    Scale words and the *side units* (one 16-bit unit per logit z0[c], then one for the label)
    live in the meta memory, ``meta_units`` 16-bit units per word, ``meta_words`` words per
    sample. The dequantizer uses at most one meta word per beat, in a fixed schedule: on a beat
    that needs a new scale word it uses that word (its spare units carry side units); on other
    beats it uses side-only words while side units remain. A meta word is stored at its
    beat's offset (``i * code_stride + beat``, the code word's address), so one address reads
    both memories on every beat; the offsets of beats without a meta word stay unused.
    ``meta_units`` is the smallest width for which everything fits in ``beats`` reads, so the
    meta memory never slows the stream down.
"""

from dataclasses import dataclass
from math import gcd, ceil


__all__ = ["MANT_BITS", "EXP_BITS", "UNIT_BITS", "CacheLayout", "primitive_count",
           "PRIMITIVES"]


#: Scale mantissa bits (unsigned) and exponent bits: scale = mantissa * 2**exponent input LSBs.
#: Six mantissa bits lose < 0.1 dB of SNR on R1's features against an exact scale
#: (docs/numerics.md) and keep the dequantizer's per-lane multiplier small.
MANT_BITS = 6
EXP_BITS = 4
#: Meta memory granule: one scale slot or one side unit.
UNIT_BITS = 16


@dataclass(frozen=True)
class MetaWord:
    """One meta word of the per-sample read schedule."""
    beat: int            # the beat that reads it
    scale: bool          # whether units 0..slots-1 hold a scale word
    side: tuple          # side unit index held by each following unit (in unit order)


class CacheLayout:
    """Static layout of one :class:`~.params.CacheParams` (see the module documentation)."""

    def __init__(self, params):
        self.params = p = params
        self.features = F = p.features
        self.lanes = L = p.lanes
        self.code_bits = p.code_bits
        self.beats = ceil(F / L)
        self.classes = p.classes
        self.side_units = p.classes + 1

        # -- blocks -------------------------------------------------------------------------
        blocks, offset = [], 0
        for tap in p.taps:
            size = tap if p.block_size == 0 else p.block_size
            for start in range(0, tap, size):
                blocks.append((offset + start, min(size, tap - start)))
            offset += tap
        self.blocks = tuple(blocks) if p.scaled else ()
        self.block_of_feature = tuple(b for b, (s, n) in enumerate(blocks) for _ in range(n)) \
            if p.scaled else ()
        self.max_block = max((n for _, n in self.blocks), default=0)

        # -- scale slots and words ----------------------------------------------------------
        if p.scaled:
            g = L
            for s, n in blocks:
                g = gcd(g, s)
                g = gcd(g, s + n)
            self.group = g
            self.slots = L // g
            slot_blocks = []
            for j in range(self.beats):
                row = []
                for i in range(self.slots):
                    f = j * L + i * g
                    row.append(self.block_of_feature[f] if f < F else None)
                slot_blocks.append(tuple(row))
            new_scale = [j == 0 or slot_blocks[j] != slot_blocks[j - 1]
                         for j in range(self.beats)]
        else:
            self.group = L
            self.slots = 0
            slot_blocks = [()] * self.beats
            new_scale = [False] * self.beats
        self.slot_blocks = tuple(slot_blocks)
        self.new_scale = tuple(new_scale)
        self.scale_words = sum(new_scale)

        # -- meta words and schedule --------------------------------------------------------
        su, U, B, S = self.slots, self.side_units, self.beats, self.scale_words
        u = max(su, 1)
        while B * u - S * su < U:
            u += 1
        self.meta_units = u
        words, next_side = [], 0
        read = [None] * B
        for j in range(B):
            if new_scale[j]:
                n = min(u - su, U - next_side)
                words.append(MetaWord(j, True, tuple(range(next_side, next_side + n))))
            elif next_side < U:
                n = min(u, U - next_side)
                words.append(MetaWord(j, False, tuple(range(next_side, next_side + n))))
            else:
                continue
            next_side += n
            read[j] = len(words) - 1
        assert next_side == U
        self.meta_words = len(words)
        self.words = tuple(words)
        self.meta_read = tuple(read)
        # Where each side unit lives: (word, unit index within the word).
        side_pos = {}
        for w, word in enumerate(words):
            first_unit = su if word.scale else 0
            for k, unit in enumerate(word.side):
                side_pos[unit] = (w, first_unit + k)
        self.side_pos = tuple(side_pos[k] for k in range(U))
        # Where each block's scale is written: (word, unit mask) pairs, in block order.
        ops = []
        for b in range(len(self.blocks)):
            for w, word in enumerate(words):
                if word.scale:
                    mask = sum(1 << i for i, blk in enumerate(slot_blocks[word.beat])
                               if blk == b)
                    if mask:
                        ops.append((b, w, mask))
        self.scale_ops = tuple(ops)

    # -- memory geometry --------------------------------------------------------------------

    @property
    def code_stride(self):
        """Code words reserved per sample: ``beats`` rounded up to a power of two, so that
        sample ``i``'s word ``j`` is at address ``i * code_stride + j``, the bits of ``j``
        below those of ``i`` (no multiplier, no base register)."""
        return 1 << (self.beats - 1).bit_length()

    @property
    def meta_stride(self):
        """Meta words reserved per sample: :attr:`code_stride`. Meta word ``w`` lives at the
        offset of the beat that reads it (:attr:`meta_offsets`), so a beat's code word and
        meta word share one address and both memories are read together."""
        return self.code_stride

    @property
    def meta_offsets(self):
        """Offset of each meta word within its sample's stride: the beat that reads it."""
        return tuple(word.beat for word in self.words)

    @property
    def code_width(self):
        """Bits of a code memory word (one beat)."""
        return self.lanes * self.code_bits

    @property
    def meta_width(self):
        """Bits of a meta memory word."""
        return self.meta_units * UNIT_BITS

    def bits_per_sample(self):
        return self.beats * self.code_width + self.meta_words * self.meta_width

    def bytes_per_sample(self):
        """Memory bytes one sample occupies (codes with padding lanes, scale and side words)."""
        return self.bits_per_sample() / 8

    def memories(self, capacity):
        """``[(name, width, depth)]`` of the cache's memories for ``capacity`` samples."""
        return [("codes", self.code_width, capacity * self.code_stride),
                ("meta", self.meta_width, capacity * self.meta_stride)]

    def primitives(self, capacity, family, kind):
        """Estimated primitives for ``capacity`` samples (see :func:`primitive_count`)."""
        return sum(primitive_count(width, depth, family, kind)
                   for _, width, depth in self.memories(capacity))

    def capacity_for(self, family, kind, budget):
        """Most samples whose memories need at most ``budget`` primitives of ``kind``."""
        if self.primitives(1, family, kind) > budget:
            return 0
        lo, hi = 1, 1
        while self.primitives(hi * 2, family, kind) <= budget and hi < 1 << 20:
            hi *= 2
        hi *= 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.primitives(mid, family, kind) <= budget:
                lo = mid
            else:
                hi = mid
        return lo


#: (family, kind) -> [(depth, width)] configurations of one memory primitive.
PRIMITIVES = {
    ("ice40", "bram"): [(256, 16), (512, 8), (1024, 4), (2048, 2)],   # SB_RAM40_4K
    ("ice40", "spram"): [(16384, 16)],                                 # SB_SPRAM256KA
    ("ecp5", "bram"): [(512, 36), (1024, 18), (2048, 9), (4096, 4),     # DP16KD
                       (8192, 2), (16384, 1)],
}


def primitive_count(width, depth, family, kind):
    """Primitives a ``width`` x ``depth`` memory needs, tiling the best configuration (the
    synthesizer may do better or worse; benchmarks report its actual count)."""
    configs = PRIMITIVES[(family, kind)]
    return min(ceil(width / w) * ceil(depth / d) for d, w in configs)
