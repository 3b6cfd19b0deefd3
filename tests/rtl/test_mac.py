"""The adapter MAC array against its golden model, bit for bit: every micro-op over random
shapes and values (saturation corners, bubbles, back-pressure), whole first- and zeroth-order
mini-batch steps with the loss unit in the loop, the utilization floor, DSP mapping."""

import numpy as np
import pytest

from fieldtune.rtl.mac import (AdapterMACArray, MacParams, Layout, Op, Region, Operand, Perturb,
                               Dest, CoefSource, mac_op, pipeline_stages)
from fieldtune.rtl.loss import ZOSign, LossParams, SoftmaxCrossEntropy
from fieldtune.sim.golden.mac import MacModel
from fieldtune.sim.golden.train import (fo_program, zo_program, op_streams, fo_step,
                                        zo_step, new_weights)
from fieldtune.sim.engines.pysim import (simulate, stream_send, stream_collect,
                                         loss_command_benches)
from fieldtune.sim.golden.loss import softmax_xent
from fieldtune.bench.mac import (AdapterStep, fo_batch_cycles, ideal_fo_cycles, zo_step_cycles,
                                 batch_words)
from fieldtune.boards.implement import implement
from fieldtune.toolchain import tool_env


DENSE = MacParams(lanes=4, taps=(8, 4), classes=3, max_batch=4)
LOWRANK = MacParams(lanes=4, taps=(8, 4), classes=3, adapter="lowrank", rank=3, max_batch=4)
#: low-rank with the read register (one more pipeline stage)
LOWRANK_R = MacParams(lanes=4, taps=(8, 4), classes=3, adapter="lowrank", rank=3, max_batch=4,
                      read_register=True)
#: the row accumulators in a block RAM (dense; low-rank with the read register)
DENSE_ACC = MacParams(lanes=4, taps=(8, 4), classes=3, max_batch=4, acc_memory="bram")
LOWRANK_ACC = MacParams(lanes=4, taps=(8, 4), classes=3, adapter="lowrank", rank=2,
                        max_batch=4, read_register=True, acc_memory="bram")
#: perturbations shifted by multipliers (the both-modes 4-lane UP5K build)
DENSE_MUL = MacParams(lanes=4, taps=(8, 4), classes=3, max_batch=4, acc_memory="bram",
                      perturb_shifter="multipliers")


def _rand(rng, shape, width):
    return rng.integers(-(1 << (width - 1)), 1 << (width - 1), shape)


def _beats(values):
    return [[int(v) for v in beat] for beat in values]


async def _send_holding(ctx, stream, payloads, *, valid=None, max_cycles=None):
    """Send every payload in order, with bubbles where ``valid(cycle)`` is false, but as a
    stream transmitter must: once ``valid`` is raised it stays, with its payload, until the
    transfer (the array takes a feature beat a cycle after it decided to, ``x.ready`` being
    a register)."""
    i, cycle, offered = 0, 0, False
    while i < len(payloads):
        offered = offered or valid is None or bool(valid(cycle))
        ctx.set(stream.valid, offered)
        if offered:
            ctx.set(stream.payload, payloads[i])
        *_, ready = await ctx.tick().sample(stream.ready)
        cycle += 1
        if offered and ready:
            i, offered = i + 1, False
        if max_cycles is not None and cycle > max_cycles:
            raise TimeoutError(f"sent {i} of {len(payloads)} payloads in {cycle} cycles")
    ctx.set(stream.valid, 0)


def run(mac, ops, *, x=(), z=(), load=(), coef=(), coef_delay=0, n_out=0, n_dump=0, loss=None,
        loss_cmds=(), n_results=0, late_ops=None, bubbles=False, out_ready=None,
        max_cycles=20000):
    """Drive the array (and the loss unit when ``loss``) with the given stream contents;
    ``late_ops(results)`` gives ops to issue after ``n_results`` loss results arrived.
    Returns what came out, the flags and the cycles the ops took."""
    top = AdapterStep(mac, loss) if loss else None
    dut = top.mac if top else AdapterMACArray(mac)
    got = {"out": [], "dump": [], "results": []}
    valid = (lambda c: c % 7 != 3) if bubbles else None

    async def commands(ctx):
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
            await _send_holding(ctx, dut.x, [{"data": [int(v) for v in b], "last": int(last)}
                                             for b, last in x], valid=valid,
                                max_cycles=max_cycles)
        benches.append(xs)
    for stream, items in ((dut.z, _beats(z)), (dut.wload, [int(v) for w in load for v in w])):
        if items:
            async def tb(ctx, stream=stream, items=items):
                await stream_send(ctx, stream, items, valid=valid, max_cycles=max_cycles)
            benches.append(tb)
    if len(coef) and not loss:
        async def coefs(ctx):
            await ctx.tick().repeat(coef_delay + 1)
            await stream_send(ctx, dut.coef, [int(v) for v in coef], max_cycles=max_cycles)
        benches.append(coefs)
    if n_out:
        async def outs(ctx):
            got["out"], _ = await stream_collect(ctx, dut.out, n_out, ready=out_ready,
                                                 max_cycles=max_cycles)
        benches.append(outs)
    if n_dump:
        async def dumps(ctx):
            flat, _ = await stream_collect(ctx, dut.wdump, n_dump * mac.lanes,
                                           max_cycles=max_cycles)
            got["dump"] = [[int(v) for v in flat[i:i + mac.lanes]]
                           for i in range(0, len(flat), mac.lanes)]
        benches.append(dumps)
    if loss:
        async def results(ctx):
            for _ in range(n_results):
                items, _ = await stream_collect(ctx, top.loss.result, 1, max_cycles=max_cycles,
                                                convert=lambda r: (int(r.loss), int(r.zo_sum)))
                got["results"] += items
        benches += [*loss_command_benches(top.loss, loss_cmds, max_cycles=max_cycles), results]
    simulate(top or dut, *benches, name="mac")
    got["out"] = [int(v) for v in got["out"]]
    return got


def _dump_all(mac):
    return [(mac_op(Op.DUMP, Region(i)), None) for i in range(len(Layout(mac).regions))]


def _golden(mac, prog, x, z, *, load=(), coef=()):
    """Run ``prog`` on the golden model; returns it, the stream contents the ops consumed (to
    feed the gateware) and what came out."""
    model = MacModel(mac)
    if prog and prog[0][0]["op"] == Op.BATCH:
        model.run(prog[0][0])                 # the coefficients arrive after it
    model.push_coef(coef)
    model.load.extend(load)
    streams = {"x": [], "z": []}
    outs, dumps = [], []
    for op, n in prog:
        s = op_streams(mac, op, n, x, z)
        for key in streams:
            streams[key] += s[key]
        model.x.extend(s["x"])
        model.z.extend(s["z"])
        res = model.run(op)
        (dumps if op["op"] == Op.DUMP else outs).extend(res)
    return model, streams, [int(v) for v in outs], [[int(v) for v in w] for w in dumps]


def _load_ops(mac, mem):
    lay = Layout(mac)
    return ([(mac_op(Op.LOAD, Region(i)), None) for i in range(len(lay.regions))],
            [list(w) for w in mem])


@pytest.mark.parametrize("mac,seed", [(DENSE, 1), (LOWRANK, 2), (LOWRANK_R, 3), (DENSE_ACC, 4),
                                      (LOWRANK_ACC, 5), (DENSE_MUL, 6)])
def test_every_op_matches_golden(mac, seed):
    rng = np.random.default_rng(seed)
    lay = Layout(mac)
    n = 3
    x = _rand(rng, (n, mac.features), 12)
    x[0, :4] = 32767                                    # a saturating sample
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
    # dz stored scaled: left (saturating) for one array, right (rounding) for the other
    prog = [(mac_op(Op.BATCH, cshift=3 if seed == 1 else -3), None)] + prog
    k = mac.weight_frac - mac.perturb_frac
    prog += [
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM), 0),
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, perturb=Perturb.PLUS, zshift=k), 1),
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, perturb=Perturb.MINUS,
                zshift=k - 1), 2),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM, coef_base=0), 1),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM,
                coef_base=lay.dz_depth - lay.regions[0].outputs), 0),
        (mac_op(Op.UPDATE, Region(last), operand=Operand.Z, coef_source=CoefSource.IMM,
                imm=-123456, cshift=-5), None),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.Z, coef_source=CoefSource.IMM,
                imm=-301, cshift=3), None),
        (mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM, coef_source=CoefSource.IMM,
                imm=1 << 28, cshift=2), 2),                  # the immediate saturates
        (mac_op(Op.MATVEC, Region.W, operand=Operand.Z), None),   # invalid: error, skipped
    ] + _dump_all(mac) + [
        (mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM), 1),
    ]
    if last:
        prog += [
            (mac_op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL), 2),
            (mac_op(Op.MATVEC, Region.B, operand=Operand.LOCAL, perturb=Perturb.PLUS,
                    zshift=2), 2),
            (mac_op(Op.COLACC, Region.B, coef_base=3, v_base=lay.v_base + 4, cshift=2), None),
            (mac_op(Op.UPDATE, Region.B, operand=Operand.LOCAL, cshift=0, coef_base=6), None),
            (mac_op(Op.UPDATE, Region.A, operand=Operand.STREAM,
                    coef_base=lay.v_base + 4), 1),
            (mac_op(Op.INIT, Region.B, operand=Operand.Z, zshift=6), None),
            (mac_op(Op.INIT, Region.A), None),
        ]
    else:
        prog += [(mac_op(Op.INIT, Region.W, operand=Operand.Z, zshift=k), None)]
    prog += _dump_all(mac)
    model, streams, outs, dumps = _golden(mac, prog, x, z, load=load, coef=coef)
    got = run(mac, [op for op, _ in prog], x=streams["x"], z=streams["z"],
              load=load, coef=coef, coef_delay=20, n_out=len(outs), n_dump=len(dumps),
              bubbles=True,
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


def _step_data(mac, seed, n):
    rng = np.random.default_rng(seed)
    lay = Layout(mac)
    x = rng.integers(0, 1 << 10, (n, mac.features))          # post-ReLU features, Q8.8
    z0 = rng.integers(-3 << 8, 3 << 8, (n, mac.classes))
    labels = rng.integers(0, mac.classes, n)
    z = _rand(rng, (lay.words, mac.lanes), 8)
    mem = new_weights(mac, z, eps_shift=2)
    last = lay.regions[-1]
    mem[last.base:last.base + last.words] = _rand(rng, (last.words, mac.lanes), 11)
    if last.padded_lanes:
        mem[last.base + last.words - last.rows:, mac.lanes - last.padded_lanes:] = 0
    return x, z0, labels, z, mem


@pytest.mark.parametrize("mac", [DENSE, LOWRANK, LOWRANK_R, DENSE_ACC, LOWRANK_ACC],
                         ids=["dense", "lowrank", "lowrank-read-register", "dense-acc-bram",
                              "lowrank-acc-bram"])
def test_whole_first_order_step_matches_golden(mac):
    loss = LossParams(classes=mac.classes)
    n, lr = 4, 4           # lr + log2(n) >= 9 - 3: low-rank dA coefficients shift left <= 3
    x, z0, labels, z, mem = _step_data(mac, 11, n)
    load_ops, load = _load_ops(mac, mem)
    prog = fo_program(mac, loss, n, lr)
    streams = {"x": [], "z": []}
    for op, s in prog:
        for key, items in op_streams(mac, op, s, x, z).items():
            streams[key] += items
    cmds = [{"z0": [int(v) for v in z0[s]], "label": int(labels[s]), "dz": 1,
             "zo": ZOSign.NONE, "zo_first": 0}
            for op, s in prog if op["op"] == Op.MATVEC and op["dest"] == Dest.OUT]
    got = run(mac, [op for op, _ in load_ops + prog + _dump_all(mac)], x=streams["x"],
              load=load, n_dump=Layout(mac).words, loss=loss,
              loss_cmds=cmds, n_results=n)
    ref, flags = mem.copy(), {"saturated": False}
    r = fo_step(mac, loss, ref, x, z0, labels, lr, flags=flags)
    assert [l for l, _ in got["results"]] == [int(v) for v in r.loss]
    assert np.array_equal(np.array(got["dump"]), ref)
    assert not np.array_equal(ref, mem)
    assert got["flags"] == {"saturated": flags["saturated"], "error": 0, "framing": 0}


@pytest.mark.parametrize("mac", [DENSE, LOWRANK, DENSE_MUL],
                         ids=["dense", "lowrank", "dense-shift-multipliers"])
def test_whole_zeroth_order_step_matches_golden(mac):
    loss = LossParams(classes=mac.classes)
    n, zlr, eps = 4, 6, 3
    x, z0, labels, z, mem = _step_data(mac, 12, n)
    load_ops, load = _load_ops(mac, mem)
    lay = Layout(mac)
    forwards = zo_program(mac, loss, n, 0, zlr, eps)[:-len(lay.regions)]
    streams = {"x": [], "z": []}
    for op, s in zo_program(mac, loss, n, 0, zlr, eps):
        for key, items in op_streams(mac, op, s, x, z).items():
            streams[key] += items
    cmds = []
    for op, s in forwards:
        if op["op"] == Op.MATVEC and op["dest"] == Dest.OUT:
            sign = ZOSign.PLUS if op["perturb"] == Perturb.PLUS else ZOSign.MINUS
            cmds.append({"z0": [int(v) for v in z0[s]], "label": int(labels[s]), "dz": 0,
                         "zo": sign, "zo_first": int(not cmds)})

    def update(results):
        g = results[-1][1]                      # the loss unit's running sum
        return [op for op, _ in zo_program(mac, loss, n, g, zlr, eps)[-len(lay.regions):]
                + _dump_all(mac)]

    got = run(mac, [op for op, _ in load_ops + forwards], x=streams["x"], z=streams["z"],
              load=load, n_dump=lay.words, loss=loss, loss_cmds=cmds,
              n_results=2 * n, late_ops=update)
    ref, flags = mem.copy(), {"saturated": False}
    g, lp, lm = zo_step(mac, loss, ref, x, z0, labels, z, zlr, eps, flags=flags)
    assert [l for l, _ in got["results"]] == [int(v) for pair in zip(lp, lm) for v in pair]
    assert got["results"][-1][1] == g != 0
    assert np.array_equal(np.array(got["dump"]), ref)
    assert not np.array_equal(ref, mem)
    assert got["flags"] == {"saturated": flags["saturated"], "error": 0, "framing": 0}


#: Utilization floor asserted for a two-sample R1 step at L = 8 (measured: 0.99; a 16-sample
#: batch only amortizes the pipeline fill better).
UTILIZATION_FLOOR = 0.95


@pytest.mark.parametrize("lanes,serial", [(4, True), (8, False)])
def test_r1_first_order_utilization(lanes, serial):
    # the default's 4 lanes with the serial loss unit (its first-order latency, 359 cycles +
    # shifts, hides behind a 560-cycle forward), 8 lanes and more with the pipelined one, as the
    # ECP5 presets have it (the serial unit at 8 lanes: 0.85, its latency longer than a
    # 280-cycle forward)
    mac, loss = MacParams(lanes=lanes, max_batch=2), LossParams(serial=serial)
    cycles, losses, (x, z0, labels) = fo_batch_cycles(mac, loss, 2)
    # untrained adapters (W = 0): the logits are z0, so the losses are known
    assert losses == [int(v) for v in softmax_xent(loss, z0, labels).loss]
    assert ideal_fo_cycles(mac, 2) / cycles >= UTILIZATION_FLOOR
    assert cycles <= ideal_fo_cycles(mac, 2) + 2 * pipeline_stages(mac) + 40


def test_r1_zeroth_order_step_cycles():
    # perturbations on the fly: a step is 2 * batch + 1 passes over the weights, plus the loss
    # unit's latency on the last vector (measured: 0.95 of the words at batch 2, L = 8, with
    # the pipelined loss unit)
    mac, loss = MacParams(lanes=8, max_batch=2), LossParams(serial=False)
    cycles = zo_step_cycles(mac, loss, 2)
    assert batch_words(mac, 2) / cycles >= 0.93
    # the serial loss unit (the default: the UP5K's) costs its longer latency once per step,
    # nothing more (0.87 of the words at batch 2; about 1.5 % more at R1's batch of 16): a
    # zeroth-order vector asks for no dz, and its last class's shifts depend on the data
    # (0 to 15, SoftmaxCrossEntropy.latency)
    serial = LossParams()
    extra = zo_step_cycles(mac, serial, 2) - cycles
    fewest, most = (SoftmaxCrossEntropy.latency(serial, dz=False, shifts=(last, 0))
                    - SoftmaxCrossEntropy.latency(loss) for last in (0, 15))
    assert fewest <= extra <= most


@pytest.mark.slow
@pytest.mark.parametrize("device,cell", [("up5k", "SB_MAC16"), ("ecp5-25f", "MULT18X18D")])
def test_multipliers_map_onto_dsp_blocks(device, cell):
    mac = MacParams(lanes=2, taps=(4,), classes=2, acc_width=36, max_batch=1)
    impl = implement(AdapterMACArray(mac), device, tool_env())
    # one DSP block per lane, nothing else: no multiplier was left in LUTs or split
    assert impl.cells.get(cell) == mac.lanes == impl.dsps
    assert impl.fits


def test_accumulators_in_block_ram_need_two_rows():
    with pytest.raises(ValueError, match=r"mac.acc_memory 'bram' needs mac.rank >= 2 \(a row "
                                         r"read and written in one cycle\), not 1"):
        MacParams(adapter="lowrank", rank=1, acc_memory="bram")
    with pytest.raises(ValueError, match="mac.acc_memory must be one of 'flops', 'bram', "
                                         "not 'x'"):
        MacParams(acc_memory="x")


def test_rejects_wrong_params():
    with pytest.raises(TypeError, match="params must be a MacParams, not LossParams"):
        AdapterMACArray(LossParams())
