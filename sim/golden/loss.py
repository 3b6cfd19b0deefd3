"""Bit-exact model of :class:`fieldtune.rtl.loss.SoftmaxCrossEntropy` (vectorized over samples).

Formats (``LossParams`` defaults in brackets): logits signed ``Q(lw-lf).lf`` [Q8.8]; exponents
``t`` and the loss unsigned ``Q.loss_frac`` [Q.12] in bits (base-2 logarithms); probabilities
unsigned ``Q1.prob_frac`` [Q1.15]; ``dz`` signed ``Q1.prob_frac``, saturated to
``[-1, 1 - 2**-prob_frac]``. Every narrowing rounds half up. See docs/numerics.md.
"""

import numpy as np

from ...rtl.loss.params import LossParams
from ...rtl.loss.tables import (LOG2E, LOG2E_FRAC, exp2_table, log2_table, diff_clamp)
from .fixed import round_shift, saturate


__all__ = ["LossResult", "with_frozen", "exponents", "exp2_neg", "log2_sum", "softmax_xent",
           "float_softmax_xent"]


class LossResult(dict):
    """``dz`` (n, C), ``loss`` (n,) in bits, ``argmax`` (n,), ``correct`` (n,) bool."""
    __getattr__ = dict.__getitem__


def with_frozen(p: LossParams, outputs, z0):
    """The unit's logits: ``sat(outputs + z0)`` (adapter outputs plus frozen logits)."""
    return saturate(np.asarray(outputs, dtype=np.int64) + np.asarray(z0, dtype=np.int64),
                    p.logit_width)


def exponents(p: LossParams, logits):
    """``t_c = round((max z - min(max z - z_c, clamp)) * log2 e)`` in ``Q.loss_frac``, and
    the argmax (first index of the maximum)."""
    z = np.asarray(logits, dtype=np.int64)
    m = z.max(axis=-1, keepdims=True)
    d = np.minimum(m - z, diff_clamp(p))
    t = round_shift(d * LOG2E, LOG2E_FRAC + p.logit_frac - p.loss_frac)
    return t, z.argmax(axis=-1)


def exp2_neg(p: LossParams, t):
    """``2**-t`` for ``t >= 0`` in ``Q.loss_frac``, as unsigned ``Q1.prob_frac``: ``t`` rounded
    half up to ``exp_bits`` fraction bits, table for the fraction, right shift (rounded half
    up) for the integer part."""
    table = np.array(exp2_table(p), dtype=np.int64)
    tr = round_shift(t, p.loss_frac - p.exp_bits)
    n = np.minimum(tr >> p.exp_bits, p.prob_frac + 2)
    v = table[tr & ((1 << p.exp_bits) - 1)]
    half = np.where(n > 0, np.left_shift(1, np.maximum(n - 1, 0)), 0)
    return (v + half) >> n


def log2_sum(p: LossParams, s):
    """``log2(S / 2**prob_frac)`` for ``S >= 2**prob_frac`` in unsigned ``Q.loss_frac``: the
    leading one gives the integer part, the next ``exp_bits`` bits (rounded half up) index
    the ``log2(1 + f)`` table."""
    table = np.array(log2_table(p), dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    pos = np.floor(np.log2(s.astype(np.float64))).astype(np.int64)
    # float log2 can be off by one near powers of two; fix it exactly
    pos = np.where((np.left_shift(1, pos) > s), pos - 1, pos)
    pos = np.where((np.left_shift(1, pos + 1) <= s), pos + 1, pos)
    f = s - np.left_shift(1, pos)
    down = pos - p.exp_bits
    fr = np.where(down > 0,
                  (f + np.left_shift(1, np.maximum(down - 1, 0))) >> np.maximum(down, 0),
                  np.left_shift(f, np.maximum(-down, 0)))
    k = pos - p.prob_frac
    carry = fr >> p.exp_bits
    k = k + carry
    fr = fr & ((1 << p.exp_bits) - 1)
    return (k << p.loss_frac) + table[fr]


def softmax_xent(p: LossParams, logits, labels):
    """The loss unit on ``n`` logit vectors (n, C) with labels (n,): :class:`LossResult`."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.int64))
    y = np.atleast_1d(np.asarray(labels, dtype=np.int64))
    if z.shape[-1] != p.classes:
        raise ValueError(f"logits must have {p.classes} classes, not {z.shape[-1]}")
    t, argmax = exponents(p, z)
    s = exp2_neg(p, t).sum(axis=-1)
    l2s = log2_sum(p, s)
    rows = np.arange(len(y))
    loss = l2s + t[rows, y]
    prob = exp2_neg(p, t + l2s[:, None])
    onehot = np.zeros_like(prob)
    onehot[rows, y] = 1 << p.prob_frac
    dz = saturate(prob - onehot, p.prob_frac + 1)
    return LossResult(dz=dz, loss=loss, argmax=argmax, correct=argmax == y)


def float_softmax_xent(p: LossParams, logits, labels):
    """Float reference on the same integer logits: ``(dz, loss_bits)`` as floats."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64)) / (1 << p.logit_frac)
    y = np.atleast_1d(labels)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(axis=-1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.log2(prob[rows, y])
    dz = prob.copy()
    dz[rows, y] -= 1
    return dz, loss
