"""``fieldtune bench perturb``: resources and Fmax of every perturbation-engine variant.

Each variant (a named choice of source, shape, scaling and reuse over the default ``[perturb]``
section) is implemented out of context at each lane count for each device with
:func:`fieldtune.bench.report.implement_all`. The table adds, for every PeZO variant, its LUTs
and FFs as a fraction of the cheapest Gaussian baseline (fewest LUTs) at the same lanes and
device. The target (issue 2): PeZO with reuse at <= 40 % of the LUTs and <= 80 % of the FFs.

A full run is long (tens of minutes at 64 lanes), so it can be done in slices, each with its
own ``--json`` report (``--lanes 4``, ``--lanes 16``, ...), and ``--merge A.json,B.json``
joins them into one table with the ratios recomputed across all rows.
"""

from dataclasses import replace

from ..config import DesignConfig
from .report import add_variant_arguments, csv_list
import json
from pathlib import Path
from .report import emit
from ..toolchain import tool_env
from ..boards.devices import DEVICES as KNOWN
from ..rtl.perturb.engine import PerturbationEngine
from .report import implement_all, select_variants
from ..boards.implement import Implementation


__all__ = ["VARIANTS", "DEVICES", "LANES", "TARGET_LUT_RATIO", "TARGET_FF_RATIO",
           "add_arguments", "run", "variant_params", "add_ratios", "merge_reports"]


#: Variant name -> (source, shape, scaling, reuse).
VARIANTS = {
    "uniform-xoshiro": ("xoshiro128pp", "uniform", "none", "none"),
    "uniform-lfsr": ("lfsr", "uniform", "none", "none"),
    "clt4-xoshiro": ("xoshiro128pp", "clt4", "none", "none"),
    "clt4-lfsr": ("lfsr", "clt4", "none", "none"),
    "clt12-xoshiro": ("xoshiro128pp", "clt12", "none", "none"),
    "clt12-lfsr": ("lfsr", "clt12", "none", "none"),
    "icdf-xoshiro": ("xoshiro128pp", "icdf", "none", "none"),
    "icdf-lfsr": ("lfsr", "icdf", "none", "none"),
    "pezo-static-lfsr": ("lfsr", "uniform", "static", "none"),
    "pezo-adaptive-lfsr": ("lfsr", "uniform", "adaptive", "none"),
    "pezo-static-pool-xoshiro": ("xoshiro128pp", "uniform", "static", "pool"),
    "pezo-static-pool-lfsr": ("lfsr", "uniform", "static", "pool"),
    "pezo-adaptive-pool-xoshiro": ("xoshiro128pp", "uniform", "adaptive", "pool"),
    "pezo-adaptive-pool-lfsr": ("lfsr", "uniform", "adaptive", "pool"),
    "pezo-static-onthefly-xoshiro": ("xoshiro128pp", "uniform", "static", "onthefly"),
    "pezo-static-onthefly-lfsr": ("lfsr", "uniform", "static", "onthefly"),
    "pezo-adaptive-onthefly-xoshiro": ("xoshiro128pp", "uniform", "adaptive", "onthefly"),
    "pezo-adaptive-onthefly-lfsr": ("lfsr", "uniform", "adaptive", "onthefly"),
}
DEVICES = ("up5k", "ecp5-85f")
LANES = (4, 16, 64)
TARGET_LUT_RATIO = 0.40
TARGET_FF_RATIO = 0.80

COLUMNS = [("variant", "variant"), ("family", "family"), ("lanes", "L"), ("device", "device"),
           ("luts", "LUTs"), ("ffs", "FFs"), ("brams", "BRAM"), ("dsps", "DSP"),
           ("fmax_mhz", "Fmax MHz"), ("values_per_cycle", "values/cycle"), ("fits", "fits"),
           ("lut_ratio", "LUT/gauss"), ("ff_ratio", "FF/gauss"), ("baseline", "gauss")]


def variant_params(name, lanes, base=None):
    """The :class:`~fieldtune.rtl.perturb.params.PerturbParams` of variant ``name``."""
    source, shape, scaling, reuse = VARIANTS[name]
    base = base if base is not None else DesignConfig().perturb
    return replace(base, lanes=lanes, source=source, shape=shape, scaling=scaling, reuse=reuse)


def add_arguments(parser):
    parser.add_argument("--lanes", type=lambda s: [int(v) for v in csv_list(s)],
                        default=list(LANES), metavar="L,L,...",
                        help="lane counts (default: 4,16,64)")
    add_variant_arguments(parser, DEVICES, "up5k, ecp5-85f", "clt4-*,pezo-*-pool-*")
    parser.add_argument("--merge", type=csv_list, metavar="FILE,...",
                        help="implement nothing: join the rows of earlier --json reports (e.g. "
                             "one per lane count), recompute the PeZO ratios and print the table")


def add_ratios(rows):
    """Set ``lut_ratio``/``ff_ratio`` of every PeZO row against the Gaussian row with the
    fewest LUTs at the same lanes and device (synthesized LUT counts, fitting or not)."""
    for row in rows:
        row["lut_ratio"] = row["ff_ratio"] = None
        row["baseline"] = None
        if row["family"] != "pezo" or not row["luts"]:
            continue
        gaussians = [r for r in rows if r["family"] == "gaussian" and r["luts"]
                     and r["lanes"] == row["lanes"] and r["device"] == row["device"]]
        if not gaussians:
            continue
        cheapest = min(gaussians, key=lambda r: (r["luts"], r["ffs"]))
        row["baseline"] = cheapest["variant"]
        row["lut_ratio"] = round(row["luts"] / cheapest["luts"], 3)
        row["ff_ratio"] = round(row["ffs"] / cheapest["ffs"], 3) if cheapest["ffs"] else None
    return rows


def merge_reports(paths):
    """The rows of earlier ``--json`` reports, joined; a later report's row replaces an earlier
    one of the same (variant, lanes, device). ValueError for a file that is not a perturb
    report."""
    rows = {}
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--merge {path} cannot be read as a JSON report: {error}") from None
        if not isinstance(doc, dict) or doc.get("bench") != "perturb":
            raise ValueError(f"--merge {path} is not a 'fieldtune bench perturb' report")
        for row in doc["rows"]:
            rows[(row["variant"], row["lanes"], row["device"])] = row
    order = {name: i for i, name in enumerate(VARIANTS)}
    return [rows[k] for k in sorted(rows, key=lambda k: (k[1], DEVICES.index(k[2])
                                                          if k[2] in DEVICES else len(DEVICES),
                                                          order.get(k[0], len(order))))]


def _emit(rows, args, console):
    add_ratios(rows)
    emit("perturb", rows, COLUMNS, json_path=args.json, console=console,
         extra={"target": {"lut_ratio": TARGET_LUT_RATIO, "ff_ratio": TARGET_FF_RATIO}})
    return rows


def run(args, console):

    if args.merge:
        return _emit(merge_reports(args.merge), args, console)
    if args.list:
        for name, spec in VARIANTS.items():
            console.print(f"{name:32s} source={spec[0]} shape={spec[1]} scaling={spec[2]} "
                          f"reuse={spec[3]}", soft_wrap=True)
        return []
    for device in args.devices:
        if device not in DEVICES or device not in KNOWN:
            raise ValueError(f"--devices must name {', '.join(DEVICES)}, not {device!r}")
    names = select_variants(args.variants, list(VARIANTS))
    jobs, meta = [], {}
    for name in names:
        for lanes in args.lanes:
            params = variant_params(name, lanes)         # validates (raises ValueError)
            for device in args.devices:
                key = (name, lanes, device)
                workdir = None
                if args.workdir:
                    workdir = f"{args.workdir}/{name}-L{lanes}-{device}"
                jobs.append((key, (lambda p=params: PerturbationEngine(p)), device,
                             {"workdir": workdir}))
                meta[key] = params
    env = tool_env()
    results = _implement(jobs, env, console, args.workers, implement_all, args.scheduler)
    rows = []
    for (name, lanes, device), impl in results.items():
        params = meta[(name, lanes, device)]
        source, shape, scaling, reuse = VARIANTS[name]
        rows.append({
            "variant": name, "family": params.family, "lanes": lanes, "device": device,
            "luts": impl.luts, "ffs": impl.ffs, "brams": impl.brams, "dsps": impl.dsps,
            "fmax_mhz": impl.fmax_mhz, "values_per_cycle": lanes, "fits": impl.fits,
            "source": source, "shape": shape, "scaling": scaling, "reuse": reuse,
            "reason": impl.reason,
        })
    return _emit(rows, args, console)


def _implement(jobs, env, console, workers, implement_all, scheduler=None):
    """All jobs at once; if a tool run fails outright, retry one by one so the others still
    report and the failing one becomes a row with ``fits = False`` and the reason."""
    try:
        return implement_all(jobs, env, console=console, workers=workers,
                             scheduler=scheduler, description="perturb variants")
    except Exception:                                     # noqa: BLE001 - reported per row
        results = {}
        for job in jobs:
            key, _, device, _ = job
            try:
                results.update(implement_all([job], env, console=console, workers=1,
                                             scheduler=scheduler,
                                             description=f"{key[0]} L={key[1]} {device}"))
            except Exception as error:                    # noqa: BLE001
                results[key] = Implementation(device=device, reason=str(error)[-300:])
        return results
