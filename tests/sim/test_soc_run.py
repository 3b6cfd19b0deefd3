"""Whole fine-tuning runs of the SoC: R1 on CXXRTL bit-exact against the golden model (final
weights, accuracy, counters, the curve), the Amaranth simulator and CXXRTL bit for bit on the
same session, and the cross-check on a simulator nobody here wrote (Verilator, Icarus).

Outside CI a missing compiler or simulator skips with the reason; in CI (CI=true) it fails."""


import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.mac.layout import Layout
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_run import run_finetune, synthetic_data, ENGINES
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


def tiny():
    cfg = DesignConfig.preset("tiny").replace(
        perturb={"lanes": 4, "pool_size": 64, "dimension": 64},
        cache={"taps": [8, 8], "classes": 4, "capacity": 8, "block_size": 8},
        mac={"taps": [8, 8], "classes": 4, "max_batch": 4},
        loss={"classes": 4},
        train={"batch": 4, "epochs": 2, "steps": 3, "eps_shift": 3, "zo_lr_shift": 6})
    # 8 training records; 12 test records take two evaluation chunks of the cache
    return cfg, synthetic_data(cfg, 8, 12, seed=4)


@pytest.fixture(scope="module")
def tiny_golden():
    cfg, data = tiny()
    return {mode: run_finetune(cfg, data, mode=mode, engine="golden") for mode in ("fo", "zo")}


@pytest.fixture(scope="module")
def tiny_amaranth():
    cfg, data = tiny()
    return {mode: run_finetune(cfg, data, mode=mode, engine="amaranth") for mode in ("fo", "zo")}


def test_amaranth_simulator_matches_golden(tiny_amaranth, tiny_golden):
    for mode in ("fo", "zo"):
        _same(tiny_amaranth[mode], tiny_golden[mode], cycles=False)
        assert tiny_amaranth[mode].cycles > 0


def test_amaranth_and_cxxrtl_agree_bit_for_bit(tiny_amaranth, tiny_golden, require_programs):
    require_programs("g++", why=WHY)
    cfg, data = tiny()
    for mode in ("fo", "zo"):
        dev = run_finetune(cfg, data, mode=mode, engine="cxxrtl", env=tool_env("YOSYS"))
        _same(dev, tiny_amaranth[mode])             # cycles included
        assert dev.sim_cycles_per_second > 0


@pytest.mark.parametrize("engine,programs", [("verilator", ("verilator",)),
                                             ("icarus", ("iverilog", "vvp"))])
def test_verilog_simulators_match_golden(engine, programs, tiny_amaranth, tiny_golden,
                                        require_programs):
    require_programs(*programs, why=WHY)
    cfg, data = tiny()
    dev = run_finetune(cfg, data, mode="fo", engine=engine, env=tool_env("YOSYS"))
    _same(dev, tiny_golden["fo"], cycles=False)
    _same(dev, tiny_amaranth["fo"])                  # and cycle for cycle


def test_runner_rejects_bad_arguments():
    cfg, data = tiny()
    with pytest.raises(ValueError, match=r"^engine must be one of cxxrtl, verilator, amaranth, "
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
    assert ENGINES == ("cxxrtl", "verilator", "amaranth", "icarus", "golden")
