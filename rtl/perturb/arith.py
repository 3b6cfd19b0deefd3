"""Fixed-point building blocks of the perturbation engine, as Amaranth expressions.

Every function returns a combinational expression whose integer value equals its golden
counterpart in :mod:`fieldtune.sim.golden.perturb` (and :mod:`.numerics`). Multiplications
are spelled as shift-and-add so the synthesizer never spends a DSP block on them: per-lane
multipliers must scale with the lane count in LUTs, which is what the benchmark compares.
"""

from amaranth.hdl import Const, Mux, Value, signed, unsigned


__all__ = ["round_half_away", "saturate", "csd_digits", "const_mul", "shift_add_mul",
           "square"]


def round_half_away(value, shift):
    """``value / 2**shift`` rounded half away from zero: ``floor((x + 2**(shift-1) -
    [x < 0]) / 2**shift)``, which needs no comparison but the sign bit."""
    value = Value.cast(value)
    if shift == 0:
        return value
    if not value.shape().signed:
        return (value + (1 << (shift - 1))) >> shift
    return (value + (1 << (shift - 1)) - value[-1]) >> shift


def saturate(value, width):
    """Clamp a signed ``value`` to ``+-(2**(width-1) - 1)``; assign the result to a
    ``signed(width)`` signal (the in-range value then loses nothing)."""
    value = Value.cast(value)
    limit = (1 << (width - 1)) - 1
    return Mux(value > limit, limit, Mux(value < -limit, -limit, value))


def csd_digits(constant):
    """Canonical signed digits of a non-negative integer: ``[(shift, +1 or -1)]``."""
    digits, shift = [], 0
    while constant:
        if constant & 1:
            digit = 2 - (constant & 3)          # +1 if ...01, -1 if ...11
            digits.append((shift, digit))
            constant -= digit
        constant >>= 1
        shift += 1
    return digits


def const_mul(value, constant):
    """``value * constant`` for a non-negative integer constant, as additions and
    subtractions of shifted copies (canonical signed digits); unsigned for an unsigned
    ``value``."""
    value = Value.cast(value)
    if constant == 0:
        return Const(0, signed(1) if value.shape().signed else unsigned(1))
    total = None
    for shift, digit in csd_digits(constant):
        term = (value << shift) if shift else value
        if total is None:
            total = term if digit > 0 else -term
        else:
            total = total + term if digit > 0 else total - term
    if not value.shape().signed:
        # A negative digit makes the sum signed, but the product of an unsigned value is
        # not: dropping the always-zero sign keeps a later rounding from adding it back.
        total = total.as_unsigned()[:len(value) + constant.bit_length()]
    return total


def shift_add_mul(value, multiplier):
    """``value * multiplier`` for an unsigned run-time ``multiplier``: one partial product
    (``value`` shifted, gated by a multiplier bit) per bit of the multiplier, summed."""
    value = Value.cast(value)
    multiplier = Value.cast(multiplier)
    zero = Const(0, value.shape())
    total = None
    for i in range(len(multiplier)):
        term = Mux(multiplier[i], value, zero)
        term = (term << i) if i else term
        total = term if total is None else total + term
    return total


def square(value):
    """``value**2`` of a signed value as an unsigned shift-and-add product of magnitudes."""
    magnitude = abs(Value.cast(value))
    return shift_add_mul(magnitude, magnitude)
