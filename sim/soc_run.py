"""The simulated SoC as a register-level device: bus transactions as engine scripts, and the
golden model behind the same calls.

A host session (:mod:`fieldtune.host.session`) talks to a *device* through a few calls:
``write(register, **fields)``, ``read(register)``, ``write_window(name, words)``,
``read_window(name, count)``, ``start()``, ``wait_done(max_cycles, what)``, and
``then(callback)`` / ``flush()`` / ``close()``. Reads return a :class:`Reading` whose value is
known once the device has run up to it. Three kinds of device implement these calls:

* :class:`EngineDevice`: the SoC's bus on a simulation engine. Every call appends bus
  transactions to a :class:`BusProgram`, a :class:`~fieldtune.sim.engines.script.Script`
  (the stimulus format every engine runs), so Amaranth's simulator, CXXRTL, Verilator and
  Icarus run the very same session and must return the very same records. An incremental
  engine of the registry (:mod:`fieldtune.sim.engines.registry`: CXXRTL, Verilator) runs the
  program piece by piece in one simulation, at each ``then`` (progress between pieces); the
  other engines run the whole session as one script at ``flush``.
* :class:`GoldenDevice`: :class:`~fieldtune.sim.golden.soc.SocModel` behind the registers
  (bit-exact results; a run's ``cycles`` counter is :func:`~.soc_data.estimate_cycles`).
* the host link (:mod:`fieldtune.host.driver`): frames over a UART, to a board or to the
  simulated SoC behind its UART.

Records are loaded over the bus on every engine (a quarter million bus words for R1, about a
second in CXXRTL): the cache's quantizer is part of what is being checked, and poking its
memories directly would bypass it.
"""

import time
from collections import deque
from contextlib import ExitStack
from types import SimpleNamespace

import numpy as np

from ..rtl.soc import SoC, COUNTER_REGISTERS, ERRORS, MAGIC, VERSION
from ..rtl.csr.map import SocMap
from ..rtl.cache.layout import CacheLayout
from ..rtl.params import run_fields, built_early_stop
from ..rtl.sequencer import Mode, COUNTERS
from ..rtl.mac.layout import Layout
from .engines import registry as engines
from .engines.script import Script
from .golden.soc import SocModel, RunConfig
from .soc_data import record_stream, estimate_cycles


__all__ = ["ENGINES", "soc_component", "BusProgram", "Reading", "DeviceError", "EngineDevice",
           "GoldenDevice", "open_device", "decode_status", "decode_weights", "status_of",
           "weights_of", "signed", "STATUS_REGISTERS",
           "RUN_REGISTERS", "run_registers_of", "BUS_WAIT"]


#: Engines a session runs on (the engine registry's, fastest first); ``"golden"`` runs the
#: numpy models only.
ENGINES = (*engines.names(), "golden")

#: Most clock edges a single bus access may take (a record write waits for the quantizer).
BUS_WAIT = 4096


def run_registers_of(config):
    """Run registers and their fields -> :class:`~fieldtune.sim.golden.soc.RunConfig` fields
    of the SoC of ``config`` (the early-stop register only where it is built)."""
    return _run_registers(built_early_stop(config))


def _run_registers(early_stop=False):
    registers = {}
    for f in run_fields(early_stop).values():
        registers.setdefault(f.register, {})[f.field] = f.name
    return registers


#: Run registers and their fields -> :class:`~fieldtune.sim.golden.soc.RunConfig` fields
#: (from the one declaration, :data:`~fieldtune.rtl.params.RUN_FIELDS`) of a design without
#: early stop (:func:`run_registers_of`: any design's).
RUN_REGISTERS = _run_registers()


class DeviceError(RuntimeError):
    """The device misbehaved: a bus error, a wait that timed out, an error flag, or a
    disagreement with the golden model where a session checks one."""


class Reading:
    """A value read from a device, known once the device has run up to the read (at once on
    an interactive device; after the engine ran the script on a simulated bus)."""

    __slots__ = ("_get",)

    def __init__(self, get):
        self._get = get

    @classmethod
    def of(cls, value):
        """A value already known."""
        return cls(lambda: value)

    @property
    def value(self):
        return self._get()

    def map(self, fn):
        """The reading of ``fn(value)``."""
        return Reading(lambda: fn(self.value))


def soc_component(config):
    """The :class:`~fieldtune.rtl.soc.SoC` of ``config`` (for implement() and generate)."""
    return SoC(config)


# -- bus transactions as scripts ----------------------------------------------------------------

class BusProgram:
    """A :class:`Script` of bus transactions on a :class:`~fieldtune.rtl.soc.SoC`, with the
    bookkeeping to find its results: every ``wait`` and ``sample`` adds one record; the
    methods return the record indices they will fill.

    Protocol (``rtl/csr/bus.py``): the host sets ``adr``/``dat_w``/``we`` and raises ``cyc``;
    the target answers with ``ack`` or ``err`` for one cycle (``dat_r`` valid with ``ack``);
    the host drops ``cyc`` and steps one edge. A stream of accesses to one window keeps
    ``cyc`` high and steps one edge between accesses (the target starts the next access as
    soon as it has answered), so an element costs two clock edges when the target keeps up.
    """

    def __init__(self, soc):
        self.soc = soc
        self.script = Script()
        self.records = 0
        self.waits = []           # (record, what) of every wait
        self.errors = []          # (record, what) of sampled bus err bits
        self.results = None       # the records, once an engine has run the program
        self._regs = {r.name: r for r in soc.registers}

    def _record(self):
        self.records += 1
        return self.records - 1

    def wait(self, conditions, max_cycles, what):
        self.script.wait_any(conditions, max_cycles)
        idx = self._record()
        self.waits.append((idx, what))
        return idx

    def sample(self, port):
        self.script.sample(port)
        return self._record()

    def _respond(self, what, read=False):
        self.wait({"bus__ack": 1, "bus__err": 1}, BUS_WAIT, what)
        data = self.sample("bus__dat_r") if read else None
        self.errors.append((self.sample("bus__err"), what))
        return data

    def access(self, addr, value=None, what=""):
        """One write (``value`` given) or read; returns the read's record index."""
        s = self.script
        s.set("bus__adr", addr).set("bus__we", int(value is not None))
        if value is not None:
            s.set("bus__dat_w", value)
        s.set("bus__cyc", 1)
        data = self._respond(what or f"access at {addr:#x}", read=value is None)
        s.set("bus__cyc", 0).set("bus__we", 0)
        s.step(1)
        return data

    def write_stream(self, addr, values, what):
        """Writes of every value to one address, ``cyc`` held (the record window)."""
        s = self.script
        s.set("bus__adr", addr).set("bus__we", 1).set("bus__cyc", 1)
        for v in values:
            s.set("bus__dat_w", int(v))
            self.wait({"bus__ack": 1}, BUS_WAIT, what)
            s.step(1)
        s.set("bus__cyc", 0).set("bus__we", 0)
        # a stream's err is not sampled per access; the target flags what it refuses
        return self

    def read_stream(self, addr, count, what):
        """``count`` reads of one address, ``cyc`` held (the weight window); record indices."""
        s = self.script
        s.set("bus__adr", addr).set("bus__we", 0).set("bus__cyc", 1)
        out = []
        for i in range(count):
            out.append(self._respond(what, read=True))
            if i == count - 1:
                s.set("bus__cyc", 0)
            s.step(1)
        return out

    # -- registers --

    def pack(self, register, **fields):
        return self.soc.map.pack(register, **fields)

    def write_reg(self, register, **fields):
        return self.access(self.soc.address(register), self.pack(register, **fields),
                           what=f"write {register}")

    def read_reg(self, register):
        return self.access(self.soc.address(register), what=f"read {register}")

    def configure(self, cfg: RunConfig):
        """Write every run register of ``cfg``."""
        for register, fields in run_registers_of(self.soc.config).items():
            self.write_reg(register, **{f: int(getattr(cfg, key)) for f, key in fields.items()})

    def run(self, max_cycles, what):
        """Start, then wait natively for ``done``; returns the wait's record index."""
        self.write_reg("control", start=1)
        return self.wait({"done": 1}, max_cycles, what)

    def read_status(self):
        """Record indices of the status, error flags, counters and ZO continuation."""
        return {name: self.read_reg(name) for name in STATUS_REGISTERS}

    def load_records(self, features, logits, labels, what="records"):
        return self.write_records(record_stream(features, logits, labels), what)

    def write_records(self, records, what="records"):
        """Records as :func:`~fieldtune.sim.soc_data.record_stream` gives them."""
        return self.write_stream(self.soc.address("records"),
                                 [d | (int(last) << 16) for rec in records for d, last in rec],
                                 what)

    def load_weights(self, words, max_cycles):
        """A LOAD run writing ``words`` (``(words, lanes)``) through the weight window."""
        self.write_reg("mode", mode=Mode.LOAD.value)
        self.write_reg("control", start=1)
        flat = np.asarray(words, dtype=np.int64).reshape(-1)
        ww = self.soc.mac.weight_width
        self.write_stream(self.soc.address("weights"),
                          [int(v) & ((1 << ww) - 1) for v in flat], "weight load")
        return self.wait({"done": 1}, max_cycles, "LOAD run")

    def dump_weights(self, max_cycles):
        """A DUMP run; the record indices of every weight (weight order)."""
        self.write_reg("mode", mode=Mode.DUMP.value)
        self.write_reg("control", start=1)
        n = Layout(self.soc.mac).words * self.soc.mac.lanes
        out = self.read_stream(self.soc.address("weights"), n, "weight dump")
        self.wait({"done": 1}, max_cycles, "DUMP run")
        return out


    def check(self, records):
        """DeviceError if a wait of this program timed out or a sampled access saw ``err``
        (``records``: the program's own records)."""
        for idx, what in self.waits:
            if records[idx] is None:
                raise DeviceError(f"timed out waiting for {what}")
        for idx, what in self.errors:
            if records[idx]:
                raise DeviceError(f"bus error on {what}")


def signed(value, width):
    """Two's-complement reading of the low ``width`` bits of ``value``."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


#: Registers :func:`status_of` decodes, in the order a host reads them.
STATUS_REGISTERS = ("status", "errors", "next_step", "next_cursor",
                    *(COUNTER_REGISTERS[c] for c in COUNTERS))


def status_of(words):
    """What the :data:`STATUS_REGISTERS` words (name -> word) say: ``{counter: value,
    "next_step", "next_cursor", "errors": [flag names], "busy", "done", "records"}``."""
    out = {k: words[COUNTER_REGISTERS[k]] for k in COUNTERS}
    out["next_step"] = words["next_step"]
    out["next_cursor"] = words["next_cursor"]
    out["errors"] = [name for i, name in enumerate(ERRORS) if words["errors"] >> i & 1]
    status = words["status"]
    out.update(busy=status & 1, done=status >> 1 & 1, records=status >> 3)
    return out


def weights_of(values, mac):
    """Weights read from the weight window (raw words, weight order) as ``(words, lanes)``
    int64."""
    w = np.array([signed(v, mac.weight_width) for v in values], dtype=np.int64)
    return w.reshape(Layout(mac).words, mac.lanes)


def decode_status(records, indices):
    """The registers :meth:`BusProgram.read_status` read (see :func:`status_of`)."""
    return status_of({name: records[idx] for name, idx in indices.items()})


def decode_weights(records, indices, mac):
    """The weights a :meth:`BusProgram.dump_weights` read, ``(words, lanes)`` int64."""
    return weights_of([records[i] for i in indices], mac)


# -- devices ------------------------------------------------------------------------------------

class EngineDevice:
    """The SoC's bus on a simulation ``engine`` (a name of the engine registry,
    :mod:`fieldtune.sim.engines.registry`).

    ``env``: the YoWASP tool environment (every engine but amaranth needs Yosys); ``vcd``
    writes a waveform (engines with waveforms). An incremental engine (CXXRTL) runs each piece
    of the session at :meth:`then`; the others run the whole session as one script at
    :meth:`flush`. ``sim_cycles`` and ``sim_seconds`` add up the simulation's clock edges and
    the wall time it took (the model's build excluded).
    """

    def __init__(self, config, engine, *, env=None, vcd=None):
        self.spec = engines.get(engine)
        engines.check_waveforms(engine, vcd)
        self.config, self.engine = config, engine
        self.soc = soc_component(config)
        self.sim_cycles, self.sim_seconds = 0, 0.0
        self._program = BusProgram(self.soc)
        self._queue = []          # (program, callback) not run yet (script engines)
        self._flushed = False
        self._stack = ExitStack()
        self._run = self._stack.enter_context(self.spec.session(self.soc, env=env, vcd=vcd))

    # -- the device calls --

    def write(self, register, **fields):
        self._program.write_reg(register, **fields)

    def read(self, register):
        return self._reading(self._program, self._program.read_reg(register))

    def write_window(self, name, words):
        self._program.write_stream(self.soc.address(name), words, f"{name} window")

    def read_window(self, name, count):
        prog = self._program
        idx = prog.read_stream(self.soc.address(name), count, f"{name} window")
        return Reading(lambda: [prog.results[i] for i in idx]
                       if prog.results is not None else self._not_run())

    def start(self):
        self._program.write_reg("control", start=1)

    def wait_done(self, max_cycles, what):
        self._program.wait({"done": 1}, max_cycles, what)

    def then(self, callback):
        """Call ``callback()`` once every reading so far has its value: an incremental
        engine runs the program now; the others queue it until :meth:`flush`."""
        prog, self._program = self._program, BusProgram(self.soc)
        if self.spec.incremental:
            self._resolve(prog, self._simulate(prog.script).records)
            callback()
            return
        if self._flushed:
            raise RuntimeError(f"the {self.engine} engine runs a session as one script; "
                               f"this one has run")
        self._queue.append((prog, callback))

    def flush(self):
        """Run everything not run yet (on a script engine: the whole session, once)."""
        if len(self._program.script):
            self.then(lambda: None)
        if not self._queue:
            return
        whole = Script()
        for prog, _ in self._queue:
            whole.extend(prog.script)
        result = self._simulate(whole)
        self._flushed = True
        queue, self._queue, first = self._queue, [], 0
        for prog, _ in queue:
            self._resolve(prog, result.records[first:first + prog.records])
            first += prog.records
        for _, callback in queue:
            callback()

    def _simulate(self, script):
        t0 = time.perf_counter()
        result = self._run(script)
        self.sim_seconds += time.perf_counter() - t0
        self.sim_cycles += result.cycles
        return result

    def close(self):
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals --

    @staticmethod
    def _not_run():
        raise RuntimeError("read before the device ran up to it (call then() or flush())")

    def _reading(self, prog, idx):
        return Reading(lambda: prog.results[idx] if prog.results is not None
                       else self._not_run())

    @staticmethod
    def _resolve(prog, records):
        prog.check(records)
        prog.results = records


class GoldenDevice:
    """:class:`~fieldtune.sim.golden.soc.SocModel` behind the SoC's bus and registers.

    :meth:`bus_read` and :meth:`bus_write` answer word accesses as the SoC's bus does
    (``"ack"`` or ``"err"``; the interface of the host link's golden model,
    :class:`~fieldtune.sim.golden.host.HostLinkModel`); the device calls of a session are
    built on them. Registers hold what a host writes; a start runs the model to the end at
    once (``done`` right after it; a LOAD run ends with its last weight); the ``cycles``
    counter of a FO, ZO or EVAL run is :func:`~.soc_data.estimate_cycles` (the model computes
    what a run does, not how long it takes)."""

    engine = "golden"
    sim_cycles = sim_seconds = None

    def __init__(self, config):
        self.config = config
        self.model = SocModel(config)
        self.map = SocMap(config)
        self.words = [self.map.pack(r.name, **{f.name: f.init for f in r.fields})
                      for r in self.map.registers]
        self._index = {r.name: i for i, r in enumerate(self.map.registers)}
        self.cycles = 0
        self._record = []          # elements of a record not ended yet
        self._loading = None       # weights of a LOAD run so far
        self._dump = None          # weights a DUMP run has left to read
        mac = config.mac
        lay = Layout(mac)
        fixed = {"id": {"magic": MAGIC, "version": VERSION},
                 "geometry": {"lanes": mac.lanes, "classes": mac.classes,
                              "beats": CacheLayout(config.cache).beats},
                 "capacity": {"records": config.cache.capacity, "regions": len(lay.regions)},
                 "weights": {"words": lay.words}}
        for name, fields in fixed.items():
            self.words[self._index[name]] = self.map.pack(name, **fields)

    # -- the bus --

    @property
    def bus(self):
        """The bus as the host link's golden model drives it: ``read(address) -> (result,
        value)``, ``write(address, value) -> result``."""
        return SimpleNamespace(read=self.bus_read, write=self.bus_write)

    def bus_write(self, address, value):
        window = self.map.window_at(address)
        if window is not None:
            return self._window_write(window, address, value)
        if not 0 <= address < len(self.map.registers):
            return "err"
        reg = self.map.registers[address]
        fields = self.map.unpack(reg.name, value)
        if reg.name == "control":
            if fields["clear_cache"]:
                self.model.clear_cache()
            if fields["start"]:
                self._start()
            if fields["abort"] and self._busy():
                self._loading = self._dump = None
                self.model.errors.add("aborted")
                self.model.done = True
        elif reg.name == "errors":
            self.model.errors -= {n for n, v in fields.items() if v}
        elif reg.locked and self._busy():
            self.model.errors.add("busy")           # run registers are locked during a run
        elif all(f.access == "rw" for f in reg.fields):
            self.words[address] = value & 0xFFFF_FFFF
        return "ack"

    def bus_read(self, address):
        window = self.map.window_at(address)
        if window is not None:
            if window.name == "records":
                return "ack", self.model.records
            if not self._dump:
                return "err", 0
            value = self._dump.popleft()
            self.model.done = not self._dump
            return "ack", value & 0xFFFF_FFFF       # sign-extended
        if not 0 <= address < len(self.map.registers):
            return "err", 0
        name, m = self.map.registers[address].name, self.model
        counters = {COUNTER_REGISTERS[c]: c for c in COUNTERS}
        if name in counters:
            c = counters[name]
            return "ack", self.cycles if c == "cycles" else int(m.counters[c])
        fields = {"status": {"busy": int(self._busy()),
                             "done": int(m.done), "error": int(bool(m.errors)),
                             "records": m.records},
                  "errors": {n: int(n in m.errors) for n in ERRORS},
                  "next_step": {"step": m.next_step},
                  "next_cursor": {"cursor": m.next_cursor},
                  "stop_status": {"epochs_run": m.counters["epochs"],
                                  "held_out_correct": m.stop["correct"],
                                  "stopped": int(m.stop["stopped"])}}.get(name)
        return "ack", self.map.pack(name, **fields) if fields is not None else self.words[address]

    def _busy(self):
        """A run is busy: only LOAD and DUMP runs last beyond their start here."""
        return self._loading is not None or bool(self._dump)

    def _window_write(self, window, address, value):
        if window.name == "weights":
            if self._loading is None:
                return "err"
            self._loading.append(signed(value, self.config.mac.weight_width))
            if len(self._loading) == Layout(self.config.mac).words * self.config.mac.lanes:
                self.model.load_weights(self._loading)
                self._loading = None
                self.model.done = True
            return "ack"
        last = bool(value >> window.last_bit & 1) or address & 1
        self._record.append(signed(value, 16))
        if last:
            c, rec = self.config.cache, self._record
            self._record = []
            if len(rec) == c.features + c.classes + 1:
                self.model.write_record(rec[:c.features], rec[c.features:-1], rec[-1])
            else:
                for i, d in enumerate(rec):
                    self.model.write(d & 0xFFFF, i == len(rec) - 1)
        return "ack"

    def run_config(self):
        """The :class:`RunConfig` the registers hold."""
        return RunConfig(**{key: self.map.unpack(reg, self.words[self._index[reg]])[f]
                            for reg, fields in run_registers_of(self.config).items()
                            for f, key in fields.items()})

    def _start(self):
        cfg = self.run_config()
        if self._busy():
            self.model.errors.add("busy")
            return
        self.model.done = False
        if cfg.mode == Mode.LOAD.value:
            self._loading = []
            return
        if cfg.mode == Mode.DUMP.value:
            self._dump = deque(int(v) for v in self.model.weights.reshape(-1))
            return
        if self.model.start(cfg):
            return
        mode = {Mode.FO.value: "fo", Mode.ZO.value: "zo"}.get(cfg.mode, "eval")
        self.cycles = (estimate_cycles(self.config, "eval", cfg.eval_count) if mode == "eval"
                       else estimate_cycles(self.config, mode, self.model.records,
                                            epochs=cfg.epochs, steps=cfg.steps,
                                            batch=cfg.batch, queries=cfg.queries))

    # -- the device calls --

    def _check(self, result, what):
        if result != "ack":
            raise DeviceError(f"bus error on {what}")

    def write(self, register, **fields):
        self._check(self.bus_write(self._index[register], self.map.pack(register, **fields)),
                    f"write {register}")

    def read(self, register):
        result, value = self.bus_read(self._index[register])
        self._check(result, f"read {register}")
        return Reading.of(value)

    def write_window(self, name, words):
        address = self.map.address(name)
        for w in words:
            self._check(self.bus_write(address, w), f"{name} window")

    def read_window(self, name, count):
        address, out = self.map.address(name), []
        for _ in range(count):
            result, value = self.bus_read(address)
            self._check(result, f"{name} window")
            out.append(value)
        return Reading.of(out)

    def start(self):
        self.write("control", start=1)

    def wait_done(self, max_cycles, what):
        if not self.model.done:
            raise DeviceError(f"timed out waiting for {what}")

    def then(self, callback):
        callback()

    def flush(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_device(config, engine, *, env=None, vcd=None):
    """The device of ``engine`` (:data:`ENGINES`): an :class:`EngineDevice`, or the
    :class:`GoldenDevice` for ``"golden"``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    engines.check_waveforms(engine, vcd)
    if engine == "golden":
        return GoldenDevice(config)
    return EngineDevice(config, engine, env=env, vcd=vcd)
