"""``fieldtune explore SPACE``: sweep a design space and show its Pareto front."""

import sys
from functools import partial

from rich.console import Console

from ..cli_common import UserError, output_file
from ..executor import Executor
from .report import points_table, front_table, write_json, plot_front
from .space import load_space, shipped_spaces
from .sweep import sweep


__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("space", nargs="?", metavar="SPACE",
                        help="a space file (TOML) or the name of a shipped space (--list)")
    parser.add_argument("--list", action="store_true", help="list the shipped spaces and exit")
    parser.add_argument("--json", metavar="FILE", type=output_file,
                        help="write every point and the front as JSON")
    parser.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="plot the front (needs matplotlib: pip install 'fieldtune[plot]')")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on a running Dask cluster, e.g. tcp://HOST:8786 (default: an "
                             "embedded cluster on this machine)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes of the embedded cluster (default: one per core; "
                             "0 runs every point in this process)")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--rebuild", action="store_true",
                        help="implement every point even when a cached build exists")
    policy.add_argument("--no-build", action="store_true",
                        help="run nothing (no tool, no R1 run): report what the caches hold, "
                             "e.g. the finished points of a sweep still running")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each point's implementation files under DIR/point-N")


def run(args, console):
    # Tables are wide; a file or pipe gets them unwrapped.
    out = Console(width=None if sys.stdout.isatty() else 240)
    if args.list:
        for name, description in shipped_spaces().items():
            out.print(f"{name:24s} {description}", soft_wrap=True)
        return 0
    if not args.space:
        raise UserError("explore needs a SPACE (a TOML file or a shipped space; --list "
                         "names them)")
    if args.plot and not args.plot.lower().endswith((".png", ".svg", ".pdf")):
        raise UserError(f"--plot must name a .png, .svg or .pdf file, not {args.plot!r}")
    space = load_space(args.space)
    build = "always" if args.rebuild else "cached" if args.no_build else "auto"
    with Executor(workers=args.workers, scheduler=args.scheduler) as executor:
        console.print(f"explore {space.name}: {len(space)} points on {executor.describe()}",
                      soft_wrap=True)
        # Without a terminal (a log file, CI) the bar is not drawn: a line per point instead.
        log = None if console.is_terminal else partial(_log_row, console, len(space))
        doc = sweep(space, executor, build=build, keep=args.keep, console=console,
                    on_row=log)
    out.print(points_table(doc))
    if doc["pareto"]:
        out.print(front_table(doc))
    out.print(f"{len(doc['points'])} points, {len(doc['pareto'])} on the front, "
              f"{doc['tool_runs']} tool runs, {doc['cache_hits']} cached, "
              f"{doc['wall_s']:.1f} s on {doc['workers']} workers")
    if args.json:
        write_json(doc, args.json)
        console.print(f"wrote {args.json}")
    if args.plot:
        plot_front(doc, args.plot)
        console.print(f"wrote {args.plot}")
    return 0


def _log_row(console, total, row):
    config = " ".join(f"{k}={v}" for k, v in row["config"].items())
    figures = (f"{row['luts']} LUT, {row['fmax_mhz']} MHz" if row["fits"] else "")
    if row["accuracy"] is not None:
        figures += f", accuracy {row['accuracy']:.3f}"
    console.print(f"point {row['index']}/{total} {config}: {figures} "
                  f"{row['error'] or ''} ({row['seconds']} s)", soft_wrap=True, markup=False,
                  highlight=False)
