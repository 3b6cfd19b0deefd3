"""The numeric contract of the perturbation engine: constants, formats and tables.

Everything here is shared by the gateware (:mod:`fieldtune.rtl.perturb`) and the golden model
(:mod:`fieldtune.sim.golden.perturb`); ``docs/numerics.md`` ("Perturbation engine") explains
the formulas. A perturbation is a signed ``Q(width-frac_bits).frac_bits`` integer code ``z``
(value ``z / 2**frac_bits``); every narrowing rounds *half away from zero* (see
:func:`round_half_away`) and saturates symmetrically to ``+-(2**(width-1) - 1)``.

Raw uniforms are odd integers: ``u`` random bits ``m`` read as a signed integer give
``r = 2*m + 1`` in ``[-(2**u - 1), 2**u - 1]``, the value ``r / 2**u`` in ``(-1, 1)``, exactly
symmetric about zero (so rounding half away from zero keeps every distribution symmetric).
"""

from dataclasses import dataclass
from statistics import NormalDist


__all__ = [
    "WORD", "SQRT3_MUL", "SQRT3_SHIFT", "EXPANDER_KEY", "EXPANDER_FEEDBACK", "EXPANDER_WARMUP",
    "XOROSHIRO64_ABC", "DOMAIN_STEP",
    "DOMAIN_POOL", "XOSHIRO_STATE", "XOSHIRO_OUT", "LFSR_DEGREE", "LFSR_TAP", "LFSR_LEAP_MAX",
    "ICDF_UNIFORM_BITS", "ICDF_SEGMENT_BITS", "ICDF_INTERP_BITS", "ICDF_GUARD_BITS",
    "ADAPT_GUARD_BITS", "signs_from_expander", "fill_from_expander", "draws_from_expander",
    "draw_field",
    "round_half_away", "saturation_limit", "value_width", "summand_bits",
    "summands", "draw_bits", "magnitude_width", "SourceLayout", "source_layout", "icdf_table",
    "AdaptiveConstants",
]


#: Width of one seed-expander output word (the chain that loads generator states moves in
#: words of this many bits).
WORD = 32

#: sqrt(3) ~= SQRT3_MUL / 2**SQRT3_SHIFT = 1.734375 (+0.14 %): the static PeZO scale and the
#: CLT4 normalization. 111 = 128 - 16 - 1, so a multiply is two subtractions.
SQRT3_MUL = 111
SQRT3_SHIFT = 6

#: The seed expander is a xoroshiro64 generator (64 state bits; Blackman and Vigna's 32-bit
#: xoroshiro, rotations 26 / 9 / 13) with the "+" output ``s0 + s1``, keyed ``(seed ^
#: EXPANDER_KEY[0] ^ domain, key ^ EXPANDER_KEY[1])`` and warmed up for EXPANDER_WARMUP + 2
#: steps that also XOR ``previous output ^ EXPANDER_FEEDBACK`` into ``s0`` (nonlinear in the key
#: through the adder's carries; with plain, linear steps, LFSR lanes loaded from consecutive
#: steps showed element variances off by 6 % in 20,000 steps; the constant lifts the one key
#: whose state is zero). Eight steps diffuse a one-bit change of the key over the state.
EXPANDER_KEY = (0x9E3779B9, 0x7F4A7C15)
EXPANDER_FEEDBACK = 0x6A09E667
EXPANDER_WARMUP = 8
#: xoroshiro64: rotation ``a``, shift ``b``, rotation ``c``.
XOROSHIRO64_ABC = (26, 9, 13)
#: Key domains: per-step states (key = step) and the pool fill (key = 0).
DOMAIN_STEP = 0
DOMAIN_POOL = 1

#: xoshiro128++: 128 state bits, 32 output bits per step.
XOSHIRO_STATE = 128
XOSHIRO_OUT = 32

#: The LFSR: Fibonacci, characteristic polynomial x**31 + x**3 + 1 (primitive; 2**31 - 1 is a
#: Mersenne prime, so every irreducible polynomial of degree 31 is primitive and the period is
#: 2**31 - 1). It leaps up to LFSR_LEAP_MAX bits per step, so each new bit is a two-input XOR
#: of current state bits.
LFSR_DEGREE = 31
LFSR_TAP = 3
LFSR_LEAP_MAX = LFSR_DEGREE - LFSR_TAP

#: Adaptive scaling keeps the static-scaled values with this many extra fraction bits until the
#: per-step correction is applied, so the correction is not lost in the final rounding.
ADAPT_GUARD_BITS = 4

#: Inverse-CDF Gaussian: a 15-bit uniform ``t`` gives the two-sided tail probability
#: ``p = (2t + 1) / 2**16`` (the largest magnitude is Phi^-1(1 - 2**-17) = 4.32 sigma); octave
#: ``e`` = leading zeros of ``2t + 1``, 2**ICDF_SEGMENT_BITS linear segments per octave,
#: ICDF_INTERP_BITS interpolation bits, table values with ICDF_GUARD_BITS more fraction bits
#: than the output. Largest error of the piecewise-linear curve: 0.0055 sigma.
ICDF_UNIFORM_BITS = 15
ICDF_SEGMENT_BITS = 2
ICDF_INTERP_BITS = 6
ICDF_GUARD_BITS = 4


def round_half_away(x, shift):
    """``x / 2**shift`` rounded half away from zero (Python integers)."""
    if shift == 0:
        return x
    half = 1 << (shift - 1)
    return (x + half) >> shift if x >= 0 else -((-x + half) >> shift)


def saturation_limit(width):
    """Largest magnitude of a ``width``-bit perturbation (symmetric saturation)."""
    return (1 << (width - 1)) - 1


def summand_bits(params):
    """Random bits ``u`` of each raw uniform the shape consumes (see module documentation)."""
    f = params.frac_bits
    if params.shape == "uniform":
        # Static and adaptive scaling multiply by sqrt(3) and round: 4 extra bits put about
        # 4.6 raw values into each output code, so the rounded distribution is flat.
        return max(f, 1) if params.scaling == "none" else f + 4
    if params.shape == "clt4":
        return f + 2
    if params.shape == "clt12":
        return max(f, 1)
    return ICDF_UNIFORM_BITS


def summands(params):
    """Raw uniforms per draw."""
    return {"uniform": 1, "clt4": 4, "clt12": 12, "icdf": 1}[params.shape]


def draw_bits(params):
    """Random bits one draw (one shaped value) consumes."""
    if params.shape == "icdf":
        return ICDF_UNIFORM_BITS + 1          # magnitude uniform and a sign
    return summands(params) * summand_bits(params)


def signs_from_expander(params):
    """Whether the seed expander itself gives the per-weight signs (reuse modes, at most
    :data:`WORD` lanes): after loading the state chain it steps once per beat and beat ``b``
    takes the top ``lanes`` bits of its word ``chain_words + b`` (no sign source of its own)."""
    return params.signed_reuse and params.lanes <= WORD


def fill_from_expander(params):
    """Whether the seed expander itself fills the pool (pool mode, draws of at most
    :data:`WORD` bits): value ``j`` takes the top ``draw_bits`` bits of its word ``j`` in
    the pool's domain (no fill source of its own)."""
    return params.reuse == "pool" and draw_bits(params) <= WORD


def draws_from_expander(params):
    """Whether the seed expander itself gives the draws (on-the-fly reuse whose draws and
    signs fit one word, ``draws * draw_bits + lanes <= WORD``): it steps once per issued
    beat, and beat ``b`` takes its signs and, on the first beat of a hold, its draws from
    word ``chain_words + b``: draw ``g`` is the ``draw_bits`` bits below those of draw
    ``g - 1``, draw 0's just below the signs (no draw sources of their own)."""
    return (params.reuse == "onthefly"
            and params.draws * draw_bits(params) + params.lanes <= WORD)


def draw_field(params, g):
    """``(low, high)`` bit positions of draw ``g`` in an expander word (see
    :func:`draws_from_expander`)."""
    high = WORD - params.lanes - g * draw_bits(params)
    return high - draw_bits(params), high


@dataclass(frozen=True)
class SourceLayout:
    """How a source of ``bits`` random bits per step is built from generator instances.

    ``instances`` generators of kind ``kind`` each give ``leap`` bits per step (an LFSR leaps
    exactly ``leap`` bits; xoshiro128++ always gives 32); their outputs are concatenated,
    instance 0 in the low bits, and the low ``bits`` bits are used. ``state_bits`` is the
    total state one source loads from the seed expander.
    """
    kind: str
    bits: int
    instances: int
    leap: int

    @property
    def instance_state(self):
        return XOSHIRO_STATE if self.kind == "xoshiro128pp" else LFSR_DEGREE

    @property
    def state_bits(self):
        return self.instances * self.instance_state


def source_layout(kind, bits):
    """The :class:`SourceLayout` of ``bits`` bits per step from generators of ``kind``."""
    if kind == "xoshiro128pp":
        return SourceLayout(kind, bits, -(-bits // XOSHIRO_OUT), XOSHIRO_OUT)
    count = -(-bits // LFSR_LEAP_MAX)
    return SourceLayout(kind, bits, count, -(-bits // count))


def icdf_table(frac_bits):
    """Node values of the inverse-CDF curve, ``table[e][j]`` for octave ``e`` in
    ``0..ICDF_UNIFORM_BITS`` and node ``j`` in ``0..2**ICDF_SEGMENT_BITS`` (the last node of
    octave ``e`` is the first of octave ``e - 1``; of octave 0 it is zero).

    Node ``(e, j)`` sits at the two-sided tail probability ``p = 2**-(e+1) * (1 + j/2**m)``
    and holds ``Phi^-1(1 - p/2)`` in unsigned fixed point with ``frac_bits +
    ICDF_GUARD_BITS`` fraction bits, rounded half away from zero.
    """
    normal = NormalDist()
    scale = 1 << (frac_bits + ICDF_GUARD_BITS)
    segments = 1 << ICDF_SEGMENT_BITS
    table = []
    for e in range(ICDF_UNIFORM_BITS + 1):
        row = []
        for j in range(segments + 1):
            p = 2.0 ** -(e + 1) * (1 + j / segments)
            x = normal.inv_cdf(1 - p / 2) if p < 1 else 0.0
            row.append(int(x * scale + 0.5))
        table.append(row)
    return table


@dataclass(frozen=True)
class AdaptiveConstants:
    """Constants of the adaptive scale for one configuration (``docs/numerics.md``).

    Adaptive scaling works on the static-scaled values kept with :data:`ADAPT_GUARD_BITS`
    more fraction bits, ``x_i = round(r_i * 111, u + 6 - f - G)`` (``G`` guard bits), so the
    correction is applied before the final rounding. With the energy of the output codes,
    ``S = sum(round(x_i, G)**2)`` over the ``D`` valid elements (narrow squarers; the rounding
    adds 1/12 LSB**2 per element, a bias of 0.01 % at 5 fraction bits) and the target
    ``T = D * 4**f`` (squared norm ``D``)::

        q     = clamp((T - S) >> pre_shift, -q_limit, q_limit)
        d_raw = round_half_away(((q * linear) << (square_shift - shift))
                                + q * q * quadratic, square_shift)
        d     = clamp(d_raw, -d_max, d_max)          clamped = |d_raw| > d_max
        z_i   = sat(round_half_away(x_i * (2**adapt_shift + d), adapt_shift + G))

    ``linear = round(2**(shift + J - 1 + pre_shift) / T)`` and ``quadratic = round(3 *
    2**(square_shift + J - 3 + 2 * pre_shift) / T**2)`` (``J = adapt_shift``) make ``d ~=
    2**J * (y/2 + 3 y**2 / 8)`` with ``y = (T - S) / T``: the second-order series of
    ``sqrt(T / S) - 1 = (1 - y)**-0.5 - 1``, whose remainder ``5 y**3 / 16`` is below 0.06 %
    wherever ``d`` is not clamped. ``q_limit`` is the smallest ``|q|`` that clamps ``d`` on
    both sides, so clamping ``q`` first only bounds the multipliers.
    """
    target: int
    pre_shift: int
    linear: int
    shift: int
    quadratic: int
    square_shift: int
    q_limit: int
    d_max: int
    adapt_shift: int

    #: Significant bits of the two multipliers.
    MULTIPLIER_BITS = 10
    #: Bits of ``T >> pre_shift`` beyond ``adapt_shift`` (resolution of ``T - S``).
    RESOLUTION_BITS = 8

    @classmethod
    def of(cls, params):
        j = params.adapt_shift
        target = params.dimension << (2 * params.frac_bits)
        tb = target.bit_length()
        pre_shift = max(0, tb - (j + cls.RESOLUTION_BITS))
        exponent = max(tb + cls.MULTIPLIER_BITS - 1, j + pre_shift)
        shift = exponent - (j - 1 + pre_shift)
        linear = ((1 << exponent) + target // 2) // target                  # nearest
        exponent2 = max(2 * tb + cls.MULTIPLIER_BITS, j - 3 + 2 * pre_shift + shift)
        square_shift = exponent2 - (j - 3 + 2 * pre_shift)
        quadratic = ((3 << exponent2) + target * target // 2) // (target * target)
        d_max = (1 << params.adapt_bits) - 1
        constants = cls(target, pre_shift, linear, shift, quadratic, square_shift, 0, d_max, j)
        q_limit = 1
        while not (constants.raw(q_limit) > d_max and constants.raw(-q_limit) < -d_max):
            q_limit += 1 + q_limit // 64
        return cls(target, pre_shift, linear, shift, quadratic, square_shift, q_limit, d_max, j)

    def raw(self, q):
        """``d_raw`` of a (clamped) ``q`` (Python integers)."""
        total = ((q * self.linear) << (self.square_shift - self.shift)) + q * q * self.quadratic
        return round_half_away(total, self.square_shift)

    def energy_thresholds(self):
        """Energies ``E_k`` for the levels ``k = -d_max .. d_max + 1`` (``2 * d_max + 2`` of
        them, non-increasing): ``S <= E_k`` exactly when ``d_raw >= k`` for the energy ``S``.

        ``d_raw`` is non-decreasing in ``q`` over ``[-q_limit, q_limit]`` (its derivative
        ``linear * 2**(square_shift - shift) + 2 * q * quadratic`` stays positive there, checked
        here), so ``d_raw >= k`` holds from a least ``q = Q_k`` on, and ``q >= Q_k`` is
        ``T - S >= Q_k * 2**pre_shift``. Clamping ``q`` changes nothing: every ``Q_k`` lies
        inside the clamp range (``q_limit`` clamps ``d`` on both sides). So the correction is
        the count of thresholds an energy satisfies, with no multiplier
        (:class:`~fieldtune.rtl.perturb.adaptive.ScaleSolver`); ``-1`` marks a level no
        energy reaches.
        """
        raws = [self.raw(q) for q in range(-self.q_limit, self.q_limit + 1)]
        if any(b < a for a, b in zip(raws, raws[1:])):
            raise ValueError("the adaptive correction is not monotone in the energy")
        thresholds = []
        for k in range(-self.d_max, self.d_max + 2):
            q_k = next(i for i, r in enumerate(raws) if r >= k) - self.q_limit
            thresholds.append(max(-1, self.target - (q_k << self.pre_shift)))
        return thresholds


def value_width(params):
    """Width of a shaped value: the output width, plus the guard bits adaptive scaling keeps
    until its correction is applied."""
    return params.width + (ADAPT_GUARD_BITS if params.scaling == "adaptive" else 0)


def magnitude_width(params):
    """Bits of the magnitudes the reuse pool stores (it keeps ``|z|``: every weight gets a
    fresh random sign, and ``s * |v|`` has the distribution of ``s * v`` for a symmetric
    ``v``): the largest ``|z|`` of a static or unscaled uniform draw (``round(111 *
    (2**u - 1), u + 6 - f)``, 55 and 6 bits at the default Q3.5), else the saturation
    limit (Gaussian shapes saturate; adaptive scaling can enlarge any value up to it)."""
    if params.shape == "uniform" and not params.adaptive:
        u, f = summand_bits(params), params.frac_bits
        top = (1 << u) - 1
        largest = round_half_away(top, u - f) if params.scaling == "none" else \
            round_half_away(top * SQRT3_MUL, u + SQRT3_SHIFT - f)
        return max(largest.bit_length(), 1)
    return params.width - 1
