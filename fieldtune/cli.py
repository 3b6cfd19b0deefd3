"""The ``fieldtune`` command line.

Subcommands register themselves in :data:`COMMANDS`; each has an ``add_arguments`` and a
``run`` function, so ``fieldtune --help`` lists them all and each has its own ``--help``.
"""

import argparse
import importlib
import sys

from rich.console import Console
from rich.markup import escape

from . import __version__, pretrain, demo, simulate, build, program


__all__ = ["main", "build_parser", "load_config"]


def add_config_arguments(parser):
    """``--config FILE`` and ``--preset NAME``, shared by every command that builds a design."""
    from .config import PRESETS
    parser.add_argument("--config", metavar="FILE.toml",
                        help="design configuration (TOML tables [perturb], [cache], [mac], "
                             "[loss], [train]; may name a preset)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named preset (default: the built-in defaults)")


def load_config(args):
    """The :class:`~fieldtune.config.DesignConfig` named by ``--preset`` and ``--config``."""
    from .config import DesignConfig
    base = DesignConfig.preset(args.preset) if getattr(args, "preset", None) else None
    if getattr(args, "config", None):
        return DesignConfig.from_toml(args.config, base=base)
    return base if base is not None else DesignConfig()


# -- generate -------------------------------------------------------------------------------

def _generate_arguments(parser):
    from .blocks import BLOCKS
    parser.add_argument("block", choices=sorted(BLOCKS),
                        help="what to generate: " + "; ".join(
                            f"{k}: {v[2]}" for k, v in sorted(BLOCKS.items())))
    add_config_arguments(parser)
    parser.add_argument("-f", "--format", choices=("verilog", "rtlil"), default="verilog",
                        help="output language (default: verilog)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write here instead of standard output")
    parser.add_argument("--name", default="top", help="top module name (default: top)")


def _generate_run(args, console):
    import os
    from amaranth.back import rtlil, verilog
    from .blocks import build_block
    from .toolchain import tool_env
    config = load_config(args)
    block = build_block(args.block, config)
    if args.format == "verilog":
        # Amaranth's Verilog backend runs Yosys; point it at the YoWASP build.
        os.environ.update({k: v for k, v in tool_env("YOSYS").items()
                           if k in ("AMARANTH_USE_YOSYS", "YOSYS")})
        text = verilog.convert(block, name=args.name)
    else:
        text = rtlil.convert(block, name=args.name)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        console.print(f"wrote {args.format} of {args.block} to {args.output} "
                      f"({len(text.splitlines())} lines)")
    else:
        sys.stdout.write(text)
    return 0


# -- bench ----------------------------------------------------------------------------------

def _bench_arguments(parser):
    from .bench import BENCHES
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, (module, description) in BENCHES.items():
        p = sub.add_parser(name, help=description, description=description)
        p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
        importlib.import_module(module).add_arguments(p)


def _bench_run(args, console):
    from .bench import BENCHES
    module = importlib.import_module(BENCHES[args.bench][0])
    module.run(args, console)
    return 0


#: name -> (add_arguments, run, help)
COMMANDS = {
    "demo": (demo.add_arguments, demo.run,
             "the main job: fine-tune R1's adapters after drift on the simulated SoC (first and "
             "zeroth order), beside float references, with the projected time on the board"),
    "simulate": (simulate.add_arguments, simulate.run,
                 "a short fine-tuning run of the SoC (a few steps on a slice of R1) with "
                 "waveforms for GTKWave (--vcd FILE)"),
    "generate": (_generate_arguments, _generate_run,
                 "emit Verilog or RTLIL of one block or the whole design"),
    "bench": (_bench_arguments, _bench_run,
              "measure resources, Fmax, speed or accuracy (prints a table, --json FILE)"),
    "build": (build.add_arguments, build.run,
              "synthesize, place and route the design for a board and write its bitstream, "
              "with resources and Fmax against the target (--json FILE)"),
    "program": (program.add_arguments, program.run,
                "load a board with the bitstream of the last build (iceprog, openFPGALoader "
                "or dfu-util)"),
    "pretrain": (pretrain.add_arguments, pretrain.run,
                 "pretrain R1's backbone in numpy, quantize it to int8 and write the .npz "
                 "(regenerates the shipped file bit for bit)"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fieldtune",
        description="Generate, simulate, benchmark and build FPGA accelerators for on-device "
                    "fine-tuning of a frozen CNN after concept drift (first order: InstantFT "
                    "skip adapters over a 4-bit forward cache; zeroth order: PeZO).")
    parser.add_argument("--version", action="version", version=f"fieldtune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        return COMMANDS[args.command][1](args, console)
    except ValueError as e:
        # Configuration errors name the field, the value and what is allowed.
        console.print(f"[red]error:[/red] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
