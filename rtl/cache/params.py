"""Parameters of the forward cache (TOML table ``[cache]``)."""

from dataclasses import dataclass, replace as dc_replace

from ..params import Params, check_int, check_pow2, check_choice, check_taps, R1_TAPS, R1_CLASSES


__all__ = ["CacheParams", "CODEBOOKS", "MEMORIES", "FOUR_BIT", "UNSIGNED", "CODE_BITS",
           "ELEMENT_WIDTH", "INDEX_WIDTH", "LOGIT_WIDTH", "LOGIT_FRAC"]


#: Code books: NF4 (QLoRA's 16 normal quantiles), its unsigned half for post-ReLU values,
#: uniform int4 signed and unsigned, and 8-/16-bit pass-through for ablation.
CODEBOOKS = ("nf4", "unf4", "int4", "uint4", "pass8", "pass16")
#: Memory primitive the packed records are inferred into.
MEMORIES = ("bram", "spram")
#: Code books searched with thresholds and scaled per block (4-bit codes).
FOUR_BIT = ("nf4", "unf4", "int4", "uint4")
#: Code books without negative levels: negative inputs are clamped to zero (and counted).
UNSIGNED = ("unf4", "uint4")
#: Bits stored per feature for each code book.
CODE_BITS = {"nf4": 4, "unf4": 4, "int4": 4, "uint4": 4, "pass8": 8, "pass16": 16}
#: Width of one element of the write stream (features, logits and the label all travel in it).
ELEMENT_WIDTH = 16
#: Width of a sample index on the read side (indices up to 65535 can be asked for, so an
#: index beyond a smaller capacity is representable and reported, not wrapped).
INDEX_WIDTH = 16
#: Frozen logits z0 are stored at full precision: signed Q8.8.
LOGIT_WIDTH = 16
LOGIT_FRAC = 8


@dataclass(frozen=True)
class CacheParams(Params):
    """Forward cache configuration.

    Parameters
    ----------
    lanes : int
        Dequantized values per cycle, 1 to 64.
    in_width, in_frac : int
        Quantizer input: signed ``Q(in_width-in_frac).in_frac`` (8 or 16 bits).
    out_width, out_frac : int
        Dequantizer output: signed ``Q(out_width-out_frac).out_frac``.
    block_size : int
        Elements sharing one scale: a power of two from 8 to 64, or 0 for one block per tap.
    codebook : str
        One of :data:`CODEBOOKS`.
    taps : tuple of int
        Features per adapter tap (R1: 128, 64, 32).
    classes : int
        Frozen logits z0 per record (16-bit each).
    capacity : int
        Records (samples) the cache holds, 1 to 65536.
    memory : str
        One of :data:`MEMORIES`.
    dequantizer_lanes : int
        Features the dequantizer computes per cycle, 0 to ``lanes``. With fewer than
        ``lanes``, a beat takes :attr:`beat_cycles` cycles and the dequantizer's datapath
        shrinks with them: a consumer taking a beat every ``rows`` cycles (the MAC array holds
        a beat for the rows of its beat) loses nothing as long as ``beat_cycles <= rows``.
        0: chosen for the consumer, see :meth:`for_consumer` (a cache on its own: ``lanes``,
        a beat per cycle; in a SoC: the fewest lanes that keep up with the MAC array).
    pass8_frac : int
        Fraction bits of the ``pass8`` code book: values are stored as signed
        ``Q(8-pass8_frac).pass8_frac`` (round half up, saturating), 0 to 7; the default Q5.3
        covers R1's features (up to 14.25).
    """

    section = "cache"

    lanes: int = 8
    in_width: int = 16
    in_frac: int = 8
    out_width: int = 16
    out_frac: int = 8
    block_size: int = 32
    codebook: str = "unf4"
    taps: tuple = R1_TAPS
    classes: int = R1_CLASSES
    capacity: int = 256
    memory: str = "spram"
    dequantizer_lanes: int = 0
    pass8_frac: int = 3

    def _validate(self):
        s = self.section
        check_int(s, "lanes", self.lanes, 1, 64)
        check_choice(s, "in_width", self.in_width, (8, 16))
        check_int(s, "in_frac", self.in_frac, 0, self.in_width - 1)
        check_int(s, "out_width", self.out_width, 8, 18)
        check_int(s, "out_frac", self.out_frac, 0, self.out_width - 1)
        if self.block_size != 0:
            check_pow2(s, "block_size", self.block_size, 8, 64)
        check_choice(s, "codebook", self.codebook, CODEBOOKS)
        object.__setattr__(self, "taps", check_taps(s, "taps", self.taps))
        check_int(s, "classes", self.classes, 2, 64)
        check_int(s, "capacity", self.capacity, 1, 65536)
        check_choice(s, "memory", self.memory, MEMORIES)
        check_int(s, "dequantizer_lanes", self.dequantizer_lanes, 0, self.lanes)
        check_int(s, "pass8_frac", self.pass8_frac, 0, 7)

    @property
    def features(self):
        """Features per sample, summed over taps."""
        return sum(self.taps)

    @property
    def dq_lanes(self):
        """Features dequantized per cycle (``dequantizer_lanes``, 0 meaning ``lanes``)."""
        return self.dequantizer_lanes or self.lanes

    def for_consumer(self, rows):
        """These parameters for a reader taking a beat every ``rows`` cycles: a
        ``dequantizer_lanes`` of 0 becomes ``ceil(lanes / rows)``, the fewest lanes that
        deliver a beat every ``rows`` cycles; any other value stays."""
        if self.dequantizer_lanes:
            return self
        return dc_replace(self, dequantizer_lanes=-(-self.lanes // max(rows, 1)))

    @property
    def beat_cycles(self):
        """Cycles the dequantizer spends on one beat: ``ceil(lanes / dq_lanes)``."""
        return -(-self.lanes // self.dq_lanes)

    @property
    def code_bits(self):
        """Bits stored per feature."""
        return CODE_BITS[self.codebook]

    @property
    def scaled(self):
        """Whether the code book is a 4-bit one with a scale per block."""
        return self.codebook in FOUR_BIT

    @property
    def unsigned(self):
        """Whether the code book has no negative levels."""
        return self.codebook in UNSIGNED

    @property
    def label_bits(self):
        """Bits of a class label."""
        return max(1, (self.classes - 1).bit_length())
