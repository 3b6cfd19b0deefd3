"""Bit-exact model of the perturbation engine (:mod:`fieldtune.rtl.perturb`).

This module is the contract: for every source, shape, scaling and reuse mode,
:func:`vectors` returns exactly the beats the gateware streams for ``(params, seed, step)``,
lane by lane, including the zero padding of the last beat. It is written with numpy integer
arithmetic and vectorized over a batch of requests (a leading axis), so statistics over
thousands of steps are cheap.

The pieces mirror the gateware one to one:

* :func:`expander_words` - the seed expander (xoroshiro64 keyed by seed, key and domain);
* :class:`Source` - a bank of xoshiro128++ or LFSR instances loaded from expander words;
* :func:`shape` - raw bits to a shaped value (uniform, static sqrt(3), CLT4, CLT12, inverse
  CDF), rounding half away from zero and saturating symmetrically;
* :func:`pool` - the reuse pool a seed fills, and its row energies;
* :func:`vectors` - one request: load, draw or read the pool, apply signs, adaptive scale.

Formats and formulas: ``docs/numerics.md``, section "Perturbation engine".
"""

from dataclasses import dataclass

import numpy as np

from ...rtl.perturb import numerics as nx
from ...rtl.perturb.params import PerturbParams


__all__ = ["round_half_away", "saturate", "xoshiro_output", "xoshiro_step", "lfsr_leap",
           "xoroshiro64_step",
           "expander_words", "words_to_bits", "Source", "shape", "chain_layout", "pool",
           "Vectors", "vectors", "vector", "effective", "adaptive_scale"]


_U32 = np.uint32


def round_half_away(x, shift):
    """``x / 2**shift`` rounded half away from zero (numpy int64)."""
    x = np.asarray(x, dtype=np.int64)
    if shift == 0:
        return x
    half = np.int64(1 << (shift - 1))
    return np.where(x >= 0, (x + half) >> shift, -((-x + half) >> shift))


def saturate(x, width):
    """Symmetric saturation to ``+-(2**(width-1) - 1)``."""
    limit = nx.saturation_limit(width)
    return np.clip(x, -limit, limit)


# -- generators -----------------------------------------------------------------------------

def _rotl(x, k):
    return (x << _U32(k)) | (x >> _U32(32 - k))


def xoshiro_output(s):
    """xoshiro128++ output of state ``s = (s0, s1, s2, s3)`` (uint32 arrays)."""
    s0, _, _, s3 = s
    return _rotl(s0 + s3, 7) + s0


def xoshiro_step(s):
    """Next xoshiro128++ state."""
    s0, s1, s2, s3 = (a.copy() for a in s)
    t = s1 << _U32(9)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 11)
    return (s0, s1, s2, s3)


def lfsr_leap(state, leap, degree=nx.LFSR_DEGREE, tap=nx.LFSR_TAP):
    """Advance a Fibonacci LFSR (bit ``j`` of ``state`` is sequence bit ``a[t+j]``, recurrence
    ``a[j+degree] = a[j+tap] ^ a[j]``) by ``leap`` bits. Returns ``(output, state)``: the
    ``leap`` oldest bits (bit 0 first) and the new state. uint64 arrays."""
    ext = np.asarray(state, dtype=np.uint64).copy()
    if leap <= degree - tap:
        # Every new bit comes from current state bits: all of them at once.
        fresh = ((ext >> np.uint64(tap)) ^ ext) & np.uint64((1 << leap) - 1)
        ext |= fresh << np.uint64(degree)
    else:
        one = np.uint64(1)
        for i in range(leap):
            bit = ((ext >> np.uint64(tap + i)) ^ (ext >> np.uint64(i))) & one
            ext |= bit << np.uint64(degree + i)
    return ext & np.uint64((1 << leap) - 1), ext >> np.uint64(leap)


def xoroshiro64_step(s0, s1):
    """Next xoroshiro64 state (uint32 arrays)."""
    a, b, c = nx.XOROSHIRO64_ABC
    t = s1 ^ s0
    return _rotl(s0, a) ^ t ^ (t << _U32(b)), _rotl(t, c)


def expander_words(seeds, keys, domain, count):
    """``count`` 32-bit words of the seed expander for each ``(seed, key)``: shape
    ``(batch, count)``.

    The expander is xoroshiro64 started at ``(seed ^ K0 ^ domain, key ^ K1)`` with the "+"
    output ``s0 + s1`` in a register, so its words are its outputs one step late (0 right after
    keying). It warms up for :data:`~fieldtune.rtl.perturb.numerics.EXPANDER_WARMUP` + 2
    steps, each also XOR-ing ``word ^ EXPANDER_FEEDBACK`` (the word of that moment: the output
    of the state before) into the new ``s0``: the feedback makes the state a nonlinear function
    of the key (plain xoroshiro steps are linear, and LFSR sources would expose the linearity
    across consecutive steps). Word ``c`` is then the output of state ``EXPANDER_WARMUP + 1 +
    c``; states past the warm-up step without feedback.
    """
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.uint64)).astype(_U32)
    keys = np.atleast_1d(np.asarray(keys, dtype=np.uint64)).astype(_U32)
    seeds, keys = np.broadcast_arrays(seeds, keys)
    s0 = seeds ^ _U32(nx.EXPANDER_KEY[0] ^ domain)
    s1 = keys ^ _U32(nx.EXPANDER_KEY[1])
    word = np.zeros_like(seeds)
    for _ in range(nx.EXPANDER_WARMUP + 2):
        output = s0 + s1
        s0, s1 = xoroshiro64_step(s0, s1)
        s0 = s0 ^ word ^ _U32(nx.EXPANDER_FEEDBACK)
        word = output
    out = np.empty(seeds.shape + (count,), dtype=_U32)
    for c in range(count):
        out[..., c] = word
        word = s0 + s1
        s0, s1 = xoroshiro64_step(s0, s1)
    return out


def words_to_bits(words, width):
    """The state chain after loading ``words`` (``(batch, C)``): word ``c`` ends at bits
    ``[32*(C-1-c), 32*(C-c))`` (the first word is shifted furthest), truncated to ``width``
    bits. Returns a uint8 bit array ``(batch, width)``, bit 0 first."""
    batch, count = words.shape
    bits = ((words[:, ::-1, None] >> np.arange(32, dtype=_U32)) & 1).astype(np.uint8)
    return bits.reshape(batch, count * 32)[:, :width]


def _pack(bits):
    """Little-endian bit array ``(..., n)`` (n <= 64) to uint64."""
    weights = np.uint64(1) << np.arange(bits.shape[-1], dtype=np.uint64)
    return (bits.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)


def _unpack(values, n):
    return ((values[..., None] >> np.arange(n, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)


class Source:
    """A bank of generator instances giving ``layout.bits`` bits per step, for ``count``
    sources side by side (e.g. one per draw lane) and a batch of requests.

    Its state occupies ``count * layout.state_bits`` chain bits: source 0 first, inside a
    source instance 0 first; a xoshiro128++ instance is ``s0..s3`` (32 bits each, ``s0``
    lowest), an LFSR instance its 31 sequence bits; an LFSR instance loaded with all zeros (a
    fixed point) gets state 1 instead.
    """

    def __init__(self, layout, count, chain_bits):
        self.layout = layout
        self.count = count
        n = layout.instance_state
        per = chain_bits.reshape(chain_bits.shape[0], count, layout.instances, n)
        if layout.kind == "xoshiro128pp":
            self.state = tuple(_pack(per[..., 32 * i:32 * (i + 1)]).astype(_U32)
                               for i in range(4))
        else:
            state = _pack(per)
            self.state = np.where(state == 0, np.uint64(1), state)

    def step(self):
        """Advance once; returns the bits ``(batch, count, layout.bits)``."""
        lay = self.layout
        if lay.kind == "xoshiro128pp":
            out = _unpack(xoshiro_output(self.state).astype(np.uint64), 32)
            self.state = xoshiro_step(self.state)
        else:
            words, self.state = lfsr_leap(self.state, lay.leap)
            out = _unpack(words, lay.leap)
        batch = out.shape[0]
        return out.reshape(batch, self.count, lay.instances * lay.leap)[..., :lay.bits]


# -- shapes ---------------------------------------------------------------------------------

def _field(bits, index, width, signed=True):
    value = _pack(bits[..., index * width:(index + 1) * width]).astype(np.int64)
    if signed:
        value = np.where(value >= (1 << (width - 1)), value - (1 << width), value)
    return value


def _raw(bits, index, width):
    """The odd raw uniform ``r = 2m + 1`` of field ``index``."""
    return 2 * _field(bits, index, width) + 1


def _icdf(params, bits):
    u, m, fb = nx.ICDF_UNIFORM_BITS, nx.ICDF_SEGMENT_BITS, nx.ICDF_INTERP_BITS
    table = np.array(nx.icdf_table(params.frac_bits), dtype=np.int64)
    t = 2 * _field(bits, 0, u, signed=False) + 1                  # u + 1 bits, odd
    negative = bits[..., u].astype(bool)
    e = (u + 1) - np.frexp(t.astype(np.float64))[1]                 # leading zeros
    n = t << e
    seg = (n >> (u - m)) & ((1 << m) - 1)
    rest = n & ((1 << (u - m)) - 1)
    frac = rest >> (u - m - fb)
    v0 = table[e, seg]
    slope = table[e, seg + 1] - v0
    x = v0 + round_half_away(slope * frac, fb)
    x = saturate(round_half_away(x, nx.ICDF_GUARD_BITS), params.width)
    return np.where(negative, -x, x)


def shape(params, bits):
    """Shaped, scaled codes of draws with raw ``bits`` (``(..., draw_bits)``), int64.

    Uniform ``none``: ``round(r, u - f)`` with ``u = max(f, 1)`` (odd codes in (-1, 1));
    ``static``: ``round(r * 111, u + 6 - f)``; ``adaptive``: the same with ``G =
    ADAPT_GUARD_BITS`` more fraction bits, ``round(r * 111, u + 6 - f - G)`` (the correction
    rounds to the output format later); CLT4: ``sat(round(sum(r_j) * 111, u + 7 - f))`` (sum of
    four, times sqrt(3)/2); CLT12: ``sat(round(sum(r_j), u + 1 - f))`` (sum of twelve, halved);
    inverse CDF: see :func:`~fieldtune.rtl.perturb.numerics.icdf_table`. ``round`` is
    :func:`round_half_away`.
    """
    f = params.frac_bits
    u = nx.summand_bits(params)
    if params.shape == "uniform":
        r = _raw(bits, 0, u)
        if params.scaling == "none":
            return round_half_away(r, u - f)
        guard = nx.ADAPT_GUARD_BITS if params.scaling == "adaptive" else 0
        return round_half_away(r * nx.SQRT3_MUL, u + nx.SQRT3_SHIFT - f - guard)
    if params.shape == "clt4":
        total = sum(_raw(bits, j, u) for j in range(4))
        return saturate(round_half_away(total * nx.SQRT3_MUL, u + nx.SQRT3_SHIFT + 1 - f),
                        params.width)
    if params.shape == "clt12":
        total = sum(_raw(bits, j, u) for j in range(12))
        return saturate(round_half_away(total, u + 1 - f), params.width)
    return _icdf(params, bits)


# -- the engine -----------------------------------------------------------------------------

def chain_layout(params):
    """Members of the per-step state chain, in chain order: ``[(name, bits)]``.

    ``draws`` (one source per draw lane; not in pool mode nor when
    :func:`~fieldtune.rtl.perturb.numerics.draws_from_expander`), ``signs`` (a source of one bit per
    lane; reuse modes with more lanes than the expander's word has bits, see
    :func:`~fieldtune.rtl.perturb.numerics.signs_from_expander`), ``offsets`` (pool mode:
    the row offset R and the row stride s, ``log2(pool_rows)`` bits each).
    """
    members = []
    if params.reuse != "pool" and not nx.draws_from_expander(params):
        lay = nx.source_layout(params.source, nx.draw_bits(params))
        members.append(("draws", params.draws * lay.state_bits))
    if params.signed_reuse and not nx.signs_from_expander(params):
        members.append(("signs", nx.source_layout(params.source, params.lanes).state_bits))
    if params.reuse == "pool":
        members.append(("offsets", 2 * (params.pool_rows.bit_length() - 1)))
    return members


def _load(params, seeds, keys, domain, members):
    total = sum(bits for _, bits in members)
    count = -(-total // nx.WORD)
    bits = words_to_bits(expander_words(seeds, keys, domain, count), total)
    out, offset = {}, 0
    for name, width in members:
        out[name] = bits[:, offset:offset + width]
        offset += width
    return out


def pool(params, seed):
    """The pool seed ``seed`` fills: ``(values, energy, partial)``.

    ``values`` is ``(pool_rows, lanes)``: the magnitude of value ``j`` of the fill source (the
    seed expander itself when :func:`~fieldtune.rtl.perturb.numerics.fill_from_expander`)
    goes to row ``j // lanes``, lane ``j % lanes`` (the gateware stores each magnitude
    complemented, :func:`~fieldtune.rtl.perturb.numerics.magnitude_width` bits; the lanes'
    fresh signs make ``s * |v|`` distributed as ``s * v``). With
    adaptive scaling the values are guarded (see :func:`shape`) and ``energy[row]`` is the
    sum of squares of the row's values rounded to output codes, ``partial[row]`` the sum over
    the lanes below :attr:`~PerturbParams.last_lanes`.
    """
    if nx.fill_from_expander(params):
        n = nx.draw_bits(params)
        words = expander_words([seed], [0], nx.DOMAIN_POOL, params.pool_size)[0]
        bits = _unpack((words >> _U32(nx.WORD - n)).astype(np.uint64), n)
    else:
        lay = nx.source_layout(params.source, nx.draw_bits(params))
        chain = _load(params, [seed], [0], nx.DOMAIN_POOL, [("fill", lay.state_bits)])
        source = Source(lay, 1, chain["fill"])
        bits = np.stack([source.step()[0, 0] for _ in range(params.pool_size)])
    values = np.abs(shape(params, bits)).reshape(params.pool_rows, params.lanes)
    squares = _energy_codes(params, values) ** 2
    return values, squares.sum(axis=1), squares[:, :params.last_lanes].sum(axis=1)


def _energy_codes(params, values):
    """The codes adaptive scaling measures: guarded values rounded to the output format."""
    return round_half_away(values, nx.ADAPT_GUARD_BITS) if params.adaptive else values


@dataclass
class Vectors:
    """Result of :func:`vectors` for a batch of requests."""
    #: ``(batch, beats, lanes)`` int64 codes, exactly what the z stream carries.
    beats: np.ndarray
    #: Adaptive scaling only: energy ``S`` of the unscaled vector, correction ``d`` and
    #: whether it was clamped (``None`` otherwise).
    energy: np.ndarray | None = None
    correction: np.ndarray | None = None
    clamped: np.ndarray | None = None


def adaptive_scale(params, energy):
    """Correction ``d`` and clamp flag for vectors of energy ``S`` (see
    :class:`~fieldtune.rtl.perturb.numerics.AdaptiveConstants`)."""
    k = nx.AdaptiveConstants.of(params)
    q = np.clip((k.target - np.asarray(energy, dtype=np.int64)) >> k.pre_shift,
                -k.q_limit, k.q_limit)
    total = ((q * k.linear) << (k.square_shift - k.shift)) + q * q * k.quadratic
    raw = round_half_away(total, k.square_shift)
    return np.clip(raw, -k.d_max, k.d_max), np.abs(raw) > k.d_max


def vectors(params, seed, steps, *, pool_cache=None):
    """The z beats for seed ``seed`` and every step in ``steps``: a :class:`Vectors`.

    ``pool_cache`` (pool mode) may hold the result of :func:`pool` for ``seed``.
    """
    if not isinstance(params, PerturbParams):
        raise TypeError(f"params must be a PerturbParams, not {type(params).__name__}")
    steps = np.atleast_1d(np.asarray(steps, dtype=np.int64))
    batch, lanes, beats = len(steps), params.lanes, params.beats
    chain = _load(params, np.full(batch, seed), steps, nx.DOMAIN_STEP, chain_layout(params))

    values = np.empty((batch, beats, lanes), dtype=np.int64)
    if params.reuse == "pool":
        pool_values, energy_full, energy_part = pool_cache or pool(params, seed)
        rbits = params.pool_rows.bit_length() - 1
        offsets = _pack(chain["offsets"]).astype(np.int64)
        base = offsets & (params.pool_rows - 1)
        stride = ((offsets >> rbits) & (params.pool_rows - 1)) | 1
        rows = (base[:, None] + np.arange(beats)[None, :] * stride[:, None]) % params.pool_rows
        values[:] = pool_values[rows]
    else:
        lane_draw = np.arange(lanes) % params.draws
        for b, bits in enumerate(_draws(params, seed, steps, chain)):
            if b % params.hold == 0:
                drawn = shape(params, bits)
            values[:, b, :] = drawn[:, lane_draw]

    valid = np.ones((beats, lanes), dtype=bool)
    valid[-1, params.last_lanes:] = False
    result = Vectors(beats=values)
    if params.adaptive:
        energy = (_energy_codes(params, values) ** 2 * valid).sum(axis=(1, 2))
        d, clamped = adaptive_scale(params, energy)
        result.energy, result.correction, result.clamped = energy, d, clamped

    if params.signed_reuse:
        for b, negate in enumerate(_signs(params, seed, steps, chain)):
            values[:, b, :] = np.where(negate, -values[:, b, :], values[:, b, :])
    if params.adaptive:
        factor = (1 << params.adapt_shift) + result.correction[:, None, None]
        values[:] = saturate(round_half_away(values * factor,
                                             params.adapt_shift + nx.ADAPT_GUARD_BITS),
                             params.width)
    values[:, ~valid] = 0
    return result


def _draws(params, seed, steps, chain):
    """The raw bits of each beat's draws, ``(batch, draws, draw_bits)`` arrays in beat order
    (a hold's later beats reuse its first beat's): from the seed expander's words after the
    chain (:func:`~fieldtune.rtl.perturb.numerics.draw_field`) or from draw sources loaded
    through the chain."""
    if nx.draws_from_expander(params):
        count = -(-sum(bits for _, bits in chain_layout(params)) // nx.WORD)
        words = expander_words(np.full(len(steps), seed), steps, nx.DOMAIN_STEP,
                               count + params.beats)
        n = nx.draw_bits(params)
        mask = _U32((1 << n) - 1)
        for b in range(params.beats):
            if b % params.hold:
                yield None
                continue
            word = words[:, count + b]
            fields = [(word >> _U32(nx.draw_field(params, g)[0])) & mask
                      for g in range(params.draws)]
            yield np.stack([_unpack(f.astype(np.uint64), n) for f in fields], axis=1)
    else:
        lay = nx.source_layout(params.source, nx.draw_bits(params))
        draws = Source(lay, params.draws, chain["draws"])
        for b in range(params.beats):
            yield draws.step() if b % params.hold == 0 else None


def _signs(params, seed, steps, chain):
    """The negate flags of each beat, ``(batch, lanes)`` bool arrays in beat order: from the
    seed expander's words after the chain (the top ``lanes`` bits, lane 0 lowest) or from a
    sign source loaded through the chain."""
    lanes = params.lanes
    if nx.signs_from_expander(params):
        count = -(-sum(bits for _, bits in chain_layout(params)) // nx.WORD)
        words = expander_words(np.full(len(steps), seed), steps, nx.DOMAIN_STEP,
                               count + params.beats)
        for b in range(params.beats):
            top = (words[:, count + b] >> _U32(nx.WORD - lanes)).astype(np.uint64)
            yield _unpack(top, lanes).astype(bool)
    else:
        signs = Source(nx.source_layout(params.source, lanes), 1, chain["signs"])
        for _ in range(params.beats):
            yield signs.step()[:, 0, :].astype(bool)


def vector(params, seed, step):
    """The beats ``(beats, lanes)`` of one request."""
    return vectors(params, seed, [step]).beats[0]


def effective(params, beats):
    """Perturbation vectors of ``dimension`` elements (beats flattened, padding dropped), as
    real values (codes / 2**frac_bits)."""
    flat = np.asarray(beats).reshape(*np.shape(beats)[:-2], -1)[..., :params.dimension]
    return flat / float(1 << params.frac_bits)
