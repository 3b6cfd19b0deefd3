"""``fieldtune program``: load a board with the bitstream ``fieldtune build`` wrote.

The programmer is the board's (:mod:`fieldtune.boards.program`: iceprog, openFPGALoader or
dfu-util); a missing one is named with how to install it. Exit status: 0 when programmed, 1
when the programmer fails, 2 for a bad command line (unknown board, no bitstream) or a missing
programmer.
"""

from rich.markup import escape

from .boards.program import ProgramError, ProgrammerMissing, program
from .boards.table import BOARDS, DEFAULT_BOARD
from .build import default_output
from .cli_common import UserError
from .toolchain import find_tool


__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("--board", choices=tuple(BOARDS), default=DEFAULT_BOARD,
                        help="board to program (default: %(default)s)")
    parser.add_argument("--bitstream", metavar="FILE",
                        help="bitstream to load (default: the last build, build/BOARD/top.bin "
                             "or top.bit)")
    parser.add_argument("--flash", action="store_true",
                        help="write the configuration flash so the design survives a power "
                             "cycle (openFPGALoader loads the FPGA directly otherwise; iceprog "
                             "and dfu-util always write the flash)")


def run(args, console):
    bitstream = args.bitstream or str(
        default_output(args.board) / f"top{BOARDS[args.board].bitstream_suffix}")
    try:
        with console.status(f"programming {args.board}"):
            argv = program(args.board, bitstream, find=find_tool, flash=args.flash)
    except ProgrammerMissing as e:
        raise UserError(str(e)) from None
    except ProgramError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 1
    console.print(f"programmed {args.board}: {escape(' '.join(argv))}")
    return 0
