"""One stimulus format for every simulation engine.

A :class:`Script` is a list of four commands a host (or a testbench) performs on a design's
top-level ports, with one clock:

``set PORT VALUE``
    Drive an input. It takes effect at once (combinational outputs settle before the next
    ``sample``) and is sampled by the next rising edge.
``step N``
    N rising clock edges.
``wait PORT == VALUE [or PORT2 == VALUE2 ...], max N``
    Check the condition(s); while none holds, clock one edge and check again, at most N edges.
    Records the number of edges taken (0 if one already held) or ``None`` when N edges passed
    without a match (the script goes on; nothing hangs). Several conditions (at most
    :data:`MAX_CONDITIONS`) wait for whichever comes first, e.g. a bus ``ack`` or ``err``;
    sample the ports afterwards to see which.
``sample PORT``
    Record the port's current (settled) value.

Values are raw bits as non-negative integers (a ``signed`` port reads back in two's complement;
:meth:`Port.signed_value` converts). :func:`run_amaranth` runs a script on Amaranth's Python
simulator; ``fieldtune.sim.engines.cxxrtl``, ``.verilator`` and ``.hdl`` run the very same
script on CXXRTL, Verilator and Icarus Verilog, and every engine returns the same
:class:`ScriptResult` for the same design: that equality is what the engine tests check.
:mod:`fieldtune.sim.engines.registry` lists the engines and runs a script on any of them.

Ports are named as Amaranth's backends name them: a component's signature members joined with
``__`` (``i__payload``, ``o__valid``), plus ``clk`` and ``rst`` of the ``sync`` domain.
"""

import re
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.hdl import _ast

from .pysim import simulate


__all__ = ["Port", "Set", "Step", "Wait", "Sample", "Script", "ScriptResult",
           "EngineUnavailable", "design_rtlil", "rtlil_ports", "amaranth_ports", "run_amaranth",
           "MAX_CONDITIONS"]


class EngineUnavailable(RuntimeError):
    """A simulator or compiler an engine needs is missing; the message says how to install it."""


@dataclass(frozen=True)
class Port:
    """A top-level port: name, width in bits, direction (``"input"``/``"output"``), signedness."""
    name: str
    width: int
    direction: str
    signed: bool = False

    @property
    def chunks(self):
        """32-bit words that hold the port (the unit CXXRTL and Verilator use)."""
        return (self.width + 31) // 32

    def raw(self, value):
        """``value`` as raw bits; negative values are two's complement. Out of range: ValueError."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"value for port {self.name} must be an integer, not {value!r}")
        lowest = -(1 << (self.width - 1)) if self.width else 0
        if not lowest <= value < (1 << self.width):
            raise ValueError(f"value for port {self.name} must fit in {self.width} bits, "
                             f"not {value}")
        return value & ((1 << self.width) - 1)

    def signed_value(self, raw):
        """Two's-complement reading of raw bits."""
        if self.width and raw >> (self.width - 1):
            return raw - (1 << self.width)
        return raw


@dataclass(frozen=True)
class Set:
    port: str
    value: int


@dataclass(frozen=True)
class Step:
    cycles: int


@dataclass(frozen=True)
class Wait:
    conditions: tuple   # ((port, value), ...): any one of them ends the wait
    max_cycles: int


@dataclass(frozen=True)
class Sample:
    port: str


@dataclass
class ScriptResult:
    """What a script recorded: one entry per ``sample`` (raw value) and per ``wait`` (edges
    taken, or ``None`` on timeout), in script order; ``cycles`` is the number of rising edges
    the whole script took."""
    records: list = field(default_factory=list)
    cycles: int = 0


class Script:
    """A stimulus script; build it with the chainable methods, then run it on any engine.

    >>> s = Script().set("start", 1).step().set("start", 0).wait("done", 1, 10_000)
    >>> s = s.sample("checksum")
    """

    def __init__(self, commands=()):
        self.commands = list(commands)

    def set(self, port, value):
        self.commands.append(Set(port, value))
        return self

    def step(self, cycles=1):
        _check_count("step cycles", cycles)
        self.commands.append(Step(cycles))
        return self

    def wait(self, port, value, max_cycles):
        """Wait until ``port == value`` (at most ``max_cycles`` edges)."""
        return self.wait_any({port: value}, max_cycles)

    def wait_any(self, conditions, max_cycles):
        """Wait until any ``port == value`` of the dict ``conditions`` holds."""
        _check_count("wait max_cycles", max_cycles)
        conditions = tuple(dict(conditions).items())
        if not 1 <= len(conditions) <= MAX_CONDITIONS:
            raise ValueError(f"a wait must have 1 to {MAX_CONDITIONS} conditions, "
                             f"not {len(conditions)}")
        self.commands.append(Wait(conditions, max_cycles))
        return self

    def extend(self, other):
        """Append the commands of another script (scripts compose: a bus write, a start...)."""
        self.commands.extend(other.commands)
        return self

    def sample(self, *ports):
        for port in ports:
            self.commands.append(Sample(port))
        return self

    def __len__(self):
        return len(self.commands)

    @property
    def record_count(self):
        """How many records the script makes (one per ``wait`` and per ``sample``)."""
        return sum(isinstance(cmd, (Wait, Sample)) for cmd in self.commands)

    def __iter__(self):
        return iter(self.commands)

    def checked(self, ports):
        """Commands with raw values, validated against ``ports`` (name -> :class:`Port`):
        unknown ports, driving an output or the clock, and values that do not fit raise
        ValueError before anything runs.

        A command whose values are raw already passes as it is, without a copy: a bus program
        of a few hundred thousand commands is checked in a fraction of a second.
        """
        inputs = {n: 1 << p.width for n, p in ports.items() if p.direction == "input"}
        every = {n: 1 << p.width for n, p in ports.items()}
        out = []
        append = out.append
        for cmd in self.commands:
            kind = type(cmd)
            if kind is Set:
                value, top = cmd.value, inputs.get(cmd.port, 0)
                if not (type(value) is int and 0 <= value < top):
                    port = _port(ports, cmd.port)
                    if port.direction != "input":
                        raise ValueError(f"port {cmd.port} is an output and cannot be set")
                    cmd = Set(cmd.port, port.raw(value))
            elif kind is Wait:
                if not all(type(v) is int and 0 <= v < every.get(n, 0)
                           for n, v in cmd.conditions):
                    cmd = Wait(tuple((n, _port(ports, n).raw(v)) for n, v in cmd.conditions),
                               cmd.max_cycles)
            elif kind is not Step:
                _port(ports, cmd.port)
            append(cmd)
        return out


#: Most conditions one ``wait`` may have (the compiled drivers keep them in fixed tables).
MAX_CONDITIONS = 16


def _port(ports, name):
    port = ports.get(name)
    if port is None:
        raise ValueError(f"port must be one of {', '.join(sorted(ports))}, not {name!r}")
    return port


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be an integer from 0 to 2**63 - 1, not {value!r}")


# -- design text and ports ---------------------------------------------------------------------

def design_rtlil(design, *, ports=None, name="top"):
    """RTLIL of ``design`` without source locations, so the text (and every cache key derived
    from it) depends on the design only, not on where its Python files live."""
    return rtlil.convert(design, name=name, ports=ports, emit_src=False)


_PORT_LINE = re.compile(r"^\s*wire\s+(?:width\s+(\d+)\s+)?(input|output|inout)\s+\d+\s+"
                        r"(signed\s+)?\\(\S+)\s*$")


def rtlil_ports(text, name="top"):
    """Ports of module ``name`` in RTLIL ``text``, in declaration order."""
    ports, inside = {}, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("module "):
            inside = stripped.split()[1] == "\\" + name
        elif stripped == "end":
            inside = False
        elif inside:
            m = _PORT_LINE.match(line)
            if m:
                if m.group(2) == "inout":
                    raise ValueError(f"inout port {m.group(4)} is not supported by the engines")
                ports[m.group(4)] = Port(m.group(4), int(m.group(1) or 1), m.group(2),
                                         bool(m.group(3)))
    if not ports:
        raise ValueError(f"module {name} has no ports in the RTLIL text")
    return ports


def amaranth_ports(design, ports=None, *, clock=None):
    """Port name -> ``(value, Port)`` for Amaranth's simulator, named as the backends name
    them, plus ``clk``/``rst`` of the ``sync`` domain (``clock``, a ``ClockDomain``, gives
    signals a testbench can drive; by default ``ClockSignal()``/``ResetSignal()``).

    ``ports`` is needed when ``design`` is not a ``wiring.Component``: a dict
    ``{name: (value, PortDirection)}``, as Amaranth's backends take it.
    """
    found = {}
    if ports is None:
        if not isinstance(getattr(design, "signature", None), wiring.Signature):
            raise TypeError("a design that is not a wiring.Component needs "
                            "ports={name: (value, PortDirection)}")
        for path, member, value in design.signature.flatten(design):
            found["__".join(map(str, path))] = (value, "input" if member.flow == wiring.In
                                                else "output")
    elif isinstance(ports, dict):
        for name, (value, direction) in ports.items():
            found[name] = (value, getattr(direction, "value", direction))
    else:
        raise TypeError(f"ports must be a dict {{name: (value, PortDirection)}}, not {ports!r}")
    out = {}
    for name, (value, direction) in found.items():
        if isinstance(value, _ast.ValueCastable):
            value = value.as_value()
        value = _ast.Value.cast(value)
        if direction not in ("input", "output"):
            raise ValueError(f"port {name} must be an input or an output, not {direction!r}")
        out[name] = (value, Port(name, len(value), direction, value.shape().signed))
    clk = clock.clk if clock is not None else ClockSignal()
    rst = clock.rst if clock is not None else ResetSignal()
    out.setdefault("clk", (clk, Port("clk", 1, "input")))
    out.setdefault("rst", (rst, Port("rst", 1, "input")))
    return out


# -- Amaranth's simulator ----------------------------------------------------------------------

def run_amaranth(design, script, *, ports=None, vcd=None, name=None):
    """Run ``script`` on Amaranth's Python simulator; returns a :class:`ScriptResult`.

    ``design`` must not have been elaborated for another engine (build a fresh instance per
    engine). ``vcd`` writes a waveform file.
    """
    # The testbench drives `rst` like any input, so the domain must be a real one (a
    # ResetSignal cannot be assigned): the design runs inside a module that defines `sync`.
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = design
    found = amaranth_ports(design, ports, clock=domain)
    values = {name: value for name, (value, _) in found.items()}
    port_info = {name: port for name, (_, port) in found.items()}
    commands = script.checked(port_info)
    result = ScriptResult()
    # Every engine starts with inputs at 0; Amaranth's would start at their `init`.
    for name, port in port_info.items():
        if port.direction == "input" and name != "clk":
            commands.insert(0, Set(name, 0))

    def read(ctx, port):
        raw = ctx.get(values[port])
        return raw & ((1 << port_info[port].width) - 1)

    async def testbench(ctx):
        for cmd in commands:
            if isinstance(cmd, Set):
                port = port_info[cmd.port]
                ctx.set(values[cmd.port], port.signed_value(cmd.value) if port.signed
                        else cmd.value)
            elif isinstance(cmd, Step):
                await _ticks(ctx, cmd.cycles)
                result.cycles += cmd.cycles
            elif isinstance(cmd, Sample):
                result.records.append(read(ctx, cmd.port))
            else:
                # Compare in the representation ctx.get() returns (signed ports read negative).
                expected = [(values[p], port_info[p].signed_value(v) if port_info[p].signed
                             else v) for p, v in cmd.conditions]

                def matched():
                    return any(ctx.get(value) == v for value, v in expected)

                taken = await _ticks(ctx, cmd.max_cycles, matched) if not matched() else 0
                result.cycles += taken
                result.records.append(taken if matched() else None)

    simulate(top, testbench, vcd=vcd, name=name or type(design).__name__)
    return result


async def _ticks(ctx, count, done=None):
    """Up to ``count`` clock edges, stopping after the edge where ``done()`` first holds;
    returns the edges taken. One trigger iterated, not one awaited per edge: Amaranth's
    fastest loop (as fast as ``tick().until()``, which cannot stop after ``count``)."""
    if count == 0:
        return 0
    taken, edges = 0, ctx.tick().__aiter__()
    try:
        while True:
            await edges.__anext__()
            taken += 1
            if taken == count or (done is not None and done()):
                return taken
    finally:
        await edges.aclose()
