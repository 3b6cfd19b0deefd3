"""``fieldtune bench soc``: the training SoC's simulation speed, R1 cycle counts and resources.

Three measurements, one run:

* engines: a first-order run on ``--amaranth-records`` R1 records, loaded through the record
  window and waited for natively, on Amaranth's Python simulator and on CXXRTL. Amaranth's
  time is the whole script's minus that of the loading script alone, CXXRTL's is its native
  wait for ``done``, so cycles per second and their ratio are the run's (same machine, same
  minute); both engines must return the same records and cycles (``agrees``). Wall and CPU
  time are both reported: on a shared machine the CPU-time ratio is the steadier one. CXXRTL
  also runs a whole R1 epoch. The model's build time is reported (a cache hit unless
  ``--cold``, which builds into a fresh temporary cache; ``--cxxflags`` compares compiler
  flags);
* R1 on CXXRTL, for the ``up5k`` and ``ecp5-85f`` presets: cycles of a first-order run
  (``--epochs``, default 10) and of a zeroth-order run at the design's step budget
  (``--steps``, default ``train.steps``), with the device's test accuracy (``--no-r1`` skips);
* resources: each preset's SoC implemented on its device (UP5K, ECP5-85F), and the
  fine-tuning time its cycle counts take at the post-route Fmax (``--no-implement`` skips).
"""

import tempfile
import time
from contextlib import nullcontext

from ..config import DesignConfig
from ..sim.engines import cxxrtl
from ..sim.engines.script import run_amaranth
from ..sim.golden.soc import RunConfig
from ..sim.scenario import r1_features
from ..sim.soc_run import BusProgram, records_of, run_finetune, soc_component
from ..rtl.sequencer import Mode
from ..rtl.csr.map import SocMap
from ..toolchain import tool_env
from .report import emit, implement_all, table


#: (preset, device) pairs implemented.
TARGETS = (("up5k", "up5k"), ("ecp5-85f", "ecp5-85f"))

#: The issue's target: CXXRTL at least this many times Amaranth's cycles/s on the SoC.
TARGET_RATIO = 1000

#: Records of the R1 epoch CXXRTL also runs (the cache's R1 contents).
EPOCH_RECORDS = 256


def add_arguments(parser):
    parser.add_argument("--preset", default=None,
                        help="design preset of the simulations (default: the default design)")
    parser.add_argument("--amaranth-records", type=int, default=16, metavar="N",
                        help="records of the engine comparison's first-order run (default: 16)")
    parser.add_argument("--cold", action="store_true",
                        help="build the CXXRTL model into a fresh temporary cache (cold build "
                             "time) instead of using the model cache")
    parser.add_argument("--cxxflags", default=" ".join(cxxrtl.DEFAULT_CXXFLAGS),
                        help="compiler flags of the model in the engine comparison "
                             f"(default: {' '.join(cxxrtl.DEFAULT_CXXFLAGS)})")
    parser.add_argument("--epochs", type=int, default=10, help="R1 first-order epochs")
    parser.add_argument("--steps", type=int, default=None,
                        help="R1 zeroth-order steps (default: the design's train.steps)")
    parser.add_argument("--no-r1", action="store_true", help="skip the R1 runs")
    parser.add_argument("--no-implement", action="store_true",
                        help="skip synthesis and place and route")
    parser.add_argument("--jobs", type=int, default=2, help="implementations at a time")


def fo_program(cfg, data, n):
    """A bus program that loads ``n`` R1 records and configures one first-order epoch (batch
    16, or ``n`` if fewer)."""
    p = BusProgram(SocMap(cfg))       # the register map as data: no SoC is built
    f, z, y = records_of(data, "train")
    p.load_records(f[:n], z[:n], y[:n])
    p.configure(RunConfig(mode=Mode.FO.value, epochs=1, batch=min(16, n), lr_shift=4,
                          watchdog=1 << 20))
    return p


def _timed(fn):
    """``(fn(), wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def _speed_row(what, cycles, wall, cpu, base=None):
    row = {"what": what, "cycles": cycles, "seconds": wall, "cpu_seconds": cpu,
           "cycles_per_s": round(cycles / wall), "cycles_per_cpu_s": round(cycles / cpu)}
    if base is not None:
        row["ratio"] = row["cycles_per_s"] / base["cycles_per_s"]
        row["cpu_ratio"] = row["cycles_per_cpu_s"] / base["cycles_per_cpu_s"]
    return row


def engine_speed(cfg, data, n, *, env, cxxflags, cold, console):
    """Rows of the engine comparison (see the module docstring)."""
    with (tempfile.TemporaryDirectory(prefix="fieldtune-bench-soc-") if cold
          else nullcontext(None)) as cache:
        with console.status("compiling the SoC with CXXRTL" + (" (cold)" if cold else "")):
            model, build_s, _ = _timed(lambda: cxxrtl.build(
                soc_component(cfg), env=env, cxxflags=cxxflags, cache=cache))
        return _compare(model, build_s, cfg, data, n, cxxflags=cxxflags, cold=cold,
                        console=console)


def _compare(model, build_s, cfg, data, n, *, cxxflags, cold, console):
    def amaranth(run):
        p = fo_program(cfg, data, n)
        if run:
            p.run(10**9, "FO run")
        return _timed(lambda: run_amaranth(soc_component(cfg), p.script))

    with console.status(f"Amaranth's simulator on the SoC ({n} records, twice)"):
        (load, t0, c0), (full, t1, c1) = amaranth(False), amaranth(True)
    base = _speed_row(f"Amaranth simulator: FO run on {n} records", full.cycles - load.cycles,
                      t1 - t0, c1 - c0)
    base.update(ratio=1.0, cpu_ratio=1.0)

    def same_run():
        """The whole of Amaranth's script on CXXRTL: the same records and cycles?"""
        p = fo_program(cfg, data, n)
        p.run(10**9, "FO run")
        with model.simulate() as sim:
            got = sim.run(p.script)
        return got.records == full.records and got.cycles == full.cycles

    def native_wait(records):
        """CXXRTL: load and start untimed, then the native wait for done, timed."""
        p = fo_program(cfg, data, records)
        p.write_reg("control", start=1)
        with model.simulate() as sim:
            sim.run(p.script)
            cycles, wall, cpu = _timed(lambda: sim.wait("done", 1, 10**9))
        return _speed_row("", cycles, wall, cpu, base)

    with console.status("CXXRTL on the SoC"):
        row = native_wait(n)
        row.update(what=f"CXXRTL {' '.join(cxxflags)}: the same run", agrees=same_run(),
                   build_s=build_s, build="cold" if cold else "cache")
        epoch = native_wait(EPOCH_RECORDS)
        epoch["what"] = f"CXXRTL: R1 epoch, {EPOCH_RECORDS} records"
    return [base, row, epoch]


SPEED_COLUMNS = [("what", "what"), ("cycles", "cycles"), ("seconds", "s"),
                 ("cycles_per_s", "cycles/s"), ("ratio", "× Amaranth"),
                 ("cpu_seconds", "CPU s"), ("cycles_per_cpu_s", "cycles/CPU s"),
                 ("cpu_ratio", "× (CPU)"), ("agrees", "agrees"), ("build_s", "build s")]


def run(args, console):
    cfg = DesignConfig.preset(args.preset) if args.preset else DesignConfig()
    env = tool_env("YOSYS")
    data = r1_features(30)
    rows = engine_speed(cfg, data, args.amaranth_records, env=env,
                        cxxflags=tuple(args.cxxflags.split()), cold=args.cold, console=console)
    ratio = rows[1]["ratio"]
    console.print(table("SoC simulation speed (same run, same machine)", rows, SPEED_COLUMNS))
    console.print(f"CXXRTL / Amaranth: {ratio:.0f}× wall, {rows[1]['cpu_ratio']:.0f}× CPU; "
                  f"target ≥ {TARGET_RATIO:,}×: {'met' if ratio >= TARGET_RATIO else 'not met'}")

    # -- R1 runs, per target preset --
    runs = []
    for preset, _ in (() if args.no_r1 else TARGETS):
        pcfg = DesignConfig.preset(preset)
        for mode, amount in (("fo", args.epochs), ("zo", args.steps or pcfg.train.steps)):
            with console.status(f"R1 {mode.upper()} on CXXRTL ({preset})"):
                r, seconds, _ = _timed(lambda: run_finetune(
                    pcfg, data, mode=mode, engine="cxxrtl", env=env,
                    epochs=amount, steps=amount, eval_every=amount))
            runs.append({"preset": preset, "mode": mode, "amount": amount, "cycles": r.cycles,
                         "cycles_per_unit": r.cycles // amount, "eval_cycles": r.eval_cycles,
                         "accuracy": r.accuracy, "wall_s": seconds,
                         "sim_cycles_per_s": round(r.sim_cycles_per_second or 0)})
    if runs:
        console.print(table("R1 on the simulated SoC (CXXRTL)", runs,
                            [("preset", "preset"), ("mode", "mode"),
                             ("amount", "epochs/steps"), ("cycles", "cycles"),
                             ("cycles_per_unit", "cycles/epoch or step"),
                             ("eval_cycles", "eval cycles"), ("accuracy", "test accuracy"),
                             ("wall_s", "wall s"), ("sim_cycles_per_s", "cycles/s")]))

    # -- resources and projected times --
    impl_rows = []
    if not args.no_implement:
        jobs = [(device, lambda p=preset: soc_component(DesignConfig.preset(p)), device,
                 {"spram": DesignConfig.preset(preset).cache.memory == "spram"})
                for preset, device in TARGETS]
        impls = implement_all(jobs, tool_env(), console=console, workers=args.jobs,
                              description="implementing the SoC")
        for preset, device in TARGETS:
            i = impls[device]
            row = {"device": device, "preset": preset, "fits": i.fits, "luts": i.luts,
                   "ffs": i.ffs, "brams": i.brams, "sprams": getattr(i, "sprams", None),
                   "dsps": i.dsps, "fmax_mhz": i.fmax_mhz}
            for r in runs:
                if r["preset"] == preset:
                    row[f"{r['mode']}_ms"] = (r["cycles"] / (i.fmax_mhz * 1e3)
                                              if i.fmax_mhz else None)
            impl_rows.append(row)
        console.print(table("The SoC implemented; R1 time = its preset's cycles / Fmax",
                            impl_rows,
                            [("device", "device"), ("preset", "preset"), ("fits", "fits"),
                             ("luts", "LUTs"), ("ffs", "FFs"), ("brams", "BRAM"),
                             ("sprams", "SPRAM"), ("dsps", "DSP"), ("fmax_mhz", "Fmax MHz"),
                             ("fo_ms", "FO ms"), ("zo_ms", "ZO ms")]))
    if args.json:
        emit("soc", rows, SPEED_COLUMNS, json_path=args.json, console=console,
             title="SoC simulation speed (repeated for the JSON)",
             extra={"r1": runs, "implementations": impl_rows})
    return rows + runs + impl_rows
