"""``fieldtune bench engines``: every simulation engine on the training SoC, same R1 run.

One run of the SoC as the demo drives it: load R1's training records through the record
window, configure, start, wait for ``done``, read the status and dump the weights (a
:class:`~fieldtune.sim.soc_run.BusProgram`, the same script on every engine). Two lengths:

* the *check* run (``--check-records`` records, one epoch or a few steps) on every engine,
  Amaranth's simulator and Icarus included: every engine must return Amaranth's records and
  cycle count, bit for bit (``agrees``);
* the *speed* run (``--records`` records, ``--epochs`` first-order epochs or ``--steps``
  zeroth-order steps) on the engines that are not slow, ``--repeats`` times, interleaved
  (engine A, B, A, B...) so the machine's load hits them alike; medians are reported, and
  every repeat must return the first engine's records. Each repeat also runs the same job
  without its training run (loading and reading back only): the difference is the *training
  loop*'s cycles and CPU seconds (the native wait for ``done``, what the demo's runs are made
  of).

CPU seconds (this process plus its reaped children: compilers, Yosys, a simulator process)
are the basis of the speed comparison: on a shared machine wall time measures the neighbours.
Builds: ``cold`` into an empty model cache (``$FIELDTUNE_CACHE`` pointed at a temporary
folder: Yosys, code generation, compilation), ``warm`` a cache hit (what every later run pays),
each in CPU and wall seconds.

The verdict, ``fastest first run``, is what a user of ``fieldtune demo`` waits for on an empty
model cache, in wall-clock seconds on a 2-core machine (:func:`demo_estimates`): the cold
build's wall time (a build uses both cores) plus the demo's simulation at the speed run's
cycles per CPU second (the demo's FO run, shuffle20, and the two parts of its ZO run simulate
at the same time on the two cores: the longest part, or half of all cycles, decides). The
CPU-second totals (build plus both modes) are
reported beside it. The registry's order, and so the demo's default engine, follows the
verdict; the command says when the measurement disagrees with it. The build's wall time is
only fair on an idle machine: the load is printed beside the table.
"""

import os
import resource
import statistics
import tempfile
import time
from contextlib import contextmanager

from ..config import DesignConfig
from ..finetune import estimated_cycles, ZO_SPLIT
from ..rtl.sequencer import Mode
from ..sim.engines import registry
from ..sim.engines.hdl import CACHE_ENV
from ..sim.engines.script import EngineUnavailable
from ..sim.golden.schedule import DEFAULT_RUN, RUNS, run_epochs
from ..sim.golden.soc import RunConfig
from ..sim.scenario import r1_features
from ..sim.soc_data import records_of
from ..sim.soc_run import BusProgram, soc_component
from ..toolchain import tool_env
from .report import csv_list, emit


def add_arguments(parser):
    parser.add_argument("--preset", default=None,
                        help="design preset (default: the default design)")
    parser.add_argument("--engines", type=csv_list, default=list(registry.names()),
                        metavar="NAME,...",
                        help="engines to measure, comma-separated (default: all: "
                             f"{','.join(registry.names())})")
    parser.add_argument("--mode", choices=("fo", "zo"), default="fo",
                        help="the speed run's mode (default: %(default)s)")
    parser.add_argument("--records", type=int, default=256, metavar="N",
                        help="R1 records of the speed run (default: 256, the cache)")
    parser.add_argument("--epochs", type=int, default=20,
                        help="first-order epochs of the speed run (default: 20)")
    parser.add_argument("--steps", type=int, default=400,
                        help="zeroth-order steps of the speed run (default: 400)")
    parser.add_argument("--check-records", type=int, default=16, metavar="N",
                        help="R1 records of the check run every engine runs (default: 16)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="speed runs per engine, interleaved (default: 3)")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the cold builds (each compiles the SoC from scratch)")


def job(cfg, data, records, *, mode="fo", epochs=1, steps=1, train=True):
    """The bus program of one R1 run on ``records`` records (see the module docstring);
    without ``train``, the same loading and reading back with no training run between."""
    soc = soc_component(cfg)
    soc._MustUse__silence = True      # only its register map is used, it is not elaborated
    p = BusProgram(soc)
    f, z, y = records_of(data, "train")
    p.load_records(f[:records], z[:records], y[:records])
    t = cfg.train
    if train:
        p.configure(RunConfig(mode=(Mode.FO if mode == "fo" else Mode.ZO).value,
                              epochs=epochs, steps=steps, batch=min(t.batch, records),
                              lr_shift=t.lr_shift, eps_shift=t.eps_shift,
                              zo_lr_shift=t.zo_lr_shift, seed=t.seed, queries=t.queries,
                              watchdog=1 << 24))
        p.run(10**10, f"{mode.upper()} run")
    p.read_status()
    p.dump_weights(10**6)
    return p.script


def cpu_seconds():
    """CPU seconds of this process and of its children that have ended."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ru.ru_utime + ru.ru_stime


@contextmanager
def measured(into, key):
    """Wall and CPU seconds of the block, stored as ``into[key + "_s"]``/``[key + "_cpu_s"]``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    yield
    into[f"{key}_s"] = time.perf_counter() - wall
    into[f"{key}_cpu_s"] = cpu_seconds() - cpu


@contextmanager
def model_cache(folder):
    """``$FIELDTUNE_CACHE`` pointed at ``folder`` (None: unchanged) inside the block."""
    old = os.environ.get(CACHE_ENV)
    if folder is not None:
        os.environ[CACHE_ENV] = str(folder)
    try:
        yield
    finally:
        if folder is not None:
            if old is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = old


def run_job(engine, cfg, script, env, row):
    """Open a session (build from the cache), run ``script``; ``row`` gets open and run
    times. Returns the ScriptResult."""
    with measured(row, "open"):
        session = engine.session(soc_component(cfg), env=env)
        run = session.__enter__()
    try:
        with measured(row, "run"):
            result = run(script)
            session.__exit__(None, None, None)
            session = None
    finally:
        if session is not None:
            session.__exit__(None, None, None)
    return result


def measure(cfg, data, names, args, env, console):
    """Rows of the comparison (see the module docstring)."""
    check_script = job(cfg, data, args.check_records)
    speed_script = job(cfg, data, args.records, mode=args.mode, epochs=args.epochs,
                       steps=args.steps)
    frame_script = job(cfg, data, args.records, train=False)
    demo = cfg.replace(train={"epochs": run_epochs(RUNS[DEFAULT_RUN], cfg.train.epochs)})
    demo_cycles = {m: estimated_cycles(demo, m, data["n_finetune"]) for m in ("fo", "zo")}
    rows, reference, speed_reference = {}, None, None
    with tempfile.TemporaryDirectory(prefix="fieldtune-bench-engines-") as tmp:
        for name in names:
            engine = registry.get(name)
            reason = engine.unavailable()
            if reason is not None:
                console.print(f"[yellow]{name} skipped:[/yellow] {reason}")
                continue
            row = rows[name] = {"engine": name, "label": engine.label}
            cache = None if args.no_cold else os.path.join(tmp, name)
            with model_cache(cache):
                if cache is not None and engine.needs_yosys:    # Amaranth builds nothing
                    with console.status(f"{engine.label}: cold build"), measured(row, "cold"):
                        with engine.session(soc_component(cfg), env=env):
                            pass
                with console.status(f"{engine.label}: check run"):
                    check = run_job(engine, cfg, check_script, env, row)
            row["warm_s"], row["warm_cpu_s"] = row.pop("open_s"), row.pop("open_cpu_s")
            row["check_cycles"] = check.cycles
            if reference is None:
                reference = check
            row["agrees"] = (check.records, check.cycles) == (reference.records,
                                                              reference.cycles)
            if engine.slow:
                row.update(cycles=check.cycles, run_s=row.pop("run_s"),
                           run_cpu_s=row.pop("run_cpu_s"))
                row["repeats"] = [(row["run_s"], row["run_cpu_s"])]
            else:
                row.pop("run_s"), row.pop("run_cpu_s")
                row["repeats"] = []
        fast = [n for n in rows if not registry.get(n).slow]
        for k in range(args.repeats):
            for name in fast:
                row, times, frame = rows[name], {}, {}
                with model_cache(None if args.no_cold else os.path.join(tmp, name)):
                    with console.status(f"{row['label']}: speed run {k + 1}/{args.repeats}"):
                        result = run_job(registry.get(name), cfg, speed_script, env, times)
                        empty = run_job(registry.get(name), cfg, frame_script, env, frame)
                row["repeats"].append((times["run_s"], times["run_cpu_s"]))
                row.setdefault("loop", []).append(times["run_cpu_s"] - frame["run_cpu_s"])
                row["loop_cycles"] = result.cycles - empty.cycles
                row["cycles"] = result.cycles
                if speed_reference is None:
                    speed_reference = result
                row["agrees"] = row["agrees"] and (result.records, result.cycles) == (
                    speed_reference.records, speed_reference.cycles)
    for row in rows.values():
        wall = statistics.median(w for w, _ in row["repeats"])
        cpu = statistics.median(c for _, c in row["repeats"])
        row.update(run_s=wall, run_cpu_s=cpu, cycles_per_s=round(row["cycles"] / wall),
                   cycles_per_cpu_s=round(row["cycles"] / cpu))
        row.update(demo_estimates(row, demo_cycles))
        row["repeats"] = [[round(w, 3), round(c, 3)] for w, c in row["repeats"]]
        if row.get("loop"):
            row["loop_cpu_s"] = statistics.median(row.pop("loop"))
            row["loop_cycles_per_cpu_s"] = round(row["loop_cycles"] / row["loop_cpu_s"])
    return list(rows.values()), demo_cycles


def demo_estimates(row, demo_cycles):
    """The demo's first and later runs estimated from a row's measurements and the demo's
    ``demo_cycles`` (mode -> cycles): ``first_run_s``/``later_run_s``, wall seconds on two
    cores (the cold or warm build's wall time, then the runs side by side: FO and the ZO run's
    two parts, :data:`~fieldtune.finetune.ZO_SPLIT`; the longest part, or half of all, decides),
    and ``first_run_cpu_s``/``later_run_cpu_s``, CPU seconds (the build's, then every
    mode's). Without a cold build, the warm one stands for it."""
    speed = row["cycles_per_cpu_s"]
    parts = [share * c for m, c in demo_cycles.items()
             for share in ((ZO_SPLIT, 1 - ZO_SPLIT) if m == "zo" else (1,))]
    total = sum(demo_cycles.values()) / speed
    longest = max(max(parts) / speed, total / 2)
    return {"first_run_s": row.get("cold_s", row["warm_s"]) + longest,
            "later_run_s": row["warm_s"] + longest,
            "first_run_cpu_s": row.get("cold_cpu_s", row["warm_cpu_s"]) + total,
            "later_run_cpu_s": row["warm_cpu_s"] + total}


COLUMNS = [("engine", "engine"), ("cycles", "cycles"), ("run_cpu_s", "CPU s"),
           ("cycles_per_cpu_s", "cycles/CPU s"),
           ("loop_cycles_per_cpu_s", "training loop cycles/CPU s"), ("run_s", "wall s"),
           ("cycles_per_s", "cycles/s"), ("cold_cpu_s", "cold build CPU s"),
           ("cold_s", "cold build s"), ("warm_cpu_s", "warm CPU s"), ("warm_s", "warm s"),
           ("first_run_s", "demo, first run s (2 cores)"),
           ("later_run_s", "demo, later runs s (2 cores)"),
           ("first_run_cpu_s", "demo, first run CPU s"),
           ("later_run_cpu_s", "demo, later runs CPU s"), ("agrees", "agrees")]


def run(args, console):
    cfg = DesignConfig.preset(args.preset) if args.preset else DesignConfig()
    names = args.engines
    for name in names:
        registry.get(name)
    for what, value in (("--records", args.records), ("--check-records", args.check_records)):
        if not 1 <= value <= cfg.cache.capacity:
            raise ValueError(f"{what} must be an integer from 1 to {cfg.cache.capacity} "
                             f"(cache.capacity), not {value}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be a positive integer, not {args.repeats}")
    env = tool_env("YOSYS")
    load_before = os.getloadavg()
    rows, demo_cycles = measure(cfg, r1_features(30), names, args, env, console)
    if not rows:
        raise EngineUnavailable("no engine could run")
    load = [round(a, 2) for a in (*load_before, *os.getloadavg())]
    order = [r["engine"] for r in sorted(rows, key=lambda r: r["first_run_s"])]
    fastest = order[0]
    what = (f"FO, {args.epochs} epochs" if args.mode == "fo" else f"ZO, {args.steps} steps")
    emit("engines", rows, COLUMNS, json_path=args.json, console=console,
         title=f"Simulation engines on the SoC: R1 {what} on {args.records} records "
               f"(slow engines: the {args.check_records}-record check run); medians of "
               f"{args.repeats}", extra={"load_before_after": load, "demo_cycles": demo_cycles,
                                         "fastest_first_run": fastest, "order": order})
    console.print(f"load average (1, 5, 15 min) before {load[:3]}, after {load[3:]}; demo: "
                  f"FO {demo_cycles['fo']:,} + ZO {demo_cycles['zo']:,} cycles (estimated); "
                  f"fastest first run (wall, 2 cores): {fastest}; registry order "
                  f"{', '.join(registry.names())}")
    default = registry.default_engine()
    if default in order and order.index(default) > 0:
        console.print(f"[yellow]note:[/yellow] the demo's default ({default}, the registry's "
                      f"first engine, docs/benchmarks.md) was not the fastest in this "
                      f"measurement; under load, wall times also measure the neighbours")
    return rows
