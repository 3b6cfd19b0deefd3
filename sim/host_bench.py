"""A native-speed bench for the host link's byte level: :class:`~fieldtune.rtl.host.link.HostCore`
fed from a stimulus memory, its responses captured in a memory, its bus answered by
:class:`MemoryTarget` (the gateware twin of :class:`~fieldtune.sim.golden.host.MemoryBus`),
compiled with CXXRTL. A run is: reset, write the received symbols, wait in C until the core
has answered everything, read the responses and the target's state. Thousands of frames take
about a second, which is what the fuzzing tests need.

::

    bench = HostBench(params, soc_map, errors={1}, stalls={2}, env=tool_env("YOSYS"))
    result = bench.run(symbols)      # symbols: bytes, or (byte, framing_error, lost) tuples
    result.responses, result.words, result.streams, result.reads, result.settle_cycles
"""

from dataclasses import dataclass

from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..rtl.csr.bus import BusSignature, DATA_WIDTH
from ..rtl.host.link import HostCore
from .engines import cxxrtl


__all__ = ["MemoryTarget", "HostCoreBench", "HostBench", "BenchResult"]


class MemoryTarget(wiring.Component):
    """Bus target with :class:`~fieldtune.sim.golden.host.MemoryBus` semantics: registers are
    plain words (memory ``regs``), a window write appends to memory ``log_<window>``, a window
    read returns how many reads of that window came before; ``errors`` answer ``err``,
    ``stalls`` never answer, other addresses outside the map answer ``err``. Answers one
    cycle after ``cyc`` rises."""

    def __init__(self, soc_map, errors=(), stalls=(), log_depth=4096):
        self.map, self.errors, self.stalls = soc_map, frozenset(errors), frozenset(stalls)
        self.log_depth = log_depth
        counts = {f"count_{w}": Out(range(log_depth + 1)) for w in soc_map.windows}
        peeks = {f"peek_{w}": Out(DATA_WIDTH) for w in soc_map.windows}
        super().__init__({"bus": In(BusSignature(soc_map.addr_width)), **counts,
                          "peek": In(range(log_depth)), **peeks})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        nregs = len(self.map.registers)
        m.submodules.regs = regs = Memory(shape=DATA_WIDTH, depth=nregs, init=[])
        rd, wr = regs.read_port(domain="comb"), regs.write_port()
        responded = Signal()
        access = bus.cyc & ~responded
        m.d.sync += [responded.eq(0), bus.ack.eq(0), bus.err.eq(0)]
        ok = Signal()
        m.d.comb += [rd.addr.eq(bus.adr), wr.addr.eq(bus.adr), wr.data.eq(bus.dat_w)]
        value = Signal(DATA_WIDTH)
        logs = {}
        for w in self.map.windows.values():
            log = Memory(shape=DATA_WIDTH, depth=self.log_depth, init=[])
            m.submodules[f"log_{w.name}"] = log
            peek = log.read_port(domain="comb")       # keeps the log (and shows it)
            m.d.comb += [peek.addr.eq(self.peek), getattr(self, f"peek_{w.name}").eq(peek.data)]
            logs[w.name] = (log.write_port(), Signal(DATA_WIDTH, name=f"reads_{w.name}"))
        with m.If(bus.adr < nregs):
            m.d.comb += [ok.eq(1), value.eq(rd.data), wr.en.eq(access & bus.we
                                                               & ~self._special(bus.adr))]
        for w in self.map.windows.values():
            lw, reads = logs[w.name]
            count = getattr(self, f"count_{w.name}")
            with m.Elif((bus.adr >= w.address) & (bus.adr < w.address + w.words)):
                m.d.comb += [ok.eq(1), value.eq(reads)]
                with m.If(access & ~self._special(bus.adr)):
                    with m.If(bus.we):
                        m.d.comb += [lw.addr.eq(count), lw.data.eq(bus.dat_w),
                                     lw.en.eq(count < self.log_depth)]
                        m.d.sync += count.eq(count + 1)
                    with m.Else():
                        m.d.sync += reads.eq(reads + 1)
        stall = Cat(bus.adr == a for a in self.stalls).any() if self.stalls else 0
        error = Cat(bus.adr == a for a in self.errors).any() if self.errors else 0
        with m.If(access & ~stall):
            m.d.sync += [responded.eq(1), bus.dat_r.eq(value), bus.ack.eq(ok & ~error),
                         bus.err.eq(~ok | error)]
        return m

    def _special(self, adr):
        special = self.errors | self.stalls
        return Cat(adr == a for a in special).any() if special else 0


class HostCoreBench(wiring.Component):
    """HostCore between a stimulus memory (``stimulus``: 10-bit symbols ``data | ferr << 8 |
    lost << 9``, the first ``n_symbols`` fed) and a capture memory (``capture``: response
    bytes, ``captured`` of them), on a :class:`MemoryTarget`. ``finished``: every symbol was
    taken and the core is idle (everything answered)."""

    def __init__(self, params, soc_map, *, errors=(), stalls=(), stimulus_depth=1 << 16,
                 capture_depth=1 << 16):
        self.params, self.map = params, soc_map
        self.errors, self.stalls = errors, stalls
        self.stimulus_depth, self.capture_depth = stimulus_depth, capture_depth
        counts = {f"count_{w}": Out(range(4097)) for w in soc_map.windows}
        counts.update({f"peek_{w}": Out(DATA_WIDTH) for w in soc_map.windows})
        super().__init__({
            "n_symbols": In(range(stimulus_depth + 1)),
            "consumed": Out(1),
            "finished": Out(1),
            "captured": Out(range(capture_depth + 1)),
            "peek": In(range(capture_depth)),
            "peek_capture": Out(8),
            **counts,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = HostCore(self.params, self.map)
        m.submodules.target = target = MemoryTarget(self.map, self.errors, self.stalls)
        wiring.connect(m, core.bus, target.bus)
        for w in self.map.windows:
            for name in (f"count_{w}", f"peek_{w}"):
                m.d.comb += getattr(self, name).eq(getattr(target, name))
        m.submodules.stimulus = stim = Memory(shape=10, depth=self.stimulus_depth, init=[])
        m.submodules.capture = cap = Memory(shape=8, depth=self.capture_depth, init=[])
        rd, wr = stim.read_port(domain="comb"), cap.write_port()
        peek = cap.read_port(domain="comb")               # keeps the capture (and shows it)
        m.d.comb += [peek.addr.eq(self.peek), self.peek_capture.eq(peek.data),
                     target.peek.eq(self.peek)]
        ptr = Signal(range(self.stimulus_depth + 1))
        m.d.comb += [rd.addr.eq(ptr), core.symbol.valid.eq(ptr < self.n_symbols),
                     core.symbol.payload.eq(rd.data)]
        with m.If(core.symbol.valid & core.symbol.ready):
            m.d.sync += ptr.eq(ptr + 1)
        m.d.comb += [core.byte.ready.eq(1), wr.addr.eq(self.captured),
                     wr.data.eq(core.byte.payload),
                     wr.en.eq(core.byte.valid & (self.captured < self.capture_depth))]
        with m.If(core.byte.valid & (self.captured < self.capture_depth)):
            m.d.sync += self.captured.eq(self.captured + 1)
        m.d.comb += [self.consumed.eq(ptr == self.n_symbols),
                     self.finished.eq((ptr == self.n_symbols) & core.idle)]
        return m


@dataclass
class BenchResult:
    responses: bytes          # every response byte, in order
    words: list               # the registers' words
    streams: dict             # window -> words written
    reads: dict               # window -> reads answered
    cycles: int               # cycles of the run
    settle_cycles: int        # cycles from the last symbol taken to idle


class HostBench:
    """:class:`HostCoreBench` compiled with CXXRTL (``env``: the tool environment naming
    Yosys); :meth:`run` runs one stimulus from power-on."""

    def __init__(self, params, soc_map, *, errors=(), stalls=(), env, cache=None):
        self.params, self.map = params, soc_map
        self.design = HostCoreBench(params, soc_map, errors=errors, stalls=stalls)
        self.model = cxxrtl.build(self.design, env=env, cache=cache)
        self.sim = self.model.simulate().__enter__()

    def close(self):
        self.sim.close()

    def run(self, symbols, max_settle):
        """Feed ``symbols``; :class:`TimeoutError` if the core is not idle ``max_settle``
        cycles after it took the last one."""
        raw = [s if isinstance(s, int) else s[0] | int(s[1]) << 8 | int(s[2]) << 9
               for s in symbols]
        if len(raw) > self.design.stimulus_depth:
            raise ValueError(f"at most {self.design.stimulus_depth} symbols, not {len(raw)}")
        sim = self.sim
        sim.reset()
        if raw:
            sim.memory("stimulus").write(0, raw)
        sim.set("n_symbols", len(raw))
        sim.wait("consumed", 1, max_cycles=len(raw) * (max_settle + 2) + 16)
        settle = sim.wait("finished", 1, max_cycles=max_settle)
        n = sim.get("captured")
        responses = bytes(sim.memory("capture").read(0, n)) if n else b""
        words = sim.memory("target regs").read()
        streams = {}
        for w in self.map.windows:
            count = sim.get(f"count_{w}")
            log = sim.memory(f"target log_{w}")
            streams[w] = log.read(0, min(count, len(log))) if count else []
        reads = {w: sim.get(f"target reads_{w}") for w in self.map.windows}
        return BenchResult(responses, words, streams, reads, sim.cycles, settle)
