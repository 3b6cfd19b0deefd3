"""The SoC's golden model is composition: the golden cache's view of the records fed to the
golden training loops (the programs the sequencer issues) with the golden perturbation
engine's vectors. These tests hold it to exactly that, on R1."""


import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.params import TrainParams
from fieldtune.rtl.sequencer import Mode
from fieldtune.sim.golden.perturb import vectors
from fieldtune.sim.golden.soc import SocModel, RunConfig, check_run
from fieldtune.sim.golden.train import train_fo, train_zo, evaluate
from fieldtune.sim.golden.schedule import FoSchedule, run_registers, train_fo_scheduled
from fieldtune.rtl.sequencer.order import index_bits
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_data import records_of


@pytest.fixture(scope="module")
def r1():
    cfg = DesignConfig()
    data = r1_features(30)
    model = SocModel(cfg)
    for rec in zip(*records_of(data, "train")):
        model.write_record(*rec)
    x, z0, labels = model.samples(0, model.records)
    return cfg, model, {"x": x, "z0": z0, "labels": labels}


def test_first_order_is_the_golden_training_loop_on_cached_features(r1):
    cfg, model, train = r1
    model.weights[:] = 0
    assert model.start(mode=Mode.FO, epochs=2, batch=16, lr_shift=4) == set()
    ref = train_fo(cfg.mac, cfg.loss, TrainParams(epochs=2, batch=16, lr_shift=4), train)
    np.testing.assert_array_equal(model.weights, ref.mem)
    assert model.counters["samples"] == 2 * 256 and model.counters["steps"] == 32
    assert model.counters["epochs"] == 2


@pytest.mark.parametrize("chunks", [(3,), (1, 1, 1)])
def test_scheduled_first_order_is_the_scheduled_training_loop(r1, chunks):
    """Reshuffled epochs with learning-rate steps, in one run or in runs of one epoch each
    (run_registers carries the key state and the learning rate over)."""
    cfg, model, train = r1
    model.weights[:] = 0
    sched = FoSchedule(order="shuffle", order_seed=0x1234, lr_steps=(1, 2))
    first = 0
    for n in chunks:
        regs = run_registers(sched, 4, first)
        assert model.start(mode=Mode.FO, epochs=n, batch=16, **regs) == set()
        first += n
    ref = train_fo_scheduled(cfg.mac, cfg.loss, TrainParams(epochs=3, batch=16, lr_shift=4),
                             sched, train, bits=index_bits(cfg.cache.capacity))
    np.testing.assert_array_equal(model.weights, ref.mem)
    plain = train_fo(cfg.mac, cfg.loss, TrainParams(epochs=3, batch=16, lr_shift=4), train)
    assert not np.array_equal(model.weights, plain.mem)


def test_learning_rate_steps_count_in_the_shift_check(r1):
    cfg, _, _ = r1
    # C_FO = 6: cshift 6 - 30 - 4 = -28 holds; four steps more (-32) too; five cannot be
    c = RunConfig(mode=Mode.FO, batch=16, lr_shift=30, lr_step0=3, lr_step1=1, lr_step2=999,
                  lr_step3=999)
    assert check_run(cfg, c, 256) == set()
    c = RunConfig(mode=Mode.FO, batch=16, lr_shift=31, lr_step0=3, lr_step1=1, lr_step2=999,
                  lr_step3=999)
    assert check_run(cfg, c, 256) == {"bad_shift"}
    assert check_run(cfg, RunConfig(mode=Mode.FO, batch=16, lr_shift=31, lr_step1=5),
                     256) == set()


def test_zeroth_order_is_the_golden_training_loop_with_engine_vectors(r1):
    cfg, model, train = r1
    model.weights[:] = 0
    steps = 12
    assert model.start(mode=Mode.ZO, steps=steps, batch=16, eps_shift=6, zo_lr_shift=11,
                       seed=5) == set()
    beats = vectors(cfg.perturb, 5, np.arange(steps)).beats
    ref = train_zo(cfg.mac, cfg.loss, TrainParams(steps=steps, batch=16, eps_shift=6,
                                                  zo_lr_shift=11), train, lambda s: beats[s])
    np.testing.assert_array_equal(model.weights, ref.mem)
    assert (model.next_step, model.next_cursor) == (steps, 12 * 16 % 256)
    assert model.counters["samples"] == steps * 2 * 16


def test_evaluation_counts_correct_and_loss(r1):
    cfg, model, train = r1
    model.start(mode=Mode.EVAL, eval_first=0, eval_count=256)
    acc = evaluate(cfg.mac, model.weights, train["x"], train["z0"], train["labels"])
    assert model.counters["correct"] == round(acc * 256)
    assert model.counters["samples"] == 256 and model.counters["loss_sum"] > 0


def test_default_training_parameters_are_legal_on_r1(r1):
    cfg, model, _ = r1
    t = cfg.train
    for mode in (Mode.FO, Mode.ZO):
        c = RunConfig(mode=mode, batch=t.batch, lr_shift=t.lr_shift, eps_shift=t.eps_shift,
                      zo_lr_shift=t.zo_lr_shift, steps=t.steps, epochs=t.epochs)
        assert check_run(cfg, c, 256) == set()


@pytest.mark.parametrize("queries,bad", [(0, True), (1, False), (2, False), (3, True),
                                         (4, False), (12, True), (16, False), (17, True)])
def test_queries_are_a_power_of_two_up_to_16(r1, queries, bad):
    # the mean over queries is a shift of the update (docs/numerics.md)
    cfg, _, _ = r1
    c = RunConfig(mode=Mode.ZO, batch=16, queries=queries, zo_lr_shift=8)
    assert ("bad_steps" in check_run(cfg, c, 256)) == bad


def test_register_fields_are_checked():
    with pytest.raises(ValueError, match=r"^register field batch holds 9 bits, not 512$"):
        RunConfig(batch=512)


def test_whole_records_take_the_element_path_semantics():
    """The model's fast path for whole records equals the cache model's element path,
    including saturating features, a bad label and a full cache."""
    cfg = DesignConfig().replace(cache={"capacity": 5})
    rng = np.random.default_rng(3)
    fast, slow = SocModel(cfg), SocModel(cfg)
    F, C = cfg.cache.features, cfg.cache.classes
    for i in range(7):
        f = rng.integers(-40000, 40000, F)
        z0 = rng.integers(-3000, 3000, C)
        label = 11 if i == 2 else int(rng.integers(0, C))
        fast.write_record(f, z0, label)
        slow.cache.write_record(f, z0, label)
    a, b = fast.cache, slow.cache
    assert (a.count, a.overflow, a.record_error, a.saturations) == \
        (b.count, b.overflow, b.record_error, b.saturations) == (5, True, True, b.saturations)
    assert a.code_mem == b.code_mem and a.meta_mem == b.meta_mem
    xa, za, ya = fast.samples(0, 5)
    xb, zb, yb = slow.samples(0, 5)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(za, zb)
    np.testing.assert_array_equal(ya, yb)


def test_early_stop_is_the_scheduled_training_loop(r1):
    """[soc] early_stop: the held-out slice, the evaluations and the stop rule of
    train_fo_scheduled; the weights of the epoch it stopped after."""
    cfg, plain, train = r1
    cfg = cfg.replace(soc={"early_stop": True})
    model = SocModel(cfg)
    model.cache, model._samples = plain.cache, plain._samples        # the same records
    sched = FoSchedule(order="shuffle", order_seed=0x1234, lr_steps=(2,), stop_every=1,
                       holdout=64, patience=1)
    assert model.start(mode=Mode.FO, epochs=8, batch=16, **run_registers(sched, 4)) == set()
    ref = train_fo_scheduled(cfg.mac, cfg.loss, TrainParams(epochs=8, batch=16, lr_shift=4),
                             sched, train, bits=index_bits(cfg.cache.capacity))
    np.testing.assert_array_equal(model.weights, ref.mem)
    assert ref.flags["stopped_early"] and ref.flags["epochs_run"] < 8
    assert model.counters["epochs"] == ref.flags["epochs_run"]
    assert model.counters["samples"] == 192 * ref.flags["epochs_run"]
    assert model.stop == {"correct": ref.history[-1]["holdout_correct"], "stopped": True}
