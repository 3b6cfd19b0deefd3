"""Whole fine-tuning runs of the SoC: R1 on CXXRTL bit-exact against the golden model (final
weights, accuracy, counters, the curve), the Amaranth simulator and CXXRTL bit for bit on the
same session, and the cross-check on a simulator nobody here wrote (Verilator, Icarus).

Outside CI a missing compiler or simulator skips with the reason; in CI (CI=true) it fails."""


from dataclasses import replace

import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.mac.layout import Layout
from fieldtune.rtl.sequencer.order import index_bits
from fieldtune.sim.golden.schedule import RUNS, train_fo_scheduled
from fieldtune.sim.golden.train import evaluate
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_data import cached_view, estimate_cycles, initial_weights, records_of
from fieldtune.host.session import run_finetune, ENGINES
from fieldtune.toolchain import tool_env


#: Why these tests need the programs, for the skip (or, in CI, failure) message.
WHY = "the SoC simulation on this engine needs it (apt-get install g++ verilator iverilog)"


def _same(a, b, *, cycles=True):
    """Two RunResults of the same run agree bit for bit."""
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.accuracy, a.train_accuracy, a.curve, a.loss_curve) == \
        (b.accuracy, b.train_accuracy, b.curve, b.loss_curve)
    for k in ("samples", "epochs", "steps", "loss_sum", "correct", "eval_correct",
              "train_eval_correct"):
        assert a.counters[k] == b.counters[k], k
    if cycles:
        assert (a.cycles, a.eval_cycles, a.chunk_cycles) == (b.cycles, b.eval_cycles,
                                                             b.chunk_cycles)


@pytest.fixture(scope="module")
def r1():
    return DesignConfig(), r1_features(30)


def test_r1_first_order_on_cxxrtl_matches_golden(r1, require_programs):
    require_programs("g++", why=WHY)
    cfg, data = r1
    seen = []
    dev = run_finetune(cfg, data, mode="fo", engine="cxxrtl", epochs=10,
                       env=tool_env("YOSYS"), progress=lambda d, t: seen.append((d, t)))
    gold = run_finetune(cfg, data, mode="fo", engine="golden", epochs=10)
    _same(dev, gold, cycles=False)
    assert seen == [(e, 10) for e in range(1, 11)]
    assert [p for p, _ in dev.curve] == list(range(11))
    # the device's own evaluation on the test set, chunk by chunk, is the curve's last point
    assert dev.counters["eval_samples"] == 463 and dev.curve[-1][1] == dev.accuracy
    assert dev.accuracy > data["after_drift_accuracy"] + 0.2
    assert dev.counters["steps"] == 160 and dev.counters["epochs"] == 10
    assert dev.counters["errors"] == [] and dev.cycles > 10 * 256 * 2 * Layout(cfg.mac).words
    # the golden engine's cycles are the estimate, fitted to the device within 2 %
    assert abs(gold.cycles / dev.cycles - 1) < 0.02


def test_r1_shuffle20_on_cxxrtl_is_the_scheduled_trainer(r1, require_programs):
    """The default first-order run (issue 16): records reshuffled every epoch, eta halved at
    epochs 8 and 14, in chunks of 5 epochs (each continues the order and the learning rate)."""
    require_programs("g++", why=WHY)
    cfg, data = r1
    run = RUNS["shuffle20"]
    dev = run_finetune(cfg, data, mode="fo", engine="cxxrtl", epochs=run.epochs,
                       eval_every=5, schedule=run.schedule, env=tool_env("YOSYS"))
    x, z0, y = cached_view(cfg, *records_of(data, "train"))
    ref = train_fo_scheduled(cfg.mac, cfg.loss, replace(cfg.train, epochs=run.epochs),
                             run.schedule, {"x": x, "z0": z0, "labels": y},
                             mem=initial_weights(cfg, cfg.train.seed),
                             bits=index_bits(cfg.cache.capacity))
    np.testing.assert_array_equal(dev.weights, ref.mem)
    tx, tz0, ty = cached_view(cfg, *records_of(data, "test"))
    assert dev.accuracy == evaluate(cfg.mac, ref.mem, tx, tz0, ty)
    assert [p for p, _ in dev.curve] == [0, 5, 10, 15, 20]
    assert dev.counters["epochs"] == 20 and dev.counters["steps"] == 320
    assert dev.counters["errors"] == [] and dev.schedule == run.schedule
    estimate = estimate_cycles(cfg, "fo", 256, epochs=20, batch=cfg.train.batch)
    assert abs(estimate / dev.cycles - 1) < 0.02


def test_r1_zeroth_order_on_cxxrtl_matches_golden(r1, require_programs):
    require_programs("g++", why=WHY)
    cfg, data = r1
    dev = run_finetune(cfg, data, mode="zo", engine="cxxrtl", steps=24, eval_every=12,
                       env=tool_env("YOSYS"))
    gold = run_finetune(cfg, data, mode="zo", engine="golden", steps=24, eval_every=12)
    _same(dev, gold, cycles=False)
    assert [p for p, _ in dev.curve] == [0, 12, 24]
    assert dev.counters["samples"] == 24 * 2 * 16
    assert abs(gold.cycles / dev.cycles - 1) < 0.02


@pytest.fixture(scope="module")
def tiny_golden(tiny_design):
    cfg, data = tiny_design
    return {mode: run_finetune(cfg, data, mode=mode, engine="golden") for mode in ("fo", "zo")}


@pytest.fixture(scope="module")
def tiny_amaranth(tiny_design):
    cfg, data = tiny_design
    return {mode: run_finetune(cfg, data, mode=mode, engine="amaranth") for mode in ("fo", "zo")}


def test_amaranth_simulator_matches_golden(tiny_amaranth, tiny_golden):
    for mode in ("fo", "zo"):
        _same(tiny_amaranth[mode], tiny_golden[mode], cycles=False)
        assert tiny_amaranth[mode].cycles > 0


def test_amaranth_and_cxxrtl_agree_bit_for_bit(tiny_amaranth, tiny_golden, require_programs,
                                               tiny_design):
    require_programs("g++", why=WHY)
    cfg, data = tiny_design
    for mode in ("fo", "zo"):
        dev = run_finetune(cfg, data, mode=mode, engine="cxxrtl", env=tool_env("YOSYS"))
        _same(dev, tiny_amaranth[mode])             # cycles included
        assert dev.sim_cycles_per_second > 0


@pytest.mark.parametrize("engine", ["verilator", "icarus"])
def test_verilog_simulators_match_golden(engine, tiny_amaranth, tiny_golden, require_engine,
                                        tiny_design):
    require_engine(engine, why=WHY)
    cfg, data = tiny_design
    dev = run_finetune(cfg, data, mode="fo", engine=engine, env=tool_env("YOSYS"))
    _same(dev, tiny_golden["fo"], cycles=False)
    _same(dev, tiny_amaranth["fo"])                  # and cycle for cycle


def test_runner_rejects_bad_arguments(tiny_design):
    cfg, data = tiny_design
    with pytest.raises(ValueError, match=r"^engine must be one of verilator, cxxrtl, amaranth, "
                                         r"icarus, golden, not 'spice'$"):
        run_finetune(cfg, data, engine="spice")
    with pytest.raises(ValueError, match=r"^mode must be 'fo' or 'zo', not 'sgd'$"):
        run_finetune(cfg, data, mode="sgd", engine="golden")
    with pytest.raises(ValueError, match=r"^eval_every must be a positive integer, not 0$"):
        run_finetune(cfg, data, engine="golden", eval_every=0)
    with pytest.raises(ValueError, match=r"^vcd waveforms come from the cxxrtl and amaranth "
                                         r"engines, not 'golden'$"):
        run_finetune(cfg, data, engine="golden", vcd="x.vcd")
    big = dict(data, train_features=np.zeros((9, 16), dtype=np.int64),
               train_logits=np.zeros((9, 4), dtype=np.int64),
               train_labels=np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match=r"^the training set \(9 samples\) must fit the cache "
                                         r"\(cache\.capacity = 8\)$"):
        run_finetune(cfg, big, engine="golden")
    assert ENGINES == ("verilator", "cxxrtl", "amaranth", "icarus", "golden")
    with pytest.raises(ValueError, match=r"^this design is built without early stop \(\[soc\] "
                                         r"early_stop = false\): schedule\.stop_every and "
                                         r"schedule\.holdout must be 0, not 2 and 16$"):
        run_finetune(cfg, data, mode="fo", engine="golden", schedule=RUNS["stop40"].schedule)
    with pytest.raises(ValueError, match=r"^this design is built without the first-order "
                                         r"schedule \(\[soc\] schedule = false\): only the "
                                         r"plain run"):
        run_finetune(cfg.replace(soc={"schedule": False}), data, mode="fo", engine="golden",
                     schedule=RUNS["shuffle20"].schedule)
    # the plain schedule runs on it
    run_finetune(cfg.replace(soc={"schedule": False}), data, mode="fo", engine="golden",
                 epochs=1, schedule=RUNS["plain"].schedule)
