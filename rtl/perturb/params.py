"""Parameters of the perturbation engine (TOML table ``[perturb]``).

Besides the validated fields, :class:`PerturbParams` derives the engine's geometry (beats per
vector, draws per beat, pool rows, ...) so the gateware in :mod:`fieldtune.rtl.perturb` and
the golden model in :mod:`fieldtune.sim.golden.perturb` read one definition.
"""

from dataclasses import dataclass

from ..params import Params, check_int, check_pow2, check_choice, check_seed


__all__ = ["PerturbParams", "SOURCES", "SHAPES", "SCALINGS", "REUSES"]


#: Uniform bit sources.
SOURCES = ("xoshiro128pp", "lfsr")
#: Distribution shapes: plain uniform, Gaussian by the central limit theorem over 4 or 12
#: uniforms, Gaussian by a piecewise-linear inverse CDF.
SHAPES = ("uniform", "clt4", "clt12", "icdf")
#: PeZO scaling of uniform numbers: none (raw uniform in (-1, 1)), static (a = sqrt(3), unit
#: variance) or adaptive (each vector rescaled so that its squared norm equals its dimension).
SCALINGS = ("none", "static", "adaptive")
#: Reuse of random numbers: none (fresh draws), a pre-generated pool read with shifting offsets,
#: or on-the-fly generators whose draws each serve several weights.
REUSES = ("none", "pool", "onthefly")


@dataclass(frozen=True)
class PerturbParams(Params):
    """Perturbation engine configuration.

    Parameters
    ----------
    lanes : int
        Perturbations produced per cycle (the MAC array's lanes), 1 to 256; a power of two
        when ``reuse`` is not ``"none"`` (the reuse banks split lanes evenly).
    width : int
        Width of each signed perturbation, 4 to 18 bits.
    frac_bits : int
        Fraction bits of each perturbation: a value is ``Q(width-frac_bits).frac_bits``.
    source : str
        Uniform bit source, one of :data:`SOURCES`.
    shape : str
        Distribution shape, one of :data:`SHAPES`.
    scaling : str
        PeZO scaling of uniform numbers, one of :data:`SCALINGS`; must be ``"none"`` unless
        ``shape`` is ``"uniform"``.
    reuse : str
        Reuse mode, one of :data:`REUSES`.
    pool_size : int
        Values in the reuse pool (``reuse == "pool"``), a power of two from 64 to 4096 and at
        least ``2 * lanes`` (the pool has at least two rows).
    reuse_factor : int
        Weights served by each fresh draw (``reuse == "onthefly"``), a power of two from 1 to 64.
    dimension : int
        Elements in one perturbation vector (one step), 1 to 2**20; the number of trained
        weights. Adaptive scaling normalizes over this many elements.
    seed : int
        32-bit non-zero default seed (the engine takes the seed of each request as an input;
        this is the value a sequencer's seed register starts from).
    adapt_bits : int
        Adaptive scaling: magnitude bits of the per-step correction ``d``
        (``|d| <= 2**adapt_bits - 1``), 1 to 6.
    adapt_shift : int
        Adaptive scaling: the correction factor is ``1 + d / 2**adapt_shift``; from
        ``adapt_bits + 3`` to 12, so the correction stays within +-12.5 % (where the
        second-order formula for ``d`` holds).
    """

    section = "perturb"

    lanes: int = 8
    width: int = 8
    frac_bits: int = 5
    # Defaults (the default design): LFSR sources, PeZO's static scale, the reuse pool. On R1
    # (D = 2,240, seeds 1-3, 2,000 steps) this trains as well as adaptive scaling with
    # xoshiro sources (76.0 vs 76.1 %, float MeZO 76.3 %) at a fraction of the area
    # (docs/benchmarks.md, "UP5K fit (issue 9)").
    source: str = "lfsr"
    shape: str = "uniform"
    scaling: str = "static"
    reuse: str = "pool"
    pool_size: int = 1024
    reuse_factor: int = 4
    dimension: int = 2240
    seed: int = 0x5EED
    adapt_bits: int = 4
    adapt_shift: int = 8

    def _validate(self):
        s = self.section
        check_int(s, "lanes", self.lanes, 1, 256)
        check_int(s, "width", self.width, 4, 18)
        check_int(s, "frac_bits", self.frac_bits, 0, self.width - 2)
        check_choice(s, "source", self.source, SOURCES)
        check_choice(s, "shape", self.shape, SHAPES)
        check_choice(s, "scaling", self.scaling, SCALINGS)
        if self.shape != "uniform" and self.scaling != "none":
            raise ValueError(f"perturb.scaling must be 'none' when perturb.shape is "
                             f"{self.shape!r} (PeZO scaling applies to uniform numbers), "
                             f"not {self.scaling!r}")
        check_choice(s, "reuse", self.reuse, REUSES)
        check_pow2(s, "pool_size", self.pool_size, 64, 4096)
        check_pow2(s, "reuse_factor", self.reuse_factor, 1, 64)
        check_int(s, "dimension", self.dimension, 1, 2**20)
        check_seed(s, "seed", self.seed)
        check_int(s, "adapt_bits", self.adapt_bits, 1, 6)
        check_int(s, "adapt_shift", self.adapt_shift, self.adapt_bits + 3, 12)
        if self.reuse != "none" and self.lanes & (self.lanes - 1):
            raise ValueError(f"perturb.lanes must be a power of two when perturb.reuse is "
                             f"{self.reuse!r}, not {self.lanes}")
        if self.reuse == "pool" and self.pool_size < 2 * self.lanes:
            raise ValueError(f"perturb.pool_size must be at least 2 * perturb.lanes "
                             f"({2 * self.lanes}) when perturb.reuse is 'pool', "
                             f"not {self.pool_size}")

    @property
    def family(self):
        """Benchmark family: ``"gaussian"``, ``"pezo"`` or ``"uniform"``."""
        if self.shape != "uniform":
            return "gaussian"
        if self.scaling != "none" or self.reuse != "none":
            return "pezo"
        return "uniform"

    # -- geometry (shared by the gateware and the golden model) ----------------------------

    @property
    def beats(self):
        """Beats (lane vectors) per perturbation vector: ``ceil(dimension / lanes)``."""
        return -(-self.dimension // self.lanes)

    @property
    def last_lanes(self):
        """Valid lanes of the last beat; lanes at or above it are padding (zero)."""
        return self.dimension - (self.beats - 1) * self.lanes

    @property
    def adaptive(self):
        return self.scaling == "adaptive"

    @property
    def signed_reuse(self):
        """Whether each weight gets a fresh random sign (both reuse modes)."""
        return self.reuse != "none"

    @property
    def draws(self):
        """Fresh values drawn per draw step: ``lanes`` without reuse, ``lanes / reuse_factor``
        (at least 1) on the fly, 1 when filling a pool."""
        if self.reuse == "none":
            return self.lanes
        if self.reuse == "onthefly":
            return max(1, self.lanes // self.reuse_factor)
        return 1

    @property
    def hold(self):
        """Beats each on-the-fly draw is held for (``reuse_factor / lanes`` when the factor
        exceeds the lane count; otherwise 1)."""
        if self.reuse == "onthefly" and self.reuse_factor > self.lanes:
            return self.reuse_factor // self.lanes
        return 1

    @property
    def pool_rows(self):
        """Rows of the pool: each row holds one value per lane."""
        return self.pool_size // self.lanes
