"""Amaranth's Python simulator, set up once for every test and short run.

:func:`simulate` runs async testbenches against a design on a 1 MHz ``sync`` clock and writes a
VCD (GTKWave-readable) only when asked: by the ``vcd`` argument, or for every run when the
environment variable ``FIELDTUNE_VCD`` names a folder. The stream helpers speak the
``amaranth.lib.stream`` valid/ready protocol from a testbench: a transfer happens on a clock
edge where both ``valid`` and ``ready`` are high.
"""

import os
import re
from pathlib import Path

from amaranth.sim import Simulator


__all__ = ["simulate", "stream_get", "stream_put", "stream_collect", "stream_send",
           "bus_write", "bus_read", "BusError"]


def simulate(dut, *testbenches, processes=(), vcd=None, name=None, clock=1e-6):
    """Run ``testbenches`` (``async def tb(ctx)``) on ``dut`` until they all return."""
    sim = Simulator(dut)
    sim.add_clock(clock)
    for tb in testbenches:
        sim.add_testbench(tb)
    for process in processes:
        sim.add_process(process)
    if vcd is None and os.environ.get("FIELDTUNE_VCD"):
        folder = Path(os.environ["FIELDTUNE_VCD"])
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or type(dut).__name__)
        vcd = folder / f"{stem}.vcd"
    if vcd is not None:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()


async def stream_get(ctx, stream):
    """Receive one payload from ``stream`` (the testbench is the sink)."""
    ctx.set(stream.ready, 1)
    *_, payload = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_put(ctx, stream, payload):
    """Send one payload into ``stream`` (the testbench is the source)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_collect(ctx, stream, count, *, ready=None, convert=None, max_cycles=None):
    """Receive ``count`` payloads, returning ``(payloads, cycles)``.

    ``ready(cycle) -> bool`` shapes back-pressure (default: always ready), so a test can check
    that nothing is lost when ``ready`` drops. ``convert`` maps each sampled payload (default:
    as sampled). ``cycles`` counts clock edges from the first edge to the edge of the last
    transfer, inclusive. Raises ``TimeoutError`` past ``max_cycles``.
    """
    items, cycle, driven = [], 0, None
    while len(items) < count:
        r = 1 if ready is None else int(bool(ready(cycle)))
        if r != driven:                    # setting a signal costs; only drive changes
            ctx.set(stream.ready, r)
            driven = r
        *_, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        cycle += 1
        if valid and r:
            items.append(convert(payload) if convert else payload)
        if max_cycles is not None and cycle > max_cycles:
            raise TimeoutError(f"received {len(items)} of {count} payloads in {cycle} cycles")
    ctx.set(stream.ready, 0)
    return items, cycle


async def stream_send(ctx, stream, payloads, *, valid=None, max_cycles=None):
    """Send every payload in order; ``valid(cycle) -> bool`` inserts bubbles. Returns cycles."""
    payloads = list(payloads)
    i, cycle = 0, 0
    while i < len(payloads):
        v = 1 if valid is None else int(bool(valid(cycle)))
        ctx.set(stream.valid, v)
        if v:
            ctx.set(stream.payload, payloads[i])
        *_, ready = await ctx.tick().sample(stream.ready)
        cycle += 1
        if v and ready:
            i += 1
        if max_cycles is not None and cycle > max_cycles:
            raise TimeoutError(f"sent {i} of {len(payloads)} payloads in {cycle} cycles")
    ctx.set(stream.valid, 0)
    return cycle


def loss_command_benches(loss, cmds, *, z0_valid=None, max_cycles=None):
    """Two testbenches feeding a :class:`~fieldtune.rtl.loss.SoftmaxCrossEntropy` (``loss``)
    its commands: ``cmds`` are dicts of :func:`~fieldtune.rtl.loss.loss_command_layout`'s
    fields plus ``z0`` (the vector's frozen logits), sent as the ``cmd`` stream and, one
    value a logit, the ``z0`` stream (with bubbles where ``z0_valid(cycle)`` is false)."""
    cmds = list(cmds)

    async def commands(ctx):
        await stream_send(ctx, loss.cmd, [{k: v for k, v in c.items() if k != "z0"}
                                          for c in cmds], max_cycles=max_cycles)

    async def frozen(ctx):
        await stream_send(ctx, loss.z0, [int(v) for c in cmds for v in c["z0"]],
                          valid=z0_valid, max_cycles=max_cycles)
    return [commands, frozen]


def stream_through(dut, payloads, *, valid=None, ready=None, name=None):
    """Send ``payloads`` into ``dut.i`` and collect them from ``dut.o`` (a stream buffer),
    with ``valid``/``ready`` patterns as :func:`stream_send` / :func:`stream_collect`.
    Returns ``(payloads, cycles)`` as collected."""
    payloads = list(payloads)
    limit = 10 * len(payloads) + 10
    out = {}

    async def source(ctx):
        await stream_send(ctx, dut.i, payloads, valid=valid, max_cycles=limit)

    async def sink(ctx):
        out["got"] = await stream_collect(ctx, dut.o, len(payloads), ready=ready,
                                          max_cycles=limit)

    simulate(dut, source, sink, name=name)
    return out["got"]


class BusError(Exception):
    """A bus access was answered with ``err`` (unmapped or refused address)."""


async def _bus_access(ctx, bus, addr, we, value, max_cycles):
    ctx.set(bus.cyc, 1)
    ctx.set(bus.we, we)
    ctx.set(bus.adr, addr)
    ctx.set(bus.dat_w, value)
    for _ in range(max_cycles):
        *_, ack, err, dat_r = await ctx.tick().sample(bus.ack, bus.err, bus.dat_r)
        if ack or err:
            ctx.set(bus.cyc, 0)
            ctx.set(bus.we, 0)
            if err:
                raise BusError(f"bus error at word address {addr:#x}")
            return dat_r
    raise TimeoutError(f"no bus response at word address {addr:#x} in {max_cycles} cycles")


async def bus_write(ctx, bus, addr, value, *, max_cycles=64):
    """Write one word over a :class:`fieldtune.rtl.csr.bus.BusSignature` bus."""
    await _bus_access(ctx, bus, addr, 1, value, max_cycles)


async def bus_read(ctx, bus, addr, *, max_cycles=64):
    """Read one word; raises :class:`BusError` on ``err``, TimeoutError when nothing answers."""
    return await _bus_access(ctx, bus, addr, 0, 0, max_cycles)
