"""``fieldtune build``: a bitstream of the design for a board, with its resources and timing.

The board top (:mod:`fieldtune.boards.top`: PLL, reset, host link, LEDs) is synthesized,
placed and routed with the YoWASP tools (:mod:`fieldtune.boards.build`), over ``--seeds``
placement seeds in parallel, and the bitstream is written to ``--output`` (default
``build/BOARD``), where ``fieldtune program`` finds it. The table lists every resource used
and available and the Fmax of every clock against its target; ``--json`` writes the
:class:`~fieldtune.boards.build.BuildReport` (keys ``board``, ``device``, ``fits``,
``timing_met``, ``luts``, ``ffs``, ``brams``, ``sprams``, ``dsps``, ``available``,
``fmax_mhz``, ``clock_mhz``, ``clocks``, ``bitstream``, ...) with the configuration.

Exit status: 0 when the design fits and meets timing; 1 when it does not (one ``error:``
line per resource or clock, with the margin) or a tool fails; 2 for a bad command line or
configuration, or a missing tool.
"""

import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .boards.build import RESOURCES, BuildError, build, plan
from .boards.table import BOARDS
from .cli_common import add_config_arguments, load_config, output_file
from .config import DesignConfig
from .toolchain import tool_env


__all__ = ["add_arguments", "run", "build_config", "default_output", "PNR_MINUTES"]

#: Minutes a placement seed may run before it is given up (``--timeout``): the default design
#: fills 98.8 % of the UP5K, and for some placements nextpnr's router never converges.
PNR_MINUTES = 30.0


def default_output(board):
    """Folder of ``board``'s build when ``--output`` is not given."""
    return Path("build") / board


def add_arguments(parser):
    parser.add_argument("--board", choices=tuple(BOARDS),
                        help="board to build for (default: the configuration's board; a board "
                             "alone starts from its default preset)")
    add_config_arguments(parser)
    parser.add_argument("--clock-mhz", type=float, metavar="MHZ",
                        help="SoC clock made by the board's PLL (default: the configuration's "
                             "clock_mhz, else the board's default)")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="placement seeds tried in parallel; the best is kept "
                             "(default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=PNR_MINUTES, metavar="MIN",
                        help="minutes a placement seed may take before it is given up "
                             f"(default {PNR_MINUTES:g}: a full device can leave the router "
                             "circling for hours)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="seeds placed at once (default: the CPU count)")
    parser.add_argument("--output", metavar="DIR",
                        help="build folder (default: build/BOARD)")
    parser.add_argument("--json", metavar="FILE", type=output_file,
                        help="also write the report as JSON")


def build_config(args):
    """The configuration ``fieldtune build`` builds: ``--preset`` and ``--config`` as every
    command reads them, else the board's default preset; ``--board`` and ``--clock-mhz``
    replace the configuration's."""
    if args.preset is None and args.config is None:
        name = args.board or DesignConfig().board
        config = DesignConfig.preset(BOARDS[name].preset)
    else:
        config = load_config(args)
    changes = {}
    if args.board is not None and args.board != config.board:
        changes["board"] = args.board
    if getattr(args, "clock_mhz", None) is not None:
        changes["clock_mhz"] = args.clock_mhz
    return config.replace(**changes) if changes else config


def _check_arguments(args):
    for name in ("seeds", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be a positive integer, not {value}")
    timeout = getattr(args, "timeout", PNR_MINUTES)
    if not timeout > 0:
        raise ValueError(f"--timeout must be a positive number of minutes, not {timeout}")


def print_report(report, console):
    table = Table(title=f"{report.board} ({report.device}), SoC clock {report.clock_mhz:g} MHz")
    for header in ("resource", "used", "available", "use"):
        table.add_column(header, justify="left" if header == "resource" else "right")
    for name in RESOURCES:
        used, cap = getattr(report, name), report.available.get(name, 0)
        table.add_row(name, str(used), str(cap), f"{used / cap:.0%}" if cap else "-")
    console.print(table)
    if report.clocks:
        clocks = Table()
        for header in ("clock", "Fmax (MHz)", "target (MHz)", "margin"):
            clocks.add_column(header, justify="left" if header == "clock" else "right")
        for net, c in report.clocks.items():
            clocks.add_row(escape(net), f"{c['fmax_mhz']:.2f}", f"{c['target_mhz']:.2f}",
                           f"{c['fmax_mhz'] / c['target_mhz'] - 1:+.1%}")
        console.print(clocks)
    if len(report.seeds) > 1:
        console.print("seeds (worst-clock Fmax): " + ", ".join(
            f"{s}: {f:.2f} MHz" for s, f in report.seeds.items()) + f"; kept seed {report.seed}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
    console.print(f"time: {seconds}")
    if report.bitstream:
        console.print(f"bitstream: {escape(report.bitstream)}")


def run(args, console):
    _check_arguments(args)
    config = build_config(args)
    board_plan = plan(config)
    output = Path(args.output) if args.output else default_output(config.board)
    env = tool_env()
    try:
        with console.status("building") as status:
            report = build(board_plan, output, env, seeds=args.seeds, jobs=args.jobs,
                           pnr_minutes=getattr(args, "timeout", PNR_MINUTES),
                           status=lambda text: status.update(f"{config.board}: {text}"))
    except BuildError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 1
    print_report(report, console)
    if args.json:
        doc = {**report.to_dict(), "config": config.to_dict()}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"wrote {escape(args.json)}")
    problems = report.problems()
    for line in problems:
        console.print(f"[red]error:[/red] {escape(line)}")
    return 1 if problems or not (report.fits and report.timing_met) else 0
