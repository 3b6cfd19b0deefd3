"""Plumbing shared by the whole test suite."""

import os
import shutil

import pytest

from fieldtune.sim.engines import registry


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
def require_engine():
    """``require_engine(name, why=...)``: skip the test with the reason a simulation engine of
    the registry cannot run here (a missing program, compiler or wheel); in CI, fail instead."""
    def require(name, *, why):
        reason = registry.get(name).unavailable()
        if reason is not None:
            if in_ci():
                pytest.fail(f"{reason}; {why}")
            pytest.skip(f"{reason}; {why}")
    return require
