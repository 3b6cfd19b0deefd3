"""``fieldtune bench engines``: simulation speed of every engine on the self-check design.

Each engine runs the same script on :class:`~fieldtune.sim.engines.selfcheck.MixPipeline`:
write the registers, start, stream items at full rate and wait for ``done`` (the shape of a
fine-tuning run on the SoC), then read the checksum. Cycles per second exclude compilation
(reported apart: ``build_s``, 0 on a cache hit); ``vs_amaranth`` is the ratio to Amaranth's
Python simulator running the same script, measured in the same run. ``amaranth-until`` is
Amaranth's fastest idiom for the wait (``ctx.tick().until(done)``), for reference. Each compiled
engine also repeats the Amaranth run's length and must return the same checksum (``agrees``).
"""

import time

from ..sim.engines import cxxrtl, hdl
from ..sim.engines.script import EngineUnavailable, Script, run_amaranth
from ..sim.engines.selfcheck import MixPipeline, pack_lanes
from ..toolchain import tool_env
from .report import emit


def add_arguments(parser):
    parser.add_argument("--amaranth-items", type=int, default=20_000, metavar="N",
                        help="items streamed on Amaranth's simulator (default: 20000)")
    parser.add_argument("--cxxrtl-items", type=int, default=10_000_000, metavar="N",
                        help="items streamed on CXXRTL (default: 10000000)")
    parser.add_argument("--verilator-items", type=int, default=2_000_000, metavar="N",
                        help="items streamed on Verilator, 0 to skip (default: 2000000)")
    parser.add_argument("--icarus-items", type=int, default=5_000, metavar="N",
                        help="items streamed on Icarus Verilog, 0 to skip (default: 5000)")
    parser.add_argument("--cxxflags", default="-O3",
                        help="compiler flags of the CXXRTL model (default: -O3)")


def bulk_script(items, seed=0xC0FFEE):
    """Registers, start, ``items`` at full rate, wait for done, read checksum and total."""
    return (Script().set("seed", seed).set("count", items)
            .set("i__payload", pack_lanes([3, -1, 4, -1, 5, -9, 2, -6], 16))
            .set("i__valid", 1).set("o__ready", 1).set("start", 1).step().set("start", 0)
            .wait("done", 1, 10 * items + 10).sample("checksum", "total"))


def amaranth_until(items, seed=0xC0FFEE):
    """Amaranth's fastest idiom for the same run (``await ctx.tick().until(done)``, no
    per-cycle Python of ours): cycles and seconds of the wait."""
    from amaranth.sim import Simulator
    dut, seconds = MixPipeline(), []

    async def testbench(ctx):
        for port, value in ((dut.seed, seed), (dut.count, items), (dut.i.valid, 1),
                            (dut.o.ready, 1), (dut.start, 1)):
            ctx.set(port, value)
        await ctx.tick()
        ctx.set(dut.start, 0)
        start = time.perf_counter()
        await ctx.tick().until(dut.done)
        seconds.append(time.perf_counter() - start)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return items + 2, seconds[0]


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def run(args, console):
    env = tool_env("YOSYS")
    rows = []
    reference, seconds = _timed(
        lambda: run_amaranth(MixPipeline(), bulk_script(args.amaranth_items)))
    base = reference.cycles / seconds
    rows.append({"engine": "amaranth", "cycles": reference.cycles, "run_s": seconds,
                 "cycles_per_s": round(base), "vs_amaranth": 1.0, "build_s": 0.0, "agrees": True})
    cycles, seconds = amaranth_until(args.amaranth_items)
    rows.append({"engine": "amaranth-until", "cycles": cycles, "run_s": seconds,
                 "cycles_per_s": round(cycles / seconds), "vs_amaranth": cycles / seconds / base,
                 "build_s": 0.0, "agrees": None})

    def add(engine, items, build, execute):
        try:
            built, build_s = _timed(build)
        except EngineUnavailable as e:
            console.print(f"[yellow]{engine} skipped:[/yellow] {e}")
            return
        result, run_s = _timed(lambda: execute(built, bulk_script(items)))
        check = execute(built, bulk_script(args.amaranth_items))
        rows.append({"engine": engine, "cycles": result.cycles, "run_s": run_s,
                     "cycles_per_s": round(result.cycles / run_s),
                     "vs_amaranth": result.cycles / run_s / base, "build_s": build_s,
                     "agrees": check.records == reference.records})

    def cxxrtl_run(model, script):
        with model.simulate() as sim:
            return sim.run(script)

    with console.status("CXXRTL"):
        add("cxxrtl " + args.cxxflags, args.cxxrtl_items,
            lambda: cxxrtl.build(MixPipeline(), env=env, cxxflags=tuple(args.cxxflags.split())),
            cxxrtl_run)
    verilog = hdl.emit_verilog(MixPipeline(), env=env)
    if args.verilator_items:
        with console.status("Verilator"):
            add("verilator", args.verilator_items, lambda: hdl.build_verilator(verilog),
                lambda _, script: hdl.run_verilator(verilog, script))
    if args.icarus_items:
        with console.status("Icarus Verilog"):
            add("icarus", args.icarus_items, lambda: hdl.build_icarus(verilog),
                lambda _, script: hdl.run_icarus(verilog, script))

    columns = [("engine", "engine"), ("cycles", "cycles"), ("run_s", "run s"),
               ("cycles_per_s", "cycles/s"), ("vs_amaranth", "× Amaranth"),
               ("build_s", "build s"), ("agrees", "agrees")]
    emit("engines", rows, columns, json_path=args.json, console=console,
         title="Simulation engines on the self-check design (MixPipeline, 8×16-bit lanes)")
    return rows
