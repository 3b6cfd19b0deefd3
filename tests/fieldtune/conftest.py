"""Fixtures of the host tests (tests/fieldtune/test_host_*.py): the comparison of two
fine-tuning runs bit for bit; the tiny design is ``tiny_design`` (tests/conftest.py)."""

import numpy as np
import pytest



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
