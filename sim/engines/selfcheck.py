"""A small design every simulation engine must agree on, and its golden model.

:class:`MixPipeline` exists to check the engines (Amaranth's simulator, CXXRTL, Verilator,
Icarus) against each other and against :class:`MixPipelineModel`, and to measure their speed
(``fieldtune bench engines``). It has what makes simulators disagree when one is wrong: a
xorshift32 state machine, a ``lib.memory.Memory`` with initial contents, a host write port and a
synchronous read port, a two-stage stream pipeline under back-pressure, ports wider than 64 bits
(a 128-bit input payload, a 144-bit output payload, an 80-bit signed total) and error flags.

Run protocol (a register-style interface, as the SoC's host link will use):

1. optionally write table entries through ``load`` (one per cycle while ``load.en`` is high);
2. set ``seed`` (non-zero) and ``count`` (non-zero), pulse ``start`` for one cycle while idle;
3. send ``count`` items into ``i`` and take ``count`` items from ``o``;
4. ``done`` rises on the edge of the last output transfer and stays high until the next start;
   ``checksum`` and ``total`` then hold the results.

``start`` with ``seed == 0`` or ``count == 0``, or while ``busy``, raises ``error`` and changes
nothing else (a running job keeps running); the next accepted start clears ``error``.
"""

from amaranth.hdl import Module, Signal, Cat, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .script import Script


__all__ = ["MixPipeline", "MixPipelineModel", "xorshift32", "table_init", "pack_lanes",
           "unpack_lanes", "SelfCheck"]


#: Mask of the xorshift32 state and of the checksum.
MASK32 = 0xFFFF_FFFF


def xorshift32(state):
    """Marsaglia's xorshift32 step (shifts 13, 17, 5) on a 32-bit state."""
    state ^= (state << 13) & MASK32
    state ^= state >> 17
    state ^= (state << 5) & MASK32
    return state


def table_init(depth, lanes, width):
    """The table's power-on contents: entry ``a``, lane ``k`` = ((37a + 11k) mod 251) - 125,
    wrapped to ``signed(width)`` (two's complement) so narrow lanes hold it exactly."""
    half = 1 << (width - 1)
    return [[((37 * a + 11 * k) % 251 - 125 + half) % (2 * half) - half for k in range(lanes)]
            for a in range(depth)]


def _check(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


def _check_geometry(lanes, width, depth_log2):
    _check("lanes", lanes, 1, 16)
    _check("width", width, 2, 32)
    _check("depth_log2", depth_log2, 1, 12)


class MixPipeline(wiring.Component):
    """Xorshift-addressed table lookup over a stream of lane vectors.

    For input item ``n`` with key ``s_n`` (``s_0 = seed``, ``s_{n+1} = xorshift32(s_n)``), the
    output item is, lane by lane, ``o[k] = i[k] + table[s_n mod depth][k] + bit k of s_n``, in
    ``signed(width + 2)`` (exact, no overflow). ``checksum`` starts at 0 and becomes
    ``rotl1(checksum) XOR fold32(o)`` per output item, where ``fold32`` XORs the output
    payload's 32-bit words; ``total`` (``signed(80)``) is the sum of every output lane.

    Timing: two stages (input register with the synchronous table read, output register);
    latency from an input transfer to ``o.valid`` is 2 cycles. ``i.ready`` is high while busy,
    inputs remain and the first stage can move; it drops when ``o.ready`` is held low (the
    pipeline then holds two items) and never loses or duplicates an item.

    Parameters
    ----------
    lanes : int
        Lanes per item (1..16).
    width : int
        Signed input lane width in bits (2..32).
    depth_log2 : int
        Table depth is ``2**depth_log2`` entries (1..12).
    """

    def __init__(self, lanes=8, width=16, depth_log2=6):
        _check_geometry(lanes, width, depth_log2)
        self.lanes, self.width, self.depth = lanes, width, 1 << depth_log2
        in_layout = data.ArrayLayout(signed(width), lanes)
        self.out_layout = data.ArrayLayout(signed(width + 2), lanes)
        load = wiring.Signature({"addr": Out(depth_log2), "data": Out(in_layout), "en": Out(1)})
        super().__init__({
            "seed": In(32), "count": In(32), "start": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(1),
            "checksum": Out(32), "total": Out(signed(80)),
            "load": In(load),
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })
        self.table = Memory(shape=in_layout, depth=self.depth,
                            init=table_init(self.depth, lanes, width))

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = self.table
        wp = table.write_port()
        rp = table.read_port()
        m.d.comb += [wp.addr.eq(self.load.addr), wp.data.eq(self.load.data),
                     wp.en.eq(self.load.en)]

        state = Signal(32)
        to_accept = Signal(32)
        to_emit = Signal(32)
        a_valid = Signal()
        a_data = Signal(self.i.payload.shape())
        a_key = Signal(self.lanes)

        ready_b = ~self.o.valid | self.o.ready
        ready_a = ~a_valid | ready_b
        m.d.comb += [
            self.i.ready.eq(self.busy & (to_accept != 0) & ready_a),
            rp.addr.eq(state[:len(rp.addr)]),
            rp.en.eq(ready_a),
        ]

        # Stage A: the input item, its key bits, and (one cycle later) its table entry.
        with m.If(ready_a):
            m.d.sync += [a_valid.eq(self.i.valid & self.i.ready),
                         a_data.eq(self.i.payload), a_key.eq(state[:self.lanes])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [to_accept.eq(to_accept - 1), state.eq(_xorshift32_hdl(state))]

        # Stage B: the output register.
        with m.If(ready_b):
            m.d.sync += self.o.valid.eq(a_valid)
            for k in range(self.lanes):
                m.d.sync += self.o.payload[k].eq(a_data[k] + rp.data[k] + a_key[k])

        with m.If(self.o.valid & self.o.ready):
            raw = self.o.payload.as_value()
            fold = 0
            for lo in range(0, len(raw), 32):
                fold = fold ^ raw[lo:lo + 32]
            lane_sum = sum(self.o.payload[k] for k in range(self.lanes))
            m.d.sync += [
                self.checksum.eq(Cat(self.checksum[31], self.checksum[:31]) ^ fold),
                self.total.eq(self.total + lane_sum),
                to_emit.eq(to_emit - 1),
            ]
            with m.If(to_emit == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]

        with m.If(self.start):
            with m.If(self.busy | (self.seed == 0) | (self.count == 0)):
                m.d.sync += self.error.eq(1)
            with m.Else():
                m.d.sync += [
                    state.eq(self.seed), to_accept.eq(self.count), to_emit.eq(self.count),
                    self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                    self.checksum.eq(0), self.total.eq(0),
                ]
        return m


def _xorshift32_hdl(s):
    s1 = s ^ (s << 13)[:32]
    s2 = s1 ^ (s1 >> 17)
    return s2 ^ (s2 << 5)[:32]


class MixPipelineModel:
    """Golden model of :class:`MixPipeline` at the level of transfers (same integers)."""

    def __init__(self, lanes=8, width=16, depth_log2=6):
        _check_geometry(lanes, width, depth_log2)
        self.lanes, self.width, self.depth = lanes, width, 1 << depth_log2
        self.table = table_init(self.depth, lanes, width)

    def load(self, addr, lanes):
        self.table[addr] = list(lanes)

    def run(self, seed, inputs):
        """Outputs (lists of lane ints), checksum and total for ``inputs`` from ``seed``."""
        out_width = self.width + 2
        outputs, checksum, total, state = [], 0, 0, seed
        for item in inputs:
            entry = self.table[state % self.depth]
            out = [item[k] + entry[k] + ((state >> k) & 1) for k in range(self.lanes)]
            outputs.append(out)
            raw = pack_lanes(out, out_width)
            fold = 0
            while raw:
                fold ^= raw & MASK32
                raw >>= 32
            checksum = (((checksum << 1) | (checksum >> 31)) & MASK32) ^ fold
            total += sum(out)
            state = xorshift32(state)
        return outputs, checksum, total


def pack_lanes(lanes, width):
    """Raw bits of signed lane values, lane 0 least significant (``ArrayLayout`` packing)."""
    raw, mask = 0, (1 << width) - 1
    for k, v in enumerate(lanes):
        raw |= (v & mask) << (k * width)
    return raw


def unpack_lanes(raw, width, count):
    """Signed lane values from raw bits (inverse of :func:`pack_lanes`)."""
    out = []
    for k in range(count):
        v = (raw >> (k * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


# -- the scripted check every engine runs --------------------------------------------------------

class SelfCheck:
    """A :class:`~fieldtune.sim.engines.script.Script` exercising all of :class:`MixPipeline`,
    and the golden-model verdict on what an engine recorded for it.

    Phases: power-on outputs; three table writes through ``load`` (at the addresses the first
    keys read); a start with ``seed == 0`` (error); a good start; a start while busy (error,
    the run goes on); ``cycles`` cycles of random ``i.valid`` and ``o.ready`` with
    ``i.ready``, ``o.valid`` and ``o.payload`` sampled every cycle; a synchronous reset; a wait
    that must time out; a second run of ``bulk_items`` at full rate, ended by a wait for
    ``done`` or ``error``; a wait that holds at once.
    """

    def __init__(self, seed=0x1234_5678, items=24, cycles=160, bulk_items=500, rng_seed=1,
                 lanes=8, width=16, depth_log2=6):
        import random
        self.geometry = dict(lanes=lanes, width=width, depth_log2=depth_log2)
        self.seed, self.items, self.bulk_items = seed, items, bulk_items
        self.bulk_seed = seed ^ 0xA5A5_A5A5
        self.bulk_lanes = [k - lanes // 2 for k in range(lanes)]
        rnd = random.Random(rng_seed)
        script, labels, self.loads = Script(), [], []

        def sample(*ports, tag=None):
            for p in ports:
                script.sample(p)
                labels.append((p, tag))

        def random_lanes():
            return [rnd.randrange(-(1 << (width - 1)), 1 << (width - 1)) for _ in range(lanes)]

        sample("busy", "done", "error", "i__ready", "o__valid", "checksum", "total",
               tag="power-on")
        state = seed
        for _ in range(3):
            self.loads.append((state % (1 << depth_log2), random_lanes()))
            state = xorshift32(state)
        for addr, entry in self.loads:
            script.set("load__addr", addr).set("load__data", pack_lanes(entry, width))
            script.set("load__en", 1).step()
        script.set("load__en", 0)
        script.set("seed", 0).set("count", items).set("start", 1).step().set("start", 0)
        sample("error", "busy", tag="bad seed")
        script.set("seed", seed).set("start", 1).step().set("start", 0)
        sample("error", "busy", tag="started")
        script.set("start", 1).step().set("start", 0)
        sample("error", "busy", tag="start while busy")
        for cycle in range(cycles):
            valid, ready = int(rnd.random() < 0.7), int(rnd.random() < 0.6)
            payload = pack_lanes(random_lanes(), width)
            script.set("i__valid", valid).set("i__payload", payload).set("o__ready", ready)
            # decode() needs the stimulus beside the samples to tell which transfers happened.
            sample("i__ready", tag=(valid, payload, ready))
            sample("o__valid", "o__payload", tag=cycle)
            script.step()
        script.set("i__valid", 0).set("o__ready", 0)
        sample("busy", "done", "error", "checksum", "total", tag="first run")
        script.set("rst", 1).step().set("rst", 0)
        sample("busy", "done", "checksum", "total", "i__ready", tag="after reset")
        script.wait_any({"done": 1, "busy": 1}, 5)
        labels.append(("wait", "timeout"))
        script.set("seed", self.bulk_seed).set("count", bulk_items)
        script.set("i__payload", pack_lanes(self.bulk_lanes, width))
        script.set("i__valid", 1).set("o__ready", 1).set("start", 1).step().set("start", 0)
        script.wait_any({"error": 1, "done": 1}, 10 * bulk_items + 10)
        labels.append(("wait", "bulk"))
        sample("checksum", "total", "busy", "error", tag="bulk")
        script.wait_any({"error": 1, "i__ready": 0}, 3)
        labels.append(("wait", "already"))
        self.script, self.labels = script, labels

    def decode(self, records):
        """Named values: ``inputs`` and ``outputs`` (lane lists of the stream transfers of the
        random phase, in order) and ``(port, tag) -> value`` for everything else."""
        if len(records) != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} records, not {len(records)}")
        lanes, width = self.geometry["lanes"], self.geometry["width"]
        out = {"inputs": [], "outputs": []}
        it = iter(zip(self.labels, records))
        for (port, tag), value in it:
            if port == "i__ready" and isinstance(tag, tuple):
                valid, payload, ready = tag
                (_, o_valid), (_, o_payload) = next(it), next(it)
                if valid and value:
                    out["inputs"].append(unpack_lanes(payload, width, lanes))
                if ready and o_valid:
                    out["outputs"].append(unpack_lanes(o_payload, width + 2, lanes))
            else:
                out[(port, tag)] = value
        return out

    def mismatches(self, result):
        """Differences between an engine's :class:`ScriptResult` and the golden model (and the
        documented protocol), as messages; empty when the engine is right."""
        got = self.decode(result.records)
        model = MixPipelineModel(**self.geometry)
        for addr, entry in self.loads:
            model.load(addr, entry)
        outputs, checksum, total = model.run(self.seed, got["inputs"])
        bulk = model.run(self.bulk_seed, [self.bulk_lanes] * self.bulk_items)
        mask80 = (1 << 80) - 1
        want = {
            ("busy", "power-on"): 0, ("done", "power-on"): 0, ("error", "power-on"): 0,
            ("i__ready", "power-on"): 0, ("o__valid", "power-on"): 0,
            ("checksum", "power-on"): 0, ("total", "power-on"): 0,
            ("error", "bad seed"): 1, ("busy", "bad seed"): 0,
            ("error", "started"): 0, ("busy", "started"): 1,
            ("error", "start while busy"): 1, ("busy", "start while busy"): 1,
            ("busy", "first run"): 0, ("done", "first run"): 1, ("error", "first run"): 1,
            ("checksum", "first run"): checksum, ("total", "first run"): total & mask80,
            ("busy", "after reset"): 0, ("done", "after reset"): 0,
            ("checksum", "after reset"): 0, ("total", "after reset"): 0,
            ("i__ready", "after reset"): 0,
            ("wait", "timeout"): None, ("wait", "bulk"): self.bulk_items + 2,
            ("wait", "already"): 0,
            ("checksum", "bulk"): bulk[1], ("total", "bulk"): bulk[2] & mask80,
            ("busy", "bulk"): 0, ("error", "bulk"): 0,
        }
        problems = []
        if len(got["inputs"]) != self.items:
            problems.append(f"{len(got['inputs'])} input transfers, not {self.items}")
        if got["outputs"] != outputs:
            problems.append(f"outputs differ from the model: {got['outputs']} != {outputs}")
        for key, value in want.items():
            if got.get(key, "missing") != value:
                problems.append(f"{key}: {got.get(key, 'missing')} != {value}")
        return problems
