"""The ``fieldtune`` command line.

Commands are registered in :data:`COMMANDS` by import path: each module has
``add_arguments(parser)`` and ``run(args, console) -> exit code``. Only the module of the
command being run is imported (``fieldtune --help`` imports none), so a command's imports cost
nothing to the others. Every mistake a user can make ends in one ``error: ...`` line and exit
code 2 (:mod:`fieldtune.cli_common`).
"""

import importlib
import os
import sys

from rich.console import Console
from rich.markup import escape

from . import __version__
from .cli_common import CommandParser, USER_ERRORS, error_message


__all__ = ["main", "build_parser", "COMMANDS"]


#: Command name -> (module with ``add_arguments`` and ``run``, one-line help).
COMMANDS = {
    "demo": ("fieldtune.demo",
             "the main job: fine-tune R1's adapters after drift on the simulated SoC (first and "
             "zeroth order), beside float references, with the projected time on the board"),
    "simulate": ("fieldtune.simulate",
                 "a short fine-tuning run of the SoC (a few steps on a slice of R1) with "
                 "waveforms for GTKWave (--vcd FILE)"),
    "generate": ("fieldtune.generate",
                 "emit Verilog or RTLIL of one block or the whole design (or the SoC's memory "
                 "map)"),
    "bench": ("fieldtune.bench",
              "measure resources, Fmax, speed or accuracy (prints a table, --json FILE)"),
    "pretrain": ("fieldtune.pretrain",
                 "pretrain R1's backbone in numpy, quantize it to int8 and write the .npz "
                 "(regenerates the shipped file bit for bit)"),
}


def build_parser(commands=None):
    """The parser; the arguments of ``commands`` (names, default: all) are added, the others
    are listed with their help only."""
    parser = CommandParser(
        prog="fieldtune",
        description="Generate, simulate, benchmark and build FPGA accelerators for on-device "
                    "fine-tuning of a frozen CNN after concept drift (first order: InstantFT "
                    "skip adapters over a 4-bit forward cache; zeroth order: PeZO).")
    parser.add_argument("--version", action="version", version=f"fieldtune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if commands is None or name in commands:
            importlib.import_module(module).add_arguments(p)
    return parser


def _command_in(argv):
    # The command is the first word that is not an option (the top level has only --help
    # and --version, which take no value).
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser([_command_in(argv)]).parse_args(argv)
    console = Console(stderr=True)
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args, console)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as e:
        if os.environ.get("FIELDTUNE_TRACEBACK"):
            raise
        console.print(f"[red]error:[/red] {escape(error_message(e))}", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
