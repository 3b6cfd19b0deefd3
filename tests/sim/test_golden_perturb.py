"""Statistics of the perturbation engine's golden model (the contract the gateware matches bit
for bit): moments, Kolmogorov-Smirnov distance to the target distribution, lag-1 and
cross-lane correlation, LFSR period and primitivity, the adaptive norm, and the covariance of
the effective perturbation vectors of every reuse mode.

Tolerances are stated where they are used. Sampling terms are five standard errors (all
samples come from fixed seeds, so a test is deterministic; five sigma keeps the chance that a
correct model trips a bound below 1e-6 per statistic); systematic terms name their source.
"""

import itertools
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats

from fieldtune.rtl.perturb import numerics as nx
from fieldtune.rtl.perturb.params import PerturbParams, SOURCES
from fieldtune.sim.golden import perturb as golden


SEED = 0x5EED
MASK = 0xFFFFFFFF

#: KS distance of each shape to its target that is not sampling noise, measured on 10**6
#: dithered values (clt4 0.0100, clt12 0.0036, icdf 0.0024) and rounded up: CLT4 is visibly
#: not Gaussian (Irwin-Hall, excess kurtosis -0.3), CLT12 less so, the inverse CDF bends its
#: curve into straight segments (0.0055 sigma at most). The uniforms are exact once dithered.
KS_SYSTEMATIC = {"none": 0.0, "static": 0.002, "clt4": 0.011, "clt12": 0.004, "icdf": 0.003}
#: Relative variance error that is not sampling noise: sqrt(3) ~= 111/64 (+0.27 %), and the
#: inverse CDF's chords over a convex curve (+0.5 %).
VAR_SYSTEMATIC = 0.006


def sample(source, shape, scaling, reuse="none", lanes=16, beats=400, steps=16, **changes):
    params = PerturbParams(lanes=lanes, source=source, shape=shape, scaling=scaling,
                           reuse=reuse, dimension=lanes * beats, **changes)
    beats = golden.vectors(params, SEED, np.arange(steps)).beats
    return params, beats / float(1 << params.frac_bits)        # (steps, beats, lanes) values


def target(shape, scaling):
    """(scipy distribution, variance, dither in LSBs) the values approximate."""
    if shape == "uniform" and scaling == "none":
        # Odd codes (2m+1)/2**f: dithered over their spacing, exactly U(-1, 1).
        return stats.uniform(-1, 2), 1 / 3, 2
    if shape == "uniform":
        a = nx.SQRT3_MUL / (1 << nx.SQRT3_SHIFT)
        return stats.uniform(-a, 2 * a), 1.0, 1
    return stats.norm(), 1.0, 1


# -- the generators --------------------------------------------------------------------------

def reference_xoshiro128pp(state, count, feedback=0):
    """xoshiro128++ as in Blackman and Vigna's reference C, one Python integer at a time;
    with ``feedback``, step ``i < feedback`` also XORs the output of two steps before (0 for
    the first two) into s0 (the seed expander's warm-up)."""
    s = list(state)
    out = []
    rotl = lambda x, k: ((x << k) | (x >> (32 - k))) & MASK
    for i in range(count):
        out.append((rotl((s[0] + s[3]) & MASK, 7) + s[0]) & MASK)
        t = (s[1] << 9) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 11)
        if i < feedback and i >= 2:
            s[0] ^= out[i - 2]
    return out


def test_xoshiro_matches_the_reference():
    state = (0x01234567, 0x89ABCDEF, 0xDEADBEEF, 0x0BADF00D)
    arrays = tuple(np.array([w], dtype=np.uint32) for w in state)
    got = []
    for _ in range(200):
        got.append(int(golden.xoshiro_output(arrays)[0]))
        arrays = golden.xoshiro_step(arrays)
    assert got == reference_xoshiro128pp(state, 200)


def reference_expander(seed, key, domain, count):
    """The seed expander one Python integer at a time: xoroshiro64 (Blackman and Vigna's
    reference C, rotations 26/9/13) with the "+" output held in a register; warm-up steps XOR
    ``register ^ EXPANDER_FEEDBACK`` into s0."""
    rotl = lambda x, k: ((x << k) | (x >> (32 - k))) & MASK
    s0, s1 = seed ^ nx.EXPANDER_KEY[0] ^ domain, key ^ nx.EXPANDER_KEY[1]
    word, out = 0, []
    for i in range(nx.EXPANDER_WARMUP + 2 + count):
        if i >= nx.EXPANDER_WARMUP + 2:
            out.append(word)
        output = (s0 + s1) & MASK
        s1 ^= s0
        s0 = rotl(s0, 26) ^ s1 ^ ((s1 << 9) & MASK)
        s1 = rotl(s1, 13)
        if i < nx.EXPANDER_WARMUP + 2:
            s0 ^= word ^ nx.EXPANDER_FEEDBACK
        word = output
    return out


def test_expander_words_are_the_keyed_generator_after_warmup():
    for domain in (nx.DOMAIN_STEP, nx.DOMAIN_POOL):
        for seed, key in ((SEED, 77), (nx.EXPANDER_KEY[0] ^ domain, nx.EXPANDER_KEY[1])):
            words = golden.expander_words([seed], [key], domain, 5)[0]
            assert list(words) == reference_expander(seed, key, domain, 5)
            assert len(set(words)) == 5          # the all-zero key does not stick at zero


def _polymod(a, m):
    while a.bit_length() >= m.bit_length():
        a ^= m << (a.bit_length() - m.bit_length())
    return a


def _polymulmod(a, b, m):
    result = 0
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a = _polymod(a << 1, m)
    return result


def _is_prime(n):
    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))


@pytest.mark.parametrize("degree,tap", [(7, 1), (17, 3), (nx.LFSR_DEGREE, nx.LFSR_TAP)])
def test_lfsr_polynomial_is_primitive(degree, tap):
    """Rabin: for a prime degree n, p is irreducible iff x**(2**n) = x (mod p) and p has no
    root in GF(2). 2**n - 1 is a Mersenne prime, so the order of x divides a prime and is
    not 1: irreducible means primitive, period 2**n - 1."""
    poly = (1 << degree) | (1 << tap) | 1
    assert _is_prime(degree) and _is_prime(2 ** degree - 1)
    x = 0b10
    for _ in range(degree):
        x = _polymulmod(x, x, poly)
    assert x == 0b10
    assert poly & 1 and bin(poly).count("1") % 2 == 1                 # p(0) = p(1) = 1


@pytest.mark.parametrize("degree,tap,leap", [(7, 1, l) for l in range(1, 8)] + [(17, 3, 5)])
def test_lfsr_full_period(degree, tap, leap):
    """gcd(leap, 2**n - 1) = 1, so leaping visits every non-zero state once per period."""
    start = np.array([1], dtype=np.uint64)
    state, period = start, 0
    while True:
        _, state = golden.lfsr_leap(state, leap, degree=degree, tap=tap)
        period += 1
        if state[0] == start[0] or period > 2 ** degree:
            break
    assert period == 2 ** degree - 1


def test_lfsr_leap_equals_single_steps():
    state = np.array([0x2545F491], dtype=np.uint64)
    for leap in (1, 7, 20, 28, 31):
        out, after = golden.lfsr_leap(state, leap)
        single, bits = state, []
        for _ in range(leap):
            bit, single = golden.lfsr_leap(single, 1)
            bits.append(int(bit[0]))
        assert int(out[0]) == sum(b << i for i, b in enumerate(bits)) and after[0] == single[0]


def test_icdf_curve_is_accurate_beyond_four_sigma():
    """All 2**15 magnitudes at 14 fraction bits: within 0.0055 sigma (+ half an output LSB)
    of Phi^-1(1 - p/2), p = (2t + 1) / 2**16; the largest is 4.32 sigma."""
    params = PerturbParams(width=18, frac_bits=14, shape="icdf", scaling="none")
    t = np.arange(1 << nx.ICDF_UNIFORM_BITS, dtype=np.int64)
    bits = ((t[:, None] >> np.arange(nx.ICDF_UNIFORM_BITS + 1)) & 1).astype(np.uint8)
    x = golden.shape(params, bits) / 2.0 ** 14
    p = (2 * t + 1) / 2.0 ** (nx.ICDF_UNIFORM_BITS + 1)
    exact = np.array([NormalDist().inv_cdf(1 - q / 2) for q in p])
    assert np.max(np.abs(x - exact)) <= 0.0055 + 2.0 ** -15
    assert x.max() >= 4.0
    bits[:, nx.ICDF_UNIFORM_BITS] = 1                               # the sign bit
    assert np.array_equal(golden.shape(params, bits) / 2.0 ** 14, -x)


# -- statistics of fresh streams -------------------------------------------------------------

SHAPINGS = [("uniform", "none"), ("uniform", "static"), ("clt4", "none"), ("clt12", "none"),
            ("icdf", "none")]


@pytest.mark.parametrize("source,shape,scaling",
                         [(s, sh, sc) for s, (sh, sc) in itertools.product(SOURCES, SHAPINGS)])
def test_fresh_stream_statistics(source, shape, scaling):
    params, x = sample(source, shape, scaling)
    dist, variance, dither = target(shape, scaling)
    n = x.size
    kurtosis = 1.8 if shape == "uniform" else 3.0
    sigma = variance ** 0.5
    # Mean and variance: five standard errors, plus the systematic variance terms.
    assert abs(x.mean()) <= 5 * sigma / n ** 0.5
    assert abs(x.var() / variance - 1) <= 5 * ((kurtosis - 1) / n) ** 0.5 + VAR_SYSTEMATIC
    # KS against the target after dithering each code over its quantization step.
    lsb = 2.0 ** -params.frac_bits
    dithered = x + np.random.default_rng(1).uniform(-0.5, 0.5, x.shape) * dither * lsb
    ks = stats.kstest(dithered.ravel(), dist.cdf).statistic
    assert ks <= 2 / n ** 0.5 + KS_SYSTEMATIC[shape if shape != "uniform" else scaling]
    _check_correlations(x)


def _check_correlations(x):
    """Lag-1 within every lane (consecutive beats) and between every pair of lanes (same
    beat): each coefficient within five standard errors (1/sqrt(pairs)) of zero."""
    steps, beats, lanes = x.shape
    pairs = steps * (beats - 1)
    for l in range(lanes):
        lag = np.corrcoef(x[:, :-1, l].ravel(), x[:, 1:, l].ravel())[0, 1]
        assert abs(lag) <= 5 / pairs ** 0.5, f"lane {l} lag-1 correlation {lag:.4f}"
    matrix = np.corrcoef(x.reshape(-1, lanes).T)
    off = matrix[~np.eye(lanes, dtype=bool)]
    assert np.max(np.abs(off)) <= 5 / (steps * beats) ** 0.5


@pytest.mark.parametrize("source,reuse", itertools.product(SOURCES, ("pool", "onthefly")))
def test_reused_stream_statistics(source, reuse):
    """Reused values get a fresh sign per weight, so lanes and beats stay uncorrelated; the
    mean is zero; the variance is the pool's mean square (5 sqrt(0.8 / pool_size) around 1)
    or, on the fly, that of the draws."""
    params, x = sample(source, "uniform", "static", reuse, pool_size=4096)
    n = x.size
    assert abs(x.mean()) <= 5 / n ** 0.5
    spread = (0.8 / params.pool_size) ** 0.5 if reuse == "pool" else 0.0
    assert abs(x.var() - 1) <= 5 * (0.8 / n) ** 0.5 + 5 * spread + VAR_SYSTEMATIC
    _check_correlations(x)


# -- adaptive scaling ------------------------------------------------------------------------

@pytest.mark.parametrize("source,reuse", itertools.product(SOURCES, ("none", "pool", "onthefly")))
def test_adaptive_norm_equals_dimension(source, reuse):
    """Squared norm within 2**-adapt_shift + 0.5 % of D for D = 2240 (the default): the
    correction's step is 2**-adapt_shift in the scale (half of it, doubled by squaring), the
    second-order formula leaves < 0.06 %, and the final rounding moves the norm by up to
    0.4 % (the correction is applied to values with 4 guard bits, so an element whose
    correction is below 1/32 LSB is not moved; measured worst case over these 300 steps:
    0.81 %). Uncorrected static vectors stray much further (up to 11 %)."""
    params = PerturbParams(source=source, reuse=reuse, scaling="adaptive", lanes=16)
    result = golden.vectors(params, SEED, np.arange(300))
    norms = (golden.effective(params, result.beats) ** 2).sum(axis=1) / params.dimension
    static = PerturbParams(source=source, reuse=reuse, scaling="static", lanes=16)
    plain = (golden.effective(static, golden.vectors(static, SEED, np.arange(300)).beats)
             ** 2).sum(axis=1) / static.dimension
    # The correction reaches a norm off by (1 -+ d_max / 2**adapt_shift)**2 - 1, about
    # -11 % / +12 %: only a step whose uncorrected norm is beyond that may clamp (on the fly,
    # 560 draws of reuse factor 4 at L = 16 give the norm a 3.8 % standard deviation, so one
    # step in a few hundred does), and every other step is corrected.
    reach = 1 - (1 - ((1 << params.adapt_bits) - 1) / 2 ** params.adapt_shift) ** 2
    assert np.all(np.abs(plain[result.clamped] - 1) > reach)
    assert result.clamped.mean() <= 0.01
    corrected = norms[~result.clamped]
    assert np.max(np.abs(corrected - 1)) <= 2.0 ** -params.adapt_shift + 0.005
    assert np.max(np.abs(plain - 1)) > 3 * np.max(np.abs(corrected - 1))


def test_adaptive_clamps_and_flags_a_tiny_dimension():
    params = PerturbParams(scaling="adaptive", reuse="none", dimension=3)
    result = golden.vectors(params, SEED, np.arange(200))
    assert result.clamped.any() and not result.clamped.all()
    assert np.all(np.abs(result.correction) <= (1 << params.adapt_bits) - 1)
    assert np.all(np.abs(result.correction[result.clamped]) == (1 << params.adapt_bits) - 1)


def test_adaptive_scale_formula():
    """d is 2**J (sqrt(T/S) - 1) rounded, up to the series remainder 2**J * 5 |y|**3 / 16
    (y = (T - S) / T), wherever it is not clamped; it clamps exactly when it must."""
    params = PerturbParams()
    k = nx.AdaptiveConstants.of(params)
    energy = np.linspace(0.85, 1.2, 3501) * k.target
    d, clamped = golden.adaptive_scale(params, energy.astype(np.int64))
    ideal = 2.0 ** k.adapt_shift * (np.sqrt(k.target / energy) - 1)
    y = (k.target - energy) / k.target
    remainder = 2.0 ** k.adapt_shift * 5 * np.abs(y) ** 3 / 16
    assert np.all((np.abs(d - ideal) <= 0.5 + 1.2 * remainder + 0.01)[~clamped])
    assert np.all(clamped[np.abs(ideal) > k.d_max + 1])
    assert not np.any(clamped[np.abs(ideal) < k.d_max - 1])
    assert clamped.any() and not clamped.all()


# -- replay and the effective perturbation vectors -------------------------------------------

@pytest.mark.parametrize("reuse", ["none", "pool", "onthefly"])
def test_replay_and_distinct_steps(reuse):
    params = PerturbParams(reuse=reuse, lanes=4, dimension=64)
    first = golden.vectors(params, SEED, np.arange(500)).beats
    assert np.array_equal(first, golden.vectors(params, SEED, np.arange(500)).beats)
    flat = first.reshape(500, -1)
    assert len({row.tobytes() for row in flat}) == 500
    other = golden.vectors(params, SEED + 1, np.arange(500)).beats
    assert not np.any(np.all(other.reshape(500, -1) == flat, axis=1))


@pytest.mark.parametrize("source,reuse,scaling",
                         [(s, r, sc) for s in SOURCES for r in ("none", "pool", "onthefly")
                          for sc in ("static", "adaptive")])
def test_effective_perturbations_have_identity_covariance(source, reuse, scaling):
    """C = mean over N steps of z z^T for D = 64.

    Off the diagonal, E[z_i z_j] = 0 (independent draws, or a fresh sign per weight on reused
    values) and Var(z_i z_j) <= E[z**4] = 1.8 (Cauchy-Schwarz; equality when two weights share
    a draw): |C_ij| <= 5 sqrt(1.8 / N). On the diagonal the sampling term is 5 sqrt(0.8 / N);
    a pool adds its own spread: lane l only ever sees the pool_size / lanes values of its
    bank, whose mean square is within 5 sqrt(0.8 lanes / pool_size) of 1.
    """
    steps = 4000
    params = PerturbParams(source=source, reuse=reuse, scaling=scaling, lanes=4,
                           dimension=64, pool_size=4096)
    z = golden.effective(params, golden.vectors(params, SEED, np.arange(steps)).beats)
    cov = z.T @ z / steps
    off = cov[~np.eye(64, dtype=bool)]
    assert np.max(np.abs(off)) <= 5 * (1.8 / steps) ** 0.5
    bank = 5 * (0.8 * params.lanes / params.pool_size) ** 0.5 if reuse == "pool" else 0.0
    assert np.max(np.abs(np.diag(cov) - 1)) <= 5 * (0.8 / steps) ** 0.5 + bank + VAR_SYSTEMATIC


def test_pool_rows_are_each_visited_once_per_period():
    """An odd row stride visits every row once in pool_rows consecutive beats, so a vector of
    pool_size elements uses every pool value exactly once (up to its sign)."""
    params = PerturbParams(reuse="pool", scaling="static", lanes=8, pool_size=256,
                           dimension=256)
    values, _, _ = golden.pool(params, SEED)
    beats = golden.vectors(params, SEED, np.arange(20)).beats
    for vector in beats:
        assert sorted(np.abs(vector).ravel()) == sorted(np.abs(values).ravel())
        for lane in range(params.lanes):
            assert sorted(np.abs(vector[:, lane])) == sorted(np.abs(values[:, lane]))


def test_padding_of_the_last_beat_is_zero():
    params = PerturbParams(lanes=8, dimension=21, reuse="onthefly", scaling="static")
    beats = golden.vector(params, SEED, 3)
    assert beats.shape == (3, 8)
    assert np.all(beats[2, 5:] == 0) and np.count_nonzero(beats[:2]) > 8


@pytest.mark.parametrize("changes", [{}, {"adapt_bits": 1, "adapt_shift": 4},
                                     {"adapt_bits": 6, "adapt_shift": 12, "dimension": 300},
                                     {"dimension": 3}])
def test_energy_thresholds_give_the_formula_for_every_energy(changes):
    """The solver's table (a count of thresholds, no multiplier) equals the golden formula
    at every energy that decides a level and on either side of it."""
    params = PerturbParams(**changes)
    k = nx.AdaptiveConstants.of(params)
    thresholds = k.energy_thresholds()
    assert len(thresholds) == 2 * k.d_max + 2
    assert all(b <= a for a, b in zip(thresholds, thresholds[1:]))
    probes = sorted({max(0, e + off) for e in thresholds for off in (-1, 0, 1)}
                    | {0, k.target, 4 * k.target})
    energy = np.array(probes, dtype=np.int64)
    d, clamped = golden.adaptive_scale(params, energy)
    level = (energy[:, None] <= np.array(thresholds)[None, :]).sum(axis=1)
    assert np.array_equal(np.clip(level - k.d_max - 1, -k.d_max, k.d_max), d)
    assert np.array_equal((level == 0) | (level == len(thresholds)), clamped)
