"""What a host writes to the SoC and what it starts from: records, initial weights, and the
estimate of a run's cycles.

* :func:`records_of` turns a scenario split into the 16-bit elements a host writes;
  :func:`synthetic_data` makes a small scenario for any geometry (short runs, tests);
  :func:`cached_view` is the golden cache's view of samples (what the device computes on).
* :func:`initial_weights`: dense adapters start at 0; low-rank ``A`` from the perturbation
  engine's vector of step :data:`INIT_STEP` (``B = 0``).
* :func:`estimate_cycles`: a run's cycles without simulating it (the golden engine's figure).
"""

import numpy as np

from ..rtl.mac.layout import Layout
from .golden.cache import CacheModel, record_elements
from .golden.soc import Perturbations
from .golden.train import new_weights


__all__ = ["synthetic_data", "records_of", "record_stream", "cached_view", "initial_weights",
           "estimate_cycles", "INIT_STEP", "LOWRANK_INIT_EPS"]


#: Perturbation step whose vector initializes low-rank ``A`` (``B = 0``), under the run's seed.
INIT_STEP = 0xFFFF_FFFF
#: ``A = z << zshift`` for ``epsilon = 2**-LOWRANK_INIT_EPS`` (as the golden training tests).
LOWRANK_INIT_EPS = 3

_INT16 = (-(1 << 15), (1 << 15) - 1)


def synthetic_data(config, n_train, n_test, seed=0):
    """A small scenario with :func:`fieldtune.sim.scenario.r1_features`' keys for any
    geometry (short simulations and tests): non-negative Q8.8 features below 2.0 (post-ReLU,
    like R1's taps), frozen logits in +-2.0 that lean towards the label, labels uniform."""
    rng = np.random.default_rng(seed)
    F, C = sum(config.cache.taps), config.cache.classes
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, C, n)
        logits = rng.integers(-512, 512, (n, C))
        logits[np.arange(n), labels] += 256
        out[f"{split}_features"] = rng.integers(0, 512, (n, F))
        out[f"{split}_logits"] = np.clip(logits, -512, 511)
        out[f"{split}_labels"] = labels
    return out


def records_of(data, split):
    """``(features, logits, labels)`` of ``split`` ("train" or "test") as the host writes them:
    16-bit elements (values outside int16 are clipped, which the cache's input saturation
    would do to a wider value anyway)."""
    f = np.clip(np.asarray(data[f"{split}_features"], dtype=np.int64), *_INT16)
    z = np.clip(np.asarray(data[f"{split}_logits"], dtype=np.int64), *_INT16)
    y = np.asarray(data[f"{split}_labels"], dtype=np.int64)
    return f, z, y


def record_stream(features, logits, labels):
    """Every record's elements, one list per record: ``[[(data, last), ...], ...]`` with
    ``data`` the element's 16 bits (two's complement) and ``last`` set on the record's end."""
    return [[(d & 0xFFFF, last) for d, last in record_elements(f, z, y)]
            for f, z, y in zip(features, logits, labels)]


def cached_view(config, features, logits, labels):
    """The golden cache's view of samples: dequantized features, z0, labels."""
    cache = CacheModel(config.cache)
    xs = [cache.dequantize(cache.quantize(f)) for f in features]
    return np.array(xs, dtype=np.int64).reshape(len(labels), -1), logits, labels


def initial_weights(config, seed):
    """Weights a run starts from: dense 0; low-rank ``A = z << zshift`` (``z`` of step
    :data:`INIT_STEP` under ``seed``), ``B = 0``."""
    mac = config.mac
    if mac.adapter == "dense":
        return new_weights(mac)
    z = Perturbations(config.perturb, seed, chunk=1)(INIT_STEP)
    return new_weights(mac, z, eps_shift=LOWRANK_INIT_EPS)


def estimate_cycles(config, mode, records, *, epochs=1, steps=1, batch=16, queries=1):
    """An estimate of a run's cycles (the golden engine's ``cycles``; ``mode`` "fo", "zo" or
    "eval"): the MAC array issues one weight word per cycle, so a forward or an update takes
    ``words`` cycles, plus what the sequencer cannot hide. Fitted to CXXRTL runs of R1 on the
    ``up5k`` (8 lanes) and ``ecp5-85f`` (32 lanes) presets, within 2 % of both
    (docs/benchmarks.md, "Training SoC")."""
    words = Layout(config.mac).words
    if mode == "eval":
        return records * (words + 1)
    if mode == "fo":
        return epochs * (records * (2 * words + 2) + -(-records // batch) * 38)
    p = config.perturb
    # per new step (adaptive scaling): the measuring pass and, in pool mode, the rescaling
    per_step = p.beats + (p.pool_size if p.reuse == "pool" else 0) + 100 if p.adaptive else 0
    # per run: the pool's fill for the run's seed
    fill = p.pool_size + 20 if p.reuse == "pool" else 0
    per_query = 2 * batch * (words + 19) + words
    return steps * (queries * per_query + per_step) + fill
