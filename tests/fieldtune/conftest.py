"""Fixtures of the host tests (tests/fieldtune/test_host_*.py): a tiny design with its data,
and the comparison of two fine-tuning runs bit for bit."""

import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.sim.soc_data import synthetic_data


def _tiny():
    cfg = DesignConfig.preset("tiny").replace(
        perturb={"lanes": 4, "pool_size": 64, "dimension": 64},
        cache={"taps": [8, 8], "classes": 4, "capacity": 8, "block_size": 8},
        mac={"taps": [8, 8], "classes": 4, "max_batch": 4},
        loss={"classes": 4},
        train={"batch": 4, "epochs": 2, "steps": 3, "eps_shift": 3, "zo_lr_shift": 6})
    # 8 training records; 12 test records take two evaluation chunks of the cache
    return cfg, synthetic_data(cfg, 8, 12, seed=4)


@pytest.fixture(scope="session")
def host_tiny():
    """``(config, data)``: 4 lanes, taps (8, 8), 4 classes, 8 records of capacity."""
    return _tiny()


def _same(a, b):
    np.testing.assert_array_equal(a.weights, b.weights)
    assert (a.accuracy, a.train_accuracy, a.curve, a.loss_curve, a.cycles, a.eval_cycles) == \
        (b.accuracy, b.train_accuracy, b.curve, b.loss_curve, b.cycles, b.eval_cycles)
    for k in ("samples", "epochs", "steps", "loss_sum", "correct", "eval_correct",
              "train_eval_correct", "errors"):
        assert a.counters[k] == b.counters[k], k


@pytest.fixture(scope="session")
def same_run():
    """``same_run(a, b)``: two RunResults agree bit for bit (weights, accuracies, curves,
    cycles, counters)."""
    return _same
