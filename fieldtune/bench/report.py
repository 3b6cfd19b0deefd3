"""Shared plumbing of the benchmarks: running implementations with a progress bar, printing
tables and writing JSON reports."""

import fnmatch
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn
from rich.table import Table

from ..boards.implement import implement


__all__ = ["implement_all", "emit", "table", "csv_list", "add_variant_arguments",
           "select_variants"]


def implement_all(jobs, env, *, console=None, workers=2, description="implementing"):
    """Implement many blocks, ``workers`` tool runs at a time, with a progress bar.

    ``jobs`` is a list of ``(key, make_dut, device, kwargs)``; ``make_dut()`` builds a fresh
    component (components cannot be shared between elaborations). Returns ``{key:
    Implementation}`` in the order of ``jobs``.
    """
    console = console or Console(stderr=True)
    results = {}
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(description, total=len(jobs))

        def one(job):
            key, make_dut, device, kwargs = job
            try:
                return key, implement(make_dut(), device, env, **kwargs)
            finally:
                progress.advance(task)

        # The tools run as subprocesses, so threads are enough to keep both cores busy.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for key, impl in pool.map(one, jobs):
                results[key] = impl
    return results


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
    parser.add_argument("--workers", type=int, default=2,
                        help="tool runs in parallel (default: 2; each is CPU bound)")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep each run's files (RTLIL, logs, reports) under DIR")


def select_variants(patterns, names):
    """The ``names`` matching any shell pattern of ``patterns``, in order; ValueError if none."""
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"--variants {','.join(patterns)} matches no variant; variants are "
                         f"{', '.join(names)}")
    return chosen
