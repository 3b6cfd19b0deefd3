"""Simulators nobody here wrote: the emitted Verilog, and Icarus Verilog running it.

Verilog engines (Icarus here, Verilator in :mod:`fieldtune.sim.engines.verilator`) run a
:class:`~fieldtune.sim.engines.script.Script` and return the same
:class:`~fieldtune.sim.engines.script.ScriptResult` Amaranth's simulator and CXXRTL return, so a
test compares all four engines record for record.

``sim`` may not import ``fieldtune.toolchain``; the caller passes the tool environment::

    from fieldtune.toolchain import tool_env
    from fieldtune.sim.engines import hdl
    verilog = hdl.emit_verilog(MyComponent(), env=tool_env("YOSYS"))
    result = hdl.run_icarus(verilog, script)

How the script reaches the simulator: the script becomes a small text file (one command per
line: ``op port-index hex-value count``, :func:`script_text`), read at run time by a C++
driver (Verilator) or a Verilog testbench with ``$fscanf`` (Icarus). Both are generated per
design and compiled once; the compiled simulator is cached under ``$FIELDTUNE_CACHE/icarus``
or ``.../verilator`` (default ``~/.cache/fieldtune``) by a hash of the Verilog text, the
generated driver and the tool's version, so a new script never recompiles.

This module also holds what every compiled engine shares: running Yosys with a given
environment (:func:`run_yosys`) and the concurrent-safe build cache (:func:`cached_build`).
"""

import dataclasses
import hashlib
import importlib.metadata
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .script import (MAX_CONDITIONS, EngineUnavailable, Port, ScriptResult, Set, Step, Wait,
                     design_rtlil, rtlil_ports)


__all__ = ["VerilogDesign", "emit_verilog", "run_icarus", "build_icarus", "run_yosys",
           "cache_dir", "cached_build", "find_program", "ToolError", "script_text",
           "parse_records", "data_ports", "wrapper_module", "WRAPPER", "rtlil_verilog",
           "verilog_commands", "yosys_program", "COMPILERS", "cxx_compiler",
           "design_fingerprint", "rtlil_identity"]


#: Environment variable naming the root of every compiled-model cache.
CACHE_ENV = "FIELDTUNE_CACHE"

#: Opcodes of the script file the compiled drivers read. A wait with several conditions is
#: written as OP_CONDITION lines followed by one OP_WAIT line (the last condition).
OP_SET, OP_STEP, OP_WAIT, OP_SAMPLE, OP_CONDITION = range(5)

#: Name of the generated top module that wraps the design for Verilator and Icarus.
WRAPPER = "fieldtune_top"


class ToolError(RuntimeError):
    """A tool ran and failed; the message ends with an excerpt of its log."""


# -- shared plumbing ---------------------------------------------------------------------------

def cache_dir(kind):
    """``$FIELDTUNE_CACHE/<kind>`` (default ``~/.cache/fieldtune/<kind>``)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fieldtune"
    return Path(root) / kind


def find_program(name, install_hint):
    """Absolute path of program ``name`` on PATH, or :class:`EngineUnavailable`."""
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(f"{name} was not found on PATH; {install_hint}")
    return path


#: C++ compilers tried in order when neither a ``compiler`` argument nor ``$CXX`` names one.
#: On the SoC, clang++ 14 built the CXXRTL model in half g++ 12's CPU time (34.6 against
#: 68.4 s), the model ran 1.3x faster, and the Verilator model built in 29 against 34 CPU s and
#: ran 1.08x faster (docs/benchmarks.md, "Simulation engines"); g++ is the fallback.
COMPILERS = ("clang++", "g++")


def cxx_compiler(compiler, what):
    """The C++ compiler a build of ``what`` (e.g. "CXXRTL models") uses: ``compiler``, else
    ``$CXX``, else the first of :data:`COMPILERS` on PATH; :class:`EngineUnavailable` when
    there is none."""
    name = compiler or os.environ.get("CXX") or next(
        (c for c in COMPILERS if shutil.which(c)), COMPILERS[-1])
    return find_program(name, f"{what} are compiled with the system C++ compiler; "
                              "install it with e.g.: apt-get install clang (or g++)")


def _excerpt(path, lines=15):
    """First and last lines of a log (compilers put the cause first, the summary last)."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(text) > 2 * lines:
        text = text[:lines] + ["..."] + text[-lines:]
    return "\n".join(text)


def run_checked(argv, *, cwd, log, what, env=None):
    """Run ``argv`` with output to ``log``; :class:`ToolError` with the log's tail on failure."""
    with open(log, "w") as f:
        rc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        raise ToolError(f"{what} failed (exit {rc}); from {Path(log).name}:\n"
                        f"{_excerpt(log)}")


def yosys_program(env):
    """The Yosys executable named by the tool environment ``env`` (``env["YOSYS"]``)."""
    if not env or not env.get("YOSYS"):
        raise EngineUnavailable("the tool environment names no YOSYS; pass "
                                "env=fieldtune.toolchain.tool_env('YOSYS')")
    return env["YOSYS"]


def run_yosys(commands, *, env, cwd):
    """Run Yosys commands in ``cwd`` with the tool environment ``env``.

    Results are read from the files the commands write, never from stdout (YoWASP Yosys stops
    printing after ABC); the log goes to ``cwd/yosys.log``.
    """
    cwd = Path(cwd)
    (cwd / "script.ys").write_text("\n".join(commands) + "\n")
    run_checked([yosys_program(env), "-q", "-l", "yosys.log", "-s", "script.ys"], cwd=cwd,
                log=cwd / "yosys.out", what="yosys", env=dict(env))


def digest(*parts):
    """SHA-256 (hex) of strings and bytes, each length-prefixed so parts cannot run together."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@contextmanager
def _lock(path):
    try:
        import fcntl
    except ImportError:  # not POSIX: builds may duplicate work, the rename keeps them safe
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_build(kind, key, suffix, build, *, directory=None):
    """Path of the cached artifact ``<key><suffix>`` in ``directory`` (default
    :func:`cache_dir` of ``kind``), built by ``build(workdir) -> produced_path`` on a miss.

    Concurrent-safe: builders of one key take a file lock, build in a private temporary folder
    and publish with an atomic rename, so a reader never sees a half-written artifact.
    """
    folder = Path(directory) if directory is not None else cache_dir(kind)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{key}{suffix}"
    if final.exists():
        return final
    with _lock(folder / f"{key}.lock"):
        if final.exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=f"build-{key[:12]}-", dir=folder))
        try:
            produced = Path(build(work))
            os.replace(produced, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


# -- a design's RTLIL, remembered ---------------------------------------------------------------

def design_fingerprint(design, *, ports=None, name="top"):
    """A digest that stands for ``design``'s RTLIL without converting it, or None where the
    design does not say what it is made of.

    A design says so when its class lives in a sub-package (``fieldtune.rtl.soc``: the
    sub-package ``fieldtune.rtl``) and it keeps its configuration, a dataclass with a plain
    repr, as ``config`` (the SoC). Its RTLIL is then a function of that configuration, the
    Python sources of the sub-package (``rtl`` imports only ``rtl`` and Amaranth:
    tests/test_layers.py) and of the configuration's module, and Amaranth's and Python's
    versions; the fingerprint is their digest (``ports``, ``name``: as for
    :func:`~fieldtune.sim.engines.script.design_rtlil`; only ``ports=None`` is fingerprinted).
    """
    config = getattr(design, "config", None)
    cls = type(design)
    package = ".".join(cls.__module__.split(".")[:2])
    if (ports is not None or not dataclasses.is_dataclass(config) or isinstance(config, type)
            or cls.__module__.count(".") < 2 or package not in sys.modules):
        return None
    text = repr(config)
    if " at 0x" in text:
        return None
    sources = sorted({f for folder in sys.modules[package].__path__
                      for f in Path(folder).rglob("*.py")}
                     | {Path(inspect.getsourcefile(type(config)))})
    return digest(f"{cls.__module__}.{cls.__qualname__}", name, text,
                  importlib.metadata.version("amaranth"), sys.version,
                  *(part for f in sources for part in (f.name, f.read_bytes())))


def rtlil_identity(design, *, kind, ports=None, name="top", directory=None):
    """``(digest, ports, text)`` of ``design``'s RTLIL: its SHA-256 (:func:`digest`), its ports
    (name -> Port) and a function returning the text (for a build after a cache miss).

    A design with a :func:`design_fingerprint` has its RTLIL's digest and ports remembered in
    the cache folder of ``kind`` (or ``directory``) under the fingerprint, so a warm run does
    not convert it at all (2 CPU s for the default SoC, in every process that opens a
    simulation); ``text()`` then converts it and checks that it has the digest remembered.
    """
    fingerprint = design_fingerprint(design, ports=ports, name=name)
    folder = Path(directory) if directory is not None else cache_dir(kind)
    memo = folder / f"{fingerprint}.rtlil.json" if fingerprint else None
    if memo is not None and memo.exists():
        known = json.loads(memo.read_text())
        design._MustUse__silence = True     # not elaborated on purpose: no warning for it

        def text():
            il = design_rtlil(design, ports=ports, name=name)
            if digest(il) != known["digest"]:
                raise ToolError(f"{memo} does not match the design's RTLIL: remove it")
            return il

        return known["digest"], {p["name"]: Port(**p) for p in known["ports"]}, text
    il = design_rtlil(design, ports=ports, name=name)
    identity, found = digest(il), rtlil_ports(il, name)
    if memo is not None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"digest": identity, "ports": [
            dataclasses.asdict(p) for p in found.values()]}))
        os.replace(partial, memo)
    return identity, found, lambda: il


# -- Verilog -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerilogDesign:
    """Verilog text of a design with its top module's name and ports (name -> Port)."""
    text: str
    ports: dict
    top: str = "top"


def emit_verilog(design, *, env, ports=None, name="top", zero_undefined=True):
    """Emit ``design`` as Verilog with the Yosys of tool environment ``env``.

    The same conversion as ``amaranth.back.verilog`` (``proc -nomux -norom; memory_collect;
    write_verilog -norename``), without source locations. With ``zero_undefined`` (default),
    power-on values the RTLIL leaves undefined (a memory read port's output register) become 0
    (``setundef -zero -params`` on the memory cells): that is what Amaranth's simulator and
    CXXRTL use, where a Verilog simulator would otherwise show x. Only memory cells are
    selected: on a whole module, ``setundef`` would also turn the don't-care bits of the
    processes' case patterns (``2'-1``, an ``If``/``Elif`` chain) into zeros and change the
    logic.
    """
    return rtlil_verilog(design_rtlil(design, ports=ports, name=name), env=env, name=name,
                         zero_undefined=zero_undefined)


def verilog_commands(zero_undefined=True):
    """The Yosys commands of :func:`emit_verilog` (design.il to design.v)."""
    commands = ["read_rtlil design.il", "proc -nomux -norom", "memory_collect"]
    if zero_undefined:
        commands.append("setundef -zero -params t:$mem*")
    return commands + ["write_verilog -norename design.v"]


def rtlil_verilog(il, *, env, name="top", zero_undefined=True):
    """:func:`emit_verilog` of RTLIL text ``il`` (module ``name``)."""
    with tempfile.TemporaryDirectory(prefix="fieldtune-verilog-") as tmp:
        Path(tmp, "design.il").write_text(il)
        run_yosys(verilog_commands(zero_undefined), env=env, cwd=tmp)
        text = Path(tmp, "design.v").read_text()
    return VerilogDesign(text, rtlil_ports(il, name), name)


def script_text(commands, index):
    """The script file both compiled drivers read: ``op index hex count`` per line."""
    lines = []
    append = lines.append
    for cmd in commands:
        kind = type(cmd)
        if kind is Set:
            append(f"{OP_SET} {index[cmd.port]} {cmd.value:x} 0")
        elif kind is Step:
            append(f"{OP_STEP} 0 0 {cmd.cycles}")
        elif kind is Wait:
            *first, (port, value) = cmd.conditions
            lines.extend(f"{OP_CONDITION} {index[p]} {v:x} 0" for p, v in first)
            append(f"{OP_WAIT} {index[port]} {value:x} {cmd.max_cycles}")
        else:
            append(f"{OP_SAMPLE} {index[cmd.port]} 0 0")
    return "\n".join(lines) + "\n"


def parse_records(text):
    """Records written by the drivers: ``s HEX`` (sample), ``w N`` (wait; -1 = timeout),
    ``c N`` (total cycles, last line)."""
    result, finished = ScriptResult(), False
    for line in text.splitlines():
        kind, _, value = line.strip().partition(" ")
        if kind == "s":
            if not all(c in "0123456789abcdefABCDEF" for c in value):
                raise ToolError(f"record {len(result.records)} is undefined ({value}): the "
                                "design read a register or memory that was never written")
            result.records.append(int(value, 16))
        elif kind == "w":
            n = int(value)
            result.records.append(None if n < 0 else n)
        elif kind == "c":
            result.cycles, finished = int(value), True
    if not finished:
        raise ToolError("the simulator stopped before the end of the script")
    return result


def data_ports(verilog, clock):
    if clock not in verilog.ports or verilog.ports[clock].direction != "input":
        raise ValueError(f"clock must be an input port of the design, not {clock!r}")
    return [p for p in verilog.ports.values() if p.name != clock]


def wrapper_module(verilog, clock):
    """A top module with ports ``clk, p0, p1, ...``: simulator-friendly names (Verilator
    mangles double underscores) and a stable port index for the script file."""
    ports = data_ports(verilog, clock)
    decls = ["    input wire clk"]
    conns = [f"        .{_escape(clock)}(clk)"]
    for k, p in enumerate(ports):
        kind = "input wire" if p.direction == "input" else "output wire"
        decls.append(f"    {kind} [{p.width - 1}:0] p{k}")
        conns.append(f"        .{_escape(p.name)}(p{k})")
    return (f"module {WRAPPER}(\n" + ",\n".join(decls) + "\n);\n"
            f"    {_escape(verilog.top)} dut (\n" + ",\n".join(conns) + "\n    );\nendmodule\n")


def _escape(name):
    """A Verilog identifier, escaped when it is not a simple one."""
    simple = name.replace("_", "a").replace("$", "a")
    if simple.isalnum() and not name[0].isdigit() and name.isascii():
        return name
    return f"\\{name} "


def _run_script(verilog, script, clock, kind, launch):
    ports = data_ports(verilog, clock)
    index = {p.name: k for k, p in enumerate(ports)}
    commands = script.checked({p.name: p for p in ports})
    with tempfile.TemporaryDirectory(prefix=f"fieldtune-{kind}-") as tmp:
        script_path, out_path = Path(tmp, "script.txt"), Path(tmp, "records.txt")
        script_path.write_text(script_text(commands, index))
        launch(script_path, out_path, Path(tmp))
        return parse_records(out_path.read_text() if out_path.exists() else "")


def tool_version(argv):
    """What ``argv`` (a tool's version command) prints; part of every build's cache key."""
    out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return out.stdout + out.stderr


# -- Icarus Verilog ----------------------------------------------------------------------------

_ICARUS_HINT = "install it with: apt-get install iverilog"


def _icarus_testbench(verilog, clock):
    """A Verilog testbench that reads the script file with ``$fscanf``."""
    ports = data_ports(verilog, clock)
    widest = max([p.width for p in ports] + [1])
    decls, conns, sets, gets = [], [".clk(clk)"], [], []
    for k, p in enumerate(ports):
        if p.direction == "input":
            decls.append(f"    reg [{p.width - 1}:0] p{k} = 0;")
            sets.append(f"            {k}: p{k} = value;")
        else:
            decls.append(f"    wire [{p.width - 1}:0] p{k};")
        gets.append(f"                {k}: port_value = p{k};")
        conns.append(f".p{k}(p{k})")
    return _ICARUS_TB % {
        "top": WRAPPER, "widest": widest, "decls": "\n".join(decls),
        "conns": ", ".join(conns), "sets": "\n".join(sets) or "            default: ;",
        "gets": "\n".join(gets) or "                default: ;",
        "max_conditions": MAX_CONDITIONS,
    }


# Inputs change while the clock is high, after the previous edge has settled; `#1` after every
# change lets combinational logic settle before anything is read.
_ICARUS_TB = r"""// Generated by fieldtune.sim.engines.hdl:
// runs a fieldtune script file on Icarus Verilog.
module fieldtune_tb;
    reg clk = 0;
%(decls)s
    %(top)s dut(%(conns)s);

    reg [%(widest)d-1:0] value, now;
    reg [63:0] count, i, cycles;
    integer op, k, r, c, script, records, conditions;
    reg [8*4096-1:0] script_path, records_path;
    reg [%(widest)d-1:0] condition_value [0:%(max_conditions)d-1];
    integer condition_port [0:%(max_conditions)d-1];
    reg hit;

    task tick;
        begin
            clk = 0; #1;
            clk = 1; #1;
            cycles = cycles + 1;
        end
    endtask

    function [%(widest)d-1:0] port_value(input integer index);
        begin
            port_value = 0;
            case (index)
%(gets)s
            endcase
        end
    endfunction

    task check;
        begin
            hit = 0;
            for (c = 0; c < conditions; c = c + 1)
                if (port_value(condition_port[c]) === condition_value[c]) hit = 1;
        end
    endtask

    initial begin
        if (!$value$plusargs("script=%%s", script_path) ||
                !$value$plusargs("records=%%s", records_path)) begin
            $display("usage: vvp SIM +script=FILE +records=FILE");
            $finish;
        end
        script = $fopen(script_path, "r");
        records = $fopen(records_path, "w");
        cycles = 0;
        conditions = 0;
        #1;
        r = $fscanf(script, "%%d %%d %%h %%d\n", op, k, value, count);
        while (r == 4) begin
            case (op)
            0: begin
                case (k)
%(sets)s
                endcase
                #1;
            end
            1: for (i = 0; i < count; i = i + 1) tick;
            4: begin
                condition_port[conditions] = k;
                condition_value[conditions] = value;
                conditions = conditions + 1;
            end
            2: begin
                condition_port[conditions] = k;
                condition_value[conditions] = value;
                conditions = conditions + 1;
                i = 0;
                check;
                while (!hit && i < count) begin
                    tick;
                    i = i + 1;
                    check;
                end
                conditions = 0;
                if (hit) $fdisplay(records, "w %%0d", i);
                else $fdisplay(records, "w -1");
            end
            default: begin
                now = port_value(k);
                $fdisplay(records, "s %%h", now);
            end
            endcase
            r = $fscanf(script, "%%d %%d %%h %%d\n", op, k, value, count);
        end
        $fdisplay(records, "c %%0d", cycles);
        $fclose(records);
        $finish;
    end
endmodule
"""


def build_icarus(verilog, *, clock="clk", cache=None):
    """Compiled Icarus Verilog simulation (a ``vvp`` file, cached); returns its path."""
    iverilog = find_program("iverilog", _ICARUS_HINT)
    find_program("vvp", _ICARUS_HINT)
    wrapper, tb = wrapper_module(verilog, clock), _icarus_testbench(verilog, clock)
    key = digest(verilog.text, wrapper, tb, tool_version([iverilog, "-V"]))

    def build(work):
        (work / "design.v").write_text(verilog.text)
        (work / "wrapper.v").write_text(wrapper)
        (work / "tb.v").write_text(tb)
        # Verilog-2005, not SystemVerilog: Yosys' Verilog relies on declaration initializers
        # triggering `always @*` at time 0, which SystemVerilog semantics do not do.
        run_checked([iverilog, "-g2005", "-s", "fieldtune_tb", "-o", "sim.vvp",
                     "design.v", "wrapper.v", "tb.v"],
                    cwd=work, log=work / "iverilog.log", what="iverilog")
        return work / "sim.vvp"

    return cached_build("icarus", key, ".vvp", build, directory=cache)


def run_icarus(verilog, script, *, clock="clk", cache=None):
    """Run ``script`` on Icarus Verilog; returns a :class:`ScriptResult`."""
    compiled = build_icarus(verilog, clock=clock, cache=cache)
    vvp = find_program("vvp", _ICARUS_HINT)

    def launch(script_path, out_path, tmp):
        run_checked([vvp, "-n", str(compiled), f"+script={script_path}",
                     f"+records={out_path}"], cwd=tmp, log=tmp / "run.log",
                    what="the Icarus simulation")

    return _run_script(verilog, script, clock, "icarus", launch)
