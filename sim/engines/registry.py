"""Every simulation engine, in one table: what the CLI offers, warns about and tests.

An :class:`Engine` says what an engine is (name, label, native or not, slow or not, waveforms
or not, the programs it needs) and how it runs a
:class:`~fieldtune.sim.engines.script.Script` on a design. The CLI's ``--engine`` choices,
the slow-engine warning, the parallel runs of native engines, the SoC runner's dispatch and
the engine tests all read :data:`ENGINES`; a new engine is one :func:`register` call.

``ENGINES`` is ordered by measured speed on the training SoC, fastest first: the demo's first
run in wall seconds on a 2-core machine, its cold build included (``fieldtune bench engines``,
:func:`fieldtune.bench.engines.demo_estimates`, docs/benchmarks.md, "Simulation engines");
:func:`default_engine` is the first one this machine can run.

Sessions: an engine that keeps one simulation across several scripts (``incremental``, e.g.
CXXRTL) runs a job's pieces one after the other, so a caller sees each piece's records (and
can show progress) as it finishes; the others run the pieces joined into one script.
:func:`run_pieces` hides the difference.

This module imports the engines; the engines never import it (no cycle).
"""

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from . import cxxrtl, hdl, verilator
from .script import EngineUnavailable, Script, run_amaranth


__all__ = ["Engine", "ENGINES", "register", "get", "names", "run", "run_pieces", "PieceRun",
           "default_engine", "check_waveforms"]


@dataclass(frozen=True)
class Engine:
    """One simulation engine.

    ``session(design, *, env, ports, vcd, log)`` is a context manager that yields a function
    ``run(script) -> ScriptResult``; an ``incremental`` engine's function may be called again
    and continues the same simulation, any other engine's is called once. ``env`` is the tool
    environment naming Yosys (``fieldtune.toolchain.tool_env("YOSYS")``), needed when
    ``needs_yosys``. ``programs`` are what the engine runs besides Yosys and a C++ compiler
    (the first program of each tuple found on PATH is enough: alternatives), for checks and
    tests.
    """
    name: str
    label: str
    session: Callable
    #: the simulation runs outside the Python interpreter (native code or a subprocess): runs
    #: of two modes can share the machine's cores
    native: bool
    #: about 10^3-10^4 SoC cycles per second: long runs take hours (warn first)
    slow: bool
    #: can write a VCD waveform of the run
    waveforms: bool
    incremental: bool = False
    needs_yosys: bool = True
    programs: tuple = ()
    #: ``available() -> None`` when the engine can run here, else the reason it cannot
    available: Callable = field(default=lambda: None)

    def unavailable(self):
        """Why this engine cannot run on this machine, or ``None``."""
        return self.available()

    def run(self, design, script, *, env=None, ports=None, vcd=None, log=None):
        """Run ``script`` on a fresh simulation of ``design``; returns its ScriptResult."""
        check_waveforms(self.name, vcd)
        with self.session(design, env=env, ports=ports, vcd=vcd, log=log) as run_script:
            return run_script(script)


#: name -> Engine, fastest first (see the module documentation).
ENGINES = {}


def register(engine):
    """Add ``engine`` to :data:`ENGINES` (after the others); returns it. A name already taken
    is a ValueError."""
    if engine.name in ENGINES:
        raise ValueError(f"an engine named {engine.name!r} is already registered")
    ENGINES[engine.name] = engine
    return engine


def names(**kinds):
    """Names of the registered engines, fastest first; keyword filters on the attributes,
    e.g. ``names(waveforms=True)``, ``names(slow=True)``."""
    return tuple(name for name, e in ENGINES.items()
                 if all(getattr(e, k) == v for k, v in kinds.items()))


def check_waveforms(name, vcd):
    """ValueError when a waveform file ``vcd`` is asked of an engine (any name) that writes
    none."""
    if vcd is not None and name not in names(waveforms=True):
        raise ValueError(f"vcd waveforms come from the {' and '.join(names(waveforms=True))} "
                         f"engines, not {name!r}")


def get(name):
    """The engine called ``name``; ValueError naming the choices otherwise."""
    engine = ENGINES.get(name)
    if engine is None:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")
    return engine


def run(engine, design, script, *, env=None, ports=None, vcd=None):
    """Run ``script`` on ``design`` with the engine called ``engine``.

    ``design`` is elaborated by this engine only: pass a fresh instance per engine. Compiled
    engines use their caches."""
    return get(engine).run(design, script, env=env, ports=ports, vcd=vcd)


class PieceRun:
    """Scripts run one after the other on one simulation; iterate for each piece's records.

    After the iteration, ``cycles`` is the number of rising edges all pieces took and
    ``seconds`` the wall time of the simulation, model build excluded (``build_seconds``).
    """

    def __init__(self, engine, design, scripts, *, env=None, ports=None, vcd=None, log=None):
        check_waveforms(engine.name, vcd)
        self.engine, self.design, self.scripts = engine, design, list(scripts)
        self.options = dict(env=env, ports=ports, vcd=vcd, log=log)
        self.cycles, self.seconds, self.build_seconds = 0, 0.0, 0.0

    def __iter__(self):
        t0 = time.perf_counter()
        with self.engine.session(self.design, **self.options) as run_script:
            start = time.perf_counter()
            self.build_seconds = start - t0
            if self.engine.incremental:
                for script in self.scripts:
                    result = run_script(script)
                    self.cycles += result.cycles
                    self.seconds = time.perf_counter() - start
                    yield result.records
                return
            whole = Script()
            for script in self.scripts:
                whole.extend(script)
            result = run_script(whole)
            self.cycles, self.seconds = result.cycles, time.perf_counter() - start
        first = 0
        for script in self.scripts:
            yield result.records[first:first + script.record_count]
            first += script.record_count


def run_pieces(engine, design, scripts, **options):
    """A :class:`PieceRun` of ``scripts`` on the engine called ``engine``."""
    return PieceRun(get(engine), design, scripts, **options)


def default_engine():
    """The fastest registered engine that can run here (the first of :data:`ENGINES` whose
    ``unavailable()`` is None)."""
    for engine in ENGINES.values():
        if engine.unavailable() is None:
            return engine.name
    raise EngineUnavailable("no simulation engine can run here")


# -- the engines ---------------------------------------------------------------------------------

@contextmanager
def _amaranth_session(design, *, env=None, ports=None, vcd=None, log=None):
    yield lambda script: run_amaranth(design, script, ports=ports, vcd=vcd)


@contextmanager
def _cxxrtl_session(design, *, env=None, ports=None, vcd=None, log=None):
    model = cxxrtl.build(design, env=env, ports=ports, log=log)
    with model.simulate() as sim:
        if vcd is None:
            yield sim.run
        else:
            with sim.vcd(vcd):
                yield sim.run


@contextmanager
def _verilator_session(design, *, env=None, ports=None, vcd=None, log=None):
    model = verilator.build_design(design, env=env, ports=ports, log=log)
    with model.simulate() as sim:
        yield sim.run


@contextmanager
def _icarus_session(design, *, env=None, ports=None, vcd=None, log=None):
    verilog = hdl.emit_verilog(design, env=env, ports=ports)
    yield lambda script: hdl.run_icarus(verilog, script)


def _programs_available(*programs):
    def available():
        missing = [p for p in programs if shutil.which(p) is None]
        return f"{', '.join(missing)} not found on PATH" if missing else None
    return available


def _unavailable_reason(check):
    def available():
        try:
            check()
        except EngineUnavailable as e:
            return str(e)
        return None
    return available


# Measured on the SoC (docs/benchmarks.md, "Simulation speed (session 7)"): Verilator (clang++)
# ran the R1 job at 1.67x CXXRTL's cycles per CPU second and built in 0.87x its CPU time and
# 0.69x its wall time: the demo's first run, in wall seconds on two cores, is fastest on it.
register(Engine("verilator", "Verilator", _verilator_session, native=True, slow=False,
                waveforms=False, incremental=True,
                available=_unavailable_reason(verilator.check_available)))
register(Engine("cxxrtl", "CXXRTL", _cxxrtl_session, native=True, slow=False, waveforms=True,
                incremental=True, available=_unavailable_reason(cxxrtl.check_available)))
register(Engine("amaranth", "Amaranth simulator", _amaranth_session, native=False, slow=True,
                waveforms=True, needs_yosys=False))
register(Engine("icarus", "Icarus Verilog", _icarus_session, native=True,
                slow=True, waveforms=False, programs=("iverilog", "vvp"),
                available=_programs_available("iverilog", "vvp")))
