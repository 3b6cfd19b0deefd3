"""``fieldtune bench mac``: the adapter MAC array's resources, Fmax and utilization.

For each (lanes, device) point the array alone (default ``[mac]`` section, R1 shapes) is
implemented out of context (:func:`fieldtune.bench.report.implement_all`), and one R1
first-order mini-batch step (the micro-op program of
:func:`fieldtune.sim.golden.train.fo_program`, loss unit in the loop, features always
available) is simulated in Amaranth's simulator to count cycles. Utilization is the ideal
cycles (forward + gradient MACs over ``lanes``) over the measured ones; ``gmacs = lanes * fmax
* utilization / 1000``. Targets (issue 4): utilization >= 0.90 at L = 8 and 32; >= 36 MHz on
UP5K at L = 8; >= 100 MHz on ECP5-85F at L = 32.
"""

from dataclasses import replace

import numpy as np
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from ..rtl.mac import AdapterMACArray, MacParams, Op, Dest
from ..rtl.loss import SoftmaxCrossEntropy, ZOSign, LossParams
from ..rtl.mac import Layout
from ..sim.golden.train import fo_program, op_streams
from ..sim.engines.pysim import (simulate, stream_send, stream_collect,
                                  loss_command_benches)
from ..sim.golden.train import zo_program
from .report import add_executor_arguments
from ..toolchain import tool_env
from .report import implement_all, emit


__all__ = ["POINTS", "TARGETS", "AdapterStep", "point_params", "fo_batch_cycles", "zo_step_cycles",
           "batch_words", "ideal_fo_cycles",
           "add_arguments", "run"]


#: (lanes, device) points measured by default.
POINTS = ((8, "up5k"), (32, "ecp5-85f"))
#: Fmax targets per point and the utilization target.
TARGETS = {"fmax_mhz": {(8, "up5k"): 36.0, (32, "ecp5-85f"): 100.0}, "utilization": 0.90}

COLUMNS = [("lanes", "L"), ("device", "device"), ("luts", "LUTs"), ("ffs", "FFs"),
           ("brams", "BRAM"), ("dsps", "DSP"), ("fmax_mhz", "Fmax MHz"),
           ("cycles_per_sample", "cycles/sample"), ("utilization", "utilization"),
           ("zo_cycles_per_sample", "ZO cycles/sample"),
           ("gmacs", "GMAC/s"), ("fits", "fits")]


class AdapterStep(Elaboratable):
    """The MAC array with the loss unit between ``out`` and ``coef``, as the SoC wires them."""

    def __init__(self, mac: MacParams, loss: LossParams):
        self.mac = AdapterMACArray(mac)
        self.loss = SoftmaxCrossEntropy(loss)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac, m.submodules.loss = self.mac, self.loss
        wiring.connect(m, self.mac.out, self.loss.logits)
        wiring.connect(m, self.loss.dz, self.mac.coef)
        return m


def batch_words(mac: MacParams, batch):
    """Words a zeroth-order step reads: two perturbed forwards per sample and the update."""
    return (2 * batch + 1) * Layout(mac).words


def ideal_fo_cycles(mac: MacParams, batch):
    """Multiplier-bound cycles of a dense first-order step: forward and gradient MACs."""
    return batch * 2 * mac.classes * mac.features / mac.lanes


def fo_batch_cycles(mac: MacParams, loss: LossParams, batch, *, seed=0, lr_shift=4):
    """Simulate one first-order mini-batch step on random R1-like data; returns ``(cycles,
    losses)``: cycles from the first micro-op until the array is idle, and the loss unit's
    per-sample losses (checked against the golden model by the caller if it likes)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << 10, (batch, mac.features))
    z0 = rng.integers(-3 << 8, 3 << 8, (batch, mac.classes))
    labels = rng.integers(0, mac.classes, batch)
    prog = fo_program(mac, loss, batch, lr_shift)
    xs = []
    for op, n in prog:
        xs += [{"data": [int(v) for v in b], "last": int(last)}
               for b, last in op_streams(mac, op, n, x)["x"]]
    cmds = [{"z0": [int(v) for v in z0[n]], "label": int(labels[n]), "dz": 1,
             "zo": ZOSign.NONE, "zo_first": 0}
            for op, n in prog if op["op"] == Op.MATVEC and op["dest"] == Dest.OUT]
    top = AdapterStep(mac, loss)
    got = {}

    async def sequencer(ctx):
        cycles = await stream_send(ctx, top.mac.cmd, [op for op, _ in prog])
        while not ctx.get(top.mac.idle):
            await ctx.tick()
            cycles += 1
        got["cycles"] = cycles

    async def features(ctx):
        await stream_send(ctx, top.mac.x, xs)

    async def results(ctx):
        got["losses"], _ = await stream_collect(ctx, top.loss.result, batch,
                                                convert=lambda r: int(r.loss))

    simulate(top, sequencer, features, *loss_command_benches(top.loss, cmds), results,
             name="mac_fo_batch")
    return got["cycles"], got["losses"], (x, z0, labels)


def zo_step_cycles(mac: MacParams, loss: LossParams, batch, *, seed=0, zo_lr_shift=11,
                   eps_shift=6):
    """Simulate one zeroth-order step (perturbations applied on the fly: ``+`` and ``-``
    forwards per sample, the loss unit's sum, the update with ``z`` replayed); returns the
    cycles from the first micro-op until the array is idle after the update, with the
    perturbation stream always available."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << 10, (batch, mac.features))
    z0 = rng.integers(-3 << 8, 3 << 8, (batch, mac.classes))
    labels = rng.integers(0, mac.classes, batch)
    z = rng.integers(-(1 << (mac.perturb_width - 1)), 1 << (mac.perturb_width - 1),
                     (Layout(mac).words, mac.lanes))
    regions = len(Layout(mac).regions)
    prog = zo_program(mac, loss, batch, 0, zo_lr_shift, eps_shift)
    xs, zs, cmds = [], [], []
    for op, n in prog:
        s = op_streams(mac, op, n, x, z)
        xs += [{"data": [int(v) for v in b], "last": int(last)} for b, last in s["x"]]
        zs += [[int(v) for v in b] for b in s["z"]]
        if op["op"] == Op.MATVEC and op["dest"] == Dest.OUT:
            cmds.append({"z0": [int(v) for v in z0[n]], "label": int(labels[n]), "dz": 0,
                         "zo": ZOSign.PLUS if op["perturb"].value == 1 else ZOSign.MINUS,
                         "zo_first": int(not cmds)})
    top = AdapterStep(mac, loss)
    got = {"sums": []}

    async def sequencer(ctx):
        cycles = await stream_send(ctx, top.mac.cmd, [op for op, _ in prog[:-regions]])
        while len(got["sums"]) < len(cmds):
            await ctx.tick()
            cycles += 1
        g = got["sums"][-1]
        cycles += await stream_send(ctx, top.mac.cmd, [
            op for op, _ in zo_program(mac, loss, batch, g, zo_lr_shift, eps_shift)[-regions:]])
        while not ctx.get(top.mac.idle):
            await ctx.tick()
            cycles += 1
        got["cycles"] = cycles

    async def features(ctx):
        await stream_send(ctx, top.mac.x, xs)

    async def perturbations(ctx):
        await stream_send(ctx, top.mac.z, zs)

    async def results(ctx):
        for _ in cmds:
            items, _ = await stream_collect(ctx, top.loss.result, 1,
                                            convert=lambda r: int(r.zo_sum))
            got["sums"] += items

    simulate(top, sequencer, features, perturbations, *loss_command_benches(top.loss, cmds),
             results, name="mac_zo_step")
    return got["cycles"]


def point_params(lanes, device):
    """The default ``[mac]`` section at ``lanes``, with the read register on ECP5 (its block
    RAM outputs are slow next to 10 ns) and off on iCE40 (short of flip-flops)."""
    return replace(MacParams(), lanes=lanes, read_register=device.startswith("ecp5"))


def add_arguments(parser):
    parser.add_argument("--points", default=",".join(f"{l}:{d}" for l, d in POINTS),
                        metavar="L:DEVICE,...",
                        help="lane counts and devices (default: 8:up5k,32:ecp5-85f)")
    parser.add_argument("--batch", type=int, default=16,
                        help="mini-batch of the simulated first-order step (default: 16)")
    add_executor_arguments(parser)
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep each run's files (RTLIL, logs, reports) under DIR")


def run(args, console):
    points = []
    for item in args.points.split(","):
        lanes, device = item.split(":")
        points.append((int(lanes), device.strip()))
    loss = LossParams()
    jobs = []
    for lanes, device in points:
        mac = point_params(lanes, device)
        kwargs = {"workdir": f"{args.workdir}/L{lanes}-{device}"} if args.workdir else {}
        jobs.append(((lanes, device), lambda mac=mac: AdapterMACArray(mac), device, kwargs))
    impls = implement_all(jobs, tool_env(), console=console, workers=args.workers,
                          scheduler=args.scheduler,
                          description="implementing MAC arrays")
    rows = []
    for lanes, device in points:
        mac = point_params(lanes, device)
        console.print(f"simulating an R1 first-order step, L={lanes}, batch {args.batch}...")
        cycles, _, _ = fo_batch_cycles(mac, loss, args.batch)
        util = ideal_fo_cycles(mac, args.batch) / cycles
        zo_cycles = zo_step_cycles(mac, loss, args.batch)
        impl = impls[(lanes, device)]
        fmax = impl.fmax_mhz
        rows.append({
            "lanes": lanes, "device": device, "read_register": mac.read_register,
            "luts": impl.luts, "ffs": impl.ffs,
            "brams": impl.brams, "dsps": impl.dsps, "fmax_mhz": fmax, "fits": impl.fits,
            "cycles_per_sample": cycles / args.batch, "utilization": round(util, 4),
            "zo_cycles_per_sample": zo_cycles / args.batch,
            # a zeroth-order sample is two passes over the weights (+ and -) with the
            # perturbation applied on the fly; the ideal is those passes' words
            "zo_utilization": round(batch_words(mac, args.batch) / zo_cycles, 4),
            "gmacs": round(lanes * fmax * util / 1000, 3) if fmax else None,
            "fmax_target_mhz": TARGETS["fmax_mhz"].get((lanes, device)),
            "reason": impl.reason, "cells": impl.cells,
        })
    emit("mac", rows, COLUMNS, json_path=args.json, console=console,
         title="fieldtune bench mac (R1 dense adapters, first-order step)",
         extra={"targets": {"utilization": TARGETS["utilization"],
                            "fmax_mhz": {f"{l}:{d}": v
                                         for (l, d), v in TARGETS["fmax_mhz"].items()}},
                "batch": args.batch})
    return rows
