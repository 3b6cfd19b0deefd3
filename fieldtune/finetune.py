"""R1 fine-tuning as ``fieldtune demo`` and ``fieldtune bench finetune`` run it: the device run
through the SoC runner, and the float references with the *same* hyperparameters.

The device's training registers are powers of two (:class:`~fieldtune.rtl.params.TrainParams`);
:func:`hyperparameters` gives the float values they stand for, which the float references use:

* first order: ``eta = 2**-lr_shift`` on the batch mean, ``epochs``, ``batch``, cache order;
* zeroth order: ``epsilon = 2**-eps_shift`` and ``eta = 2**-zo_lr_shift / ln 2`` (the device
  measures losses in bits, MeZO in nats), ``steps``, ``batch``, ``queries``.
"""

import math
from concurrent.futures import ThreadPoolExecutor

from rich.progress import (Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from .host import session
from .sim import reference, soc_data
from .sim.engines import registry
from .toolchain import tool_env, ToolchainError


__all__ = ["engines", "check_engine", "yosys_env", "simulate_modes", "NATIVE_ENGINES",
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


def simulate_modes(config, data, modes, engine, console, *, env=None, vcd=None,
                   schedule=None):
    """Run ``modes`` on the SoC runner with a progress bar; returns ``{mode: RunResult}``
    (first order under ``schedule``, a :class:`~fieldtune.sim.golden.schedule.FoSchedule`;
    None: the plain run).

    On a native engine the modes run at the same time, one thread each (their compiled model
    is built once: the build cache serializes builders of one design)."""
    run_finetune = session.run_finetune
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:

        def one(mode):
            unit = "epochs" if mode == "fo" else "steps"
            total = config.train.epochs if mode == "fo" else config.train.steps
            task = progress.add_task(f"{mode.upper()} on {engine} ({unit})", total=total)

            def advance(done, total):
                progress.update(task, completed=done, total=total)

            result = run_finetune(config, data, mode=mode, engine=engine, progress=advance,
                                  env=env, vcd=vcd, schedule=schedule)
            progress.update(task, completed=progress.tasks[task].total)
            return result

        parallel = engine in NATIVE_ENGINES and len(modes) > 1 and vcd is None
        with ThreadPoolExecutor(max_workers=len(modes) if parallel else 1) as pool:
            futures = {mode: pool.submit(one, mode) for mode in modes}
            return {mode: f.result() for mode, f in futures.items()}


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
