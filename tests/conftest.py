"""Plumbing shared by the whole test suite."""

import os
import shutil

import pytest

from fieldtune.config import DesignConfig
from fieldtune.sim.soc_data import synthetic_data


def in_ci():
    """``CI`` is set (``.ci/run`` installs every tool, so a missing one is a failure there)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def require_programs():
    """``require_programs(*programs, why=...)``: skip the test, naming the missing programs and
    ``why`` they are needed, when one is not on PATH; in CI, fail instead."""
    def require(*programs, why):
        missing = [p for p in programs if shutil.which(p) is None]
        if missing:
            reason = f"{', '.join(missing)} not installed; {why}"
            if in_ci():
                pytest.fail(reason)
            pytest.skip(reason)
    return require


@pytest.fixture(scope="session")
def tiny_design():
    """``(config, data)`` of whole fine-tuning runs in seconds: 4 lanes, taps (8, 8), 4 classes,
    8 records of capacity; 8 training records, 12 test records (two evaluation chunks)."""
    cfg = DesignConfig.preset("tiny").replace(
        perturb={"lanes": 4, "pool_size": 64, "dimension": 64},
        cache={"taps": [8, 8], "classes": 4, "capacity": 8, "block_size": 8},
        mac={"taps": [8, 8], "classes": 4, "max_batch": 4},
        loss={"classes": 4},
        train={"batch": 4, "epochs": 2, "steps": 3, "eps_shift": 3, "zo_lr_shift": 6})
    return cfg, synthetic_data(cfg, 8, 12, seed=4)
