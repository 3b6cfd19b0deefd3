"""The Pareto front of a sweep: the points no other point beats on every objective.

A point *dominates* another when it is at least as good on every objective and strictly
better on one (``"min"``: smaller is better, ``"max"``: larger). Only points that fit, have no
error and have every objective's figure take part; equal points are all on the front.
"""


__all__ = ["pareto_front", "dominates", "candidates"]


def dominates(a, b, objectives):
    """Whether row ``a`` dominates row ``b`` under ``objectives`` ({figure: "min"|"max"})."""
    better = False
    for key, sense in objectives.items():
        x, y = (a[key], b[key]) if sense == "min" else (-a[key], -b[key])
        if x > y:
            return False
        better = better or x < y
    return better


def candidates(rows, objectives):
    """Indices (into ``rows``) of the rows that can be on the front."""
    return [i for i, row in enumerate(rows)
            if row.get("fits") and row.get("error") is None
            and all(row.get(key) is not None for key in objectives)]


def pareto_front(rows, objectives):
    """Indices of the rows on the Pareto front, in row order."""
    pool = candidates(rows, objectives)
    return [i for i in pool
            if not any(dominates(rows[j], rows[i], objectives) for j in pool if j != i)]
