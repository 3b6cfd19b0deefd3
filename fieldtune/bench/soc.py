"""``fieldtune bench soc``: the training SoC's simulation speed, R1 cycle counts and resources.

Three measurements, one run:

* engines: the same bus script (records loaded through the record window, then a first-order
  run waited for natively) on Amaranth's Python simulator and on CXXRTL, cycles per second of
  each and the ratio, measured in the same run on this machine; CXXRTL also runs a whole R1
  epoch (its build time is reported apart, 0 on a cache hit);
* R1 on CXXRTL, for the ``up5k`` and ``ecp5-85f`` presets: cycles of a first-order run
  (``--epochs``, default 10) and of a zeroth-order run at the design's step budget
  (``--steps``, default ``train.steps``), with the device's test accuracy;
* resources: each preset's SoC implemented on its device (UP5K, ECP5-85F), and the
  fine-tuning time its cycle counts take at the post-route Fmax.
"""

import time

from ..config import DesignConfig
from ..sim.engines import cxxrtl
from ..sim.engines.script import run_amaranth
from ..sim.golden.soc import RunConfig
from ..sim.scenario import r1_features
from ..sim.soc_run import BusProgram, records_of, run_finetune, soc_component
from ..rtl.sequencer import Mode
from ..toolchain import tool_env
from .report import emit, implement_all, table


#: (preset, device) pairs implemented.
TARGETS = (("up5k", "up5k"), ("ecp5-85f", "ecp5-85f"))


def add_arguments(parser):
    parser.add_argument("--preset", default=None,
                        help="design preset of the simulations (default: the default design)")
    parser.add_argument("--amaranth-records", type=int, default=4, metavar="N",
                        help="records of the engine comparison's first-order run (default: 4)")
    parser.add_argument("--epochs", type=int, default=10, help="R1 first-order epochs")
    parser.add_argument("--steps", type=int, default=None,
                        help="R1 zeroth-order steps (default: the design's train.steps)")
    parser.add_argument("--no-implement", action="store_true",
                        help="skip synthesis and place and route")
    parser.add_argument("--jobs", type=int, default=2, help="implementations at a time")


def speed_script(soc, data, n):
    """Load ``n`` R1 records over the bus, run one first-order epoch, wait for done."""
    p = BusProgram(soc)
    f, z, y = records_of(data, "train")
    p.load_records(f[:n], z[:n], y[:n])
    p.configure(RunConfig(mode=Mode.FO.value, epochs=1, batch=min(16, n), lr_shift=4,
                          watchdog=1 << 20))
    p.run(10**9, "FO run")
    return p


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run(args, console):
    cfg = DesignConfig.preset(args.preset) if args.preset else DesignConfig()
    env = tool_env("YOSYS")
    data = r1_features(30)
    rows = []

    # -- engines --
    with console.status("Amaranth's simulator on the SoC"):
        script = speed_script(soc_component(cfg), data, args.amaranth_records).script
        ref, seconds = _timed(lambda: run_amaranth(soc_component(cfg), script))
    base = ref.cycles / seconds
    rows.append({"what": "Amaranth simulator", "cycles": ref.cycles, "seconds": seconds,
                 "cycles_per_s": round(base), "ratio": 1.0})
    with console.status("compiling the SoC with CXXRTL"):
        model, build_s = _timed(lambda: cxxrtl.build(soc_component(cfg), env=env))
    with model.simulate() as sim:
        same, seconds = _timed(lambda: sim.run(script))
    agrees = same.records == ref.records and same.cycles == ref.cycles
    rows.append({"what": "CXXRTL, same script", "cycles": same.cycles, "seconds": seconds,
                 "cycles_per_s": round(same.cycles / seconds),
                 "ratio": same.cycles / seconds / base, "agrees": agrees, "build_s": build_s})
    soc = soc_component(cfg)
    soc._MustUse__silence = True
    with model.simulate() as sim:
        load = BusProgram(soc)
        load.load_records(*records_of(data, "train"))
        sim.run(load.script)
        start = BusProgram(soc)
        start.configure(RunConfig(mode=Mode.FO.value, epochs=1, batch=16, lr_shift=4,
                                  watchdog=1 << 20))
        start.write_reg("control", start=1)
        sim.run(start.script)
        cycles, seconds = _timed(lambda: sim.wait("done", 1, 10**9))
    rows.append({"what": "CXXRTL, R1 epoch (native wait)", "cycles": cycles, "seconds": seconds,
                 "cycles_per_s": round(cycles / seconds), "ratio": cycles / seconds / base})
    emit("soc", rows, [("what", "what"), ("cycles", "cycles"), ("seconds", "s"),
                       ("cycles_per_s", "cycles/s"), ("ratio", "× Amaranth"),
                       ("agrees", "agrees"), ("build_s", "build s")],
         console=console, title=f"SoC simulation speed ({'default' if not args.preset else args.preset} design)")

    # -- R1 runs, per target preset --
    runs = []
    for preset, _ in TARGETS:
        pcfg = DesignConfig.preset(preset)
        for mode, amount in (("fo", args.epochs), ("zo", args.steps or pcfg.train.steps)):
            with console.status(f"R1 {mode.upper()} on CXXRTL ({preset})"):
                r, seconds = _timed(lambda: run_finetune(
                    pcfg, data, mode=mode, engine="cxxrtl", env=env,
                    epochs=amount, steps=amount, eval_every=amount))
            runs.append({"preset": preset, "mode": mode, "amount": amount, "cycles": r.cycles,
                         "cycles_per_unit": r.cycles // amount, "eval_cycles": r.eval_cycles,
                         "accuracy": r.accuracy, "wall_s": seconds,
                         "sim_cycles_per_s": round(r.sim_cycles_per_second or 0)})
    console.print(table("R1 on the simulated SoC (CXXRTL)", runs,
                        [("preset", "preset"), ("mode", "mode"), ("amount", "epochs/steps"),
                         ("cycles", "cycles"), ("cycles_per_unit", "cycles/epoch or step"),
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
        emit("soc", rows, [("what", "what")], json_path=args.json, console=console,
             extra={"r1": runs, "implementations": impl_rows})
    return rows + runs + impl_rows
