"""Constants of the loss unit's base-2 arithmetic, shared by the gateware and the golden model.

Softmax and cross entropy are computed in base 2 (DESIGN: no multiplier, no divider):

- ``t_c = (max(z) - z_c) * log2(e)`` is a constant multiplication by :data:`LOG2E`
  (``round(log2(e) * 2**LOG2E_FRAC)``), done with shifts and adds;
- ``2**-t`` splits ``t`` into an integer part (a right shift) and ``exp_bits`` fraction bits
  (a table, :func:`exp2_table`);
- ``log2(S)`` normalizes ``S`` to ``[1, 2)`` (a leading-one detector) and looks up
  ``log2(1 + f)`` (:func:`log2_table`);
- probabilities are ``2**-(t_c + log2 S)``: the division by ``S`` is a subtraction of logs.
"""

import math

from .params import LossParams


__all__ = ["LOG2E_FRAC", "LOG2E", "exp2_table", "log2_table", "diff_clamp", "DIFF_CLAMP_NATS",
           "diff_width", "sum_width", "loss_width", "zo_sum_width", "exponent_width"]


#: Fraction bits of the log2(e) constant.
LOG2E_FRAC = 16
#: log2(e) in unsigned Q2.16, 94548.
LOG2E = round(math.log2(math.e) * (1 << LOG2E_FRAC))


def exp2_table(p: LossParams):
    """``T[i] = round(2**(-i / 2**exp_bits) * 2**prob_frac)`` for ``i < 2**exp_bits``:
    unsigned ``Q1.prob_frac``, ``T[0] = 1.0``."""
    n = 1 << p.exp_bits
    return [round(2.0 ** (-i / n) * (1 << p.prob_frac)) for i in range(n)]


def log2_table(p: LossParams):
    """``G[i] = round(log2(1 + i / 2**exp_bits) * 2**loss_frac)`` for ``i < 2**exp_bits``:
    unsigned ``Q0.loss_frac``."""
    n = 1 << p.exp_bits
    return [round(math.log2(1 + i / n) * (1 << p.loss_frac)) for i in range(n)]


#: Logit differences ``max(z) - z_c`` are clamped below this many nats (the loss saturates at
#: about ``DIFF_CLAMP_NATS * log2(e)`` bits; probabilities there are zero either way).
DIFF_CLAMP_NATS = 32


def diff_clamp(p: LossParams):
    """Largest logit difference ``max(z) - z_c`` (in logit LSBs) taken into account; larger
    differences are clamped to it."""
    return (DIFF_CLAMP_NATS << p.logit_frac) - 1


def diff_width(p: LossParams):
    """Bits of a clamped logit difference: ``diff_clamp + 1`` is a power of two, so the clamp
    is an OR of the bits above these into them."""
    return diff_clamp(p).bit_length()


def sum_width(p: LossParams):
    """Bits of ``S``, the sum of ``classes`` probabilities of at most ``1.0`` (unsigned
    ``Q.prob_frac``): ``S <= classes * 2**prob_frac``."""
    return p.prob_frac + p.classes.bit_length()


def exponent_width(p: LossParams):
    """Bits of the unsigned exponents ``t`` and ``t + log2 S`` (``Q.loss_frac``)."""
    t_max = _t(p, diff_clamp(p)) + ((max(p.classes - 1, 1).bit_length() + 1) << p.loss_frac)
    return t_max.bit_length()


def _t(p, d):
    shift = LOG2E_FRAC + p.logit_frac - p.loss_frac
    return (d * LOG2E + ((1 << shift) >> 1)) >> shift


def loss_width(p: LossParams):
    """Bits of the unsigned loss (cross entropy in bits, ``Q.loss_frac``)."""
    return exponent_width(p)


def zo_sum_width(p: LossParams):
    """Bits of the signed running sum of zeroth-order loss differences (up to 256 pairs)."""
    return loss_width(p) + 1 + 9
