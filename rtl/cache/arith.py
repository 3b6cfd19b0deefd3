"""Multiplications the cache does in logic, written as shifts and adds.

The UP5K's 8 SB_MAC16 belong to the MAC array's lanes. Yosys (``synth_ice40 -dsp``) maps
every ``$mul`` cell wide enough to a SB_MAC16, constant factors included, so the cache's
products are spelled out here as sums of shifted terms: no ``$mul`` reaches the synthesizer,
and the values are exactly those of ``a * b`` (the golden model is unchanged).
"""

from amaranth.hdl import Mux, Value


__all__ = ["shift_add_mul", "const_mul"]


def shift_add_mul(a, b):
    """``a * b`` for an unsigned ``b`` of a few bits: one partial product ``a << i`` per bit of
    ``b``, gated by that bit, summed. ``a`` may be signed. The sum's shape holds every product
    (Amaranth widens each addition), so assigning it to a target as wide as ``a * b`` is
    exact."""
    a, b = Value.cast(a), Value.cast(b)
    if b.shape().signed:
        raise TypeError("shift_add_mul needs an unsigned second factor")
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def const_mul(value, factor):
    """``value * factor`` for a non-negative integer constant ``factor``, as the sum and
    difference of shifted copies of ``value`` (the non-adjacent form of ``factor``: at most
    ``bitlen / 2 + 1`` terms)."""
    if factor < 0:
        raise ValueError(f"factor must be non-negative, not {factor}")
    value = Value.cast(value)
    digits, k = [], factor
    while k:
        if k & 1:
            d = 2 - (k & 3)           # +1 or -1, so that the next bit is 0
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    # widen before subtracting so that an unsigned value never wraps
    wide = value.as_signed() if value.shape().signed else value.as_unsigned()
    total = None
    for i, d in enumerate(digits):
        if d == 0:
            continue
        term = wide << i
        if total is None:
            total = term if d > 0 else -term
        else:
            total = total + term if d > 0 else total - term
    return total if total is not None else Value.cast(0)
