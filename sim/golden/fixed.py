"""Integer helpers with the exact semantics of the gateware (numpy, int64).

Every narrowing in fieldtune's gateware either rounds half up (add half an output LSB, then
shift right arithmetically: ``floor(x / 2**s + 1/2)``) or truncates, and saturates to a signed
or unsigned width; these functions are the one place the golden models spell that out.
"""

import numpy as np


__all__ = ["round_shift", "scale_pow2", "saturate", "signed_range"]


def signed_range(width):
    """``(lo, hi)`` of a signed two's-complement ``width``-bit value."""
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def round_shift(x, shift):
    """``x / 2**shift`` rounded half up (toward +infinity on ties), for ``shift >= 0``."""
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x.copy()
    return (x + (1 << (shift - 1))) >> shift


def scale_pow2(x, shift):
    """``x * 2**shift`` for a signed ``shift``: exact for ``shift >= 0``, rounded half up for
    ``shift < 0``."""
    x = np.asarray(x, dtype=np.int64)
    return x << shift if shift >= 0 else round_shift(x, -shift)


def saturate(x, width, flags=None):
    """Clamp to a signed ``width``-bit range; record in ``flags["saturated"]`` whether any
    element was clamped."""
    lo, hi = signed_range(width)
    x = np.asarray(x, dtype=np.int64)
    y = np.clip(x, lo, hi)
    if flags is not None and np.any(y != x):
        flags["saturated"] = True
    return y
