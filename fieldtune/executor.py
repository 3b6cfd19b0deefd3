"""Where fieldtune's independent jobs run: one machine or a Dask cluster.

Design-space sweeps (``fieldtune explore``) and the implementation benchmarks (``fieldtune
bench perturb/cache/mac/soc --workers N``) hand their jobs to an :class:`Executor`:

- ``Executor(workers=N)`` starts an embedded Dask ``LocalCluster`` of ``N`` worker processes
  (default: the machine's cores), one thread each, every worker with its own scratch folder
  (:func:`scratch_dir`) below a temporary directory removed on exit;
- ``Executor(scheduler="tcp://HOST:8786")`` connects to a running cluster (``dask scheduler``
  and ``dask worker`` on other machines; a worker needs only ``pip install fieldtune``, the
  tools are wheels);
- ``Executor(workers=0)`` runs every job in this process, one after the other (no Dask): the
  reference a parallel run must equal, and the easiest to debug.

Jobs are plain functions of one argument, shipped to the workers with cloudpickle. A worker
that dies mid-job (killed, out of memory) is replaced by its nanny and Dask runs the job again
elsewhere; :meth:`Executor.map` still yields every job exactly once. A job that fails with an
exception yields a :class:`JobFailure` in its place instead of ending the whole run.
"""

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

from dask.base import tokenize
from distributed import Client, LocalCluster, as_completed, get_worker

from .toolchain import usable_cores


__all__ = ["Executor", "JobFailure", "scratch_dir", "default_workers"]


def default_workers():
    """Worker processes of an embedded cluster when none are asked for: the usable cores."""
    return usable_cores()


def scratch_dir():
    """The scratch folder of the Dask worker running the calling job (its local directory),
    else the system's temporary folder (serial runs)."""
    try:
        return get_worker().local_directory
    except ValueError:                           # not in a worker
        return tempfile.gettempdir()


@dataclass(frozen=True)
class JobFailure:
    """A job that raised instead of returning: its exception's type and message."""
    error: str

    def __str__(self):
        return self.error


def _describe(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".rstrip(": ")


class Executor:
    """Runs jobs on an embedded LocalCluster, on a cluster at ``scheduler``, or serially
    (``workers=0``). Use as a context manager; see the module documentation."""

    #: How long to wait for a running cluster's scheduler to answer.
    connect_timeout = "20s"

    def __init__(self, workers=None, scheduler=None):
        if scheduler is not None and workers is not None:
            raise ValueError("give either --workers (an embedded cluster) or --scheduler "
                             "(a running cluster), not both")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 0):
            raise ValueError(f"--workers must be a non-negative integer, not {workers!r}")
        if scheduler is not None and not isinstance(scheduler, str):
            raise ValueError(f"--scheduler must be an address like tcp://HOST:8786, "
                             f"not {scheduler!r}")
        self.scheduler = scheduler
        self.requested = default_workers() if workers is None and scheduler is None else workers
        self.client = None
        self._cluster = None
        self._scratch = None

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self):
        if self.scheduler is None and self.requested == 0:
            return self
        try:
            if self.scheduler is not None:
                self.client = Client(self.scheduler, timeout=self.connect_timeout)
            else:
                self._scratch = tempfile.mkdtemp(prefix="fieldtune-workers-")
                self._cluster = LocalCluster(
                    n_workers=self.requested, threads_per_worker=1, processes=True,
                    local_directory=self._scratch, dashboard_address=":0",
                    silence_logs=logging.ERROR, host="127.0.0.1")
                self.client = Client(self._cluster)
        except OSError as error:
            self.__exit__(None, None, None)
            where = self.scheduler or "an embedded cluster"
            raise ValueError(f"cannot reach the Dask scheduler at {where}: {error}") from None
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        return False

    # -- facts ------------------------------------------------------------------------------

    @property
    def serial(self):
        return self.client is None

    @property
    def workers(self):
        """Workers now connected (1 for a serial executor)."""
        if self.client is None:
            return 1
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    @property
    def dashboard(self):
        """The Dask dashboard's address, or None when the scheduler serves none (it needs
        bokeh) or the run is serial."""
        if self.client is None:
            return None
        services = self.client.scheduler_info(n_workers=0).get("services", {})
        return self.client.dashboard_link if "dashboard" in services else None

    def describe(self):
        """One line saying where jobs run."""
        if self.client is None:
            return "serial: in this process"
        where = (f"cluster at {self.scheduler}" if self.scheduler
                 else f"embedded LocalCluster ({self._scratch})")
        text = f"{where}, {self.workers} workers"
        if self.dashboard:
            text += f", dashboard {self.dashboard}"
        return text

    def worker_pids(self):
        """``{worker address: process id}`` of the connected workers."""
        if self.client is None:
            return {}
        return self.client.run(os.getpid)

    # -- running ----------------------------------------------------------------------------

    def map(self, fn, items, *, name="job"):
        """Run ``fn(item)`` for every item; yields ``(index, result)`` as jobs finish, each
        index exactly once. A job that raises yields a :class:`JobFailure`."""
        items = list(items)
        if self.client is None:
            for i, item in enumerate(items):
                try:
                    yield i, fn(item)
                except Exception as error:      # noqa: BLE001 - reported as the job's result
                    yield i, JobFailure(_describe(error))
            return
        token = tokenize(os.getpid(), id(items), len(items))
        futures = {self.client.submit(fn, item, key=f"{name}-{i}-{token}", pure=False): i
                   for i, item in enumerate(items)}
        done = set()
        try:
            for future in as_completed(futures):
                i = futures[future]
                if i in done:                    # as_completed never repeats; be sure
                    continue
                done.add(i)
                try:
                    result = future.result()
                except Exception as error:      # noqa: BLE001 - e.g. KilledWorker
                    result = JobFailure(_describe(error))
                yield i, result
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()
