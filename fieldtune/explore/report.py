"""Showing a sweep: the table of every point, the front, the JSON document, the plot."""

import json
from pathlib import Path

from rich.table import Table

from ..cli_common import pyplot


__all__ = ["points_table", "front_table", "write_json", "plot_front", "FIGURES"]


#: Row key -> (column header, format).
FIGURES = {
    "device": ("device", "{}"),
    "fits": ("fits", "{}"),
    "luts": ("LUT", "{:,}"),
    "dsps": ("DSP", "{}"),
    "brams": ("BRAM", "{}"),
    "fmax_mhz": ("Fmax MHz", "{:.1f}"),
    "accuracy": ("accuracy", "{:.1%}"),
    "projected_time_s": ("time s", "{:.3g}"),
    "lut_ratio": ("LUT/gauss", "{:.2f}"),
    "ff_ratio": ("FF/gauss", "{:.2f}"),
}


def _cell(key, value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return FIGURES[key][1].format(value) if key in FIGURES else str(value)


def _config_keys(rows):
    keys = []
    for row in rows:
        keys.extend(k for k in row["config"] if k not in keys)
    return keys


def points_table(doc, *, rows=None, title=None):
    """Every point (or ``rows``): its varied fields, figures, front mark and error."""
    rows = doc["points"] if rows is None else rows
    front = set(doc["pareto"])
    config_keys = [k for k in _config_keys(rows) if k != "device"]
    # a figure no point has (a block's projected time, a ratio) gets no column
    figures = [k for k in FIGURES if any(r.get(k) is not None for r in doc["points"])]
    t = Table(title=title or f"fieldtune explore {doc['space']}: {len(doc['points'])} points, "
                             f"{len(front)} on the front")
    t.add_column("#", justify="right")
    t.add_column("front")
    for key in config_keys:
        t.add_column(key)
    for key in figures:
        t.add_column(FIGURES[key][0], justify="left" if key == "device" else "right")
    t.add_column("error / note", overflow="fold")
    for row in rows:
        t.add_row(str(row["index"]), "*" if row["index"] in front else "",
                  *(str(row["config"].get(k, "")) for k in config_keys),
                  *(_cell(k, row.get(k)) for k in figures),
                  row.get("error") or row.get("note") or "")
    return t


def front_table(doc):
    """The points on the front, best first by the first objective."""
    first, sense = next(iter(doc["objectives"].items()))
    rows = [doc["points"][i] for i in doc["pareto"]]
    rows.sort(key=lambda r: r[first], reverse=sense == "max")
    senses = ", ".join(f"{k} {v}" for k, v in doc["objectives"].items())
    return points_table(doc, rows=rows, title=f"Pareto front ({senses})")


def write_json(doc, path):
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def plot_front(doc, path):
    """A scatter plot of the sweep's first two objectives, the front joined by a line, the
    third objective (if any) as the colour. Needs matplotlib (``pip install
    'fieldtune[plot]'``); ValueError when it is missing."""
    plt = pyplot()
    objectives = list(doc["objectives"].items())
    if len(objectives) < 2:
        raise ValueError("--plot needs a space with at least two objectives")
    (x, xs), (y, ys) = objectives[:2]
    colour = objectives[2][0] if len(objectives) > 2 else None
    usable = [r for r in doc["points"] if r.get(x) is not None and r.get(y) is not None
              and r.get("fits") and r.get("error") is None]
    front = sorted((doc["points"][i] for i in doc["pareto"]), key=lambda r: r[x])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if usable:
        c = [r.get(colour) for r in usable] if colour else None
        if c is not None and any(v is None for v in c):
            c = None
        sc = ax.scatter([r[x] for r in usable], [r[y] for r in usable], c=c, s=28,
                        alpha=0.8, label="points", **({"cmap": "viridis"} if c else {}))
        if c is not None:
            fig.colorbar(sc, ax=ax, label=f"{colour} ({doc['objectives'][colour]})")
    if front:
        ax.plot([r[x] for r in front], [r[y] for r in front], "o--", color="crimson",
                mfc="none", ms=10, label="Pareto front")
        for r in front:
            ax.annotate(str(r["index"]), (r[x], r[y]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{x} ({xs})")
    ax.set_ylabel(f"{y} ({ys})")
    ax.set_title(f"fieldtune explore {doc['space']}: {len(usable)} of {len(doc['points'])} "
                 f"points usable, {len(front)} on the front", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
