"""Parameters of the forward cache (TOML table ``[cache]``)."""

from dataclasses import dataclass

from ..params import Params, check_int, check_pow2, check_choice, check_taps, R1_TAPS, R1_CLASSES


__all__ = ["CacheParams", "CODEBOOKS", "MEMORIES"]


#: Code books: NF4 (QLoRA's 16 normal quantiles), its unsigned half for post-ReLU values,
#: uniform int4 signed and unsigned, and 8-/16-bit pass-through for ablation.
CODEBOOKS = ("nf4", "unf4", "int4", "uint4", "pass8", "pass16")
#: Memory primitive the packed records are inferred into.
MEMORIES = ("bram", "spram")


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

    @property
    def features(self):
        """Features per sample, summed over taps."""
        return sum(self.taps)
