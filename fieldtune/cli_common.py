"""What every ``fieldtune`` command shares: the design options and the handling of user errors.

A command module (``fieldtune.demo``, ``fieldtune.generate``, ...) has ``add_arguments(parser)``
and ``run(args, console)``; :mod:`fieldtune.cli` registers it by import path. Mistakes a user
can make end in one ``error: ...`` line and exit code 2, never a traceback:

- argument mistakes (unknown preset, bad choice, a file argument that is a directory or in a
  folder that does not exist) are caught while parsing: declare file arguments with
  ``type=input_file`` or ``type=output_file``, so a long run does not fail at its end;
- at run time, :data:`USER_ERRORS` raised by the command are reported by :func:`error_message`
  in :func:`fieldtune.cli.main`: :class:`UserError` (raise it for any other mistake),
  ``ValueError`` (invalid configuration: the message names field, value and range), ``OSError``
  (files, serial ports), :class:`~fieldtune.toolchain.ToolchainError` and
  :class:`~fieldtune.sim.engines.script.EngineUnavailable` (a missing tool or simulator; the
  message says how to install it).

Set ``FIELDTUNE_TRACEBACK=1`` to get the traceback instead (for developers).
"""

import argparse
import os
import sys
from pathlib import Path

from .config import DesignConfig, PRESETS
from .sim.engines.script import EngineUnavailable
from .toolchain import ToolchainError


__all__ = ["UserError", "USER_ERRORS", "error_message", "CommandParser", "input_file",
           "output_file", "add_config_arguments", "load_config", "pyplot"]


class UserError(Exception):
    """A mistake of the user's; the command line prints ``error: <message>`` and exits with 2."""


#: What the command line reports as ``error: ...`` with exit code 2.
USER_ERRORS = (UserError, ValueError, OSError, ToolchainError, EngineUnavailable)


def error_message(error):
    """One line for a :data:`USER_ERRORS` exception: ``OSError`` as ``FILE: reason``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors end in one ``error: ...`` line (exit
    code 2) after the usage; its sub-command parsers are of the same class."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.prog}: {message}\n")


def input_file(text):
    """``type=`` of an argument naming a file to read: it must exist and not be a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return text


def output_file(text):
    """``type=`` of an argument naming a file to write: not a folder, in a folder that exists
    and is writable."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    folder = path.absolute().parent
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} does not exist")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {folder} is not writable")
    return text


def add_config_arguments(parser):
    """``--config FILE`` and ``--preset NAME``, shared by every command that builds a design."""
    parser.add_argument("--config", metavar="FILE.toml", type=input_file,
                        help="design configuration (TOML tables [perturb], [cache], [mac], "
                             "[loss], [train]; may name a preset)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named preset (default: the built-in defaults)")


def load_config(args):
    """The :class:`~fieldtune.config.DesignConfig` named by ``--preset`` and ``--config``."""
    base = DesignConfig.preset(args.preset) if getattr(args, "preset", None) else None
    if getattr(args, "config", None):
        return DesignConfig.from_toml(args.config, base=base)
    return base if base is not None else DesignConfig()


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg back end (no display needed), for the
    commands' ``--plot`` options; ValueError saying how to install it when it is missing.
    Imported here, not at module level: matplotlib is optional (the ``plot`` extra) and slow
    to import."""
    try:
        import matplotlib               # optional (the plot extra), slow to import
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed; install it with: "
                         "pip install 'fieldtune[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt     # after use("Agg"): no display needed
    return plt
