"""``fieldtune bench accuracy``: R1 first-order accuracy of the device against float skip
adapters, measured as paired distributions (issue 5's accuracy targets).

One run at η = 2^-4 and 10 epochs cannot resolve one point: float training alone ends 85.1 to
87.9 % at 30° from start weights below one weight LSB (docs/numerics.md, "First-order accuracy
against float (R1)"). So, per drift angle, ``--starts N`` start points are drawn, and from each
the device and float train from the *same* weights:

* start ``i`` (0 ≤ i < N): ``W0 = k · 2^-weight_frac`` (``mac.weight_frac``, Q4.12 by
  default: one LSB is 2^-12), ``k = round(N(0, 1))`` per weight of the dense 10×224 adapter,
  drawn by ``numpy.random.default_rng(seed + i)`` (``--seed``, default 1000: the study's start
  points). ``W0`` is exact in the device's weight format, so both sides start identically; the
  same N starts serve every drift angle and code book.
* device: the golden model's first-order training, :func:`fieldtune.sim.golden.train.train_fo`
  from ``W0`` on the golden cache's dequantized features of each ``--codebooks`` entry, then
  :func:`~fieldtune.sim.golden.train.evaluate` on the dequantized test features — the
  arithmetic ``run_finetune(..., engine="golden")`` runs (bit-exact with the SoC), with the
  start weights loaded instead of zero.
* float: :func:`fieldtune.finetune.float_first_order` (dense skip adapters, float64) from the
  same ``W0``.

Both at the default design's hyperparameters (``config.train``): 10 epochs (``--epochs``),
batch 16, η = 2^-4, mini-batches in cache order. The *single default run* (``W0 = 0``, what
``fieldtune demo`` shows) is reported beside the distributions.

Per drift, one row per method: mean and sample standard deviation over the starts, the paired
gaps device − float and code book − ``pass16`` (means of the per-start differences, with their
standard errors ``sd / √N``), the default run, and the verdicts of the targets (issue 5, stated
at 30°; shown at every angle): first order within :data:`TARGET_FO_POINTS` of float, 4-bit
cache within :data:`TARGET_CACHE_POINTS` of the 16-bit one. "Within" is one-sided: the target
is met when the gap is not below ``-target`` (a device *more* accurate than float meets it).
The verdict on the mean gap takes the mean as it is; read it with its standard error.

JSON: ``rows`` (the table), ``starts`` (per drift and start: the start's seed and every
method's accuracy, from which the table's means and gaps follow) and ``conditions``.
"""

import math
import time

import numpy as np
from rich.progress import (Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ..config import DesignConfig
from ..finetune import float_first_order
from ..sim.golden.mac import set_region_matrix
from ..sim.golden.train import new_weights, train_fo, evaluate
from ..sim.reference import r1_reference_data
from ..sim.scenario import r1_features
from ..sim.soc_run import records_of, cached_view
from .report import csv_list, emit, table


__all__ = ["add_arguments", "run", "measure", "summarize", "start_codes", "device_accuracy",
           "TARGET_FO_POINTS", "TARGET_CACHE_POINTS", "REFERENCE_CODEBOOK", "DRIFTS",
           "CODEBOOKS", "STARTS", "SEED", "COLUMNS", "TARGET_COLUMNS"]


#: Issue 5: on-device first order within this many points of float skip adapters (R1, 30°).
TARGET_FO_POINTS = 1.0
#: Issue 5: the 4-bit cache within this many points of the 16-bit cache.
TARGET_CACHE_POINTS = 0.5
#: The 16-bit cache every other code book is compared with.
REFERENCE_CODEBOOK = "pass16"
#: Drift angles (degrees) measured by default.
DRIFTS = (30, 45, 60)
#: Code books measured by default: the design's default and the 16-bit reference.
CODEBOOKS = ("unf4", REFERENCE_CODEBOOK)
#: Start points per drift by default: 126 device runs at 3 angles and 2 code books, measured
#: 30 s of CPU (62 s wall on a busy 2-core machine); 40, the study's number, took 59 s of CPU.
STARTS = 20
#: First start's generator seed; start ``i`` uses ``seed + i`` (1000: the study's starts).
SEED = 1000

COLUMNS = [("drift_deg", "drift °"), ("method", "method"), ("mean_pct", "mean %"),
           ("sd_pct", "sd"), ("gap_float", "− float"), ("gap_float_se", "± se"),
           ("gap_ref", f"− {REFERENCE_CODEBOOK}"), ("gap_ref_se", "± se"),
           ("default_pct", "W0=0 %")]
#: The targets' table (the same rows): gaps of the mean and of the single default run.
TARGET_COLUMNS = [("drift_deg", "°"), ("method", "method"),
                  ("gap_float", "FO gap"), ("fo_met", f"≥ −{TARGET_FO_POINTS:g}"),
                  ("default_gap_float", "W0=0 gap"),
                  ("fo_met_default", f"≥ −{TARGET_FO_POINTS:g}"),
                  ("gap_ref", "4-bit gap"), ("cache_met", f"≥ −{TARGET_CACHE_POINTS:g}"),
                  ("default_gap_ref", "W0=0 gap"),
                  ("cache_met_default", f"≥ −{TARGET_CACHE_POINTS:g}")]


def add_arguments(parser):
    parser.add_argument("--starts", type=int, default=STARTS, metavar="N",
                        help=f"paired start points per drift angle (default: {STARTS}; "
                             "the numerics study used 40); start i: W0 = k * 2^-weight_frac "
                             "(one Q4.12 LSB), k = round(N(0, 1)) per weight from "
                             "numpy default_rng(seed + i), the same W0 for device and float")
    parser.add_argument("--drifts", type=csv_list, default=[f"{d:g}" for d in DRIFTS],
                        metavar="DEG,...",
                        help=f"drift angles (default: {','.join(f'{d:g}' for d in DRIFTS)})")
    parser.add_argument("--codebooks", type=csv_list, default=list(CODEBOOKS),
                        metavar="NAME,...",
                        help=f"forward-cache code books of the device runs (default: "
                             f"{','.join(CODEBOOKS)}; gaps to {REFERENCE_CODEBOOK} need it "
                             "listed)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help="seed of the first start point; start i uses seed + i "
                             "(default: %(default)s, the study's starts)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="first-order epochs of device and float (default: the design's, "
                             "10)")


def start_codes(shape, seed):
    """A start point in weight LSBs: ``round(N(0, 1))`` per weight, int64, from
    ``numpy.random.default_rng(seed)`` (round half to even, numpy's ``round``)."""
    return np.round(np.random.default_rng(seed).normal(0.0, 1.0, shape)).astype(np.int64)


def device_accuracy(config, train, test, codes):
    """The golden model's first-order run of ``config`` from start weights ``codes`` (classes ×
    features, in weight LSBs): ``(test accuracy, saturated)``. ``train`` and ``test`` are the
    golden cache's view of the samples, ``(dequantized features, z0, labels)`` (as
    ``run_finetune`` computes them); training in cache order, ``config.train``'s epochs, batch
    and learning rate."""
    mem = set_region_matrix(config.mac, new_weights(config.mac), 0, codes)
    x, z0, labels = train
    r = train_fo(config.mac, config.loss, config.train, {"x": x, "z0": z0, "labels": labels},
                 mem=mem)
    return evaluate(config.mac, r.mem, *test), bool(r.flags["saturated"])


def _configs(codebooks, epochs):
    base = DesignConfig()
    if epochs is not None:
        base = base.replace(train={"epochs": epochs})
    if base.mac.adapter != "dense":
        raise ValueError(f"mac.adapter must be 'dense' for paired start points, not "
                         f"{base.mac.adapter!r}")
    return {cb: base.replace(cache={"codebook": cb}) for cb in codebooks}


def measure(drifts, codebooks, starts, seed, epochs=None, progress=None):
    """Every run: ``(per-start rows, default runs)``.

    Per-start rows: ``{"drift_deg", "start", "seed", "float_pct", "<codebook>_pct", ...,
    "saturated": [codebooks whose run saturated a weight]}``; default runs (``W0 = 0``):
    ``{drift: {"float": pct, codebook: pct, ...}}``. ``progress()`` is called after each run.
    """
    configs = _configs(codebooks, epochs)
    any_cfg = next(iter(configs.values()))
    mac = any_cfg.mac
    shape = (mac.classes, sum(any_cfg.cache.taps))
    lsb = 2.0 ** -mac.weight_frac
    codes = [start_codes(shape, seed + i) for i in range(starts)]
    tick = progress or (lambda: None)
    rows, defaults = [], {}
    for drift in drifts:
        data, ref = r1_features(drift), r1_reference_data(drift)
        views = {cb: tuple(cached_view(cfg, *records_of(data, split))
                           for split in ("train", "test")) for cb, cfg in configs.items()}

        def one(codes_):
            out = {"float": 100 * float_first_order(ref, any_cfg.train, curve=False,
                                                    w0=codes_ * lsb).accuracy}
            saturated = []
            for cb, cfg in configs.items():
                acc, sat = device_accuracy(cfg, *views[cb], codes_)
                out[cb] = 100 * acc
                if sat:
                    saturated.append(cb)
                tick()
            return out, saturated

        defaults[drift] = one(np.zeros(shape, dtype=np.int64))[0]
        for i, c in enumerate(codes):
            acc, saturated = one(c)
            rows.append({"drift_deg": drift, "start": i, "seed": seed + i,
                         **{f"{k}_pct": v for k, v in acc.items()}, "saturated": saturated})
    return rows, defaults


def _mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if len(v) > 1 else None
    return float(v.mean()), sd, (None if sd is None else sd / math.sqrt(len(v)))


def _at_least(gap, target):
    return None if gap is None else gap >= -target


def summarize(rows, defaults, codebooks):
    """The table's rows from :func:`measure`'s results: per drift, float then each code
    book."""
    out = []
    for drift, runs in defaults.items():
        mine = [r for r in rows if r["drift_deg"] == drift]
        col = {m: np.array([r[f"{m}_pct"] for r in mine]) for m in ("float", *codebooks)}
        mean, sd, _ = _mean_se(col["float"])
        out.append({"drift_deg": drift, "method": "float", "starts": len(mine),
                    "mean_pct": mean, "sd_pct": sd, "default_pct": runs["float"]})
        for cb in codebooks:
            mean, sd, _ = _mean_se(col[cb])
            gap, _, gap_se = _mean_se(col[cb] - col["float"])
            row = {"drift_deg": drift, "method": cb, "codebook": cb,
                   "starts": len(mine), "mean_pct": mean, "sd_pct": sd,
                   "gap_float": gap, "gap_float_se": gap_se, "default_pct": runs[cb],
                   "default_gap_float": runs[cb] - runs["float"],
                   "saturated_runs": sum(cb in r["saturated"] for r in mine),
                   "fo_met": _at_least(gap, TARGET_FO_POINTS),
                   "fo_met_default": _at_least(runs[cb] - runs["float"], TARGET_FO_POINTS)}
            if cb != REFERENCE_CODEBOOK and REFERENCE_CODEBOOK in codebooks:
                gap_ref, _, gap_ref_se = _mean_se(col[cb] - col[REFERENCE_CODEBOOK])
                default_ref = runs[cb] - runs[REFERENCE_CODEBOOK]
                row.update(gap_ref=gap_ref, gap_ref_se=gap_ref_se, default_gap_ref=default_ref,
                           cache_met=_at_least(gap_ref, TARGET_CACHE_POINTS),
                           cache_met_default=_at_least(default_ref, TARGET_CACHE_POINTS))
            out.append(row)
    return out


def _check(args):
    if not 2 <= args.starts <= 1000:
        raise ValueError(f"--starts must be an integer from 2 to 1000, not {args.starts}")
    drifts = []
    for d in args.drifts:
        try:
            angle = float(d)
            drifts.append(int(angle) if angle.is_integer() else angle)
        except ValueError:
            raise ValueError(f"--drifts must list angles in degrees, not {d!r}") from None
    if not drifts or len(set(drifts)) != len(drifts):
        raise ValueError(f"--drifts must list distinct angles, not {','.join(args.drifts)!r}")
    if not args.codebooks or len(set(args.codebooks)) != len(args.codebooks):
        raise ValueError(f"--codebooks must list distinct code books, not "
                         f"{','.join(args.codebooks)!r}")
    return drifts


def run(args, console):
    drifts = _check(args)
    configs = _configs(args.codebooks, args.epochs)     # ValueError on a bad code book first
    train = next(iter(configs.values())).train
    total = len(drifts) * (args.starts + 1) * len(args.codebooks)
    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("device runs (golden model)", total=total)
        starts, defaults = measure(drifts, args.codebooks, args.starts, args.seed,
                                   args.epochs, progress=lambda: bar.advance(task))
    seconds = time.perf_counter() - t0
    rows = summarize(starts, defaults, args.codebooks)
    conditions = {"starts": args.starts, "seed": args.seed, "epochs": train.epochs,
                  "batch": train.batch, "lr": 2.0 ** -train.lr_shift, "order": "cache",
                  "start_weights": "W0 = k * 2^-weight_frac, k = round(N(0,1)) per weight, "
                                   "numpy default_rng(seed + i); the same W0 for device and "
                                   "float",
                  "device": "golden model (golden.train.train_fo), not a device simulation",
                  "targets": {"fo_points": TARGET_FO_POINTS,
                              "cache_points": TARGET_CACHE_POINTS, "one_sided": True,
                              "stated_at_deg": 30.0},
                  "seconds": seconds}
    emit("accuracy", rows, COLUMNS, json_path=args.json, console=console,
         extra={"conditions": conditions, "starts": starts},
         title=f"R1 first order: device (golden model) vs float skip adapters, {args.starts} "
               f"paired starts per angle ({train.epochs} epochs, batch {train.batch}, "
               f"η 2^-{train.lr_shift}, cache order)")
    console.print(table(f"Targets (issue 5, stated at 30°): device − float ≥ "
                        f"−{TARGET_FO_POINTS:g}, 4-bit − {REFERENCE_CODEBOOK} ≥ "
                        f"−{TARGET_CACHE_POINTS:g} points",
                        [r for r in rows if r["method"] != "float"], TARGET_COLUMNS))
    console.print(f"Gaps: means of the per-start differences ± their standard error (sd/√N); "
                  f"W0=0: the single default run. Met when the gap is not below −target "
                  f"(better counts as met). {total} device runs in {seconds:.0f} s.")
    saturated = sum(len(r["saturated"]) for r in starts)
    if saturated:
        console.print(f"[yellow]note:[/yellow] {saturated} device runs saturated a weight")
    return rows
