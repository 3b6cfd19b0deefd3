"""A tiny space swept on a Dask LocalCluster over loopback with two worker processes, against
the same space run serially in this process: same rows, right front, a rerun from the cache
runs no tool, and a worker killed (by its own pid) mid-sweep costs nothing.

Real tools on small designs: three 2-lane LFSR perturbation engines on the UP5K (a few
hundred LUTs each), R1 with 20 zeroth-order steps."""

import os
import signal
import threading
import time

import pytest

from fieldtune.bench.perturb import variant_params
from fieldtune.bench.report import implement_all
from fieldtune.executor import Executor
from fieldtune.explore.space import parse_space
from fieldtune.explore.sweep import sweep
from fieldtune.rtl.perturb.engine import PerturbationEngine
from fieldtune.toolchain import tool_env


SPACE = {
    "base": "tiny",
    "block": "perturb",
    "objectives": {"luts": "min", "fmax_mhz": "max", "accuracy": "max"},
    "run": {"mode": "zo", "steps": 20},
    "fields": {"perturb": ["uniform-lfsr", "pezo-static-onthefly-lfsr", "pezo-static-lfsr"],
               "lanes": [2], "device": ["up5k"]},
}

#: Row keys that say where and how fast a point ran, not what it is.
BOOKKEEPING = {"worker", "seconds", "tool_run", "cache_hit", "fmax_source"}


def figures(doc):
    return [{k: v for k, v in row.items() if k not in BOOKKEEPING} for row in doc["points"]]


def _kill_a_busy_worker(executor, state):
    """Wait until a worker is evaluating a point, then kill that worker's process."""
    client = executor.client
    pids = executor.worker_pids()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not state.get("done"):
        busy = [addr for addr, keys in client.processing().items() if keys]
        if busy:
            time.sleep(2)                          # let it get into its tool run
            state["killed"] = pids[busy[0]]
            os.kill(pids[busy[0]], signal.SIGKILL)
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    space = parse_space(SPACE, name="test-tiny")
    out = {"space": space}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIELDTUNE_CACHE", str(tmp_path_factory.mktemp("serial-cache")))
        with Executor(workers=0) as serial:
            out["serial"] = sweep(space, serial)
        # Workers inherit the environment they are started with: their own empty cache.
        mp.setenv("FIELDTUNE_CACHE", str(tmp_path_factory.mktemp("cluster-cache")))
        with Executor(workers=2) as cluster:
            assert cluster.workers == 2
            assert len(set(cluster.worker_pids().values())) == 2
            state = {}
            killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, state))
            killer.start()
            out["cluster"] = sweep(space, cluster)
            state["done"] = True
            killer.join()
            out["killed"] = state.get("killed")
            out["rerun"] = sweep(space, cluster)
            out["pids_after"] = set(cluster.worker_pids().values())
    return out


def test_serial_run_has_every_figure(sweeps):
    doc = sweeps["serial"]
    assert [r["index"] for r in doc["points"]] == [0, 1, 2]
    for row in doc["points"]:
        assert row["error"] is None and row["fits"]
        assert 0 < row["luts"] < 5280 and row["fmax_mhz"] > 0 and 0 < row["accuracy"] <= 1
        assert row["tool_run"] and not row["cache_hit"]
    assert doc["tool_runs"] == 3 and doc["cache_hits"] == 0


def test_cluster_equals_serial(sweeps):
    assert figures(sweeps["cluster"]) == figures(sweeps["serial"])
    assert sweeps["cluster"]["pareto"] == sweeps["serial"]["pareto"]
    assert sweeps["cluster"]["workers"] == 2
    workers = {row["worker"] for row in sweeps["cluster"]["points"]}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)   # not run here


def test_front_is_the_undominated_fitting_points(sweeps):
    doc = sweeps["serial"]
    rows, objectives = doc["points"], doc["objectives"]

    def better_or_equal(a, b):
        return all((a[k] <= b[k]) if s == "min" else (a[k] >= b[k])
                   for k, s in objectives.items())

    def beats(a, b):
        return better_or_equal(a, b) and any(a[k] != b[k] for k in objectives)

    expected = [i for i, r in enumerate(rows)
                if not any(beats(o, r) for o in rows if o is not r)]
    assert doc["pareto"] == expected and expected


def test_rerun_from_the_cache_runs_no_tool(sweeps):
    rerun = sweeps["rerun"]
    assert rerun["tool_runs"] == 0 and rerun["cache_hits"] == 3
    assert figures(rerun) == figures(sweeps["serial"])


def test_worker_killed_mid_sweep_loses_nothing(sweeps):
    """Dask reschedules the killed worker's point; every point is there exactly once."""
    assert sweeps["killed"] is not None, "no worker was busy to be killed"
    doc = sweeps["cluster"]
    assert [r["index"] for r in doc["points"]] == list(range(len(sweeps["space"])))
    assert all(r["error"] is None for r in doc["points"])
    assert sweeps["killed"] not in sweeps["pids_after"]       # the nanny started a new one


def test_benchmark_tool_runs_use_the_executor():
    """``fieldtune bench ... --workers 2`` runs its implementations on two Dask worker
    processes; results come back keyed and in job order."""
    jobs = [((lanes,), (lambda p=variant_params("uniform-lfsr", lanes): PerturbationEngine(p)),
             "up5k", {}) for lanes in (2, 1)]
    results = implement_all(jobs, tool_env(), workers=2)
    assert list(results) == [(2,), (1,)]
    assert all(r.fits and r.fmax_mhz for r in results.values())
    assert results[(2,)].luts > results[(1,)].luts > 0
