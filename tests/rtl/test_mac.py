"""The adapter MAC array against its golden model, bit for bit: every micro-op over random
shapes and values (saturation corners, bubbles, back-pressure), whole first- and zeroth-order
mini-batch steps with the loss unit in the loop, the utilization floor, DSP mapping."""

import numpy as np
import pytest

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from fieldtune.rtl.mac import (AdapterMACArray, MacParams, Layout, Op, Region, Operand, Perturb,
                               Dest, CoefSource, mac_op, pipeline_stages)
from fieldtune.rtl.loss import SoftmaxCrossEntropy, ZOSign, LossParams
from fieldtune.sim.golden.mac import MacModel, update_shift
from fieldtune.sim.golden.train import (fo_program, zo_program, op_streams, play, fo_step,
                                        zo_step, new_weights)
from fieldtune.sim.engines.pysim import simulate, stream_send, stream_collect


DENSE = MacParams(lanes=4, taps=(8, 4), classes=3, max_batch=4)
LOWRANK = MacParams(lanes=4, taps=(8, 4), classes=3, adapter="lowrank", rank=3, max_batch=4)


def _rand(rng, shape, width):
    return rng.integers(-(1 << (width - 1)), 1 << (width - 1), shape)


class _Step(Elaboratable):
    """The MAC array with the loss unit between ``out`` and ``coef`` (as the SoC wires them)."""

    def __init__(self, mac, loss):
        self.mac = AdapterMACArray(mac)
        self.loss = SoftmaxCrossEntropy(loss)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac, m.submodules.loss = self.mac, self.loss
        wiring.connect(m, self.mac.out, self.loss.logits)
        wiring.connect(m, self.loss.dz, self.mac.coef)
        return m


def _beats(values):
    return [[int(v) for v in beat] for beat in values]


def run(mac, ops, *, x=(), z=(), z0=(), load=(), coef=(), n_out=0, n_dump=0, loss=None,
        loss_cmds=(), n_results=0, late_ops=None, bubbles=False, out_ready=None,
        max_cycles=20000):
    """Drive the array (and the loss unit when ``loss``) with the given stream contents;
    ``late_ops(results)`` gives ops to issue after ``n_results`` loss results arrived.
    Returns what came out, the flags and the cycles the ops took."""
    top = _Step(mac, loss) if loss else None
    dut = top.mac if top else AdapterMACArray(mac)
    got = {"out": [], "dump": [], "results": []}
    valid = (lambda c: c % 7 != 3) if bubbles else None

    async def commands(ctx):
        start = 0
        await stream_send(ctx, dut.cmd, list(ops), max_cycles=max_cycles)
        if late_ops is not None:
            while len(got["results"]) < n_results:
                await ctx.tick()
            await stream_send(ctx, dut.cmd, late_ops(got["results"]), max_cycles=max_cycles)
        await ctx.tick()
        cycles = 1
        while not ctx.get(dut.idle):
            await ctx.tick()
            cycles += 1
            assert cycles < max_cycles
        got["flags"] = {k: ctx.get(getattr(dut, k)) for k in ("saturated", "error", "framing")}

    async def feed(stream, items, convert=lambda v: v):
        async def tb(ctx):
            await stream_send(ctx, stream, [convert(v) for v in items], valid=valid,
                              max_cycles=max_cycles)
        return tb

    benches = [commands]
    if len(x):
        async def xs(ctx):
            await stream_send(ctx, dut.x, [{"data": [int(v) for v in b], "last": int(last)}
                                           for b, last in x], valid=valid, max_cycles=max_cycles)
        benches.append(xs)
    for stream, items in ((dut.z, _beats(z)), (dut.z0, [int(v) for v in z0]),
                          (dut.wload, _beats(load))):
        if items:
            async def tb(ctx, stream=stream, items=items):
                await stream_send(ctx, stream, items, valid=valid, max_cycles=max_cycles)
            benches.append(tb)
    if len(coef) and not loss:
        async def coefs(ctx):
            await stream_send(ctx, dut.coef, [int(v) for v in coef], max_cycles=max_cycles)
        benches.append(coefs)
    if n_out:
        async def outs(ctx):
            got["out"], _ = await stream_collect(ctx, dut.out, n_out, ready=out_ready,
                                                 max_cycles=max_cycles)
        benches.append(outs)
    if n_dump:
        async def dumps(ctx):
            got["dump"], _ = await stream_collect(ctx, dut.wdump, n_dump, max_cycles=max_cycles,
                                                  convert=lambda w: [int(v) for v in w])
        benches.append(dumps)
    if loss:
        async def lcmds(ctx):
            await stream_send(ctx, top.loss.cmd, list(loss_cmds), max_cycles=max_cycles)

        async def results(ctx):
            for _ in range(n_results):
                items, _ = await stream_collect(ctx, top.loss.result, 1, max_cycles=max_cycles,
                                                convert=lambda r: (int(r.loss), int(r.zo_sum)))
                got["results"] += items
        benches += [lcmds, results]
    simulate(top or dut, *benches, name="mac")
    got["out"] = [int(v) for v in got["out"]]
    return got


def _dump_all(mac):
    return [(mac_op(Op.DUMP, Region(i)), None) for i in range(len(Layout(mac).regions))]


def _golden(mac, prog, x, z0, z, *, load=(), coef=()):
    """Run ``prog`` on the golden model; returns it, the stream contents the ops consumed (to
    feed the gateware) and what came out."""
    model = MacModel(mac)
    model.push_coef(coef)
    model.load.extend(load)
    streams = {"x": [], "z0": [], "z": []}
    outs, dumps = [], []
    for op, n in prog:
        s = op_streams(mac, op, n, x, z0, z)
        for key in streams:
            streams[key] += s[key]
        model.x.extend(s["x"])
        model.z0.extend(s["z0"])
        model.z.extend(s["z"])
        res = model.run(op)
        (dumps if op["op"] == Op.DUMP else outs).extend(res)
    return model, streams, [int(v) for v in outs], [[int(v) for v in w] for w in dumps]


def _load_ops(mac, mem):
    lay = Layout(mac)
    return ([(mac_op(Op.LOAD, Region(i)), None) for i in range(len(lay.regions))],
            [list(w) for w in mem])


@pytest.mark.parametrize("mac,seed", [(DENSE, 1), (LOWRANK, 2)])
def test_every_op_matches_golden(mac, seed):
    rng = np.random.default_rng(seed)
    lay = Layout(mac)
    n = 3
    x = _rand(rng, (n, mac.features), 12)
    x[0, :4] = 32767                                    # a saturating sample
    z0 = _rand(rng, (n, mac.classes), 12)
    z = _rand(rng, (lay.words, mac.lanes), 8)
    mem = _rand(rng, (lay.words, mac.lanes), 12)
    mem[0] = 32767
    mem = np.where(np.vstack([np.ones((w.words, mac.lanes), bool) if not w.padded_lanes else
                              np.hstack([np.ones((w.words, mac.lanes - w.padded_lanes), bool),
                                         np.vstack([np.ones((w.words - w.rows,
                                                             w.padded_lanes), bool),
                                                    np.zeros((w.rows, w.padded_lanes), bool)])])
                              for w in lay.regions]), mem, 0)
    coef = _rand(rng, lay.dz_depth, 16)
    last = len(lay.regions) - 1
    prog, load = _load_ops(mac, mem)
    k = mac.weight_frac - mac.perturb_frac
    prog += [
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, init_z0=not last), 0),
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, perturb=Perturb.PLUS, zshift=k,
                init_z0=not last), 1),
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, perturb=Perturb.MINUS,
                zshift=k - 1), 2),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM, cshift=-3, coef_base=0), 1),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM, cshift=4,
                coef_base=lay.dz_depth - lay.regions[0].outputs), 0),
        (mac_op(Op.UPDATE, Region(last), operand=Operand.Z, coef_source=CoefSource.IMM,
                imm=-123456, cshift=-5), None),
        (mac_op(Op.MATVEC, Region.W, operand=Operand.Z), None),   # invalid: error, skipped
    ] + _dump_all(mac) + [
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, init_z0=not last), 1),
    ]
    if last:
        prog += [
            (mac_op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL), 2),
            (mac_op(Op.MATVEC, Region.B, operand=Operand.LOCAL, init_z0=True,
                    perturb=Perturb.PLUS, zshift=2), 2),
            (mac_op(Op.COLACC, Region.B, coef_base=3, v_base=lay.v_base + 4), None),
            (mac_op(Op.UPDATE, Region.B, operand=Operand.LOCAL, cshift=0, coef_base=6), None),
            (mac_op(Op.UPDATE, Region.A, operand=Operand.STREAM, cshift=-2,
                    coef_base=lay.v_base + 4), 1),
            (mac_op(Op.INIT, Region.B, operand=Operand.Z, zshift=6), None),
            (mac_op(Op.INIT, Region.A), None),
        ]
    else:
        prog += [(mac_op(Op.INIT, Region.W, operand=Operand.Z, zshift=k), None)]
    prog += _dump_all(mac)
    model, streams, outs, dumps = _golden(mac, prog, x, z0, z, load=load, coef=coef)
    got = run(mac, [op for op, _ in prog], x=streams["x"], z=streams["z"], z0=streams["z0"],
              load=load, coef=coef, n_out=len(outs), n_dump=len(dumps), bubbles=True,
              out_ready=lambda c: c % 5 != 2)
    assert got["out"] == outs
    assert got["dump"] == dumps
    assert got["flags"] == {"saturated": True, "error": True, "framing": False}
    assert model.flags == got["flags"]


def test_framing_error_is_flagged():
    mac = DENSE
    x = np.zeros((1, mac.features), dtype=np.int64)
    beats = [(b, False) for b in x[0].reshape(-1, mac.lanes)]     # no last marker
    got = run(mac, [mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM)], x=beats, n_out=3)
    assert got["flags"]["framing"] and got["out"] == [0, 0, 0]
