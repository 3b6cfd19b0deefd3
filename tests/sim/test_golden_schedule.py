"""The first-order run schedule (sim/golden/schedule.py): sample order, learning-rate steps and
early stop, each against a run spelled out epoch by epoch with the plain trainer."""

from dataclasses import replace

import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.sim.golden.order import epoch_order
from fieldtune.sim.golden.schedule import (FoSchedule, RUNS, LR_STEPS_MAX, check_run,
                                           epoch_lr_shift, train_fo_scheduled)
from fieldtune.sim.golden.train import evaluate, train_fo
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_data import records_of, cached_view


CFG = DesignConfig()


@pytest.fixture(scope="module")
def data():
    x, z0, y = cached_view(CFG, *records_of(r1_features(30), "train"))
    # 64 records keep the runs short; the schedule does not care how many there are
    return {"x": x[:64], "z0": z0[:64], "labels": y[:64]}


def _train(epochs, **kw):
    return replace(CFG.train, epochs=epochs, **kw)


def test_plain_schedule_is_the_plain_trainer(data):
    plain = train_fo(CFG.mac, CFG.loss, _train(3), data)
    sched = train_fo_scheduled(CFG.mac, CFG.loss, _train(3), FoSchedule(), data)
    assert np.array_equal(plain.mem, sched.mem)
    assert sched.flags["epochs_run"] == 3 and not sched.flags["stopped_early"]
    assert [h["lr_shift"] for h in sched.history] == [4, 4, 4]


def test_order_and_steps_epoch_by_epoch(data):
    schedule = FoSchedule(order="shuffle", order_seed=77, lr_steps=(1, 2))
    got = train_fo_scheduled(CFG.mac, CFG.loss, _train(4), schedule, data)
    mem = None
    for epoch, shift in enumerate((4, 5, 6, 6)):
        idx = epoch_order(64, 77, epoch)
        assert idx.tolist() != list(range(64))
        mem = train_fo(CFG.mac, CFG.loss, _train(1, lr_shift=shift),
                       {k: v[idx] for k, v in data.items()}, mem=mem).mem
    assert np.array_equal(got.mem, mem)
    assert [h["lr_shift"] for h in got.history] == [4, 5, 6, 6]
    other = train_fo_scheduled(CFG.mac, CFG.loss, _train(4), replace(schedule, order_seed=78),
                               data)
    assert not np.array_equal(other.mem, got.mem)


def test_early_stop_holds_out_and_counts_strikes(data):
    schedule = FoSchedule(stop_every=1, holdout=16, patience=2)
    got = train_fo_scheduled(CFG.mac, CFG.loss, _train(12, lr_shift=9), schedule, data)
    counts = [h["holdout_correct"] for h in got.history]
    # replay the rule on the recorded counts: stop after the second strike in a row
    best, strikes, stop = -1, 0, None
    for e, c in enumerate(counts):
        best, strikes = (c, 0) if c > best else (best, strikes + 1)
        if strikes == 2:
            stop = e + 1
            break
    assert got.flags["epochs_run"] == len(counts)
    assert got.flags["stopped_early"] == (stop is not None)
    assert stop is None or stop == len(counts)
    # the held-out records are the last 16 and are never trained on
    mem = None
    for _ in range(len(counts)):
        mem = train_fo(CFG.mac, CFG.loss, _train(1, lr_shift=9),
                       {k: v[:48] for k, v in data.items()}, mem=mem).mem
    assert np.array_equal(got.mem, mem)
    assert counts[-1] == round(16 * evaluate(CFG.mac, mem, data["x"][48:], data["z0"][48:],
                                             data["labels"][48:]))


def test_early_stop_stops():
    # a run that cannot improve (learning rate 2^-24: the weights never move) stops after
    # the first evaluation and `patience` more
    x, z0, y = cached_view(CFG, *records_of(r1_features(30), "train"))
    d = {"x": x[:32], "z0": z0[:32], "labels": y[:32]}
    got = train_fo_scheduled(CFG.mac, CFG.loss, _train(50, lr_shift=24),
                             FoSchedule(stop_every=2, holdout=8, patience=3), d)
    assert got.flags["stopped_early"] and got.flags["epochs_run"] == 2 * (1 + 3)


def test_lr_shift_per_epoch():
    assert [epoch_lr_shift(4, (3, 5), e) for e in range(7)] == [4, 4, 4, 5, 5, 6, 6]


@pytest.mark.parametrize("kw, message", [
    ({"order": "random"}, "schedule.order must be one of 'cache', 'shuffle', not 'random'"),
    ({"order_seed": 1 << 16}, "schedule.order_seed must be an integer from 0 to 65535, not "
                              "65536"),
    ({"lr_steps": (1, 2, 3, 4, 5)}, f"schedule.lr_steps holds at most {LR_STEPS_MAX} epochs, "
                                    "not 5"),
    ({"lr_steps": (5, 5)}, "schedule.lr_steps must be strictly increasing, not [5, 5]"),
    ({"lr_steps": (0,)}, "schedule.lr_steps must be an integer from 1 to 999, not 0"),
    ({"stop_every": 2}, "schedule.holdout must be at least 1 when schedule.stop_every is 2"),
    ({"patience": 0}, "schedule.patience must be an integer from 1 to 16, not 0"),
])
def test_bad_schedules_are_rejected(kw, message):
    with pytest.raises(ValueError) as e:
        FoSchedule(**kw)
    assert message in str(e.value)


def test_holdout_must_leave_records(data):
    with pytest.raises(ValueError, match="schedule.holdout must be below the 64 cached "
                                         "records .0 to 63., not 64"):
        train_fo_scheduled(CFG.mac, CFG.loss, _train(1),
                           FoSchedule(stop_every=1, holdout=64), data)


def test_named_runs():
    assert RUNS["plain"].schedule == FoSchedule() and RUNS["plain"].epochs is None
    for run in RUNS.values():
        assert run.epochs is None or max(run.schedule.lr_steps, default=0) < run.epochs
    with pytest.raises(ValueError, match="run must be one of 'plain', .*, not 'fast'"):
        check_run("fast")
