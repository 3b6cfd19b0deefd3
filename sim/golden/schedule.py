"""First-order run schedule: per-epoch sample order, learning-rate steps and early stop
(issue 16), as integer semantics the sequencer implements from run registers.

A first-order run of ``train.epochs`` epochs over ``n`` cached records (batch ``B``,
``eta = 2^-lr_shift``) becomes, under a :class:`FoSchedule`:

* **held-out slice**: the last ``holdout`` records (in cache order) are never trained on; the
  training set is records ``0 .. n - holdout - 1``.
* **order**: epoch ``e`` (0-based) visits the training records in
  :func:`~fieldtune.sim.golden.order.epoch_order` ``(n - holdout, order_seed, e, order)``, in
  mini-batches of ``B`` as the plain run does (the last one shorter when ``B`` does not divide).
* **learning rate**: epoch ``e`` trains at ``lr_shift + #{s in lr_steps : s <= e}``, so each
  step point halves eta from that epoch on (``lr_steps = (10,)`` over 20 epochs: 2^-4 for
  epochs 0-9, 2^-5 for 10-19).
* **early stop** (``stop_every = k > 0``): after every ``k``-th epoch the held-out records are
  classified with the current weights and the correct ones counted (an integer from 0 to
  ``holdout``). A count above the best so far makes it the best and clears the strikes; any
  other count is a strike, and ``patience`` strikes in a row end the run after that epoch. The
  weights are the last epoch's (the device keeps no snapshot). ``train.epochs`` bounds the run.

The held-out count is what the device reports beside ``epochs_run``; a plain run is
``FoSchedule()`` (cache order, no steps, no stop), which trains exactly as
:func:`~fieldtune.sim.golden.train.train_fo`.
"""

from dataclasses import dataclass, replace

import numpy as np

from ...rtl.params import check_choice, check_int, LR_STEPS_MAX
from .order import ORDERS, KEY_STEP, epoch_order
from .train import TrainResult, evaluate, new_weights, train_fo


__all__ = ["FoSchedule", "FoRun", "RUNS", "LR_STEPS_MAX", "epoch_lr_shift",
           "train_fo_scheduled", "check_run", "run_registers", "DEFAULT_RUN", "run_epochs",
           "describe_run"]


@dataclass(frozen=True)
class FoSchedule:
    """How a first-order run spends its epochs (run registers, no hardware parameter).

    Parameters
    ----------
    order : str
        ``"cache"`` (records as cached) or ``"shuffle"`` (a new permutation every epoch).
    order_seed : int
        16-bit seed of the permutations, 0 to 65535.
    lr_steps : tuple of int
        Epochs (0-based, strictly increasing, 1 to 999) from which eta halves once more; at most
        :data:`LR_STEPS_MAX`.
    stop_every : int
        Evaluate the held-out records after every this many epochs, 0 (never, no early stop)
        to 100.
    holdout : int
        Records held out of training for early stop, 0 to 4096; required (> 0) with early stop.
    patience : int
        Evaluations in a row without a new best that end the run, 1 to 16.
    """

    section = "schedule"

    order: str = "cache"
    order_seed: int = 1
    lr_steps: tuple = ()
    stop_every: int = 0
    holdout: int = 0
    patience: int = 2

    def __post_init__(self):
        s = self.section
        check_choice(s, "order", self.order, ORDERS)
        check_int(s, "order_seed", self.order_seed, 0, 0xFFFF)
        steps = tuple(self.lr_steps)
        if len(steps) > LR_STEPS_MAX:
            raise ValueError(f"{s}.lr_steps holds at most {LR_STEPS_MAX} epochs, not "
                             f"{len(steps)}: {list(steps)}")
        for v in steps:
            check_int(s, "lr_steps", v, 1, 999)
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"{s}.lr_steps must be strictly increasing, not {list(steps)}")
        object.__setattr__(self, "lr_steps", steps)
        check_int(s, "stop_every", self.stop_every, 0, 100)
        check_int(s, "holdout", self.holdout, 0, 4096)
        check_int(s, "patience", self.patience, 1, 16)
        if self.stop_every and not self.holdout:
            raise ValueError(f"{s}.holdout must be at least 1 when {s}.stop_every is "
                             f"{self.stop_every} (early stop evaluates the held-out records)")

    def check_records(self, records):
        """ValueError unless ``records`` cached samples leave at least one to train on."""
        if self.holdout >= records:
            raise ValueError(f"{self.section}.holdout must be below the {records} cached "
                             f"records (0 to {records - 1}), not {self.holdout}")


def epoch_lr_shift(lr_shift, lr_steps, epoch):
    """The learning-rate shift of ``epoch`` (0-based): one more per step point reached."""
    return lr_shift + sum(1 for s in lr_steps if s <= epoch)


def run_registers(schedule, lr_shift, first_epoch=0):
    """The sequencer's run-register values (:class:`~fieldtune.sim.golden.soc.RunConfig`
    fields ``order``, ``order_seed``, ``lr_shift``, ``lr_step0`` ...) of a first-order run
    that trains epochs ``first_epoch, first_epoch + 1, ...`` of ``schedule``: a host that
    runs a schedule in chunks (to read the weights in between) starts each chunk with the
    key state and the learning rate the whole run would have reached (epoch ``e`` of the
    chunk is epoch ``first_epoch + e`` of the run, bit for bit). Early stop (``stop_every``,
    ``holdout``, ``patience``: on designs built with ``[soc] early_stop``) runs in one piece
    only (its best count and strikes live in the sequencer): ValueError for a later chunk."""
    stop = {}
    if schedule.stop_every or schedule.holdout:
        if first_epoch:
            raise ValueError(f"a run with early stop ({schedule.section}.stop_every "
                             f"{schedule.stop_every}, holdout {schedule.holdout}) runs in one "
                             f"piece, not from epoch {first_epoch}")
        stop = {"stop_every": schedule.stop_every, "holdout": schedule.holdout,
                "patience": schedule.patience}
    later = [s - first_epoch for s in schedule.lr_steps if s > first_epoch]
    later += [0] * (LR_STEPS_MAX - len(later))
    return {"order": ORDERS.index(schedule.order),
            "order_seed": (schedule.order_seed + first_epoch * KEY_STEP) & 0xFFFF,
            "lr_shift": epoch_lr_shift(lr_shift, schedule.lr_steps, first_epoch),
            **{f"lr_step{i}": s for i, s in enumerate(later)}, **stop}


def train_fo_scheduled(mac, loss, train, schedule, data, *, mem=None, eval_data=None,
                       bits=None):
    """First-order training of ``data`` (dict ``x``, ``z0``, ``labels``) under ``schedule``
    for at most ``train.epochs`` epochs (semantics in the module docstring). ``bits``: width
    of the order's walk (:func:`~fieldtune.sim.golden.order.epoch_order`; the SoC's is
    :func:`~fieldtune.rtl.sequencer.order.index_bits` of its cache capacity).

    Returns a :class:`~fieldtune.sim.golden.train.TrainResult`: per-epoch history entries of
    :func:`~fieldtune.sim.golden.train.train_fo` plus ``lr_shift`` and, on evaluation epochs,
    ``holdout_correct``; ``flags`` adds ``epochs_run`` and ``stopped_early``.
    """
    n = len(data["labels"])
    schedule.check_records(n)
    n_train = n - schedule.holdout
    held = {k: np.asarray(v)[n_train:] for k, v in data.items()}
    mem = new_weights(mac) if mem is None else mem.copy()
    res = TrainResult(mem, flags={"saturated": False, "epochs_run": 0, "stopped_early": False})
    best, strikes = -1, 0
    for epoch in range(train.epochs):
        idx = epoch_order(n_train, schedule.order_seed, epoch, schedule.order, bits)
        shift = epoch_lr_shift(train.lr_shift, schedule.lr_steps, epoch)
        one = train_fo(mac, loss, replace(train, epochs=1, lr_shift=shift),
                       {k: np.asarray(v)[idx] for k, v in data.items()}, mem=res.mem,
                       eval_data=eval_data)
        res.mem = one.mem
        res.flags["saturated"] |= one.flags["saturated"]
        res.flags["epochs_run"] = epoch + 1
        entry = {**one.history[0], "epoch": epoch + 1, "lr_shift": shift}
        res.history.append(entry)
        if schedule.stop_every and (epoch + 1) % schedule.stop_every == 0:
            correct = round(evaluate(mac, res.mem, held["x"], held["z0"], held["labels"])
                            * schedule.holdout)
            entry["holdout_correct"] = correct
            if correct > best:
                best, strikes = correct, 0
            else:
                strikes += 1
                if strikes >= schedule.patience:
                    res.flags["stopped_early"] = True
                    break
    return res


@dataclass(frozen=True)
class FoRun:
    """A named first-order run: ``epochs`` (None: the design's ``train.epochs``; with early stop,
    the most it may run) and its :class:`FoSchedule`."""
    epochs: int | None
    schedule: FoSchedule
    description: str


#: Named first-order runs, compared by ``fieldtune bench accuracy --runs`` (docs/benchmarks.md,
#: "Accuracy against LoRA-All (issue 16)": the study that chose them).
RUNS = {
    "plain": FoRun(None, FoSchedule(),
                   "cache order, the design's epochs and learning rate"),
    "cache20": FoRun(20, FoSchedule(lr_steps=(10,)),
                     "cache order, 20 epochs, eta halves at epoch 10"),
    "shuffle10": FoRun(10, FoSchedule(order="shuffle", lr_steps=(5,)),
                       "reshuffled, 10 epochs, eta halves at epoch 5"),
    "shuffle20": FoRun(20, FoSchedule(order="shuffle", lr_steps=(8, 14)),
                       "reshuffled, 20 epochs, eta halves at epochs 8 and 14"),
    "shuffle30": FoRun(30, FoSchedule(order="shuffle", lr_steps=(10, 20)),
                       "reshuffled, 30 epochs, eta halves at epochs 10 and 20"),
    "stop40": FoRun(40, FoSchedule(order="shuffle", lr_steps=(8, 14, 20, 26), stop_every=2,
                                   holdout=16, patience=3),
                    "reshuffled, eta halves at epochs 8, 14, 20 and 26, at most 40 epochs, "
                    "stops when 16 held-out records stop improving (checked every 2 epochs, "
                    "patience 3)"),
}


#: The first-order run ``fieldtune demo`` and ``fieldtune run`` make by default: the most points
#: gained over the plain run per projected second on the iCEBreaker among the runs meeting
#: issue 16's targets (docs/benchmarks.md, "Accuracy against LoRA-All (issue 16)").
DEFAULT_RUN = "shuffle20"


def run_epochs(run, design_epochs, epochs=None):
    """Epochs of named run ``run`` (a :class:`FoRun`): ``epochs`` if given (a user's
    ``--epochs``), else the run's own, else the design's ``[train]`` epochs."""
    return epochs or run.epochs or design_epochs


def describe_run(name, epochs):
    """The named run ``name`` as a JSON-ready dict (what a report says ran)."""
    run = check_run(name)
    s = run.schedule
    return {"name": name, "epochs": epochs, "order": s.order, "order_seed": s.order_seed,
            "lr_steps": list(s.lr_steps), "description": run.description}


def check_run(name):
    """The :class:`FoRun` called ``name``; ValueError naming the known runs otherwise."""
    if name not in RUNS:
        raise ValueError(f"run must be one of {', '.join(map(repr, RUNS))}, not {name!r}")
    return RUNS[name]
