"""Bit-exact model of :class:`fieldtune.rtl.soc.SoC`: what a run computes, not how long it takes.

The SoC is composition, and so is this model: records go through the golden forward cache
(:class:`~.cache.CacheModel`: quantize, pack, unpack, dequantize), runs go through the golden
training steps (:mod:`.train`, which are the micro-op programs the sequencer issues), the
perturbations come from the golden perturbation engine (:func:`.perturb.vectors`). Per run the
model keeps what the SoC's registers show: the counters (``cycles`` excepted: time is the
engines' business), the zeroth-order continuation (``next_step``, ``next_cursor``) and the error
flags, checked exactly as the sequencer checks them.

Usage::

    model = SocModel(config)
    for f, z0, y in zip(features, logits, labels):
        model.write_record(f, z0, y)
    model.start(mode=Mode.FO, epochs=10, batch=16, lr_shift=4)
    model.weights, model.counters, model.errors
"""

from dataclasses import dataclass

import numpy as np

from ...rtl.params import built_modes, built_schedule, built_early_stop, LR_STEPS_MAX, RUN_FIELDS
from ...rtl.mac.layout import Layout
from ...rtl.sequencer import (Mode, COUNTERS, counter_widths, MAX_QUERIES, MAX_BATCH,
                              CSHIFT_MIN, CSHIFT_MAX, coef_shift_constants, RUN_CONFIG)
from ...rtl.sequencer.order import index_bits
from ...rtl.soc import check_soc, soc_registers
from .cache import CacheModel
from .order import epoch_order
from .loss import softmax_xent
from .mac import pad_mask, update, zshift_for, z_operand_shift
from .perturb import vectors, pool
from .train import fo_step, forward, new_weights, zo_coef_shift


__all__ = ["SocModel", "RunConfig", "check_run", "lr_steps", "fo_epoch_shift", "Perturbations",
           "COUNTER_MAX"]


#: The widest counters saturate here (32 bits; see :func:`counter_widths`).
COUNTER_MAX = 2**32 - 1


@dataclass
class RunConfig:
    """The run-time registers (field names as :data:`~fieldtune.rtl.sequencer.RUN_CONFIG`)."""
    mode: int = Mode.FO.value
    epochs: int = 10
    batch: int = 16
    lr_shift: int = 4
    eps_shift: int = 6
    zo_lr_shift: int = 11
    seed: int = 1
    steps: int = 2000
    queries: int = 1
    step: int = 0
    cursor: int = 0
    eval_first: int = 0
    eval_count: int = 0
    watchdog: int = 1 << 16
    order: int = 0
    order_seed: int = 0
    lr_step0: int = 0
    lr_step1: int = 0
    lr_step2: int = 0
    lr_step3: int = 0
    stop_every: int = 0
    holdout: int = 0
    patience: int = 1

    def __post_init__(self):
        for name, fld in RUN_CONFIG:
            value = getattr(self, name)
            if isinstance(value, Mode):
                value = value.value
                setattr(self, name, value)
            width = fld.width
            if not isinstance(value, (int, np.integer)) or not 0 <= value < (1 << width):
                raise ValueError(f"register field {name} holds {width} bits, not {value!r}")


def _pow2(n):
    return n != 0 and n & (n - 1) == 0


def lr_steps(cfg: RunConfig):
    """The learning-rate step epochs of ``cfg`` (its ``lr_step*`` registers; 0: unused)."""
    return [s for s in (getattr(cfg, f"lr_step{i}") for i in range(LR_STEPS_MAX)) if s]


def fo_epoch_shift(cfg: RunConfig, epoch):
    """``lr_shift`` of first-order ``epoch`` (0-based): one more per step reached (a step
    value held twice counts twice)."""
    return cfg.lr_shift + sum(1 for s in lr_steps(cfg) if s <= epoch)


def check_run(config, cfg: RunConfig, records):
    """The error flags a start with ``cfg`` raises (empty: the run goes ahead), exactly as the
    sequencer checks them."""
    mac, loss = config.mac, config.loss
    c_fo, c_a, c_zo, k0 = coef_shift_constants(mac, loss)
    mode, batch = cfg.mode, cfg.batch
    fo, zo, ev = mode == Mode.FO.value, mode == Mode.ZO.value, mode == Mode.EVAL.value
    pow2 = _pow2(batch)
    lb = max(batch.bit_length() - 1, 0)
    cs_fo = c_fo - cfg.lr_shift - lb
    lq = max(cfg.queries.bit_length() - 1, 0)
    cs_z, k = c_zo - cfg.zo_lr_shift - lb - lq + cfg.eps_shift, k0 - cfg.eps_shift
    scheduled = built_schedule(config)
    stopping = built_early_stop(config)
    f = RUN_FIELDS
    # early stop's registers: only where built (elsewhere a host cannot set them)
    stop_bad = (not stopping and bool(cfg.stop_every or cfg.holdout)) or (stopping and (
        cfg.stop_every > f["stop_every"].hi or not f["patience"].lo <= cfg.patience
        <= f["patience"].hi or cfg.holdout > f["holdout"].hi
        or bool(cfg.stop_every and not cfg.holdout)))
    # every step counts, even one past the last epoch (a design without the schedule: none)
    fo_shift_bad = (cs_fo - len(lr_steps(cfg)) * scheduled < CSHIFT_MIN
                    or cs_fo > CSHIFT_MAX)
    zo_shift_bad = k < 0 or not CSHIFT_MIN <= cs_z <= CSHIFT_MAX
    checks = {
        "bad_mode": (mode > Mode.DUMP.value or (fo and "fo" not in built_modes(config))
                     or (zo and "zo" not in built_modes(config))),
        "zero_epochs": fo and cfg.epochs == 0,
        "bad_batch": (fo and (not pow2 or batch > mac.max_batch))
                     or (zo and (not pow2 or batch > MAX_BATCH)),
        "batch_count": (fo and batch + cfg.holdout * stopping > records)
                       or (zo and batch > records),
        "bad_shift": (fo and fo_shift_bad) or (zo and zo_shift_bad),
        "bad_steps": zo and (cfg.steps == 0 or not _pow2(cfg.queries)
                             or cfg.queries > MAX_QUERIES),
        "bad_cursor": zo and cfg.cursor >= records,
        "eval_range": ev and (cfg.eval_count == 0
                              or cfg.eval_first + cfg.eval_count > records),
        "bad_watchdog": (fo or zo or ev) and cfg.watchdog == 0,
        "bad_schedule": fo and ((not scheduled and bool(cfg.order or lr_steps(cfg)))
                                or stop_bad),
    }
    return {name for name, bad in checks.items() if bad}


class Perturbations:
    """The perturbation engine's vectors ``(words, lanes)`` for one seed, computed in chunks
    of steps (the pool of pool mode once)."""

    def __init__(self, params, seed, chunk=64):
        self.params, self.seed, self.chunk = params, seed, chunk
        self._pool = pool(params, seed) if params.reuse == "pool" else None
        self._first, self._beats = None, None

    def __call__(self, step):
        step &= 0xFFFF_FFFF
        if self._first is None or not self._first <= step < self._first + len(self._beats):
            steps = (step + np.arange(self.chunk)) & 0xFFFF_FFFF
            self._first = step
            self._beats = vectors(self.params, self.seed, steps, pool_cache=self._pool).beats
            if np.any(steps < step):          # wrapped around 2**32: keep it simple
                self._beats = self._beats[:1]
        return self._beats[step - self._first]


class SocModel:
    """The SoC's state (records, weights, registers shown to the host) and its runs."""

    def __init__(self, config):
        check_soc(config)
        self.config = config
        self.mac, self.loss = config.mac, config.loss
        self.perturb = config.perturb
        self.layout = Layout(self.mac)
        self.cache = CacheModel(config.cache)
        self.weights = new_weights(self.mac)
        self.counters = {c: 0 for c in COUNTERS}
        self.counters["cycles"] = None
        self.errors = set()
        self.done = False
        self.saturated = False
        self.next_step = 0
        self.next_cursor = 0
        #: Early stop's report (``stop_status``): the last held-out count, whether it ended
        #: the run.
        self.stop = {"correct": 0, "stopped": False}
        self._samples = {}
        self._perturbations = {}
        self.watchdog_default = next(f.init for r in soc_registers(
            self.mac, config.cache, self.perturb) if r.name == "watchdog" for f in r.fields)

    # -- records ------------------------------------------------------------------------------

    def write(self, data, last):
        """One element of the record window."""
        self.cache.write(int(data), bool(last))

    def write_record(self, features, z0, label):
        """A whole record, as the record window's elements would write it. A complete record
        between records takes a fast path (quantize and pack once, as the cache model's last
        element does); anything else goes element by element."""
        c, p = self.cache, self.config.cache
        features, z0 = np.asarray(features, dtype=np.int64), np.asarray(z0, dtype=np.int64)
        # the element path's state: nothing pending, not skipping (read only)
        if (c._pending or c._skipping or len(features) != p.features
                or len(z0) != p.classes):
            c.write_record(features, z0, label)
            return
        q = c.quantize(features)
        c.saturations = min((1 << 16) - 1, c.saturations + int(c.saturated(features).sum()))
        if not 0 <= int(label) < p.classes:
            c.record_error = True
            return
        if c.count >= p.capacity:
            c.overflow = True
            return
        self._samples[c.count] = (c.dequantize(q), z0.copy(), int(label))
        c.store(q, z0, label)

    def clear_cache(self):
        self.cache.clear()
        self._samples.clear()

    @property
    def records(self):
        return self.cache.count

    def samples(self, first, count):
        """``(x, z0, labels)`` of records ``first .. first+count-1`` as the cache streams them
        (dequantized features)."""
        return self.samples_at(range(first, first + count))

    def samples_at(self, indices):
        """``(x, z0, labels)`` of the records at ``indices``, as the cache streams them."""
        xs, zs, ys = [], [], []
        count = len(indices)
        for i in indices:
            i = int(i)
            if i not in self._samples:
                q, z0, label = self.cache.unpack(i)
                self._samples[i] = (self.cache.dequantize(q), np.array(z0, dtype=np.int64),
                                    int(label))
            x, z0, label = self._samples[i]
            xs.append(x)
            zs.append(z0)
            ys.append(label)
        return (np.array(xs, dtype=np.int64).reshape(count, -1),
                np.array(zs, dtype=np.int64).reshape(count, -1), np.array(ys, dtype=np.int64))

    # -- weights ------------------------------------------------------------------------------

    def load_weights(self, words):
        """What a LOAD run writes: ``(words, lanes)`` weights (padding lanes read back 0)."""
        words = np.asarray(words, dtype=np.int64).reshape(self.layout.words, self.mac.lanes)
        for i, reg in enumerate(self.layout.regions):
            sl = slice(reg.base, reg.base + reg.words)
            self.weights[sl] = np.where(pad_mask(self.mac, i), words[sl], 0)

    # -- runs ---------------------------------------------------------------------------------

    def start(self, cfg=None, **fields):
        """Start a run with ``cfg`` (a :class:`RunConfig`, or its fields as keywords) and run
        it to the end. Returns the error flags it raised (empty set: it ran)."""
        cfg = cfg if cfg is not None else RunConfig(**fields)
        errors = check_run(self.config, cfg, self.records)
        self.done = True
        if errors:
            self.errors |= errors
            return errors
        self.counters = {c: 0 for c in COUNTERS}
        self.counters["cycles"] = None
        self.stop = {"correct": 0, "stopped": False}
        flags = {"saturated": False}
        mode = Mode(cfg.mode)
        if mode == Mode.FO:
            self._first_order(cfg, flags)
        elif mode == Mode.ZO:
            self._zeroth_order(cfg, flags)
        elif mode == Mode.EVAL:
            self._count(*self._evaluate(cfg.eval_first, cfg.eval_count))
        if flags["saturated"]:
            self.errors.add("mac_saturated")
        self.saturated = flags["saturated"]
        widths = counter_widths(self.config.cache)
        for c in COUNTERS[1:]:
            self.counters[c] = min(int(self.counters[c]), (1 << widths[c]) - 1)
        return set()

    def _count(self, samples, loss_sum, correct):
        self.counters["samples"] += int(samples)
        self.counters["loss_sum"] += int(loss_sum)
        self.counters["correct"] += int(correct)

    def _evaluate(self, first, count):
        x, z0, labels = self.samples(first, count)
        r = softmax_xent(self.loss, forward(self.mac, self.weights, x, z0), labels)
        return count, r.loss.sum(), r.correct.sum()

    def _first_order(self, cfg, flags):
        """Epochs over the training records (all but the last ``holdout``); with early stop
        the held-out records are evaluated after every ``stop_every``-th epoch (not counted
        in the counters), as :func:`~.schedule.train_fo_scheduled` does."""
        records = self.records - cfg.holdout
        order = ("cache", "shuffle")[cfg.order]
        bits = index_bits(self.config.cache.capacity)        # the sequencer's walk
        best, strikes = -1, 0
        for epoch in range(cfg.epochs):
            idx = epoch_order(records, cfg.order_seed, epoch, order, bits)
            shift = fo_epoch_shift(cfg, epoch)
            for base in range(0, records, cfg.batch):
                nb = min(cfg.batch, records - base)
                x, z0, labels = self.samples_at(idx[base:base + nb])
                r = fo_step(self.mac, self.loss, self.weights, x, z0, labels, shift,
                            cfg.batch, flags=flags)
                self._count(nb, r.loss.sum(), r.correct.sum())
                self.counters["steps"] += 1
            self.counters["epochs"] += 1
            if cfg.stop_every and (epoch + 1) % cfg.stop_every == 0:
                correct = int(self._evaluate(records, cfg.holdout)[2])
                strikes = 0 if correct > best else strikes + 1
                best = max(best, correct)
                self.stop = {"correct": correct, "stopped": strikes >= cfg.patience}
                if self.stop["stopped"]:
                    break

    def perturbations(self, seed):
        """The golden engine's vectors for ``seed`` (cached per seed)."""
        if seed not in self._perturbations:
            self._perturbations[seed] = Perturbations(self.perturb, seed)
        return self._perturbations[seed]

    def _zeroth_order(self, cfg, flags):
        mac, loss, records = self.mac, self.loss, self.records
        q = cfg.queries
        k = zshift_for(mac, cfg.eps_shift)
        cs = zo_coef_shift(mac, loss, cfg.zo_lr_shift, cfg.eps_shift, cfg.batch, q)
        z_of = self.perturbations(cfg.seed)
        base, pstep = cfg.cursor, cfg.step
        for _ in range(cfg.steps):
            nb = min(cfg.batch, records - base)
            x, z0, labels = self.samples(base, nb)
            gs, zs = [], []
            for i in range(q):
                z = z_of(pstep + i)
                rp = softmax_xent(loss, forward(mac, self.weights, x, z0, z=z, sign=1, zshift=k,
                                                flags=flags), labels)
                rm = softmax_xent(loss, forward(mac, self.weights, x, z0, z=z, sign=-1,
                                                zshift=k, flags=flags), labels)
                gs.append(int(rp.loss.sum() - rm.loss.sum()))
                zs.append(z)
                self._count(2 * nb, rp.loss.sum() + rm.loss.sum(),
                            rp.correct.sum() + rm.correct.sum())
            for g, z in zip(gs, zs):
                coef = np.int64(g)
                zb = np.asarray(z, dtype=np.int64) << z_operand_shift(mac)
                for r, reg in enumerate(self.layout.regions):
                    update(mac, self.weights, r, coef, zb[reg.base:reg.base + reg.words], cs,
                           flags=flags)
            pstep = (pstep + q) & 0xFFFF_FFFF
            self.counters["steps"] += 1
            base += cfg.batch
            if base >= records:
                base = 0
                self.counters["epochs"] += 1
        self.next_step, self.next_cursor = pstep, base
