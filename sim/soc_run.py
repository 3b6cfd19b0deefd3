"""Fine-tuning runs on the simulated SoC: what a host does over the bus, on any engine.

:func:`run_finetune` is the whole job: load the training records into the forward cache
through the record window, write the run registers, start, wait natively for ``done``, read
the counters and dump the adapter weights through the weight window, in chunks of
``eval_every`` epochs (first order) or steps (zeroth order); then evaluate on the device.

Everything the host does is a :class:`~fieldtune.sim.engines.script.Script` of bus
transactions (:class:`BusProgram`), the stimulus format every engine runs, so Amaranth's
simulator, CXXRTL, Verilator and Icarus run the very same session and must return the very
same records. CXXRTL runs the session piece by piece in one simulation (progress between
pieces); the other engines run it as one script. Engine ``"golden"`` runs
:class:`~fieldtune.sim.golden.soc.SocModel` instead (bit-exact results; its cycle counts are
:func:`estimate_cycles`).

Evaluation: the test set does not fit the cache next to the training set (R1: 256 records of
capacity, 463 test samples), so the *curve* points are computed on the host from the dumped
weights with the golden forward over the golden-quantized test features — which is the
device's computation bit for bit — and the *final* accuracy is measured on the device: clear
the cache, load the test set in chunks of the cache capacity, an EVAL run per chunk, the
correct counts summed. The run checks that device and host agree on that final point.

Records are loaded over the bus on every engine (a quarter million bus words for R1, about a
second in CXXRTL): the cache's quantizer is part of what is being checked, and poking its
memories directly would bypass it.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..rtl.soc import SoC, COUNTER_REGISTERS, ERRORS
from ..rtl.sequencer import Mode, COUNTERS
from ..rtl.mac.layout import Layout
from .engines import registry as engines
from .engines.script import Script
from .golden.cache import record_elements, CacheModel
from .golden.soc import SocModel, RunConfig, Perturbations
from .golden.train import new_weights, forward
from .golden.loss import softmax_xent


__all__ = ["ENGINES", "RunResult", "run_finetune", "soc_component", "BusProgram",
           "DeviceError", "estimate_cycles", "decode_status", "decode_weights",
           "synthetic_data", "initial_weights", "records_of", "cached_view", "INIT_STEP",
           "LOWRANK_INIT_EPS"]


#: Engines :func:`run_finetune` accepts; ``"golden"`` runs the numpy models only.
ENGINES = (*engines.names(), "golden")

#: Perturbation step whose vector initializes low-rank ``A`` (``B = 0``), under the run's seed.
INIT_STEP = 0xFFFF_FFFF
#: ``A = z << zshift`` for ``epsilon = 2**-LOWRANK_INIT_EPS`` (as the golden training tests).
LOWRANK_INIT_EPS = 3

#: Most clock edges a single bus access may take (a record write waits for the quantizer).
BUS_WAIT = 4096


class DeviceError(RuntimeError):
    """The simulated device misbehaved: a bus error, a wait that timed out, an error flag, or
    a disagreement with the golden model where the runner checks one."""


@dataclass
class RunResult:
    """One fine-tuning run (see /work/notes/soc_api.md, the contract with the demo)."""
    mode: str
    engine: str
    accuracy: float
    train_accuracy: float
    curve: list
    loss_curve: list
    cycles: int
    eval_cycles: int
    weights: np.ndarray
    counters: dict
    wall_seconds: float
    sim_cycles_per_second: float | None
    #: extra: how many cycles each chunk of training took, and the cycle source
    chunk_cycles: list = field(default_factory=list)


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
        reg = self._regs[register]
        value = 0
        for f, lsb in reg.layout():
            v = int(fields.pop(f.name, 0))
            if not 0 <= v < (1 << f.width):
                raise ValueError(f"{register}.{f.name} holds {f.width} bits, not {v}")
            value |= v << lsb
        if fields:
            raise ValueError(f"register {register} has no field {', '.join(fields)}")
        return value

    def write_reg(self, register, **fields):
        return self.access(self.soc.address(register), self.pack(register, **fields),
                           what=f"write {register}")

    def read_reg(self, register):
        return self.access(self.soc.address(register), what=f"read {register}")

    def configure(self, cfg: RunConfig):
        """Write every run register of ``cfg``."""
        self.write_reg("mode", mode=cfg.mode)
        self.write_reg("epochs", epochs=cfg.epochs)
        self.write_reg("batch", batch=cfg.batch)
        self.write_reg("shifts", lr_shift=cfg.lr_shift, eps_shift=cfg.eps_shift,
                       zo_lr_shift=cfg.zo_lr_shift)
        self.write_reg("seed", seed=cfg.seed)
        self.write_reg("steps", steps=cfg.steps)
        self.write_reg("queries", queries=cfg.queries)
        self.write_reg("zo_step", step=cfg.step)
        self.write_reg("zo_cursor", cursor=cfg.cursor)
        self.write_reg("eval_range", first=cfg.eval_first, count=cfg.eval_count)
        self.write_reg("watchdog", budget=cfg.watchdog)

    def run(self, max_cycles, what):
        """Start, then wait natively for ``done``; returns the wait's record index."""
        self.write_reg("control", start=1)
        return self.wait({"done": 1}, max_cycles, what)

    def read_status(self):
        """Record indices of the status, error flags, counters and ZO continuation."""
        names = ["status", "errors", "next_step", "next_cursor",
                 *(COUNTER_REGISTERS[c] for c in COUNTERS)]
        return {name: self.read_reg(name) for name in names}

    def load_records(self, features, logits, labels, what="records"):
        elements = []
        for f, z, y in zip(features, logits, labels):
            elements.extend((d & 0xFFFF) | (int(last) << 16)
                            for d, last in record_elements(f, z, y))
        return self.write_stream(self.soc.address("records"), elements, what)

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


def _signed(v, width):
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


def decode_status(records, indices):
    """The registers :meth:`BusProgram.read_status` read: ``{counter: value, "next_step",
    "next_cursor", "errors": [flag names], "busy", "done", "records"}``."""
    out = {k: records[indices[COUNTER_REGISTERS[k]]] for k in COUNTERS}
    out["next_step"] = records[indices["next_step"]]
    out["next_cursor"] = records[indices["next_cursor"]]
    flags = records[indices["errors"]]
    out["errors"] = [name for i, name in enumerate(ERRORS) if flags >> i & 1]
    status = records[indices["status"]]
    out.update(busy=status & 1, done=status >> 1 & 1, records=status >> 3)
    return out


def decode_weights(records, indices, mac):
    """The weights a :meth:`BusProgram.dump_weights` read, ``(words, lanes)`` int64."""
    w = np.array([_signed(records[i], mac.weight_width) for i in indices], dtype=np.int64)
    return w.reshape(Layout(mac).words, mac.lanes)


class _Piece:
    """A bus program and what to do with its records."""

    def __init__(self, program, decode, units=0):
        self.program, self.decode, self.units = program, decode, units

    def check(self, records):
        for idx, what in self.program.waits:
            if records[idx] is None:
                raise DeviceError(f"timed out waiting for {what}")
        for idx, what in self.program.errors:
            if records[idx]:
                raise DeviceError(f"bus error on {what}")


def _execute(engine, soc, pieces, *, env, vcd, progress, total):
    """Run every piece on ``engine``; calls each piece's decode with its records. Returns
    ``(simulated cycles, seconds)`` (seconds of simulation, model build excluded)."""
    run = engines.run_pieces(engine, soc, [piece.program.script for piece in pieces], env=env,
                             vcd=vcd)
    done_units = 0
    for piece, records in zip(pieces, run):
        piece.check(records)
        piece.decode(records)
        if piece.units and progress:
            done_units += piece.units
            progress(done_units, total)
    return run.cycles, run.seconds


# -- data -----------------------------------------------------------------------------------------

def synthetic_data(config, n_train, n_test, seed=0):
    """A small scenario with :func:`fieldtune.sim.scenario.r1_features`' keys for any
    geometry (short simulations and tests): non-negative Q8.8 features below 2.0 (post-ReLU,
    like R1's taps), frozen logits in +-2.0 that lean towards the label, labels uniform."""
    rng = np.random.default_rng(seed)
    F, C = sum(config.cache.taps), config.cache.classes
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, C, n)
        logits = rng.integers(-512, 512, (n, C))
        logits[np.arange(n), labels] += 256
        out[f"{split}_features"] = rng.integers(0, 512, (n, F))
        out[f"{split}_logits"] = np.clip(logits, -512, 511)
        out[f"{split}_labels"] = labels
    return out


_INT16 = (-(1 << 15), (1 << 15) - 1)


def records_of(data, split):
    """``(features, logits, labels)`` of ``split`` ("train" or "test") as the host writes them:
    16-bit elements (values outside int16 are clipped, which the cache's input saturation
    would do to a wider value anyway)."""
    f = np.clip(np.asarray(data[f"{split}_features"], dtype=np.int64), *_INT16)
    z = np.clip(np.asarray(data[f"{split}_logits"], dtype=np.int64), *_INT16)
    y = np.asarray(data[f"{split}_labels"], dtype=np.int64)
    return f, z, y


def cached_view(config, features, logits, labels):
    """The golden cache's view of samples: dequantized features, z0, labels."""
    cache = CacheModel(config.cache)
    xs = [cache.dequantize(cache.quantize(f)) for f in features]
    return np.array(xs, dtype=np.int64).reshape(len(labels), -1), logits, labels


def _accuracy(config, weights, test):
    x, z0, labels = test
    y = forward(config.mac, weights, x, z0)
    r = softmax_xent(config.loss, y, labels)
    return int(r.correct.sum()), len(labels)


def _schedule(total, every):
    chunks, left = [], total
    while left > 0:
        chunks.append(min(every, left))
        left -= chunks[-1]
    return chunks


def _cursor_after(cursor, steps, batch, records):
    for _ in range(steps):
        cursor += batch
        if cursor >= records:
            cursor = 0
    return cursor


def initial_weights(config, seed):
    """Weights a run starts from: dense 0; low-rank ``A = z << zshift`` (``z`` of step
    :data:`INIT_STEP` under ``seed``), ``B = 0``."""
    mac = config.mac
    if mac.adapter == "dense":
        return new_weights(mac)
    z = Perturbations(config.perturb, seed, chunk=1)(INIT_STEP)
    return new_weights(mac, z, eps_shift=LOWRANK_INIT_EPS)


def estimate_cycles(config, mode, records, *, epochs=1, steps=1, batch=16, queries=1):
    """An estimate of a run's cycles (the golden engine's ``cycles``; ``mode`` "fo", "zo" or
    "eval"): the MAC array issues one weight word per cycle, so a forward or an update takes
    ``words`` cycles, plus what the sequencer cannot hide. Fitted to CXXRTL runs of R1 on the
    ``up5k`` (8 lanes) and ``ecp5-85f`` (32 lanes) presets, within 2 % of both
    (docs/benchmarks.md, "Training SoC")."""
    words = Layout(config.mac).words
    if mode == "eval":
        return records * (words + 1)
    if mode == "fo":
        return epochs * (records * (2 * words + 2) + -(-records // batch) * 38)
    p = config.perturb
    # per new step (adaptive scaling): the measuring pass and, in pool mode, the rescaling
    per_step = p.beats + (p.pool_size if p.reuse == "pool" else 0) + 100 if p.adaptive else 0
    # per run: the pool's fill for the run's seed
    fill = p.pool_size + 20 if p.reuse == "pool" else 0
    per_query = 2 * batch * (words + 19) + words
    return steps * (queries * per_query + per_step) + fill


# -- the run ------------------------------------------------------------------------------------

def run_finetune(config, data, *, mode=None, engine="cxxrtl", epochs=None, steps=None,
                 eval_every=None, progress=None, vcd=None, env=None, max_cycles=None):
    """Fine-tune on the simulated SoC (see the module documentation); returns a
    :class:`RunResult`.

    ``data``: a dict as :func:`fieldtune.sim.scenario.r1_features` returns. ``mode``,
    ``epochs``, ``steps`` default to ``config.train``; ``eval_every``: curve granularity in
    epochs (FO, default 1) or steps (ZO, default a tenth of the steps); ``progress(done,
    total)`` is called after each chunk; ``vcd`` writes a waveform (amaranth and cxxrtl);
    ``env``: the YoWASP tool environment (every engine but amaranth and golden needs Yosys);
    ``max_cycles``: most cycles one run may take before the runner gives up (default: 20
    times :func:`estimate_cycles` plus a margin).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    t = config.train
    mode = mode or t.mode
    if mode not in ("fo", "zo"):
        raise ValueError(f"mode must be 'fo' or 'zo', not {mode!r}")
    total = (epochs or t.epochs) if mode == "fo" else (steps or t.steps)
    if eval_every is None:
        eval_every = 1 if mode == "fo" else max(1, total // 10)
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, not {eval_every!r}")
    engines.check_waveforms(engine, vcd)
    train = records_of(data, "train")
    test_raw = records_of(data, "test")
    cap = config.cache.capacity
    records = len(train[2])
    if records > cap:
        raise ValueError(f"the training set ({records} samples) must fit the cache "
                         f"(cache.capacity = {cap})")
    test = cached_view(config, *test_raw)
    base = RunConfig(mode=Mode.FO.value if mode == "fo" else Mode.ZO.value, batch=t.batch,
                     lr_shift=t.lr_shift, eps_shift=t.eps_shift, zo_lr_shift=t.zo_lr_shift,
                     seed=t.seed, queries=t.queries)
    chunks = _schedule(total, eval_every)
    w0 = initial_weights(config, t.seed)
    t_start = time.perf_counter()
    if engine == "golden":
        return _run_golden(config, mode, train, test, test_raw, base, chunks, w0, total,
                           progress, t_start)

    soc = soc_component(config)
    est = estimate_cycles(config, mode, records, epochs=max(chunks), steps=max(chunks),
                          batch=t.batch, queries=t.queries)
    limit = max_cycles or 20 * est + 200_000
    state = {"cycles": [], "curve": [], "loss": [], "counters": {c: 0 for c in COUNTERS},
             "eval": []}

    def counters_of(records, p):
        return {name: records[idx] for name, idx in p.items()}

    pieces = []
    # records, initial weights
    prog = BusProgram(soc)
    prog.load_records(*train)
    if config.mac.adapter != "dense":
        prog.load_weights(w0, limit)
    st = prog.read_status()

    def check_loaded(recs, st=st):
        status = recs[st["status"]]
        got = (status >> 3) & ((1 << 17) - 1)
        if got != records:
            raise DeviceError(f"the cache holds {got} records, {records} were written")
    pieces.append(_Piece(prog, check_loaded))

    # training chunks
    step, cursor = 0, 0
    point = 0
    for n in chunks:
        cfg = RunConfig(**{**base.__dict__, "epochs": n if mode == "fo" else 1,
                           "steps": n if mode == "zo" else 1, "step": step, "cursor": cursor,
                           "watchdog": _watchdog_init(soc)})
        prog = BusProgram(soc)
        prog.configure(cfg)
        prog.run(limit, f"{mode.upper()} run")
        st = prog.read_status()
        dump = prog.dump_weights(limit)
        point += n
        expect = (step + n * t.queries) & 0xFFFF_FFFF, _cursor_after(cursor, n, t.batch,
                                                                    records)

        def decode(recs, st=st, dump=dump, point=point, expect=expect):
            c = _read_counters(recs, st)
            if mode == "zo" and (c["next_step"], c["next_cursor"]) != expect:
                raise DeviceError(f"ZO continuation {c['next_step'], c['next_cursor']}, "
                                  f"expected {expect}")
            w = decode_weights(recs, dump, config.mac)
            state["weights"] = w
            for k in COUNTERS:
                state["counters"][k] += c[k]
            state["cycles"].append(c["cycles"])
            state["errors"] = c["errors"]
            correct, total_ = _accuracy(config, w, test)
            state["curve"].append((point, correct / total_))
            if c["samples"]:
                state["loss"].append((point, c["loss_sum"] / c["samples"]
                                      / (1 << config.loss.loss_frac)))
        pieces.append(_Piece(prog, decode, units=n))
        if mode == "zo":
            step, cursor = expect

    # device evaluation: training set, then the test set chunk by chunk
    def evaluate_on_device(prog, n_records, kind):
        prog.configure(RunConfig(mode=Mode.EVAL.value, eval_first=0, eval_count=n_records,
                                 watchdog=_watchdog_init(soc)))
        prog.run(limit, f"EVAL run ({kind})")
        st = prog.read_status()

        def decode(recs):
            c = _read_counters(recs, st)
            state["eval"].append((kind, c["correct"], c["samples"], c["cycles"]))
        pieces.append(_Piece(prog, decode))

    evaluate_on_device(BusProgram(soc), records, "train")
    for s in range(0, len(test_raw[2]), cap):
        prog = BusProgram(soc)
        prog.write_reg("control", clear_cache=1)
        prog.load_records(*(a[s:s + cap] for a in test_raw), what="test records")
        evaluate_on_device(prog, len(test_raw[2][s:s + cap]), "test")

    sim_cycles, seconds = _execute(engine, soc, pieces, env=env, vcd=vcd, progress=progress,
                                   total=total)

    correct0, n_test = _accuracy(config, w0, test)
    curve = [(0, correct0 / n_test)] + state["curve"]
    train_eval = [e for e in state["eval"] if e[0] == "train"]
    test_eval = [e for e in state["eval"] if e[0] == "test"]
    device_correct = sum(e[1] for e in test_eval)
    if sum(e[2] for e in test_eval) != n_test:
        raise DeviceError("the device evaluated a different number of test samples")
    if device_correct / n_test != curve[-1][1]:
        raise DeviceError(f"device test accuracy {device_correct}/{n_test} differs from the "
                          f"golden forward on the dumped weights ({curve[-1][1]:.4f})")
    counters = dict(state["counters"])
    counters.update({"errors": state["errors"], "records": records,
                     "eval_correct": device_correct, "eval_samples": n_test,
                     "train_eval_correct": train_eval[0][1], "cycles_source": engine})
    return RunResult(mode=mode, engine=engine, accuracy=device_correct / n_test,
                     train_accuracy=train_eval[0][1] / records, curve=curve,
                     loss_curve=state["loss"], cycles=sum(state["cycles"]),
                     eval_cycles=sum(e[3] for e in state["eval"]), weights=state["weights"],
                     counters=counters, wall_seconds=time.perf_counter() - t_start,
                     sim_cycles_per_second=sim_cycles / seconds if seconds else None,
                     chunk_cycles=state["cycles"])


def _watchdog_init(soc):
    return next(f.init for r in soc.registers if r.name == "watchdog" for f in r.fields)


def _read_counters(recs, st):
    c = decode_status(recs, st)
    fatal = [e for e in c["errors"] if e != "mac_saturated"]
    if fatal:
        raise DeviceError(f"the SoC raised error flags: {', '.join(fatal)}")
    return c


def _run_golden(config, mode, train, test, test_raw, base, chunks, w0, total, progress,
                t_start):
    """The same session on :class:`SocModel`; cycles are :func:`estimate_cycles`."""
    model = SocModel(config)
    for f, z, y in zip(*train):
        model.write_record(f, z, y)
    model.load_weights(w0)
    records = model.records
    n_test = len(test[2])
    curve = [(0, _accuracy(config, model.weights, test)[0] / n_test)]
    loss_curve, counters, cycles = [], {c: 0 for c in COUNTERS[1:]}, []
    step, cursor, point = 0, 0, 0
    t = config.train
    for n in chunks:
        cfg = RunConfig(**{**base.__dict__, "epochs": n if mode == "fo" else 1,
                           "steps": n if mode == "zo" else 1, "step": step, "cursor": cursor,
                           "watchdog": model.watchdog_default})
        errors = model.start(cfg)
        if errors:
            raise DeviceError(f"the SoC raised error flags: {', '.join(sorted(errors))}")
        step, cursor = model.next_step, model.next_cursor
        point += n
        for k in counters:
            counters[k] += model.counters[k]
        cycles.append(estimate_cycles(config, mode, records, epochs=n, steps=n,
                                      batch=t.batch, queries=t.queries))
        correct, n_test = _accuracy(config, model.weights, test)
        curve.append((point, correct / n_test))
        if model.counters["samples"]:
            loss_curve.append((point, model.counters["loss_sum"] / model.counters["samples"]
                               / (1 << config.loss.loss_frac)))
        if progress:
            progress(point, total)
    weights = model.weights.copy()
    model.start(mode=Mode.EVAL.value, eval_first=0, eval_count=records)
    train_correct = model.counters["correct"]
    correct, n_test = _accuracy(config, weights, test)
    counters.update({"cycles": sum(cycles), "errors": sorted(model.errors), "records": records,
                     "eval_correct": correct, "eval_samples": n_test,
                     "train_eval_correct": train_correct, "cycles_source": "estimate"})
    return RunResult(mode=mode, engine="golden", accuracy=correct / n_test,
                     train_accuracy=train_correct / records, curve=curve,
                     loss_curve=loss_curve, cycles=sum(cycles),
                     eval_cycles=estimate_cycles(config, "eval", records + n_test),
                     weights=weights, counters=counters,
                     wall_seconds=time.perf_counter() - t_start, sim_cycles_per_second=None,
                     chunk_cycles=cycles)
