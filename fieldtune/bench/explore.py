"""``fieldtune bench explore``: how a sweep's wall time scales with Dask workers.

The same space is swept once per worker count (default 1, then 2) on an embedded
LocalCluster, each time from an empty cache of its own (a fresh ``$FIELDTUNE_CACHE``, so every
point runs its tools and its R1 run), in one command so that the machine's load is shared
alike. The table gives each sweep's wall time, its ratio to the first, the load average
around it, and whether its figures equal the first sweep's. Target (issue 14): a 16-point
UP5K sweep with 2 workers in <= 0.6x the wall time of 1 worker.
"""

import os
import tempfile

from ..executor import Executor
from ..explore.space import load_space
from ..explore.sweep import sweep
from ..sim.engines.hdl import CACHE_ENV
from .report import csv_list, emit


__all__ = ["add_arguments", "run", "TARGET_RATIO", "COLUMNS"]


#: Wall time with 2 workers over wall time with 1 (issue 14).
TARGET_RATIO = 0.6

COLUMNS = [("workers", "workers"), ("points", "points"), ("tool_runs", "tool runs"),
           ("wall_s", "wall s"), ("ratio", "wall / first"), ("point_s", "s per point"),
           ("busy", "busy workers"), ("load_before", "load before"),
           ("load_after", "load after"), ("same_figures", "same figures")]

#: Row keys that say where and how fast a point ran, not what it is.
_BOOKKEEPING = ("worker", "seconds", "tool_run", "cache_hit", "fmax_source")


def add_arguments(parser):
    parser.add_argument("--space", default="up5k-lfsr",
                        help="a space file or shipped space (default: up5k-lfsr, 16 points)")
    parser.add_argument("--workers", type=lambda s: [int(v) for v in csv_list(s)],
                        default=[1, 2], metavar="N,N,...",
                        help="worker counts, one sweep each, in this order (default: 1,2)")


def _figures(doc):
    return [{k: v for k, v in row.items() if k not in _BOOKKEEPING} for row in doc["points"]]


def run(args, console):
    space = load_space(args.space)
    if any(n < 1 for n in args.workers):
        raise ValueError(f"--workers must be positive worker counts, not "
                         f"{','.join(map(str, args.workers))}")
    rows, first = [], None
    saved = os.environ.get(CACHE_ENV)
    try:
        for n in args.workers:
            with tempfile.TemporaryDirectory(prefix="fieldtune-bench-explore-") as cache:
                os.environ[CACHE_ENV] = cache          # the workers start with it
                load_before = os.getloadavg()[0]
                with Executor(workers=n) as executor:
                    console.print(f"{space.name}, {len(space)} points: {executor.describe()}",
                                  soft_wrap=True)
                    doc = sweep(space, executor, console=console)
                first = first or doc
                busy = sum(r["seconds"] or 0 for r in doc["points"])
                rows.append({"workers": n, "points": len(doc["points"]),
                             "tool_runs": doc["tool_runs"], "wall_s": doc["wall_s"],
                             "ratio": round(doc["wall_s"] / first["wall_s"], 3),
                             # mean time of a point on its worker, and how many workers were
                             # busy on average (their points' time over the wall time): on a
                             # shared machine a second worker adds a process, not a core
                             "point_s": round(busy / len(doc["points"]), 1),
                             "busy": round(busy / doc["wall_s"], 2),
                             "load_before": round(load_before, 2),
                             "load_after": round(os.getloadavg()[0], 2),
                             "same_figures": _figures(doc) == _figures(first),
                             "errors": sum(1 for r in doc["points"] if r["error"])})
    finally:
        if saved is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = saved
    emit("explore", rows, COLUMNS, json_path=args.json, console=console,
         title=f"fieldtune bench explore: {space.name} ({len(space)} points)",
         extra={"space": space.name, "target_ratio": TARGET_RATIO,
                "cpus": os.cpu_count()})
    return rows
