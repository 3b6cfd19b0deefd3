"""Shared plumbing of the benchmarks: running implementations with a progress bar, printing
tables and writing JSON reports."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn
from rich.table import Table

from ..boards.implement import implement


__all__ = ["implement_all", "emit", "table"]


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
        t.add_column(header, justify="left" if key in ("variant", "device", "family") else "right")
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
