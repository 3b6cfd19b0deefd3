"""A training session on a device: what a host does to fine-tune, over any transport.

:class:`Session` is the host's side of the SoC's register map in high-level calls (load
records, load and read adapter weights, configure, train, evaluate, read counters); it drives
any *device* with the calls of :mod:`fieldtune.sim.soc_run` (``write``, ``read``,
``write_window``, ``read_window``, ``start``, ``wait_done``, ``then``, ``flush``): the SoC's bus
on a simulation engine, the golden model, or the host link to a board or to the simulated SoC
behind its UART (:class:`fieldtune.host.driver.HostDriver`). Reads return
:class:`~fieldtune.sim.soc_run.Reading` values, known once the device has run up to them;
``session.then(fn)`` calls ``fn`` at that point (at once on the host link).

:func:`finetune` is the whole job (``fieldtune demo``, ``fieldtune run``): load the training
records, write the run registers, start, wait for ``done``, read the counters and dump the
adapter weights, in chunks of ``eval_every`` epochs (first order) or steps (zeroth order); then
evaluate on the device.

Evaluation: the test set does not fit the cache next to the training set (R1: 256 records of
capacity, 463 test samples), so the *curve* points are computed on the host from the dumped
weights with the golden forward over the golden-quantized test features -- which is the
device's computation bit for bit -- and the *final* accuracy is measured on the device: clear
the cache, load the test set in chunks of the cache capacity, an EVAL run per chunk, the
correct counts summed. The run checks that device and host agree on that final point.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..rtl.params import LR_STEPS_MAX, built_schedule, built_early_stop
from ..rtl.sequencer import Mode, COUNTERS
from ..rtl.mac.layout import Layout
from ..rtl.csr.map import SocMap, ERRORS
from ..sim.golden.soc import RunConfig
from ..sim.golden.schedule import run_registers
from ..sim.golden.train import forward
from ..sim.golden.loss import softmax_xent
from ..sim.soc_data import (records_of, record_stream, cached_view, initial_weights,
                            estimate_cycles)
from ..sim.engines.registry import check_waveforms
from ..sim.soc_run import (DeviceError, Reading, STATUS_REGISTERS, run_registers_of, ENGINES,
                           open_device, status_of, weights_of)
from .driver import StreamLost


__all__ = ["Session", "RunResult", "finetune", "run_finetune", "run_limit", "plan", "DeviceError",
           "ENGINES"]


#: Counter readings whose error flags are warnings, not failures.
WARNINGS = ("mac_saturated",)


@dataclass
class RunResult:
    """One fine-tuning run (the contract with the demo and ``fieldtune run``)."""
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
    #: extra: how many cycles each chunk of training took
    chunk_cycles: list = field(default_factory=list)
    #: the first-order schedule the run followed (a FoSchedule; None: the plain run)
    schedule: object = None
    #: with early stop: the device's ``stop_status`` (``epochs_run``, ``held_out_correct``,
    #: ``stopped``)
    early_stop: dict | None = None


class Session:
    """High-level calls on a ``device`` holding the SoC of ``config`` (a
    :class:`~fieldtune.config.DesignConfig`; its ``[train]`` table gives the run registers
    a call does not name). ``max_cycles``: most cycles one run may take before the device
    gives up waiting for it."""

    def __init__(self, device, config, *, max_cycles=10**9):
        self.device, self.config, self.max_cycles = device, config, max_cycles
        self.weight_count = Layout(config.mac).words * config.mac.lanes

    def then(self, callback):
        """Call ``callback()`` once every reading so far has its value."""
        self.device.then(callback)

    # -- records and weights --

    def load_records(self, features, logits, labels):
        """Write records (16-bit elements, :func:`~fieldtune.sim.soc_data.records_of`) through
        the record window into the forward cache."""
        words = [d | (last << 16) for rec in record_stream(features, logits, labels)
                 for d, last in rec]
        self.device.write_window("records", words)

    def clear_cache(self):
        """Forget every record."""
        self.device.write("control", clear_cache=1)

    def clear_errors(self):
        """Clear every sticky error flag."""
        self.device.write("errors", **{name: 1 for name in ERRORS})

    def load_weights(self, words):
        """A LOAD run writing ``words`` (``(words, lanes)`` adapter weights)."""
        ww = self.config.mac.weight_width
        flat = np.asarray(words, dtype=np.int64).reshape(-1)
        self.device.write("mode", mode=Mode.LOAD.value)
        self.device.start()
        self.device.write_window("weights", [int(v) & ((1 << ww) - 1) for v in flat])
        self.device.wait_done(self.max_cycles, "LOAD run")

    def read_weights(self, attempts=10):
        """A DUMP run: the reading of the ``(words, lanes)`` adapter weights. A dump whose
        answer the link lost (:class:`~fieldtune.host.driver.StreamLost`) is aborted and
        run again, at most ``attempts`` times in all."""
        for attempt in range(attempts):
            self.device.write("mode", mode=Mode.DUMP.value)
            self.device.start()
            try:
                raw = self.device.read_window("weights", self.weight_count)
            except StreamLost:
                if attempt == attempts - 1:
                    raise
                self.device.write("control", abort=1)
                self.device.wait_done(self.max_cycles, "aborted DUMP run")
                self.device.write("errors", aborted=1)
                continue
            self.device.wait_done(self.max_cycles, "DUMP run")
            return raw.map(lambda values: weights_of(values, self.config.mac))

    # -- runs --

    def configure(self, cfg: RunConfig):
        """Write every run register of ``cfg``."""
        for register, fields in run_registers_of(self.config).items():
            self.device.write(register, **{f: getattr(cfg, key) for f, key in fields.items()})

    def read_stop(self):
        """The reading of ``stop_status`` (designs with early stop): ``{"epochs_run",
        "held_out_correct", "stopped"}``."""
        unpack = SocMap(self.config).unpack
        return self.device.read("stop_status").map(lambda word: unpack("stop_status", word))

    def read_counters(self):
        """The reading of the status, error flags, counters and ZO continuation
        (:func:`~fieldtune.sim.soc_run.status_of`)."""
        words = {name: self.device.read(name) for name in STATUS_REGISTERS}
        return Reading(lambda: status_of({n: r.value for n, r in words.items()}))

    def run(self, cfg: RunConfig, what):
        """Configure, start, wait for ``done``; the reading of the counters (DeviceError on
        reading it if the run raised an error flag other than a warning)."""
        self.configure(cfg)
        self.device.start()
        self.device.wait_done(self.max_cycles, what)
        return self.read_counters().map(_checked)

    def train(self, mode, *, epochs=1, steps=1, step=0, cursor=0, schedule=None,
              first_epoch=0):
        """A ``mode`` ("fo" or "zo") run of ``epochs`` or ``steps`` from ZO perturbation step
        ``step`` and cursor ``cursor`` with the ``[train]`` hyperparameters; the counters'
        reading. First order follows ``schedule`` (a
        :class:`~fieldtune.sim.golden.schedule.FoSchedule`; None: the plain run) from its
        epoch ``first_epoch`` on."""
        t = self.config.train
        fo = {"lr_shift": t.lr_shift}
        if mode == "fo" and schedule is not None:
            fo = run_registers(schedule, t.lr_shift, first_epoch)
        cfg = RunConfig(mode=Mode.FO.value if mode == "fo" else Mode.ZO.value, batch=t.batch,
                        eps_shift=t.eps_shift, zo_lr_shift=t.zo_lr_shift,
                        seed=t.seed, queries=t.queries, epochs=epochs, steps=steps, step=step,
                        cursor=cursor, watchdog=self.watchdog, **fo)
        return self.run(cfg, f"{mode.upper()} run")

    def evaluate(self, first, count, what="EVAL run"):
        """An EVAL run over records ``first .. first+count-1``; the counters' reading."""
        return self.run(RunConfig(mode=Mode.EVAL.value, eval_first=first, eval_count=count,
                                  watchdog=self.watchdog), what)

    @property
    def watchdog(self):
        """The watchdog budget the design resets to."""
        return SocMap(self.config).field("watchdog", "budget")[1].init


def _checked(counters):
    fatal = [e for e in counters["errors"] if e not in WARNINGS]
    if fatal:
        raise DeviceError(f"the SoC raised error flags: {', '.join(fatal)}")
    return counters


# -- the fine-tuning job --------------------------------------------------------------------------

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


def plan(config, mode, epochs, steps, eval_every):
    """``(mode, total epochs or steps, eval_every)`` of a run, checked."""
    t = config.train
    mode = mode or t.mode
    if mode not in ("fo", "zo"):
        raise ValueError(f"mode must be 'fo' or 'zo', not {mode!r}")
    total = (epochs or t.epochs) if mode == "fo" else (steps or t.steps)
    if eval_every is None:
        eval_every = 1 if mode == "fo" else max(1, total // 10)
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, not {eval_every!r}")
    return mode, total, eval_every


def run_limit(config, mode, records, longest):
    """Most cycles a run of ``longest`` epochs or steps may take before a host gives up: 20
    times its estimate plus a margin."""
    t = config.train
    return 20 * estimate_cycles(config, mode, records, epochs=longest, steps=longest,
                                batch=t.batch, queries=t.queries) + 200_000


def finetune(session, data, *, mode=None, epochs=None, steps=None, eval_every=None,
             progress=None, source=None, schedule=None, start=None):
    """Fine-tune on ``session``'s device (see the module documentation); returns a
    :class:`RunResult`.

    ``data``: a dict as :func:`fieldtune.sim.scenario.r1_features` returns. ``mode``,
    ``epochs``, ``steps`` default to ``config.train``; ``eval_every``: curve granularity in
    epochs (FO, default 1) or steps (ZO, default a tenth of the steps); ``progress(done,
    total)`` is called after each chunk; ``source`` names the device in the result (its
    ``engine`` and ``counters["cycles_source"]``); ``schedule``: the first-order run's
    :class:`~fieldtune.sim.golden.schedule.FoSchedule` (None: the plain run; each chunk
    continues it, :func:`~fieldtune.sim.golden.schedule.run_registers`); ``start``: a
    zeroth-order run resumed at step ``point`` with adapter weights ``weights`` (a pair; the
    device is loaded with them and continues at the perturbation step and cursor a run from
    step 0 would have reached), for the second part of a run split in two
    (:class:`fieldtune.finetune.ModeRuns`): the result's curve starts at ``point``, its
    counters count the steps after it.
    """
    config, device = session.config, session.device
    t = config.train
    mode, total, eval_every = plan(config, mode, epochs, steps, eval_every)
    if mode == "fo" and schedule is not None:
        if _stops(schedule) and not built_early_stop(config):
            raise ValueError(f"this design is built without early stop ([soc] early_stop = "
                             f"false): schedule.stop_every and schedule.holdout must be 0, "
                             f"not {schedule.stop_every} and {schedule.holdout}")
        regs = run_registers(schedule, t.lr_shift)
        if not built_schedule(config) and (regs["order"] or regs["lr_shift"] != t.lr_shift
                                           or any(regs[f"lr_step{i}"]
                                                  for i in range(LR_STEPS_MAX))):
            raise ValueError("this design is built without the first-order schedule ([soc] "
                             "schedule = false): only the plain run (cache order, no "
                             "learning-rate steps) runs on it")
    train = records_of(data, "train")
    test_raw = records_of(data, "test")
    cap = config.cache.capacity
    records = len(train[2])
    if records > cap:
        raise ValueError(f"the training set ({records} samples) must fit the cache "
                         f"(cache.capacity = {cap})")
    source = source or getattr(device, "engine", "device")
    t_start = time.perf_counter()
    test = cached_view(config, *test_raw)
    # early stop runs in one piece (the best count and the strikes live in the sequencer)
    stops = mode == "fo" and _stops(schedule)
    first, w0 = (0, initial_weights(config, t.seed)) if start is None else start
    if start is not None and (mode != "zo" or not 0 <= first < total):
        raise ValueError(f"only a zeroth-order run resumes at a step from 0 to {total - 1}, "
                         f"not a {mode} run at {first!r}")
    chunks = [total] if stops else _schedule(total - first, eval_every)
    state = {"cycles": [], "curve": [], "loss": [], "counters": {c: 0 for c in COUNTERS},
             "eval": [], "errors": [], "early_stop": None}

    # a known start on any device (a board keeps what its last session left): no error
    # flags, no records, the initial weights; then the training records
    session.clear_errors()
    session.clear_cache()
    session.load_weights(w0)
    session.load_records(*train)
    loaded = session.read_counters()

    def check_loaded():
        got = loaded.value["records"]
        if got != records:
            raise DeviceError(f"the cache holds {got} records, {records} were written")
    session.then(check_loaded)

    # training chunks
    step, cursor, point = ((first * t.queries) & 0xFFFF_FFFF,
                           _cursor_after(0, first, t.batch, records), first)
    for n in chunks:
        counters = session.train(mode, epochs=n, steps=n, step=step, cursor=cursor,
                                 schedule=schedule, first_epoch=point)
        stop = session.read_stop() if stops else None
        weights = session.read_weights()
        point += n
        expect = ((step + n * t.queries) & 0xFFFF_FFFF,
                  _cursor_after(cursor, n, t.batch, records))

        def record_chunk(counters=counters, weights=weights, point=point, expect=expect,
                         stop=stop):
            c = counters.value
            if stop is not None:            # the run ended after epochs_run epochs
                state["early_stop"] = stop.value
                point = stop.value["epochs_run"]
            if mode == "zo" and (c["next_step"], c["next_cursor"]) != expect:
                raise DeviceError(f"ZO continuation {c['next_step'], c['next_cursor']}, "
                                  f"expected {expect}")
            w = weights.value
            state["weights"] = w
            for k in COUNTERS:
                state["counters"][k] += c[k]
            state["cycles"].append(c["cycles"])
            state["errors"] = c["errors"]
            correct, n_test = _accuracy(config, w, test)
            state["curve"].append((point, correct / n_test))
            if c["samples"]:
                state["loss"].append((point, c["loss_sum"] / c["samples"]
                                      / (1 << config.loss.loss_frac)))
            if progress:
                progress(point, total)
        session.then(record_chunk)
        if mode == "zo":
            step, cursor = expect

    # device evaluation: training set, then the test set chunk by chunk
    def evaluation(kind, counters):
        def record():
            c = counters.value
            state["eval"].append((kind, c["correct"], c["samples"], c["cycles"]))
        session.then(record)

    evaluation("train", session.evaluate(0, records, "EVAL run (train)"))
    for s in range(0, len(test_raw[2]), cap):
        session.clear_cache()
        session.load_records(*(a[s:s + cap] for a in test_raw))
        evaluation("test", session.evaluate(0, len(test_raw[2][s:s + cap]), "EVAL run (test)"))
    device.flush()

    correct0, n_test = _accuracy(config, w0, test)
    curve = [(first, correct0 / n_test)] + state["curve"]
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
                     "train_eval_correct": train_eval[0][1],
                     "cycles_source": "estimate" if source == "golden" else source})
    sim_cycles, sim_seconds = device.sim_cycles, device.sim_seconds
    return RunResult(mode=mode, engine=source, accuracy=device_correct / n_test,
                     train_accuracy=train_eval[0][1] / records, curve=curve,
                     loss_curve=state["loss"], cycles=sum(state["cycles"]),
                     eval_cycles=sum(e[3] for e in state["eval"]), weights=state["weights"],
                     counters=counters, wall_seconds=time.perf_counter() - t_start,
                     sim_cycles_per_second=(sim_cycles / sim_seconds
                                            if sim_cycles and sim_seconds else None),
                     chunk_cycles=state["cycles"],
                     schedule=schedule if mode == "fo" else None,
                     early_stop=state["early_stop"])


def _stops(schedule):
    """Whether first-order ``schedule`` (None: the plain run) asks for early stop or holds
    records out."""
    return schedule is not None and bool(schedule.stop_every or schedule.holdout)


def run_finetune(config, data, *, mode=None, engine="cxxrtl", epochs=None, steps=None,
                 eval_every=None, progress=None, vcd=None, env=None, max_cycles=None,
                 schedule=None, start=None):
    """:func:`finetune` on the simulated SoC of ``config`` on ``engine`` (one of
    :data:`~fieldtune.sim.soc_run.ENGINES`; ``"golden"``: the golden model, cycles estimated).

    ``vcd`` writes a waveform (amaranth and cxxrtl); ``env``: the YoWASP tool environment
    (every engine but amaranth and golden needs Yosys); ``max_cycles``: most cycles one run
    may take before the runner gives up (default: 20 times the estimate of the longest chunk
    plus a margin); ``schedule``: the first-order schedule, ``start``: a zeroth-order run's
    resumption (see :func:`finetune`)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    m, total, every = plan(config, mode, epochs, steps, eval_every)
    check_waveforms(engine, vcd)
    longest = total if m == "fo" and _stops(schedule) else min(every, total)   # one piece
    limit = max_cycles or run_limit(config, m, len(data["train_labels"]), longest)
    t0 = time.perf_counter()
    with open_device(config, engine, env=env, vcd=vcd) as device:
        session = Session(device, config, max_cycles=limit)
        result = finetune(session, data, mode=mode, epochs=epochs, steps=steps,
                          eval_every=eval_every, progress=progress, source=engine,
                          schedule=schedule, start=start)
    result.wall_seconds = time.perf_counter() - t0
    return result
