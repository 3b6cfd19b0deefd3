"""Bit-exact golden model of the forward cache (quantizer, packed memory, dequantizer).

Integer semantics, identical to the gateware in :mod:`fieldtune.rtl.cache`:

Input
    Each feature arrives as a signed 16-bit element and is saturated to ``in_width`` bits
    (signed ``Q(in_width-in_frac).in_frac``). With an unsigned code book (``unf4``, ``uint4``)
    a negative feature is clamped to zero. Every saturated or clamped feature increments the
    saturation counter (16 bits, saturating).

Scale (4-bit code books)
    ``a`` = the block's largest magnitude (input LSBs, up to 2**(in_width-1));
    ``E = max(0, bitlen(a) - 6)``, ``M = ceil(a / 2**E)`` (round up, so the block maximum is
    never clipped); if ``M == 64`` then ``M, E = 32, E + 1``; if ``M == 0`` then ``M = 1``.
    The scale is ``M * 2**E`` input LSBs (6-bit mantissa, 4-bit exponent).

Code (4-bit)
    ``code = #{k in 1..15 : floor(x * 2**7 / 2**E) >= T[k] * M}`` with ``T`` the Q1.7 midpoints of
    :func:`~fieldtune.rtl.cache.codebooks.thresholds`: the nearest integer level, ties going to
    the upper code (round half up). Exact: no rounding happens before the comparison.

Code (pass-through)
    ``pass8``: ``sat8(round_half_up(x * 2**(pass8_frac - in_frac)))`` (saturations counted);
    ``pass16``: ``x`` itself.

Dequantized value
    4-bit: ``sat(round_half_up(LEVELS[code] * M * 2**(E + out_frac - in_frac - 6)))``;
    ``pass8``: ``sat(round_half_up(code * 2**(out_frac - pass8_frac)))``;
    ``pass16``: ``sat(round_half_up(code * 2**(out_frac - in_frac)))``;
    ``sat`` saturates to signed ``out_width`` bits. Round half up = add half an output LSB,
    then floor.
"""

import math
from dataclasses import dataclass

import numpy as np

from ...rtl.cache.codebooks import LEVELS, REAL_LEVELS, LEVEL_FRAC, thresholds
from ...rtl.cache.layout import CacheLayout, MANT_BITS, EXP_BITS, UNIT_BITS


__all__ = ["round_half_up_shift", "saturate", "QuantizedSample", "CacheModel", "Beat",
           "record_elements", "adversarial_samples", "float_quantize", "snr_db"]


SAT_COUNTER_MAX = (1 << 16) - 1


def round_half_up_shift(value, shift):
    """``round_half_up(value * 2**shift)`` for integer arrays (any sign of ``shift``)."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.left_shift(value, np.maximum(shift, 0))
    right = np.maximum(-shift, 0)
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    return np.right_shift(left + half, right)


def saturate(value, width):
    """Clip to a signed ``width``-bit range."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return np.clip(np.asarray(value, dtype=np.int64), lo, hi)


@dataclass
class QuantizedSample:
    """Codes of one sample (``F`` ints), its block scales and the saturations it caused."""
    codes: np.ndarray
    mant: np.ndarray
    exp: np.ndarray
    saturations: int = 0


@dataclass
class Beat:
    """One beat of the read stream, as the hardware's payload."""
    data: tuple
    beat: int
    first: bool
    last: bool
    index: int
    error: bool
    z0: tuple = None        # valid on the last beat
    label: int = None       # valid on the last beat
    side: dict = None       # {unit: 16-bit value} of the side units on this beat (the
    #                         hardware's ``side`` word holds them there; 0 on error beats)


def record_elements(features, z0, label):
    """The write stream of one record: ``[(data, last)]`` (features, logits, label)."""
    items = [(int(v), 0) for v in features] + [(int(v), 0) for v in z0]
    items.append((int(label), 1))
    return items


class CacheModel:
    """The forward cache, bit for bit. ``CacheModel(params)`` is empty; :meth:`write` feeds
    elements of the write stream, :meth:`read` returns the beats of one request."""

    def __init__(self, params):
        self.params = params
        self.layout = CacheLayout(params)
        self.levels = np.array(LEVELS.get(params.codebook, [0] * 16), dtype=np.int64)
        self.thresholds = np.array(thresholds(params.codebook)[1:], dtype=np.int64) \
            if params.scaled else None
        self.clear()

    # -- state ----------------------------------------------------------------------------

    def clear(self):
        """Forget every record and flag (the ``clear`` strobe)."""
        L = self.layout
        cap = self.params.capacity
        self.code_mem = [0] * (cap * L.code_stride)
        self.meta_mem = [0] * (cap * L.meta_stride)
        self.count = 0
        self.overflow = False
        self.record_error = False
        self.read_error = False
        self.saturations = 0
        self._pending = []      # elements of the record being received
        self._skipping = False  # dropping elements after a missing `last`

    # -- quantizer ------------------------------------------------------------------------

    def narrow(self, data):
        """Input saturation (and clamping for unsigned code books); returns ``(x, changed)``
        with ``changed`` a boolean array marking the saturated or clamped features."""
        p = self.params
        data = np.asarray(data, dtype=np.int64)
        x = saturate(data, p.in_width)
        changed = x != data
        if p.unsigned:
            changed |= x < 0
            x = np.maximum(x, 0)
        return x, changed

    def saturated(self, features):
        """Boolean array: which raw features are saturated or clamped on their way to a code."""
        p = self.params
        x, changed = self.narrow(features)
        if p.codebook == "pass8":
            y = round_half_up_shift(x, p.pass8_frac - p.in_frac)
            changed = changed | (saturate(y, 8) != y)
        return changed

    def scale(self, x):
        """``(M, E)`` of one block of narrowed inputs."""
        a = int(np.max(np.abs(x))) if len(x) else 0
        e = max(0, a.bit_length() - MANT_BITS)
        m = (a + (1 << e) - 1) >> e
        if m == 1 << MANT_BITS:
            m, e = m >> 1, e + 1
        return max(m, 1), e

    def code_block(self, x, m, e):
        """4-bit codes of a block with scale ``(m, e)``."""
        lhs = np.right_shift(np.left_shift(np.asarray(x, dtype=np.int64), LEVEL_FRAC + 1), e)
        return (lhs[:, None] >= self.thresholds[None, :] * m).sum(axis=1)

    def quantize(self, features):
        """Quantize one sample's ``F`` raw 16-bit features."""
        p, L = self.params, self.layout
        x, _ = self.narrow(features)
        sats = int(self.saturated(features).sum())
        if p.scaled:
            codes = np.zeros(L.features, dtype=np.int64)
            mant, exp = [], []
            for start, n in L.blocks:
                m, e = self.scale(x[start:start + n])
                codes[start:start + n] = self.code_block(x[start:start + n], m, e)
                mant.append(m)
                exp.append(e)
            return QuantizedSample(codes, np.array(mant), np.array(exp), sats)
        if p.codebook == "pass8":
            y = round_half_up_shift(x, p.pass8_frac - p.in_frac)
            return QuantizedSample(saturate(y, 8), np.zeros(0), np.zeros(0), sats)
        return QuantizedSample(x.copy(), np.zeros(0), np.zeros(0), sats)

    def dequantize(self, q):
        """Dequantized features (signed ``Q(out_width-out_frac).out_frac`` integers)."""
        p, L = self.params, self.layout
        if p.scaled:
            blk = np.array(L.block_of_feature)
            product = self.levels[q.codes] * q.mant[blk]
            y = round_half_up_shift(product, q.exp[blk] + p.out_frac - p.in_frac - LEVEL_FRAC)
        elif p.codebook == "pass8":
            y = round_half_up_shift(q.codes, p.out_frac - p.pass8_frac)
        else:
            y = round_half_up_shift(q.codes, p.out_frac - p.in_frac)
        return saturate(y, p.out_width)

    # -- packing --------------------------------------------------------------------------

    def pack(self, q, z0, label):
        """``(code_words, meta_words)`` of one record, as stored in memory."""
        L = self.layout
        cb = L.code_bits
        mask = (1 << cb) - 1
        code_words = [0] * L.beats
        for f, c in enumerate(q.codes):
            code_words[f // L.lanes] |= (int(c) & mask) << (cb * (f % L.lanes))
        units = [[0] * L.meta_units for _ in range(L.meta_words)]
        for b, w, umask in L.scale_ops:
            value = int(q.mant[b]) | int(q.exp[b]) << MANT_BITS
            for i in range(L.slots):
                if umask >> i & 1:
                    units[w][i] = value
        side = [int(v) & 0xFFFF for v in z0] + [int(label)]
        for k, (w, i) in enumerate(L.side_pos):
            units[w][i] = side[k]
        meta_words = [sum(u << (UNIT_BITS * i) for i, u in enumerate(word)) for word in units]
        return code_words, meta_words

    # -- write stream ---------------------------------------------------------------------

    def write(self, data, last):
        """One element of the write stream (``data`` signed 16-bit, ``last`` the record end)."""
        p, L = self.params, self.layout
        if self._skipping:
            if last:
                self._skipping = False
                self.record_error = True
            return
        self._pending.append(int(data))
        n = len(self._pending)
        if n <= L.features:              # saturations are counted as features arrive
            self._add_saturations(int(self.saturated([data]).sum()))
        expected = L.features + p.classes + 1
        if n < expected:
            if last:                      # early end: the record is dropped
                self._pending = []
                self.record_error = True
            return
        # The label element.
        record, self._pending = self._pending, []
        q = self.quantize(record[:L.features])
        label = record[-1]
        if not last:
            self._skipping = True
            return
        if not 0 <= label < p.classes:
            self.record_error = True
            return
        if self.count >= p.capacity:
            self.overflow = True
            return
        self.store(q, record[L.features:-1], label)

    def store(self, q, z0, label):
        """Write a checked record into the next slot, as the hardware lays it out in its two
        memories (a meta word at the offset of the beat that reads it), and count it."""
        L = self.layout
        code_words, meta_words = self.pack(q, z0, label)
        base_c, base_m = self.count * L.code_stride, self.count * L.meta_stride
        self.code_mem[base_c:base_c + L.beats] = code_words
        for offset, word in zip(L.meta_offsets, meta_words):
            self.meta_mem[base_m + offset] = word
        self.count += 1

    def _add_saturations(self, n):
        self.saturations = min(SAT_COUNTER_MAX, self.saturations + n)

    def write_record(self, features, z0, label):
        for data, last in record_elements(features, z0, label):
            self.write(data, last)

    # -- read stream ----------------------------------------------------------------------

    def unpack(self, index):
        """``(QuantizedSample, z0, label)`` stored at ``index``."""
        L, p = self.layout, self.params
        cb = L.code_bits
        code_words = self.code_mem[index * L.code_stride:index * L.code_stride + L.beats]
        meta_words = [self.meta_mem[index * L.meta_stride + offset] for offset in L.meta_offsets]
        codes = []
        for f in range(L.features):
            c = code_words[f // L.lanes] >> (cb * (f % L.lanes)) & ((1 << cb) - 1)
            if not p.scaled and c >> (cb - 1):
                c -= 1 << cb
            codes.append(c)
        unit = lambda w, i: meta_words[w] >> (UNIT_BITS * i) & 0xFFFF
        mant, exp = [], []
        for b in range(len(L.blocks)):
            _, w, umask = next(op for op in L.scale_ops if op[0] == b)
            i = (umask & -umask).bit_length() - 1
            mant.append(unit(w, i) & ((1 << MANT_BITS) - 1))
            exp.append(unit(w, i) >> MANT_BITS & ((1 << EXP_BITS) - 1))
        side = [unit(w, i) for w, i in L.side_pos]
        z0 = tuple(v - (1 << 16) if v >> 15 else v for v in side[:p.classes])
        q = QuantizedSample(np.array(codes, dtype=np.int64), np.array(mant, dtype=np.int64),
                            np.array(exp, dtype=np.int64))
        return q, z0, side[p.classes]

    def read(self, index):
        """The beats the read stream emits for a request of ``index``."""
        L, p = self.layout, self.params
        lanes = L.lanes
        error = not 0 <= index < self.count
        if error:
            self.read_error = True
            values = np.zeros(L.beats * lanes, dtype=np.int64)
            z0, label = (0,) * p.classes, 0
        else:
            q, z0, label = self.unpack(index)
            values = np.zeros(L.beats * lanes, dtype=np.int64)
            values[:L.features] = self.dequantize(q)
        beats = []
        for j in range(L.beats):
            last = j == L.beats - 1
            beats.append(Beat(tuple(int(v) for v in values[j * lanes:(j + 1) * lanes]), j,
                              j == 0, last, index, error,
                              tuple(z0) if last else None, label if last else None,
                              self.side_units(j, z0, label)))
        return beats

    def side_units(self, beat, z0, label):
        """The side units the read stream's ``side`` word carries on ``beat``: ``{unit index
        in the word: 16-bit value}`` (z0 in class order, then the label, where
        :attr:`CacheLayout.side_pos` puts them); None on a beat with none."""
        L = self.layout
        values = [int(v) & 0xFFFF for v in z0] + [int(label)]
        units = {u: values[k] for k, (w, u) in enumerate(L.side_pos) if L.words[w].beat == beat}
        return units or None


# -- test vectors ---------------------------------------------------------------------------

def adversarial_samples(params, rng, n_random=2):
    """Samples whose blocks are: all zero, one huge outlier, all equal, the extremes, mixed
    signs, then random."""
    F = params.features
    lo, hi = -(1 << 15), (1 << 15) - 1
    out = [np.zeros(F, dtype=np.int64)]
    outlier = np.abs(rng.normal(0, 40, F)).astype(np.int64)
    outlier[::7] = hi
    out.append(outlier)
    out.append(np.full(F, 300, dtype=np.int64))
    out.append(np.resize(np.array([hi, lo, 0, 1, -1, 255, -256, 32767]), F))
    out.append(rng.integers(lo, hi + 1, F))
    # Exact ties: with a block maximum of 2**MANT_BITS the scale is s = 2**MANT_BITS exactly,
    # so x = T[k] * s / 2**(LEVEL_FRAC + 1) sits on the midpoint between codes k-1 and k (ties
    # go to the upper code) whenever that is an integer.
    if params.scaled:
        s, d = 1 << MANT_BITS, 1 << (LEVEL_FRAC + 1)
        ties = [t * s // d for t in thresholds(params.codebook)[1:] if t * s % d == 0]
        out.append(np.resize(np.array([s] + ties), F))
    for _ in range(n_random):
        out.append(np.round(rng.normal(0, 200, F) * rng.choice([0.1, 1, 10], F)).astype(np.int64))
    return [np.clip(s, lo, hi) for s in out]


# -- float references ----------------------------------------------------------------------

def float_quantize(x, codebook, blocks):
    """Float reference: real-valued levels, exact absmax scale per block, nearest level.
    ``x`` is a float array of one sample, ``blocks`` the layout's ``(start, length)`` list;
    pass-through code books return ``x``."""
    if codebook not in REAL_LEVELS:
        return np.asarray(x, dtype=float).copy()
    levels = np.array(REAL_LEVELS[codebook])
    x = np.asarray(x, dtype=float)
    if levels.min() >= 0:
        x = np.maximum(x, 0)
    out = np.zeros_like(x)
    for start, n in blocks:
        v = x[start:start + n]
        s = np.max(np.abs(v)) or 1.0
        idx = np.abs(v[:, None] / s - levels[None, :]).argmin(axis=1)
        out[start:start + n] = levels[idx] * s
    return out


def snr_db(reference, approx):
    """Signal-to-noise ratio of ``approx`` against ``reference`` in dB."""
    reference = np.asarray(reference, dtype=float)
    noise = np.sum((reference - np.asarray(approx, dtype=float)) ** 2)
    signal = np.sum(reference ** 2)
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)
