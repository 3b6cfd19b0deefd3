"""The shared executor without tools: serial runs, a running cluster reached by its
address, failures as results (the tool-running sweeps are in test_explore_cluster.py)."""

import logging
import os

import pytest
from distributed import LocalCluster

from fieldtune.executor import Executor, JobFailure, default_workers, scratch_dir


def square_or_fail(x):
    if x == 3:
        raise RuntimeError("three is right out\nsecond line")
    return x * x, os.getpid(), scratch_dir()


def test_serial_runs_in_this_process_in_order():
    with Executor(workers=0) as executor:
        assert executor.serial and executor.workers == 1 and executor.dashboard is None
        assert executor.describe() == "serial: in this process"
        results = list(executor.map(square_or_fail, range(5)))
    assert [i for i, _ in results] == [0, 1, 2, 3, 4]
    assert results[2][1][:2] == (4, os.getpid())
    assert results[3][1] == JobFailure("RuntimeError: second line")


def test_running_cluster_by_address():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        with Executor(scheduler=cluster.scheduler_address) as executor:
            assert not executor.serial and executor.workers == 1
            assert executor.describe().startswith(f"cluster at {cluster.scheduler_address}, "
                                                  f"1 workers")
            results = dict(executor.map(square_or_fail, range(5)))
    assert sorted(results) == [0, 1, 2, 3, 4]                 # each job exactly once
    assert results[4][0] == 16 and isinstance(results[3], JobFailure)
    assert results[4][2] != scratch_dir()                     # the worker's own folder


def test_unreachable_scheduler_is_one_error(monkeypatch):
    monkeypatch.setattr(Executor, "connect_timeout", "1s")
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at "
                                         "tcp://127.0.0.1:9"):
        with Executor(scheduler="tcp://127.0.0.1:9"):
            pass


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": -1}, "--workers must be a non-negative integer, not -1"),
    ({"workers": 2, "scheduler": "tcp://h:8786"}, "give either --workers"),
    ({"scheduler": 8786}, "--scheduler must be an address like tcp://HOST:8786, not 8786"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Executor(**kwargs)


def test_default_is_one_worker_per_core():
    assert Executor().requested == default_workers() >= 1
