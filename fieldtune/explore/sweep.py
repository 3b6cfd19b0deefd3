"""A sweep: every point of a space evaluated on an :class:`~fieldtune.executor.Executor`.

:func:`sweep` hands each :class:`~fieldtune.explore.space.Point` to
:func:`fieldtune.explore.point.evaluate` on the executor's workers, shows a progress bar, and
returns the document ``fieldtune explore --json`` writes::

    {"space": NAME, "objectives": {...}, "points": [row, ...], "pareto": [index, ...],
     "cache_hits": N, "tool_runs": N, "wall_s": S, "workers": N, "executor": "..."}

Rows are in point order (``points[i]["index"] == i``), one per point whatever happened on
the workers: a worker lost mid-point is replaced and the point runs again; a point that
still fails becomes a row with the reason (``worker failure: ...``).
"""

import time
from functools import partial

from rich.progress import (Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from ..bench.perturb import add_ratios
from ..executor import JobFailure
from .pareto import pareto_front
from .point import evaluate, row_template


__all__ = ["sweep", "WORKER_FAILURE"]


#: ``error`` prefix of a point whose job failed on every attempt.
WORKER_FAILURE = "worker failure"


def sweep(space, executor, *, build="auto", keep=None, console=None, on_row=None):
    """Evaluate every point of ``space`` on ``executor``; returns the sweep document (see
    the module documentation). ``build``: the Fmax cache policy; ``keep``: a folder to keep
    each implementation's files in; ``on_row(row)`` is called as each point finishes."""
    points = space.points()
    start = time.perf_counter()
    rows = [None] * len(points)
    job = partial(evaluate, build=build, keep=keep)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False, disable=console is None) as progress:
        task = progress.add_task(f"explore {space.name}", total=len(points))
        for index, result in executor.map(job, points, name=f"explore-{space.name}"):
            if isinstance(result, JobFailure):
                failure, result = result, row_template(points[index])
                result["error"] = f"{WORKER_FAILURE}: {failure}"
            rows[index] = result
            if on_row is not None:
                on_row(result)
            progress.advance(task)
    if space.block == "perturb":
        add_ratios([r for r in rows if r.get("family")])   # PeZO LUTs/FFs vs the Gaussians
    return {
        "space": space.name,
        "description": space.description,
        "block": space.block,
        "objectives": dict(space.objectives),
        "run": space.run,
        "points": rows,
        "pareto": pareto_front(rows, space.objectives),
        "cache_hits": sum(1 for r in rows if r["cache_hit"]),
        "tool_runs": sum(1 for r in rows if r["tool_run"]),
        "wall_s": round(time.perf_counter() - start, 2),
        "workers": executor.workers,
        "executor": executor.describe(),
    }
