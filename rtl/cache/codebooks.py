"""The 4-bit code books of the forward cache, as the integer tables the hardware uses.

A code book is 16 levels in ``[-1, 1]`` sorted ascending; code ``k`` stands for level ``k``
times the block scale. The hardware and the golden model never see the real-valued levels:
each level is rounded once, here, to a signed integer ``LEVELS[name][k]`` in Q1.6 (``LEVEL_FRAC``
fraction bits, round half up), and that integer table *is* the code book. Quantization picks
the code whose integer level is nearest, using the exact midpoints between neighbouring integer
levels (:func:`thresholds`, Q1.7), so "nearest" is exact with respect to what the dequantizer
reproduces.

- ``nf4``: the 16 levels of QLoRA's NormalFloat4 (normal quantiles, an exact zero, both ends
  at +-1).
- ``unf4``: an unsigned NormalFloat for post-ReLU activations: zero plus 15 quantiles of the
  positive half of a standard normal, ``Phi^-1(p)`` for ``p`` evenly spaced from 0.5 to
  0.9677083 (QLoRA's offset), normalized so the last level is 1. No code is spent on negative
  values that ReLU outputs never take.
- ``int4``: symmetric absmax int4 as QLoRA's baseline: levels ``k/7`` for ``k = -8..7``; the
  level ``-8/7`` lies outside the block range and is never chosen.
- ``uint4``: uniform unsigned levels ``k/15``, ``k = 0..15``.
"""

__all__ = ["LEVEL_FRAC", "REAL_LEVELS", "LEVELS", "thresholds", "level_width",
           "threshold_width"]


#: Fraction bits of the integer code book levels (Q1.6). Finer levels change the SNR of R1's
#: features by less than 0.1 dB (docs/numerics.md) but cost multiplier width in every lane.
LEVEL_FRAC = 6

#: Real-valued levels before rounding (documentation and float references).
REAL_LEVELS = {
    "nf4": (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230731010437,
            0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
            0.7229568362236023, 1.0),
    "unf4": (0.0, 0.0423334724, 0.0849280756, 0.1280564081, 0.1720153427, 0.2171418178,
             0.2638339915, 0.3125816069, 0.3640123344, 0.4189668948, 0.4786291601,
             0.5447700433, 0.6202539086, 0.7102505646, 0.8258410911, 1.0),
    "int4": tuple(k / 7 for k in range(-8, 8)),
    "uint4": tuple(k / 15 for k in range(16)),
}


def _round_half_up(value, frac):
    scaled = value * (1 << frac)
    whole = int(scaled // 1)
    return whole + (1 if scaled - whole >= 0.5 else 0)


#: Integer levels in Q1.6 (signed), the code books proper.
LEVELS = {name: tuple(_round_half_up(v, LEVEL_FRAC) for v in levels)
          for name, levels in REAL_LEVELS.items()}


def thresholds(codebook):
    """Midpoints between neighbouring levels, ``T[k] = LEVELS[k-1] + LEVELS[k]`` for
    ``k = 1..15``, in Q1.7 (twice the level scale, so they are exact integers). Index 0 is
    unused (``None``) so that ``T[k]`` separates code ``k-1`` from code ``k``."""
    levels = LEVELS[codebook]
    return (None,) + tuple(levels[k - 1] + levels[k] for k in range(1, 16))


def level_width(codebook):
    """Bits of a signed integer holding every level of ``codebook``."""
    return max(abs(v) for v in LEVELS[codebook]).bit_length() + 1


def threshold_width(codebook):
    """Bits of a signed integer holding every threshold of ``codebook``."""
    return max(abs(v) for v in thresholds(codebook)[1:]).bit_length() + 1
