"""``fieldtune generate BLOCK``: Verilog or RTLIL of one block or the whole SoC, or the SoC's
memory map as Markdown (``fieldtune generate soc -f memory-map``, the table in
docs/architecture.md)."""

import os
import sys
from pathlib import Path

from amaranth.back import rtlil, verilog

from .blocks import BLOCKS, build_block
from .cli_common import UserError, add_config_arguments, load_config, output_file
from .rtl.csr.map import SocMap
from .toolchain import tool_env


__all__ = ["add_arguments", "run", "FORMATS"]


#: Output formats; ``memory-map`` is the SoC's register and window map (no hardware built).
FORMATS = ("verilog", "rtlil", "memory-map")


def add_arguments(parser):
    parser.add_argument("block", choices=sorted(BLOCKS),
                        help="what to generate: " + "; ".join(
                            f"{k}: {v[2]}" for k, v in sorted(BLOCKS.items())))
    add_config_arguments(parser)
    parser.add_argument("-f", "--format", choices=FORMATS, default="verilog",
                        help="output language (default: verilog); memory-map: the SoC's "
                             "registers and windows as Markdown tables (block soc only)")
    parser.add_argument("-o", "--output", metavar="FILE", type=output_file,
                        help="write here instead of standard output")
    parser.add_argument("--name", default="top", help="top module name (default: top)")


def generate(block, config, fmt, *, name="top"):
    """The text of ``block`` under ``config`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "memory-map":
        if block != "soc":
            raise UserError(f"-f memory-map is for block soc, not {block}")
        return SocMap(config).markdown()
    component = build_block(block, config)
    if fmt == "verilog":
        # Amaranth's Verilog backend runs Yosys; point it at the YoWASP build.
        os.environ.update({k: v for k, v in tool_env("YOSYS").items()
                           if k in ("AMARANTH_USE_YOSYS", "YOSYS")})
        return verilog.convert(component, name=name)
    return rtlil.convert(component, name=name)


def run(args, console):
    text = generate(args.block, load_config(args), args.format, name=args.name)
    if args.output:
        Path(args.output).write_text(text)
        console.print(f"wrote {args.format} of {args.block} to {args.output} "
                      f"({len(text.splitlines())} lines)")
    else:
        sys.stdout.write(text)
    return 0
