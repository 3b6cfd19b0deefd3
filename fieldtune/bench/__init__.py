"""Benchmarks: commands that measure (``fieldtune bench NAME``), not timed tests.

Each benchmark module has ``add_arguments(parser)`` and ``run(args, console) -> rows`` (a list
of dicts); :func:`fieldtune.bench.report.emit` prints the table and writes
``{"bench": NAME, "rows": [...]}`` with ``--json FILE``. This package is also the ``fieldtune
bench`` command (:func:`add_arguments`, :func:`run`); a benchmark's module is imported when the
parser is built for ``fieldtune bench``, never for other commands.
"""

import importlib

from ..cli_common import output_file


__all__ = ["BENCHES", "add_arguments", "run"]


#: Benchmark name -> (module, one-line description).
BENCHES = {
    "perturb": ("fieldtune.bench.perturb",
                "perturbation generators: LUTs, FFs, BRAM, DSP, Fmax on UP5K and ECP5-85F"),
    "engines": ("fieldtune.bench.engines",
                "simulation engines: cycles/s of Amaranth, CXXRTL, Verilator, Icarus on one "
                "design"),
    "cache": ("fieldtune.bench.cache",
              "forward cache: LUTs, FFs, BRAM/SPRAM, Fmax, bytes and samples per device"),
    "mac": ("fieldtune.bench.mac",
            "adapter MAC array: LUTs, FFs, BRAM, DSP, Fmax, R1 first-order utilization, GMAC/s"),
    "soc": ("fieldtune.bench.soc",
            "training SoC: CXXRTL vs Amaranth cycles/s, R1 FO/ZO cycles, LUTs/FFs/BRAM/DSP/Fmax "
            "on UP5K and ECP5-85F"),
    "finetune": ("fieldtune.bench.finetune",
                 "R1 fine-tuning time: CPU (numpy, PyTorch LoRA-All/FT-All) vs the SoC's "
                 "cycles / Fmax per board preset, as ratios"),
    "hierarchy": ("fieldtune.bench.hierarchy",
                  "where a design's LUTs, FFs, DSPs, BRAM and SPRAM go: Yosys stat per module "
                  "of a block (default: the SoC) on its board's device"),
    "accuracy": ("fieldtune.bench.accuracy",
                 "R1 first-order accuracy, device (golden model) vs float skip adapters and "
                 "4-bit vs 16-bit cache, as paired distributions over start points"),
    "link": ("fieldtune.bench.link",
             "host link: goodput and latency of register reads and bursts over the UART of the "
             "simulated SoC, R1's record load time"),
    "explore": ("fieldtune.bench.explore",
                "design-space sweep wall time with 1 and 2 Dask workers (fieldtune explore)"),
}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, (module, description) in BENCHES.items():
        p = sub.add_parser(name, help=description, description=description)
        p.add_argument("--json", metavar="FILE", type=output_file,
                       help="also write the figures as JSON")
        importlib.import_module(module).add_arguments(p)


def run(args, console):
    importlib.import_module(BENCHES[args.bench][0]).run(args, console)
    return 0
