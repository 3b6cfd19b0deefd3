"""R1 fine-tuning as ``fieldtune demo`` and ``fieldtune bench finetune`` run it: the device run
through the SoC runner, and the float references with the *same* hyperparameters.

The device's training registers are powers of two (:class:`~fieldtune.rtl.params.TrainParams`);
:func:`hyperparameters` gives the float values they stand for, which the float references use:

* first order: ``eta = 2**-lr_shift`` on the batch mean, ``epochs``, ``batch``, cache order;
* zeroth order: ``epsilon = 2**-eps_shift`` and ``eta = 2**-zo_lr_shift / ln 2`` (the device
  measures losses in bits, MeZO in nats), ``steps``, ``batch``, ``queries``.
"""

import dataclasses
import math
import multiprocessing
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from rich.progress import (Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from .host import session
from .rtl.sequencer import COUNTERS
from .sim import reference, soc_data
from .sim.engines import registry
from .toolchain import tool_env, usable_cores, ToolchainError


__all__ = ["engines", "check_engine", "yosys_env", "simulate_modes", "ModeRuns",
           "NATIVE_ENGINES", "Part", "run_parts", "join_runs", "ZO_SPLIT",
           "hyperparameters", "estimated_cycles", "float_first_order", "float_mezo",
           "torch_references", "MEZO_SEEDS", "ENGINE_KINDS"]


#: Float MeZO is noisy (about 1.5 points between seeds): it is reported as the mean over this
#: many seeds, starting at the run's seed.
MEZO_SEEDS = 3

#: What produced a device figure, per engine: say it wherever the figure is shown.
ENGINE_KINDS = {
    **{e.name: f"SoC simulated cycle-accurately ({e.label})" for e in registry.ENGINES.values()},
    "golden": "golden numpy model of the SoC's arithmetic (not a device simulation)",
}


def estimated_cycles(config, mode, records):
    """The SoC's cycles for a ``mode`` run ("fo" or "zo") on ``records`` cached samples at
    ``config.train``'s epochs, steps, batch and queries, estimated without simulating
    (:func:`fieldtune.sim.soc_data.estimate_cycles`)."""
    t = config.train
    return soc_data.estimate_cycles(config, mode, records, epochs=t.epochs, steps=t.steps,
                                    batch=t.batch, queries=t.queries)


def engines():
    """Engines the installed runner supports, in its order."""
    return tuple(session.ENGINES)


def check_engine(engine):
    """ValueError unless the installed SoC runner supports ``engine``."""
    supported = engines()
    if engine not in supported:
        raise ValueError(f"engine must be one of {', '.join(map(repr, supported))} (what the "
                         f"installed SoC runner supports), not {engine!r}")


def yosys_env(console):
    """The tool environment with Yosys (compiled engines need it), or None with a warning."""
    try:
        return tool_env("YOSYS")
    except ToolchainError as e:
        console.print(f"[yellow]warning:[/yellow] {e}")
        return None


#: Engines whose simulation runs outside the Python interpreter lock (native code through
#: ctypes, or a subprocess), so runs of two modes can share the machine's cores.
NATIVE_ENGINES = registry.names(native=True)


#: Where a zeroth-order run simulated in two processes is split: after this fraction of its
#: chunks (rounded to a chunk). The second part first runs the golden model up to there
#: (about 0.17x a simulated step's CPU time), so the first part takes the larger share
#: (docs/benchmarks.md, "Simulation speed (session 9)").
ZO_SPLIT = 0.6


@dataclass(frozen=True)
class Part:
    """What one worker simulates of a ``mode`` run: its steps ``first`` up to ``stop``
    (None: the run's end). A part with ``first`` > 0 resumes the run from the weights the
    golden model reaches at that step (:func:`run_parts`); ``name`` labels the part."""
    mode: str
    name: str
    first: int = 0
    stop: int | None = None


def run_parts(config, modes, split):
    """The :class:`Part` of each of ``modes``; with ``split``, a zeroth-order run of two
    chunks or more is two parts, the first ending at :data:`ZO_SPLIT` of its chunks."""
    parts = []
    for mode in modes:
        _, total, every = session.plan(config, mode, None, None, None)
        chunks = -(-total // every)
        if mode == "zo" and split and chunks >= 2:
            cut = min(chunks - 1, max(1, round(chunks * ZO_SPLIT))) * every
            parts += [Part(mode, f"{mode}:1", 0, cut), Part(mode, f"{mode}:2", cut, None)]
        else:
            parts.append(Part(mode, mode))
    return parts


def _run_part(report, config, data, part, engine, env, vcd, schedule):
    """``part``'s device run (:func:`~fieldtune.host.session.run_finetune`);
    ``report(part name, done, total)`` after each chunk. Returns ``(weights it started from,
    RunResult)``; the weights are None for a part that starts at step 0."""
    _, _, every = session.plan(config, part.mode, None, None, None)
    start = None
    if part.first:
        golden = session.run_finetune(config, data, mode=part.mode, engine="golden",
                                      steps=part.first, eval_every=every)
        start = (part.first, golden.weights)
    result = session.run_finetune(config, data, mode=part.mode, engine=engine,
                                  steps=part.stop, eval_every=every,
                                  progress=lambda done, total: report(part.name, done, total),
                                  env=env, vcd=vcd, schedule=schedule, start=start)
    return (start[1] if start else None), result


def join_runs(first, second, weights):
    """The zeroth-order run simulated as ``first`` (its steps up to a point) and ``second``
    (resumed at that point from ``weights``, the golden model's): a :class:`DeviceError`
    unless the first part ended with exactly those weights, so that the two parts are the
    run a single simulation makes (the device's state between chunks is its weights, the
    perturbation step and the cursor, which the second part sets as the first leaves them)."""
    if not np.array_equal(first.weights, weights):
        raise session.DeviceError(
            f"the two parts of the {first.mode.upper()} run do not join: the device's weights "
            f"at step {second.curve[0][0]} differ from the golden model's")
    counters = dict(second.counters)
    for k in COUNTERS:
        counters[k] = first.counters[k] + second.counters[k]
    counters["errors"] = [*first.counters["errors"],
                          *(e for e in second.counters["errors"]
                            if e not in first.counters["errors"])]
    cycles = first.cycles + second.cycles
    rates = (first.sim_cycles_per_second, second.sim_cycles_per_second)
    return dataclasses.replace(
        second, curve=first.curve + second.curve[1:], loss_curve=first.loss_curve
        + second.loss_curve, cycles=cycles, counters=counters,
        chunk_cycles=first.chunk_cycles + second.chunk_cycles,
        wall_seconds=max(first.wall_seconds, second.wall_seconds),
        # weighted by the training cycles of each part
        sim_cycles_per_second=(cycles / (first.cycles / rates[0] + second.cycles / rates[1])
                               if all(rates) else None))


def _worker(inbox, queue):
    """A worker process's body: one part's run (its arguments come through ``inbox``), its
    progress and its end (the result, or the exception) reported on ``queue``."""
    args = inbox.get()
    name = args[2].name
    try:
        queue.put(("result", name, _run_part(lambda *r: queue.put(("progress", *r)), *args)))
    except BaseException as e:              # reported to the parent, which raises it
        try:
            queue.put(("error", name, e))
        except Exception:                   # an exception that does not pickle
            queue.put(("error", name, RuntimeError(f"{type(e).__name__}: {e}")))


class ModeRuns:
    """The device runs of ``modes`` on ``engine``, started together, with one progress bar
    each; use as a context manager (leaving it waits for every run)::

        with ModeRuns(config, data, ("fo", "zo"), "verilator", console, env=env) as runs:
            ...                           # the caller's own work, e.g. the float references
            results = runs.results()      # {mode: RunResult}

    On a native engine (:data:`NATIVE_ENGINES`) on two cores or more, the runs simulate at the
    same time, each in its own process (``spawn``: a script that uses this needs the usual
    ``if __name__ == "__main__":`` guard, as any :mod:`multiprocessing` program does): the
    simulator itself already runs outside Python, but each run's Python -- building bus
    scripts, reading records, the curve's golden forward -- would otherwise share one
    interpreter lock. The zeroth-order run, the longest by far, is split in two parts
    (:func:`run_parts`, :func:`join_runs`): the second resumes from the golden model's weights
    at the split and runs beside the first, which must end with the same weights. Otherwise
    (one unsplit run, a slow or golden engine, a waveform, one core) the modes run one after
    the other in this process, in :meth:`results`. Their compiled model is built once: the
    build cache serializes builders of one design. :meth:`status` shows the caller's work as
    a row of the same display; :meth:`free_core` waits until a core is free of simulations.
    The first run that fails is raised by :meth:`results`, and the other runs are stopped.
    """

    def __init__(self, config, data, modes, engine, console, *, env=None, vcd=None,
                 schedule=None):
        self.config, self.data, self.modes, self.engine = config, data, tuple(modes), engine
        self.console, self.env, self.vcd, self.schedule = console, env, vcd, schedule
        native = engine in NATIVE_ENGINES and vcd is None and usable_cores() > 1
        self.parts = run_parts(config, self.modes, split=native)
        self.parallel = native and len(self.parts) > 1
        self._tasks, self._processes, self._inboxes, self._ends = {}, {}, {}, {}
        self._done = {}
        self._ended = threading.Condition()
        self._stack = ExitStack()

    def __enter__(self):
        self.progress = self._stack.enter_context(Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
            transient=False))
        for mode in self.modes:
            unit = "epochs" if mode == "fo" else "steps"
            total = self.config.train.epochs if mode == "fo" else self.config.train.steps
            shares = sum(p.mode == mode for p in self.parts)
            label = f"{mode.upper()} on {self.engine} ({unit}"
            label += f", {shares} processes)" if shares > 1 else ")"
            self._tasks[mode] = self.progress.add_task(label, total=total)
        if self.parallel:
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            reporter = threading.Thread(target=self._report, args=(queue,), daemon=True)
            reporter.start()
            self._stack.callback(reporter.join)
            self._stack.callback(queue.put, None)          # ends the reporter, last
            self._stack.callback(self._stop)
            for part in self.parts:
                # The arguments (the data set: megabytes) go through a queue, not the
                # process's start: a worker that dies while starting cannot block us.
                # (kept referenced until the worker has read it: a queue is gone with it)
                inbox = self._inboxes[part.name] = context.Queue()
                inbox.put(self._args(part))
                process = context.Process(target=_worker, args=(inbox, queue),
                                          name=f"fieldtune {part.name} run")
                process.start()
                self._processes[part.name] = process
        return self

    def _args(self, part):
        return (self.config, self.data, part, self.engine, self.env, self.vcd, self.schedule)

    def _update(self, name, done, total):
        """Part ``name`` is at epoch or step ``done``: its mode's bar shows its parts' sum."""
        part = next(p for p in self.parts if p.name == name)
        self._done[name] = done - part.first
        if part.name == part.mode:
            self.progress.update(self._tasks[part.mode], completed=done, total=total)
        else:
            self.progress.update(self._tasks[part.mode], completed=sum(
                self._done.get(p.name, 0) for p in self.parts if p.mode == part.mode))

    def _finished(self, mode, result):
        task = self._tasks[mode]
        self.progress.update(task, completed=self.progress.tasks[task].total)
        return result

    def _report(self, queue):
        for kind, name, *rest in iter(queue.get, None):
            if kind == "progress":
                self._update(name, *rest)
                continue
            with self._ended:
                self._ends[name] = (kind, rest[0])
                self._ended.notify_all()

    def _wait(self, ended):
        """Wait until ``ended(ends so far)``; a worker that died without a word (killed) ends
        in an error."""
        dead = set()
        with self._ended:
            while not ended(self._ends):
                self._ended.wait(timeout=1)
                for name, process in self._processes.items():
                    if name in self._ends or process.is_alive():
                        continue
                    if name in dead:            # a second after its death, still no word
                        self._ends[name] = ("error", RuntimeError(
                            f"the {name.upper()} run's process ended with exit code "
                            f"{process.exitcode}"))
                    dead.add(name)

    def results(self):
        """``{mode: RunResult}``, once every run has ended (the first error is raised)."""
        if not self.parallel:
            return {p.mode: self._finished(p.mode, _run_part(self._update, *self._args(p))[1])
                    for p in self.parts}
        self._wait(lambda ends: len(ends) == len(self.parts) or any(
            kind == "error" for kind, _ in ends.values()))
        for part in self.parts:
            kind, value = self._ends.get(part.name, ("", None))
            if kind == "error":
                raise value
        out = {}
        for mode in self.modes:
            (_, result), *rest = [self._ends[p.name][1] for p in self.parts if p.mode == mode]
            for weights, later in rest:
                result = join_runs(result, later, weights)
            out[mode] = self._finished(mode, result)
        return out

    def free_core(self):
        """Wait until fewer runs than the machine's cores are still simulating (the demo's
        float references then have a core of their own: their times are wall-clock)."""
        if self._processes:
            cores = usable_cores()
            self._wait(lambda ends: len(self._processes) - len(ends) < cores)

    @contextmanager
    def status(self, description):
        """A row of the display saying what the caller does meanwhile."""
        task = self.progress.add_task(description, total=None)
        try:
            yield
        finally:
            self.progress.update(task, total=1, completed=1)

    def _stop(self):
        """Join the workers; stop those still running (after an error, or the caller's)."""
        for name, process in self._processes.items():
            if name not in self._ends:
                process.terminate()
            process.join()

    def __exit__(self, *exc):
        self._stack.close()


def simulate_modes(config, data, modes, engine, console, *, env=None, vcd=None,
                   schedule=None):
    """Run ``modes`` on the SoC runner with a progress bar; returns ``{mode: RunResult}``
    (first order under ``schedule``, a :class:`~fieldtune.sim.golden.schedule.FoSchedule`;
    None: the plain run). On a native engine the modes run at the same time, each in its own
    process (:class:`ModeRuns`)."""
    with ModeRuns(config, data, modes, engine, console, env=env, vcd=vcd,
                  schedule=schedule) as runs:
        return runs.results()


def hyperparameters(train):
    """Float hyperparameters of :class:`~fieldtune.rtl.params.TrainParams` ``train``."""
    return {"epochs": train.epochs, "steps": train.steps, "batch": train.batch,
            "queries": train.queries, "lr_shift": train.lr_shift, "lr": 2.0 ** -train.lr_shift,
            "eps_shift": train.eps_shift, "eps": 2.0 ** -train.eps_shift,
            "zo_lr_shift": train.zo_lr_shift, "zo_lr": 2.0 ** -train.zo_lr_shift / math.log(2),
            "seed": train.seed}


def _split(ref):
    return (ref["train_features"], ref["train_logits"], ref["train_labels"],
            ref["test_features"], ref["test_logits"], ref["test_labels"])


def float_first_order(ref, train, *, curve=True, w0=None):
    """Float dense skip adapters on ``ref`` (:func:`fieldtune.sim.reference.r1_reference_data`)
    at the device's epochs, batch and learning rate, mini-batches in cache order, from zero or
    from the start weights ``w0`` (10×224, real values)."""
    hp = hyperparameters(train)
    return reference.train_skip_adapters(*_split(ref), epochs=hp["epochs"], batch=hp["batch"],
                                         lr=hp["lr"], seed=train.seed, curve=curve, w0=w0)


def float_mezo(ref, train, *, seeds=MEZO_SEEDS, eval_every=None):
    """Float MeZO (Gaussian) at the device's steps, batch, queries, epsilon and learning rate,
    once per seed ``train.seed, train.seed + 1, ...``; returns the list of results."""
    hp = hyperparameters(train)
    every = eval_every or max(1, hp["steps"] // 20)
    return [reference.train_mezo(*_split(ref), steps=hp["steps"], batch=hp["batch"],
                                 eps=hp["eps"], lr=hp["zo_lr"], queries=hp["queries"],
                                 distribution="gaussian", eval_every=every, seed=train.seed + k)
            for k in range(seeds)]


def torch_references(drift_deg, train, methods=reference.TORCH_METHODS, *, curve=True,
                     threads=1):
    """The PyTorch baselines (name -> ReferenceResult; ``accuracy`` None with ``reason`` when
    PyTorch is not installed) at the device's epochs and batch, on ``threads`` CPU threads
    (``None``: PyTorch's default).

    One thread is the default because these networks are tiny: on a busy 2-core machine
    PyTorch's default of one thread per core was measured 15-200x slower (its worker threads
    wait for each other), and one thread is never slower here."""
    torch, _ = reference.torch_status()
    previous = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None and threads is not None:
            torch.set_num_threads(threads)
        return {m: reference.train_torch(m, drift_deg, epochs=train.epochs, batch=train.batch,
                                         seed=train.seed, curve=curve)
                for m in methods}
    finally:
        if previous is not None:
            torch.set_num_threads(previous)
