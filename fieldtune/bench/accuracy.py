"""``fieldtune bench accuracy``: R1 first-order accuracy of the device against float skip
adapters and the PyTorch baselines (LoRA-All, FT-All), as paired distributions over start
points, with the device's projected time beside each (issues 5 and 16).

One run at η = 2^-4 and 10 epochs cannot resolve one point: float training alone ends 85.1 to
87.9 % at 30° from start weights below one weight LSB (docs/numerics.md, "First-order accuracy
against float (R1)"). So, per drift angle, ``--starts N`` start points are drawn, and from each
the device and float train from the *same* weights:

* start ``i`` (0 ≤ i < N): ``W0 = k · 2^-weight_frac`` (``mac.weight_frac``, Q4.12 by
  default: one LSB is 2^-12), ``k = round(N(0, 1))`` per weight of the dense 10×224 adapter,
  drawn by ``numpy.random.default_rng(seed + i)`` (``--seed``, default 1000: the study's start
  points). ``W0`` is exact in the device's weight format, so both sides start identically; the
  same N starts serve every drift angle and code book.
* device: for each ``--runs`` entry (a named first-order run of
  :data:`fieldtune.sim.golden.schedule.RUNS`: epochs, sample order, learning-rate steps, early
  stop) and each ``--codebooks`` entry, the golden model's first-order training
  (:func:`~fieldtune.sim.golden.schedule.train_fo_scheduled`, which is
  :func:`~fieldtune.sim.golden.train.train_fo` for the ``plain`` run) from ``W0`` on the golden
  cache's dequantized features, then :func:`~fieldtune.sim.golden.train.evaluate` on the
  dequantized test features — the arithmetic ``run_finetune(..., engine="golden")`` runs
  (bit-exact with the SoC), with the start weights loaded instead of zero. Methods are named by
  the code book (``unf4``) for the plain run and ``codebook/run`` (``unf4/shuffle20``) for the
  others; a run's epochs (``--epochs`` changes the plain run's) bound it.
* float: :func:`fieldtune.finetune.float_first_order` (dense skip adapters, float64) from the
  same ``W0`` at the plain run's hyperparameters (cache order).
* PyTorch baselines (``--baselines``; skipped with the reason when PyTorch is not installed):
  :func:`fieldtune.finetune.torch_references` on R1's images with seed ``i + 1`` for start
  ``i`` (their own random LoRA / shuffling state; the pairing is by index), ``--baseline-epochs``
  (10, the issue's LoRA-All) on one CPU thread; their CPU training seconds are kept.

Projected device time (issue 16's targets): the estimated cycles
(:func:`fieldtune.sim.soc_data.estimate_cycles`, within 2 % of the SoC; the epochs the run
actually trained, plus one held-out evaluation per early-stop check) of the board's default
preset over its SoC clock (:data:`fieldtune.boards.table.BOARDS`: iCEBreaker 18 MHz, ULX3S-85F
45 MHz), averaged over the starts: :data:`TIME_BOARDS`.

Per drift, one row per method: mean and sample standard deviation over the starts, the paired
gaps device − float, device − LoRA-All and code book − ``pass16`` (means of the per-start
differences, with their standard errors ``sd / √N``), the default run (``W0 = 0``, what
``fieldtune demo`` shows), and the verdicts: issue 5 (first order within
:data:`TARGET_FO_POINTS` of float, 4-bit cache within :data:`TARGET_CACHE_POINTS` of 16-bit)
and issue 16 (within :data:`TARGET_LORA_POINTS` of LoRA-All, projected time within
:data:`TARGET_SECONDS` per board). "Within" is one-sided: a device *more* accurate meets it.
The verdict on the mean gap takes the mean as it is; read it with its standard error.

Zeroth order (``--zo-seeds N``): per angle and run seed ``1 .. N``, the device's zeroth order
(the SoC's golden model, the design's steps) and float MeZO (Gaussian) at the same steps, batch,
ε and η, with the paired gaps device − MeZO (target: within :data:`TARGET_ZO_POINTS`) and
device − LoRA-All (seed ``k`` with start ``k - 1``) and the projected time per board.

``--plot FILE.png`` draws accuracy against time per drift angle: the device's runs at their
projected time on each board, the PyTorch baselines at their CPU time, float as a line.

JSON: ``rows`` (the table), ``starts`` (per drift and start: the start's seed and every
method's accuracy, epochs run and CPU seconds, from which the table's means and gaps follow),
``recommended`` (see :func:`recommend`) and ``conditions``.
"""

import math
import time
from dataclasses import replace

import numpy as np
from rich.progress import (Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ..boards.table import board
from ..cli_common import output_file, pyplot
from ..config import DesignConfig
from ..finetune import float_first_order, float_mezo, torch_references
from ..host.session import run_finetune
from ..sim import reference
from ..sim.golden.mac import set_region_matrix
from ..sim.golden.schedule import RUNS, check_run, train_fo_scheduled
from ..sim.golden.train import new_weights, evaluate
from ..sim.reference import r1_reference_data
from ..sim.scenario import r1_features
from ..sim.soc_data import records_of, cached_view, estimate_cycles
from .report import csv_list, emit, table


__all__ = ["add_arguments", "run", "measure", "summarize", "measure_zo", "summarize_zo",
           "recommend", "plot", "start_codes",
           "device_accuracy", "projected_seconds", "method_name",
           "TARGET_FO_POINTS", "TARGET_CACHE_POINTS", "TARGET_LORA_POINTS", "TARGET_SECONDS",
           "TARGET_ZO_POINTS",
           "TARGET_DRIFTS", "TIME_BOARDS", "REFERENCE_CODEBOOK", "DRIFTS", "CODEBOOKS",
           "DEVICE_RUNS", "BASELINES", "BASELINE_EPOCHS", "STARTS", "SEED", "COLUMNS",
           "TARGET_COLUMNS", "LORA_COLUMNS"]


#: Issue 5: on-device first order within this many points of float skip adapters (R1, 30°).
TARGET_FO_POINTS = 1.0
#: Issue 5: the 4-bit cache within this many points of the 16-bit cache.
TARGET_CACHE_POINTS = 0.5
#: Issue 16: device first order within this many points of PyTorch LoRA-All ...
TARGET_LORA_POINTS = 1.0
#: ... at these drift angles ...
TARGET_DRIFTS = (30, 45)
#: ... with the projected R1 time at most this many seconds per board.
TARGET_SECONDS = {"icebreaker": 0.15, "ulx3s-85f": 0.005}
#: Issues 5 and 16: the device's zeroth order within this many points of float MeZO.
TARGET_ZO_POINTS = 2.0
#: Boards whose projected time is reported (the default board first).
TIME_BOARDS = tuple(TARGET_SECONDS)
#: The 16-bit cache every other code book is compared with.
REFERENCE_CODEBOOK = "pass16"
#: Drift angles (degrees) measured by default.
DRIFTS = (30, 45, 60)
#: Code books measured by default: the design's default and the 16-bit reference.
CODEBOOKS = ("unf4", REFERENCE_CODEBOOK)
#: Device runs measured by default (names of :data:`fieldtune.sim.golden.schedule.RUNS`).
DEVICE_RUNS = ("plain", "shuffle20")
#: Baselines measured by default: float skip adapters (numpy) and the PyTorch ones.
BASELINES = ("float", "lora_all", "ft_all")
#: Epochs of the PyTorch baselines (issue 16: LoRA-All at 10 epochs, rank 4).
BASELINE_EPOCHS = 10
#: Start points per drift by default: 126 device runs at 3 angles and 2 code books, measured
#: 30 s of CPU (62 s wall on a busy 2-core machine); 40, the study's number, took 59 s of CPU.
STARTS = 20
#: First start's generator seed; start ``i`` uses ``seed + i`` (1000: the study's starts).
SEED = 1000

_TIME_COLUMNS = [(f"{b}_ms", f"{board(b).title} ms") for b in TIME_BOARDS]
#: The main table (JSON rows hold more: ``gap_ref``, ``{board}_s``, the verdicts).
COLUMNS = [("drift_deg", "°"), ("method", "method"), ("mean_pct", "mean %"),
           ("sd_pct", "sd"), ("gap_float", "− float"), ("gap_mezo", "− MeZO"),
           ("gap_lora", "− LoRA-All"),
           ("gap_lora_se", "± se"), ("default_pct", "W0=0 %"), ("epochs", "epochs"),
           *_TIME_COLUMNS, ("cpu_ms", "CPU ms")]
#: Issue 5's targets (the device rows): gaps of the mean and of the single default run.
TARGET_COLUMNS = [("drift_deg", "°"), ("method", "method"),
                  ("gap_float", "FO gap"), ("fo_met", f"≥ −{TARGET_FO_POINTS:g}"),
                  ("default_gap_float", "W0=0 gap"),
                  ("fo_met_default", f"≥ −{TARGET_FO_POINTS:g}"),
                  ("gap_ref", "4-bit gap"), ("cache_met", f"≥ −{TARGET_CACHE_POINTS:g}"),
                  ("default_gap_ref", "W0=0 gap"),
                  ("cache_met_default", f"≥ −{TARGET_CACHE_POINTS:g}")]
#: Issue 16's targets (the device rows).
LORA_COLUMNS = [("drift_deg", "°"), ("method", "method"), ("gap_lora", "− LoRA-All"),
                ("gap_lora_se", "± se"), ("lora_met", f"≥ −{TARGET_LORA_POINTS:g}"),
                *[c for b in TIME_BOARDS for c in
                  ((f"{b}_ms", f"{board(b).title} ms"),
                   (f"{b}_met", f"≤ {1e3 * TARGET_SECONDS[b]:g} ms"))]]


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
    parser.add_argument("--runs", type=csv_list, default=list(DEVICE_RUNS), metavar="NAME,...",
                        help="named first-order runs of the device (default: "
                             f"{','.join(DEVICE_RUNS)}): "
                             + "; ".join(f"{k}: {v.description}" for k, v in RUNS.items()))
    parser.add_argument("--baselines", type=csv_list, default=list(BASELINES),
                        metavar="NAME,...",
                        help=f"float (numpy skip adapters) and PyTorch methods "
                             f"({', '.join(reference.TORCH_METHODS)}) to compare with "
                             f"(default: {','.join(BASELINES)}; PyTorch ones need the "
                             "'torch' extra)")
    parser.add_argument("--baseline-epochs", type=int, default=BASELINE_EPOCHS, metavar="N",
                        help="epochs of the PyTorch baselines (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help="seed of the first start point; start i uses seed + i "
                             "(default: %(default)s, the study's starts)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="first-order epochs of the plain device run and float (default: "
                             "the design's, 10)")
    parser.add_argument("--zo-seeds", type=int, default=0, metavar="N",
                        help="also run the device's zeroth order (golden model, the design's "
                             "steps) and float MeZO for run seeds 1..N per angle, paired with "
                             "start i = seed - 1 of the PyTorch baselines (default: 0, none; "
                             "about 10 s of CPU per run)")
    parser.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="draw accuracy against time per drift angle (needs matplotlib)")


def start_codes(shape, seed):
    """A start point in weight LSBs: ``round(N(0, 1))`` per weight, int64, from
    ``numpy.random.default_rng(seed)`` (round half to even, numpy's ``round``)."""
    return np.round(np.random.default_rng(seed).normal(0.0, 1.0, shape)).astype(np.int64)


def method_name(codebook, run_name):
    """A device method's name: the code book for the plain run, ``codebook/run`` otherwise."""
    return codebook if run_name == "plain" else f"{codebook}/{run_name}"


def device_accuracy(config, train, test, codes, run_name="plain", seed=1):
    """The golden model's first-order run ``run_name`` of ``config`` from start weights
    ``codes`` (classes × features, in weight LSBs): ``(test accuracy, saturated, epochs run)``.
    ``train`` and ``test`` are the golden cache's view of the samples, ``(dequantized features,
    z0, labels)`` (as ``run_finetune`` computes them); ``seed`` is the sample order's seed."""
    fo_run = check_run(run_name)
    cfg = config if fo_run.epochs is None else config.replace(train={"epochs": fo_run.epochs})
    schedule = replace(fo_run.schedule, order_seed=seed & 0xFFFF)
    mem = set_region_matrix(cfg.mac, new_weights(cfg.mac), 0, codes)
    x, z0, labels = train
    r = train_fo_scheduled(cfg.mac, cfg.loss, cfg.train, schedule,
                           {"x": x, "z0": z0, "labels": labels}, mem=mem)
    return (evaluate(cfg.mac, r.mem, *test), bool(r.flags["saturated"]),
            r.flags["epochs_run"])


def projected_seconds(board_name, run_name, records, epochs_run, batch):
    """Seconds of a first-order run that trained ``epochs_run`` epochs over ``records`` cached
    samples, on ``board_name``'s default preset at its SoC clock (held-out evaluations of early
    stop included)."""
    b = board(board_name)
    design = DesignConfig.preset(b.preset)
    schedule = check_run(run_name).schedule
    trained = records - schedule.holdout
    cycles = estimate_cycles(design, "fo", trained, epochs=epochs_run, batch=batch)
    if schedule.stop_every:
        checks = epochs_run // schedule.stop_every
        cycles += checks * estimate_cycles(design, "eval", schedule.holdout)
    return cycles / (b.soc_mhz * 1e6)


def _configs(codebooks, epochs):
    base = DesignConfig()
    if epochs is not None:
        base = base.replace(train={"epochs": epochs})
    if base.mac.adapter != "dense":
        raise ValueError(f"mac.adapter must be 'dense' for paired start points, not "
                         f"{base.mac.adapter!r}")
    return {cb: base.replace(cache={"codebook": cb}) for cb in codebooks}


def _torch_baselines(baselines):
    """The PyTorch methods of ``baselines`` and, when PyTorch is missing, why they are not run
    (``(methods, reason)``)."""
    methods = [b for b in baselines if b != "float"]
    torch, reason = reference.torch_status()
    return (methods, None) if torch is not None or not methods else ([], reason)


def measure(drifts, codebooks, starts, seed, epochs=None, progress=None, *, runs=("plain",),
            baselines=("float",), baseline_epochs=BASELINE_EPOCHS):
    """Every run: ``(per-start rows, default runs)``.

    Per-start rows: ``{"drift_deg", "start", "seed", "<method>_pct", ..., "<device
    method>_epochs", "<PyTorch method>_cpu_s", "saturated": [device methods whose run saturated
    a weight]}``; default runs (``W0 = 0``; float and device methods): ``{drift: {method: pct}}``.
    ``progress()`` is called after each device or PyTorch run.
    """
    configs = _configs(codebooks, epochs)
    any_cfg = next(iter(configs.values()))
    mac = any_cfg.mac
    shape = (mac.classes, sum(any_cfg.cache.taps))
    lsb = 2.0 ** -mac.weight_frac
    codes = [start_codes(shape, seed + i) for i in range(starts)]
    torch_methods, _ = _torch_baselines(baselines)
    tick = progress or (lambda: None)
    rows, defaults = [], {}
    for drift in drifts:
        data, ref = r1_features(drift), r1_reference_data(drift)
        views = {cb: tuple(cached_view(cfg, *records_of(data, split))
                           for split in ("train", "test")) for cb, cfg in configs.items()}
        records = len(next(iter(views.values()))[0][2])

        def one(codes_, order_seed):
            out, saturated = {}, []
            if "float" in baselines:
                out["float_pct"] = 100 * float_first_order(ref, any_cfg.train, curve=False,
                                                           w0=codes_ * lsb).accuracy
            for cb, cfg in configs.items():
                for run_name in runs:
                    m = method_name(cb, run_name)
                    acc, sat, ran = device_accuracy(cfg, *views[cb], codes_, run_name,
                                                    order_seed)
                    out[f"{m}_pct"], out[f"{m}_epochs"] = 100 * acc, ran
                    if sat:
                        saturated.append(m)
                    tick()
            return out, saturated

        defaults[drift] = {k[:-4]: v for k, v in
                           one(np.zeros(shape, dtype=np.int64), seed)[0].items()
                           if k.endswith("_pct")}
        for i, c in enumerate(codes):
            out, saturated = one(c, seed + i)
            if torch_methods:
                cpu = replace(any_cfg.train, epochs=baseline_epochs, seed=i + 1)
                for m, r in torch_references(drift, cpu, torch_methods, curve=False).items():
                    out[f"{m}_pct"], out[f"{m}_cpu_s"] = 100 * r.accuracy, r.seconds
                    tick()
            rows.append({"drift_deg": drift, "start": i, "seed": seed + i,
                         "records": records, **out, "saturated": saturated})
    return rows, defaults


def measure_zo(drifts, seeds, progress=None):
    """Zeroth-order runs per drift and run seed ``1 .. seeds``: the device (the golden model of
    the SoC, ``run_finetune(..., engine="golden")``, bit-exact with it) and float MeZO
    (Gaussian) at the same steps, batch, ε and η. Rows ``{"drift_deg", "seed", "zo_pct",
    "mezo_pct", "records"}``."""
    tick = progress or (lambda: None)
    rows = []
    for drift in drifts:
        data, ref = r1_features(drift), r1_reference_data(drift)
        for seed in range(1, seeds + 1):
            config = DesignConfig().replace(train={"seed": seed})
            device = run_finetune(config, data, mode="zo", engine="golden")
            mezo = float_mezo(ref, config.train, seeds=1)[0]
            rows.append({"drift_deg": drift, "seed": seed, "zo_pct": 100 * device.accuracy,
                         "mezo_pct": 100 * mezo.accuracy,
                         "records": len(data["train_labels"])})
            tick()
    return rows


def summarize_zo(zo_rows, starts):
    """Per drift: the device's zeroth order and float MeZO, with the device's paired gaps to
    MeZO (same seed) and to LoRA-All (run seed ``k`` with start ``k - 1``, when measured) and
    its projected time per board (the design's steps)."""
    out, train = [], DesignConfig().train
    for drift in dict.fromkeys(r["drift_deg"] for r in zo_rows):
        mine = [r for r in zo_rows if r["drift_deg"] == drift]
        col = {m: np.array([r[f"{m}_pct"] for r in mine]) for m in ("zo", "mezo")}
        lora = {s["start"] + 1: s["lora_all_pct"] for s in starts
                if s["drift_deg"] == drift and "lora_all_pct" in s}
        for m in ("mezo", "zo"):
            mean, sd, _ = _mean_se(col[m])
            out.append({"drift_deg": drift, "method": "zo" if m == "zo" else "float MeZO",
                        "starts": len(mine), "mean_pct": mean, "sd_pct": sd})
        row = out[-1]
        row["gap_mezo"], row["gap_mezo_se"] = _gap(col, "zo", "mezo")
        paired = [(r["zo_pct"], lora[r["seed"]]) for r in mine if r["seed"] in lora]
        if len(paired) > 1:
            d = np.array([a - b for a, b in paired])
            row["gap_lora"], _, row["gap_lora_se"] = _mean_se(d)
        for b in TIME_BOARDS:
            design = DesignConfig.preset(board(b).preset)
            cycles = estimate_cycles(design, "zo", mine[0]["records"], steps=train.steps,
                                     batch=train.batch, queries=train.queries)
            row[f"{b}_s"] = cycles / (board(b).soc_mhz * 1e6)
            row[f"{b}_ms"] = 1e3 * row[f"{b}_s"]
    return out


def _mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if len(v) > 1 else None
    return float(v.mean()), sd, (None if sd is None else sd / math.sqrt(len(v)))


def _at_least(gap, target):
    return None if gap is None else gap >= -target


def _gap(col, a, b):
    """Paired gap of method ``a`` to ``b``: ``(mean, se)``, or ``(None, None)``."""
    if a not in col or b not in col:
        return None, None
    gap, _, se = _mean_se(col[a] - col[b])
    return gap, se


def _device_row(drift, m, cb, run_name, mine, col, runs_default, train_batch):
    """One device method's row of :func:`summarize`."""
    mean, sd, _ = _mean_se(col[m])
    epochs = [r[f"{m}_epochs"] for r in mine]
    row = {"drift_deg": drift, "method": m, "codebook": cb, "run": run_name,
           "starts": len(mine), "mean_pct": mean, "sd_pct": sd,
           "default_pct": runs_default.get(m), "epochs": float(np.mean(epochs)),
           "saturated_runs": sum(m in r["saturated"] for r in mine)}
    records = mine[0]["records"]
    for b in TIME_BOARDS:
        row[f"{b}_s"] = float(np.mean([projected_seconds(b, run_name, records, e, train_batch)
                                       for e in epochs]))
        row[f"{b}_ms"] = 1e3 * row[f"{b}_s"]
        row[f"{b}_met"] = row[f"{b}_s"] <= TARGET_SECONDS[b]
    gap, se = _gap(col, m, "float")
    if gap is not None:
        default_gap = runs_default[m] - runs_default["float"]
        row.update(gap_float=gap, gap_float_se=se, default_gap_float=default_gap,
                   fo_met=_at_least(gap, TARGET_FO_POINTS),
                   fo_met_default=_at_least(default_gap, TARGET_FO_POINTS))
    gap, se = _gap(col, m, "lora_all")
    if gap is not None:
        row.update(gap_lora=gap, gap_lora_se=se, lora_met=_at_least(gap, TARGET_LORA_POINTS))
    ref = method_name(REFERENCE_CODEBOOK, run_name)
    if cb != REFERENCE_CODEBOOK and ref in col:
        gap, se = _gap(col, m, ref)
        default_ref = runs_default[m] - runs_default[ref]
        row.update(gap_ref=gap, gap_ref_se=se, default_gap_ref=default_ref,
                   cache_met=_at_least(gap, TARGET_CACHE_POINTS),
                   cache_met_default=_at_least(default_ref, TARGET_CACHE_POINTS))
    return row


def summarize(rows, defaults, codebooks, runs=("plain",), batch=16):
    """The table's rows from :func:`measure`'s results: per drift, the baselines, then each
    code book's runs."""
    out = []
    for drift, runs_default in defaults.items():
        mine = [r for r in rows if r["drift_deg"] == drift]
        methods = [k[:-4] for k in mine[0] if k.endswith("_pct")]
        col = {m: np.array([r[f"{m}_pct"] for r in mine]) for m in methods}
        devices = {method_name(cb, rn): (cb, rn) for cb in codebooks for rn in runs}
        for m in methods:
            if m in devices:
                continue
            mean, sd, _ = _mean_se(col[m])
            row = {"drift_deg": drift, "method": m, "starts": len(mine), "mean_pct": mean,
                   "sd_pct": sd, "default_pct": runs_default.get(m)}
            if m != "float":
                row["cpu_s"] = float(np.median([r[f"{m}_cpu_s"] for r in mine]))
                row["cpu_ms"] = 1e3 * row["cpu_s"]
                row["gap_lora"], row["gap_lora_se"] = (_gap(col, m, "lora_all")
                                                       if m != "lora_all" else (None, None))
            out.append(row)
        for m, (cb, rn) in devices.items():
            out.append(_device_row(drift, m, cb, rn, mine, col, runs_default, batch))
    return out


def recommend(rows, codebook):
    """The first-order run to make the default, among ``codebook``'s device rows (issue 16:
    "the best accuracy per projected second on the default board, not the cheapest"): of the
    runs that meet issue 16's targets at every angle of :data:`TARGET_DRIFTS` (within
    :data:`TARGET_LORA_POINTS` of LoRA-All, projected time on the default board within its
    target), the one with the most accuracy gained over the plain run per projected second
    (both means over the target angles). ``{"run", "mean_pct", "gain_pct",
    "<board>_s", "points_per_s", "reason"}``, or None when no run qualifies or the plain run or
    LoRA-All was not measured."""
    home = TIME_BOARDS[0]
    by_run = {}
    for r in rows:
        if r.get("codebook") == codebook and r["drift_deg"] in TARGET_DRIFTS:
            by_run.setdefault(r["run"], []).append(r)
    if len(by_run.get("plain", ())) != len(TARGET_DRIFTS):
        return None
    plain = float(np.mean([r["mean_pct"] for r in by_run["plain"]]))
    scored = {}
    for name, rs in by_run.items():
        if (name == "plain" or len(rs) != len(TARGET_DRIFTS)
                or not all(r.get("lora_met") and r[f"{home}_met"] for r in rs)):
            continue
        mean = float(np.mean([r["mean_pct"] for r in rs]))
        seconds = float(np.mean([r[f"{home}_s"] for r in rs]))
        scored[name] = (mean, seconds, (mean - plain) / seconds)
    if not scored:
        return None
    best = max(scored, key=lambda n: scored[n][2])
    mean, seconds, rate = scored[best]
    return {"run": best, "mean_pct": mean, "gain_pct": mean - plain, f"{home}_s": seconds,
            "points_per_s": rate,
            "reason": f"of the runs meeting issue 16's targets at "
                      f"{', '.join(map(str, TARGET_DRIFTS))}°, the most points gained over "
                      f"the plain run per projected second on {board(home).title} "
                      f"({mean - plain:+.2f} points in {1e3 * seconds:.0f} ms)"}


def plot(rows, path):
    """Accuracy (mean ± sd over the starts) against time, one panel per drift angle."""
    plt = pyplot()
    drifts = sorted({r["drift_deg"] for r in rows})
    fig, axes = plt.subplots(1, len(drifts), figsize=(5.5 * len(drifts), 4.5), squeeze=False)
    markers = dict(zip(TIME_BOARDS, "os"))
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    for ax, drift in zip(axes[0], drifts):
        for r in (r for r in rows if r["drift_deg"] == drift):
            if f"{TIME_BOARDS[0]}_s" in r:                 # a device run: a point per board
                for b in TIME_BOARDS:
                    ax.errorbar(r[f"{b}_s"], r["mean_pct"], yerr=r["sd_pct"],
                                marker=markers[b], capsize=3, linestyle="none",
                                color=colours[r["method"]],
                                label=f"{r['method']} on {board(b).title}")
            elif r.get("cpu_s") is not None:
                ax.errorbar(r["cpu_s"], r["mean_pct"], yerr=r["sd_pct"], marker="^",
                            capsize=3, linestyle="none", color=colours[r["method"]],
                            label=f"{r['method']} (CPU, PyTorch)")
            else:
                ax.axhline(r["mean_pct"], linestyle="--", color="grey",
                           label=f"{r['method']} (numpy)")
        ax.set_xscale("log")
        ax.set_xlabel("seconds (device: projected at the board's SoC clock; CPU: measured)")
        ax.set_ylabel("R1 test accuracy, %")
        ax.set_title(f"R1 at {drift}°")
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    for flag, values in (("--codebooks", args.codebooks), ("--runs", args.runs),
                         ("--baselines", args.baselines)):
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{flag} must list distinct names, not {','.join(values)!r}")
    for name in args.runs:
        if name not in RUNS:
            raise ValueError(f"--runs must list names from {', '.join(RUNS)}, not {name!r}")
    allowed = ("float", *reference.TORCH_METHODS)
    for name in args.baselines:
        if name not in allowed:
            raise ValueError(f"--baselines must list names from {', '.join(allowed)}, not "
                             f"{name!r}")
    if not 0 <= args.zo_seeds <= 1000:
        raise ValueError(f"--zo-seeds must be an integer from 0 to 1000, not {args.zo_seeds}")
    if not 1 <= args.baseline_epochs <= 1000:
        raise ValueError(f"--baseline-epochs must be an integer from 1 to 1000, not "
                         f"{args.baseline_epochs}")
    return drifts


def run(args, console):
    drifts = _check(args)
    configs = _configs(args.codebooks, args.epochs)     # ValueError on a bad code book first
    if args.plot:
        pyplot()                                        # ValueError now, not after the runs
    train = next(iter(configs.values())).train
    torch_methods, torch_reason = _torch_baselines(args.baselines)
    per_start = len(args.codebooks) * len(args.runs)
    total = len(drifts) * ((args.starts + 1) * per_start + args.starts * len(torch_methods))
    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("device (golden model) and PyTorch runs", total=total)
        starts, defaults = measure(drifts, args.codebooks, args.starts, args.seed,
                                   args.epochs, progress=lambda: bar.advance(task),
                                   runs=args.runs, baselines=args.baselines,
                                   baseline_epochs=args.baseline_epochs)
        zo_rows = []
        if args.zo_seeds:
            task_zo = bar.add_task("zeroth order: device (golden model) and float MeZO",
                                   total=len(drifts) * args.zo_seeds)
            zo_rows = measure_zo(drifts, args.zo_seeds, lambda: bar.advance(task_zo))
    seconds = time.perf_counter() - t0
    rows = summarize(starts, defaults, args.codebooks, args.runs, train.batch)
    rows += summarize_zo(zo_rows, starts) if zo_rows else []
    best = recommend(rows, args.codebooks[0])
    conditions = {"starts": args.starts, "seed": args.seed, "epochs": train.epochs,
                  "batch": train.batch, "lr": 2.0 ** -train.lr_shift, "order": "cache",
                  "runs": {n: {"epochs": RUNS[n].epochs or train.epochs,
                               "description": RUNS[n].description,
                               "schedule": RUNS[n].schedule.__dict__} for n in args.runs},
                  "start_weights": "W0 = k * 2^-weight_frac, k = round(N(0,1)) per weight, "
                                   "numpy default_rng(seed + i); the same W0 for device and "
                                   "float",
                  "device": "golden model (golden.schedule.train_fo_scheduled), not a device "
                            "simulation",
                  "baselines": {"methods": args.baselines, "epochs": args.baseline_epochs,
                                "torch_seed": "start index i + 1", "torch_threads": 1,
                                "not_run": torch_reason},
                  "projected_time": {b: {"preset": board(b).preset,
                                         "soc_mhz": board(b).soc_mhz} for b in TIME_BOARDS},
                  "targets": {"fo_points": TARGET_FO_POINTS,
                              "cache_points": TARGET_CACHE_POINTS,
                              "lora_points": TARGET_LORA_POINTS,
                              "lora_drifts": list(TARGET_DRIFTS), "seconds": TARGET_SECONDS,
                              "one_sided": True, "stated_at_deg": 30.0},
                  "seconds": seconds}
    emit("accuracy", rows, COLUMNS, json_path=args.json, console=console,
         extra={"conditions": conditions, "starts": starts, "zo_runs": zo_rows,
                "recommended": best},
         title=f"R1 first order: device (golden model) vs float and PyTorch, {args.starts} "
               f"paired starts per angle (plain run: {train.epochs} epochs, batch "
               f"{train.batch}, η 2^-{train.lr_shift}, cache order)")
    devices = [r for r in rows if "run" in r]
    console.print(table(f"Issue 5 (stated at 30°): device − float ≥ −{TARGET_FO_POINTS:g}, "
                        f"4-bit − {REFERENCE_CODEBOOK} ≥ −{TARGET_CACHE_POINTS:g} points",
                        devices, TARGET_COLUMNS))
    console.print(table(f"Issue 16 (at {', '.join(map(str, TARGET_DRIFTS))}°): device − "
                        f"LoRA-All ≥ −{TARGET_LORA_POINTS:g} points, projected time",
                        devices, LORA_COLUMNS))
    console.print(f"Gaps: means of the per-start differences ± their standard error (sd/√N); "
                  f"W0=0: the single default run. Met when the gap is not below −target "
                  f"(better counts as met). {total + len(zo_rows)} runs in {seconds:.0f} s.")
    for r in rows:
        if r["method"] == "zo" and r.get("gap_mezo") is not None:
            met = "met" if r["gap_mezo"] >= -TARGET_ZO_POINTS else "NOT met"
            console.print(f"zeroth order at {r['drift_deg']}°: device − float MeZO "
                          f"{r['gap_mezo']:+.2f} ± {r['gap_mezo_se'] or 0:.2f} points over "
                          f"{r['starts']} seeds (target ≥ −{TARGET_ZO_POINTS:g}: {met})")
    if torch_reason:
        console.print(f"[yellow]note:[/yellow] PyTorch baselines not run: {torch_reason}")
    saturated = sum(len(r["saturated"]) for r in starts)
    if saturated:
        console.print(f"[yellow]note:[/yellow] {saturated} device runs saturated a weight")
    if best:
        console.print(f"recommended first-order run: {best['run']} ({best['reason']}; "
                      f"{best['mean_pct']:.2f} % over {', '.join(map(str, TARGET_DRIFTS))}°)")
    else:
        console.print("recommended first-order run: none (needs the plain run, LoRA-All and "
                      f"{', '.join(map(str, TARGET_DRIFTS))}°, and a run meeting the targets)")
    if args.plot:
        plot(rows, args.plot)
        console.print(f"wrote {args.plot}")
    return rows
