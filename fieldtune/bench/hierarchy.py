"""``fieldtune bench hierarchy``: where a design's LUTs, flip-flops, DSPs and memories go.

One block of a design (default: the whole training SoC of the default design) is synthesized
for its board's device with every module kept (:func:`fieldtune.boards.implement.hierarchy`:
the implementation flow's harness and synthesis script, Yosys ``stat -json`` read from its
file), and one row per module instance is printed: totals including submodules, and the
module's own LUT4s. Keeping hierarchy stops optimization across module boundaries, so the
total is somewhat above a flattened build's (``fieldtune build``/``fmax``). On the iCE40 two
more columns come from nextpnr's packer (``--pack-only``, seconds): logic cells per module
(``LC``, the device's real limit: one LUT4 and one flip-flop each) and the cells that hold a
flip-flop alone (``lone FF``). Synthesis only:
about 5 minutes for the UP5K SoC on an idle core.
"""

from ..blocks import BLOCKS, build_block
from ..boards.implement import hierarchy
from ..cli_common import add_config_arguments, load_config
from ..boards.table import board
from ..fmax import implement_options
from ..toolchain import tool_env
from .report import emit


__all__ = ["add_arguments", "run", "COLUMNS"]


COLUMNS = [("module", "module"), ("luts", "LUT4"), ("ffs", "FF"), ("dsps", "DSP"),
           ("brams", "BRAM"), ("sprams", "SPRAM"), ("own_luts", "own LUT4")]

#: iCE40 only: logic cells (the device's real limit) and, of them, flip-flops alone in a cell.
CELL_COLUMNS = [("lcs", "LC"), ("lone_ffs", "lone FF")]


def add_arguments(parser):
    parser.add_argument("--block", choices=sorted(BLOCKS), default="soc",
                        help="block to measure (default: soc)")
    add_config_arguments(parser)
    parser.add_argument("--depth", type=int, default=None, metavar="N",
                        help="only modules at most N levels below the block")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep the RTLIL, synthesis script, log and statistics in DIR")


def run(args, console):
    if args.depth is not None and args.depth < 0:
        raise ValueError(f"--depth must be at least 0, not {args.depth}")
    config = load_config(args)
    device = board(config.board).device
    options = implement_options(config)
    with console.status(f"synthesizing {args.block} for {device} (hierarchy kept)"):
        rows = hierarchy(build_block(args.block, config), device, tool_env(),
                         workdir=args.workdir, dsp=options["dsp"], spram=options["spram"])
    if args.depth is not None:
        rows = [r for r in rows if r["module"].count(".") <= args.depth]
    columns = COLUMNS + (CELL_COLUMNS if rows and "lcs" in rows[0] else [])
    emit("hierarchy", rows, columns, json_path=args.json, console=console,
         title=f"fieldtune bench hierarchy: {args.block} on {device}",
         extra={"block": args.block, "device": device, "preset": args.preset,
                "config": str(args.config) if args.config else None})
    return rows
