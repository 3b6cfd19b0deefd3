"""Bit-exact model of :class:`fieldtune.rtl.mac.AdapterMACArray`.

Two layers with one semantics:

- vectorized functions on the weight memory (``mem``: ``(words, lanes)`` int64 array, see
  :mod:`fieldtune.rtl.mac.layout`) used by the training loops in :mod:`.train`:
  :func:`matvec`, :func:`update`, :func:`init_region`, :func:`colacc`;
- :class:`MacModel`, an interpreter of micro-ops (:mod:`fieldtune.rtl.mac.ops`) over the
  array's state (weights, coefficient memory, local buffer, streams), which the gateware
  tests compare against beat for beat.

Formats (``MacParams`` defaults): features and results signed ``Q8.8``; weights ``Q4.12``;
perturbations ``Q3.5``; coefficients 16-bit. Rounding is half up everywhere, every narrowing
saturates (and sets the sticky ``saturated`` flag).
"""

from collections import deque

import numpy as np

from ...rtl.mac.params import MacParams
from ...rtl.mac.layout import Layout
from ...rtl.mac.ops import Op, Operand, Perturb, Dest, CoefSource
from .fixed import round_shift, scale_pow2, saturate


__all__ = ["update_shift", "colacc_shift", "coef_shift", "z_operand_shift", "perturbed",
           "region_matrix", "set_region_matrix", "stored_coefficients", "max_zshift", "zshift_for",
           "matvec", "update", "init_region", "colacc", "pad_mask", "MacModel", "MacError"]


class MacError(ValueError):
    """An operation the array would reject (it raises its ``error`` flag and skips it)."""


def update_shift(mac: MacParams):
    """Fixed right shift of update products ``a * b`` (coefficient times lane operand)."""
    return mac.coef_width + 1


def colacc_shift(mac: MacParams):
    """Right shift of ``v = B^T dz`` sums: coefficients are read as ``Q1.(coef_width-1)``."""
    return mac.coef_width - 1


def z_operand_shift(mac: MacParams):
    """Perturbations enter the multiplier's lane operand left-aligned (``z << this``), so the
    narrow ``z`` keeps the update product's precision."""
    return max(mac.feature_width, mac.perturb_width) - mac.perturb_width


def coef_shift(mac: MacParams, coef_frac, operand_frac, lr_shift):
    """The ``cshift`` that makes an UPDATE apply ``W <- W - 2**-lr_shift * a * b`` for a
    coefficient with ``coef_frac`` fraction bits and a lane operand with ``operand_frac``."""
    return update_shift(mac) + mac.weight_frac - coef_frac - operand_frac - lr_shift


def max_zshift(mac: MacParams):
    """Largest ``zshift``: ``z << zshift`` aligns ``z`` with the weights' LSB at 0, so
    ``epsilon = 2**(zshift - weight_frac + perturb_frac) <= 1``."""
    return mac.weight_frac - mac.perturb_frac


def zshift_for(mac: MacParams, eps_shift):
    """``zshift`` for ``epsilon = 2**-eps_shift``; :class:`MacError` when not representable."""
    k = mac.weight_frac - mac.perturb_frac - eps_shift
    if not 0 <= k <= max_zshift(mac):
        raise MacError(f"eps_shift must be from 0 to {max_zshift(mac)} with {mac.weight_frac} "
                       f"weight and {mac.perturb_frac} perturbation fraction bits, not {eps_shift}")
    return k


def pad_mask(mac: MacParams, region):
    """``(words, lanes)`` bool, True for weights that exist (False for low-rank padding)."""
    lay = Layout(mac)
    reg = lay.regions[region]
    mask = np.ones((reg.words, mac.lanes), dtype=bool)
    if reg.padded_lanes:
        mask[(reg.beats - 1) * reg.rows:, mac.lanes - reg.padded_lanes:] = False
    return mask


def _region_words(mac, region):
    reg = Layout(mac).regions[region]
    return reg, slice(reg.base, reg.base + reg.words)


def perturbed(mac: MacParams, words, z, sign, zshift, flags=None, mask=None):
    """``sat(W + sign * (z << zshift))`` for weight words and perturbation beats."""
    w = np.asarray(words, dtype=np.int64)
    if sign == 0:
        return w.copy()
    out = saturate(w + sign * (np.asarray(z, dtype=np.int64) << zshift), mac.weight_width,
                   flags if mask is None else _Masked(flags, mask))
    return out if mask is None else np.where(mask, out, 0)


class _Masked(dict):
    # Saturation on padding lanes is not reported (the gateware forces those weights to zero
    # before its saturation check).
    def __init__(self, flags, mask):
        super().__init__()
        self.flags, self.mask = flags, mask

    def __setitem__(self, key, value):
        if self.flags is not None:
            self.flags[key] = value


def region_matrix(mac: MacParams, words, region):
    """The region's matrix from its words: ``(outputs, beats * lanes)``, zero outside each
    group's beats (low-rank A is block diagonal over the taps)."""
    reg = Layout(mac).regions[region]
    L = mac.lanes
    w = np.asarray(words, dtype=np.int64).reshape(reg.beats, reg.rows, L)
    m = np.zeros((reg.outputs, reg.beats * L), dtype=np.int64)
    for g, (first, n) in enumerate(reg.groups):
        block = w[first:first + n]                       # (n, rows, L)
        m[g * reg.rows:(g + 1) * reg.rows, first * L:(first + n) * L] = \
            block.transpose(1, 0, 2).reshape(reg.rows, n * L)
    return m


def set_region_matrix(mac: MacParams, mem, region, matrix):
    """Inverse of :func:`region_matrix` (entries outside the groups are ignored)."""
    reg, sl = _region_words(mac, region)
    L = mac.lanes
    m = np.asarray(matrix, dtype=np.int64)
    w = np.zeros((reg.beats, reg.rows, L), dtype=np.int64)
    for g, (first, n) in enumerate(reg.groups):
        block = m[g * reg.rows:(g + 1) * reg.rows, first * L:(first + n) * L]
        w[first:first + n] = block.reshape(reg.rows, n, L).transpose(1, 0, 2)
    mem[sl] = w.reshape(reg.words, L)
    return mem


def matvec(mac: MacParams, mem, region, x, *, z=None, sign=0, zshift=0, flags=None):
    """MATVEC on ``n`` vectors at once: ``x`` (n, beats*lanes) -> (n, outputs), each output
    ``sat(round(sum W'x / 2**weight_frac))`` in the feature format.
    ``z`` (region words, lanes) perturbs the weights by ``sign * (z << zshift)``."""
    reg, sl = _region_words(mac, region)
    words = mem[sl]
    if sign:
        words = perturbed(mac, words, z, sign, zshift, flags, pad_mask(mac, region))
    m = region_matrix(mac, words, region)
    x = np.atleast_2d(np.asarray(x, dtype=np.int64))
    acc = x @ m.T
    return saturate(round_shift(acc, mac.weight_frac), mac.feature_width, flags)


def _coefficients(mac, coefs, cshift, flags):
    return saturate(scale_pow2(coefs, cshift), mac.coef_width, flags)


def update(mac: MacParams, mem, region, coefs, b, cshift, *, flags=None):
    """UPDATE in place: ``W <- sat(W - round(a * b / 2**update_shift))`` with
    ``a = sat(round(coef * 2**cshift))``.

    ``coefs``: one per output row (``outputs``,) or a scalar for every word. ``b``: a vector of
    ``beats * lanes`` (each beat serves the rows of a beat) or ``(words, lanes)`` (one beat per
    word, the perturbation stream)."""
    reg, sl = _region_words(mac, region)
    L = mac.lanes
    a = _coefficients(mac, np.asarray(coefs, dtype=np.int64), cshift, flags)
    b = np.asarray(b, dtype=np.int64)
    k = np.repeat(np.arange(reg.beats), reg.rows)                     # beat of each word
    r = np.tile(np.arange(reg.rows), reg.beats)                        # row of each word
    g = np.array([reg.group_of_beat(kk) for kk in range(reg.beats)])[k]
    if b.ndim == 1:
        b = b.reshape(reg.beats, L)[k]
    if a.ndim == 0:
        a_w = np.full(reg.words, a)
    else:
        a_w = a[g * reg.rows + r]
    delta = round_shift(a_w[:, None] * b, update_shift(mac))
    mask = pad_mask(mac, region)
    mem[sl] = saturate(np.where(mask, mem[sl] - delta, 0), mac.weight_width, flags)
    return mem


def init_region(mac: MacParams, mem, region, z=None, zshift=0, *, flags=None):
    """INIT in place: ``W <- sat(z << zshift)`` (or zero without ``z``)."""
    reg, sl = _region_words(mac, region)
    if z is None:
        mem[sl] = 0
    else:
        mem[sl] = perturbed(mac, np.zeros((reg.words, mac.lanes), dtype=np.int64), z, 1,
                            zshift, flags, pad_mask(mac, region))
    return mem


def colacc(mac: MacParams, mem, dz, cshift=0, *, flags=None):
    """COLACC: ``v = sat(round(B^T dz / 2**(colacc_shift - cshift)))`` (rank*taps,) in the
    coefficient format, from region B and stored coefficients ``dz`` (classes,)."""
    lay = Layout(mac)
    b = region_matrix(mac, mem[_region_words(mac, 1)[1]], 1)          # (C, kb*L)
    acc = np.asarray(dz, dtype=np.int64) @ b
    return saturate(round_shift(acc, colacc_shift(mac) - cshift), mac.coef_width,
                    flags)[:lay.inner]


def stored_coefficients(mac: MacParams, dz, cshift, *, flags=None):
    """What the coefficient memory holds for ``dz`` written after a BATCH with ``cshift``:
    ``sat(round(dz * 2**cshift))``."""
    return saturate(scale_pow2(np.asarray(dz, dtype=np.int64), cshift), mac.coef_width, flags)


class MacModel:
    """Interpreter of micro-ops with the array's state.

    Streams are queues: ``x`` of ``(beat, last)`` pairs, ``z`` of beats, ``load`` of beats;
    :meth:`push_coef` plays the ``coef`` stream. :meth:`run` executes one op and returns what
    it put on ``out`` (scalars) or ``wdump`` (beats)."""

    def __init__(self, mac: MacParams):
        self.mac = mac
        self.layout = Layout(mac)
        self.mem = np.zeros((self.layout.words, mac.lanes), dtype=np.int64)
        self.coef = np.zeros(self.layout.coef_depth, dtype=np.int64)
        self.local = np.zeros(max(self.layout.local_beats, 1) * mac.lanes, dtype=np.int64)
        self.coef_wp = 0
        self.dz_scale = 0
        self.flags = {"saturated": False, "error": False, "framing": False}
        self.x, self.z, self.load = deque(), deque(), deque()

    def push_coef(self, values):
        for v in values:
            if self.coef_wp < self.layout.dz_depth:
                self.coef[self.coef_wp] = stored_coefficients(self.mac, v, self.dz_scale,
                                                              flags=self.flags)
                self.coef_wp += 1
            else:
                self.flags["error"] = True

    def _take_x(self, reg):
        beats = []
        for k in range(reg.beats):
            beat, last = self.x.popleft()
            if bool(last) != (k == reg.beats - 1):
                self.flags["framing"] = True
            beats.append(np.asarray(beat, dtype=np.int64))
        return np.concatenate(beats)

    def _take_z(self, reg):
        return np.array([self.z.popleft() for _ in range(reg.words)], dtype=np.int64)

    def _operand(self, op, reg):
        operand = op["operand"]
        if operand == Operand.STREAM:
            return self._take_x(reg)
        if operand == Operand.LOCAL:
            return self.local[:reg.beats * self.mac.lanes].copy()
        if operand == Operand.Z:
            return self._take_z(reg)
        return np.zeros(reg.beats * self.mac.lanes, dtype=np.int64)

    def check(self, op):
        """Raise :class:`MacError` for an op the array rejects."""
        mac, lay = self.mac, self.layout
        kind = op["op"]
        region = int(op["region"].value)
        if region >= len(lay.regions):
            raise MacError("region B exists only with low-rank adapters")
        reg = lay.regions[region]
        if op["operand"] == Operand.LOCAL and not lay.inner:
            raise MacError("the local buffer exists only with low-rank adapters")
        if op["operand"] == Operand.LOCAL and reg.beats > lay.local_beats:
            raise MacError("the local buffer holds fewer beats than the region reads")
        if kind == Op.MATVEC and op["dest"] == Dest.LOCAL and (not lay.inner
                                                               or reg.outputs > lay.inner):
            raise MacError("local results must fit the local buffer")
        if kind == Op.MATVEC and op["operand"] == Operand.Z:
            raise MacError("MATVEC multiplies by features or the local buffer")
        if kind == Op.COLACC and (region != 1):
            raise MacError("COLACC reads region B")
        n = reg.outputs if kind in (Op.UPDATE, Op.COLACC) else 0
        if (kind in (Op.UPDATE, Op.COLACC) and op["coef_source"] == CoefSource.MEMORY
                and op["coef_base"] + n > lay.coef_depth):
            raise MacError("coefficients beyond the coefficient memory")
        if kind == Op.COLACC and op["v_base"] + lay.inner > lay.coef_depth:
            raise MacError("v beyond the coefficient memory")
        if (kind == Op.UPDATE and op["coef_source"] == CoefSource.MEMORY
                and op["cshift"] != 0):
            raise MacError("coefficients from memory are stored scaled: cshift must be 0")
        if kind == Op.COLACC and op["cshift"] > mac.coef_width - 1:
            raise MacError("COLACC shifts right by coef_width - 1 - cshift >= 0")
        if op["zshift"] > max_zshift(mac):
            raise MacError("zshift beyond weight_frac - perturb_frac")

    def run(self, op):
        try:
            self.check(op)
        except MacError:
            self.flags["error"] = True
            return []
        mac, lay = self.mac, self.layout
        kind = op["op"]
        region = int(op["region"].value)
        reg = lay.regions[region]
        sl = slice(reg.base, reg.base + reg.words)
        sign = {Perturb.NONE: 0, Perturb.PLUS: 1, Perturb.MINUS: -1}[op["perturb"]]
        if kind == Op.BATCH:
            self.coef_wp = 0
            self.dz_scale = op["cshift"]
            return []
        if kind == Op.MATVEC:
            z = self._take_z(reg) if sign else None
            x = self._operand(op, reg)
            y = matvec(mac, self.mem, region, x, z=z, sign=sign, zshift=op["zshift"],
                       flags=self.flags)[0]
            if op["dest"] == Dest.LOCAL:
                self.local[:len(y)] = y
                return []
            return [int(v) for v in y]
        if kind == Op.UPDATE:
            b = self._operand(op, reg)
            if op["operand"] == Operand.Z:
                b = b.reshape(reg.words, mac.lanes) << z_operand_shift(mac)
            if op["coef_source"] == CoefSource.IMM:
                coefs = np.int64(op["imm"])
            else:
                coefs = self.coef[op["coef_base"]:op["coef_base"] + reg.outputs]
            update(mac, self.mem, region, coefs, b, op["cshift"], flags=self.flags)
            return []
        if kind == Op.INIT:
            z = self._take_z(reg) if op["operand"] == Operand.Z else None
            init_region(mac, self.mem, region, z, op["zshift"], flags=self.flags)
            return []
        if kind == Op.COLACC:
            dz = self.coef[op["coef_base"]:op["coef_base"] + reg.outputs]
            v = colacc(mac, self.mem, dz, op["cshift"], flags=self.flags)
            self.coef[op["v_base"]:op["v_base"] + len(v)] = v
            return []
        if kind == Op.LOAD:
            for i in range(reg.words):
                self.mem[reg.base + i] = np.asarray(self.load.popleft(), dtype=np.int64)
            self.mem[sl] = np.where(pad_mask(mac, region), self.mem[sl], 0)
            return []
        if kind == Op.DUMP:
            return [self.mem[reg.base + i].copy() for i in range(reg.words)]
        raise MacError(f"unknown op {kind}")
