"""Shared plumbing of the benchmarks: running implementations with a progress bar, printing
tables and writing JSON reports."""

import fnmatch
import json
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn
from rich.table import Table

from ..boards.implement import implement
from ..executor import Executor, JobFailure
from ..toolchain import tool_env


__all__ = ["implement_all", "emit", "table", "csv_list", "add_variant_arguments",
           "add_executor_arguments", "select_variants"]


def implement_all(jobs, env, *, console=None, workers=2, scheduler=None,
                  description="implementing"):
    """Implement many blocks with a progress bar, on the executor every benchmark shares
    (:class:`fieldtune.executor.Executor`): ``workers`` tool runs at a time on an embedded
    Dask cluster (1: one after the other in this process), or on the cluster at
    ``scheduler``.

    ``jobs`` is a list of ``(key, make_dut, device, kwargs)``; ``make_dut()`` builds a fresh
    component (components cannot be shared between elaborations). Returns ``{key:
    Implementation}`` in the order of ``jobs``; RuntimeError when a tool run fails.
    """
    console = console or Console(stderr=True)
    results = {}
    executor = Executor(workers=None if scheduler else (workers if workers > 1 else 0),
                        scheduler=scheduler)
    # A remote worker finds its own tools; this machine's paths mean nothing there.
    job = partial(_implement_job, env=None if scheduler else env)
    with executor, Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                            transient=False) as progress:
        task = progress.add_task(description, total=len(jobs))
        for index, impl in executor.map(job, jobs, name="implement"):
            if isinstance(impl, JobFailure):
                raise RuntimeError(f"implementing {jobs[index][0]} failed: {impl}")
            results[jobs[index][0]] = impl
            progress.advance(task)
    return {job[0]: results[job[0]] for job in jobs}


def _implement_job(job, env):
    _, make_dut, device, kwargs = job
    return implement(make_dut(), device, env if env is not None else tool_env(), **kwargs)


def table(title, rows, columns):
    """A rich table of ``rows`` (dicts) showing ``columns`` [(key, header)]."""
    t = Table(title=title)
    for key, header in columns:
        t.add_column(header, justify="left" if key in ("variant", "device", "family", "method",
                                                   "where", "fmax_source") else "right")
    for row in rows:
        cells = []
        for key, _ in columns:
            v = row.get(key)
            if v is None:
                cells.append("-")
            elif isinstance(v, bool):
                cells.append("yes" if v else "NO")
            elif isinstance(v, float):
                cells.append(f"{v:.2f}")
            else:
                cells.append(str(v))
        t.add_row(*cells)
    return t


def emit(name, rows, columns, *, json_path=None, console=None, title=None, extra=None):
    """Print the table and, with ``json_path``, write ``{"bench": name, "rows": rows, ...}``."""
    console = console or Console()
    console.print(table(title or f"fieldtune bench {name}", rows, columns))
    if json_path:
        doc = {"bench": name, "rows": rows, **(extra or {})}
        Path(json_path).write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def csv_list(text):
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (argparse type of comma-separated options)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def add_variant_arguments(parser, devices, devices_help, example):
    """The options every variant benchmark shares: ``--devices``, ``--variants`` (names or
    shell patterns, ``example`` shows one), ``--list``, ``--workers``, ``--workdir``."""
    parser.add_argument("--devices", type=csv_list, default=list(devices), metavar="DEV,...",
                        help=f"devices: {devices_help} (default: all)")
    parser.add_argument("--variants", type=csv_list, default=["*"], metavar="PATTERN,...",
                        help=f"variant names or shell patterns, e.g. {example!r} (default: all; "
                             "--list shows them)")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    add_executor_arguments(parser)
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep each run's files (RTLIL, logs, reports) under DIR")


def add_executor_arguments(parser, flag="--workers"):
    """``--workers N`` (tool runs in parallel on an embedded Dask cluster) and ``--scheduler
    ADDRESS`` (run them on a running Dask cluster instead)."""
    parser.add_argument(flag, dest=flag.lstrip("-"), type=int, default=2, metavar="N",
                        help="tool runs in parallel, each a Dask worker process (default: 2; "
                             "each is CPU bound; 1 runs them one by one in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the tool runs on a running Dask cluster, e.g. "
                             "tcp://HOST:8786 (see docs/explore.md)")


def select_variants(patterns, names):
    """The ``names`` matching any shell pattern of ``patterns``, in order; ValueError if none."""
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"--variants {','.join(patterns)} matches no variant; variants are "
                         f"{', '.join(names)}")
    return chosen
