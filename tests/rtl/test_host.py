"""The host link's gateware in Amaranth's simulator: the UART (loopback, +-2 % baud error,
framing errors and resynchronization, glitches), the core against the golden model byte for
byte on every status, and the whole link at UART level including a receive overrun. The
fuzzing is in test_host_fuzz.py, the cocotb check in tests/cocotb/."""

import pytest
from amaranth.sim import Simulator

from fieldtune.config import DesignConfig
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.host.params import HostParams
from fieldtune.rtl.host.protocol import Command, Status, Flags
from fieldtune.rtl.host.uart import UartRx, UartTx
from fieldtune.rtl.host.link import HostCore, HostLink, RxFifo
from fieldtune.sim.golden.host import (HostLinkModel, MemoryBus, encode_request,
                                       decode_response, split_frames, pack_elements)


MAP = SocMap(DesignConfig())
PARAMS = HostParams(max_payload=64, bus_timeout=32)
NREGS = len(MAP.registers)


# -- UART -------------------------------------------------------------------------------------

def line_samples(frames, bit_time, idle=3.0):
    """Per-cycle line levels sending ``frames`` (``(byte, stop_bit)``) with ``bit_time``
    cycles per bit (any float), ``idle`` bit times between bytes."""
    edges = []                    # (start time, level)
    t = idle * bit_time
    for byte, stop in frames:
        bits = [0] + [byte >> i & 1 for i in range(8)] + [stop]
        for b in bits:
            edges.append((t, b))
            t += bit_time
        edges.append((t, 1))
        t += idle * bit_time
    out, level, e = [], 1, 0
    for cycle in range(int(t) + 1):
        while e < len(edges) and edges[e][0] <= cycle:
            level = edges[e][1]
            e += 1
        out.append(level)
    return out


def receive(samples, bit_cycles):
    dut = UartRx(bit_cycles)
    got = []

    async def bench(ctx):
        for level in samples:
            ctx.set(dut.rx, level)
            await ctx.tick()
            if ctx.get(dut.byte.valid):
                got.append((ctx.get(dut.byte.payload.data), ctx.get(dut.byte.payload.ferr)))
        for _ in range(4 * bit_cycles):
            await ctx.tick()
            if ctx.get(dut.byte.valid):
                got.append((ctx.get(dut.byte.payload.data), ctx.get(dut.byte.payload.ferr)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("error", [-0.02, 0.0, 0.02])
def test_receiver_tolerates_two_percent_baud_error(error):
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x3C]
    for bit_cycles in (8, 16):
        samples = line_samples([(b, 1) for b in data], bit_cycles * (1 + error), idle=0)
        assert receive(samples, bit_cycles) == [(b, 0) for b in data]


def test_framing_error_is_flagged_and_the_receiver_resynchronizes():
    samples = line_samples([(0x12, 1), (0x34, 0), (0x56, 1)], 8)
    assert receive(samples, 8) == [(0x12, 0), (0x34, 1), (0x56, 0)]
    # a break (line low for many bit times), then idle, then a good byte
    brk = [1] * 20 + [0] * 200 + line_samples([(0x9A, 1)], 8)
    got = receive(brk, 8)
    assert got[-1] == (0x9A, 0) and all(ferr for _, ferr in got[:-1]) and len(got) >= 2


def test_a_glitch_is_no_start_bit():
    samples = [1] * 20 + [0, 0] + [1] * 40 + line_samples([(0x77, 1)], 8)
    assert receive(samples, 8) == [(0x77, 0)]


def test_transmitter_frames_bytes_and_the_receiver_reads_them_back():
    tx = UartTx(8)
    data = [0x00, 0xFF, 0x5A, 0xC3]
    line = []

    async def feed(ctx):
        for b in data:
            ctx.set(tx.byte.valid, 1)
            ctx.set(tx.byte.payload, b)
            await ctx.tick().until(tx.byte.ready)
        ctx.set(tx.byte.valid, 0)
        await ctx.tick().repeat(8 * 12)

    async def watch(ctx):
        async for _, _, level in ctx.tick().sample(tx.tx):
            line.append(level)

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(watch, background=True)
    sim.run()
    # whatever the transmitter put on the line, an independent decode of it
    line = [1] * 10 + line
    assert [b for b, _ in receive(line, 8)] == data


# -- the core, byte level, against the golden model --------------------------------------------

def run_core(wire, params=PARAMS, errors=(), stalls=(), init=None):
    """HostCore in Amaranth's simulator with a MemoryBus target driven from Python; returns
    (response bytes, bus)."""
    dut = HostCore(params, MAP)
    bus = MemoryBus(MAP, init=init, errors=errors, stalls=stalls)
    out = bytearray()
    done = []

    async def feeder(ctx):
        for b in wire:
            ctx.set(dut.symbol.valid, 1)
            ctx.set(dut.symbol.payload.data, b)
            await ctx.tick().until(dut.symbol.ready)
        ctx.set(dut.symbol.valid, 0)
        await ctx.tick().repeat(3)
        await ctx.tick().until(dut.idle)
        done.append(True)

    async def target(ctx):                       # answers one cycle after cyc rises
        pending = responded = False
        while True:
            await ctx.tick()
            ctx.set(dut.bus.ack, 0)
            ctx.set(dut.bus.err, 0)
            if responded or not ctx.get(dut.bus.cyc):
                pending = responded = False
                continue
            if not pending:
                pending = True
                continue
            adr = ctx.get(dut.bus.adr)
            if ctx.get(dut.bus.we):
                result, value = bus.write(adr, ctx.get(dut.bus.dat_w)), 0
            else:
                result, value = bus.read(adr)
            if result != "timeout":
                ctx.set(dut.bus.dat_r, value)
                ctx.set(dut.bus.ack if result == "ack" else dut.bus.err, 1)
                responded = True

    async def collector(ctx):
        ctx.set(dut.byte.ready, 1)
        async for _, _, valid, data in ctx.tick().sample(dut.byte.valid, dut.byte.payload):
            if valid:
                out.append(data)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(target, background=True)
    sim.add_testbench(collector, background=True)
    while not done:
        sim.advance()
    return bytes(out), bus


def expect(wire, **bus):
    model_bus = MemoryBus(MAP, **bus)
    return b"".join(HostLinkModel(MAP, PARAMS.max_payload, model_bus).feed(wire)), model_bus


def statuses(responses):
    return [decode_response(f).status for f in split_frames(responses)[0]]


def test_core_matches_the_model_on_every_command():
    seed = MAP.address("seed")
    wire = b"".join([
        encode_request(1, Command.WRITE, seed, 4, 0, pack_elements([0xDEADBEEF], 4)),
        encode_request(2, Command.READ, seed, 4),
        encode_request(3, Command.WRITE, MAP.address("records"), 6, Flags.LAST,
                       pack_elements([1, 2, 3], 2)),
        encode_request(3, Command.WRITE, MAP.address("records"), 6, Flags.LAST,
                       pack_elements([1, 2, 3], 2)),          # resent: not repeated
        encode_request(4, Command.READ, MAP.address("weights"), 4),
        encode_request(4, Command.READ, MAP.address("weights"), 4),   # DUPLICATE
        encode_request(5, Command.INFO),
        encode_request(6, Command.START),
        encode_request(7, Command.ABORT),
        encode_request(8, Command.ECHO, payload=bytes(range(60)) + b"\x00\x00"),
        encode_request(9, Command.STATUS),
    ])
    got, bus = run_core(wire)
    want, model_bus = expect(wire)
    assert got == want
    assert statuses(got) == [Status.OK] * 5 + [Status.DUPLICATE] + [Status.OK] * 5
    assert [decode_response(f).count for f in split_frames(got)[0]] == [
        4, 4, 6, 6, 4, 0, 4, 0, 0, 62, 8]                  # bytes moved
    assert bus.log == model_bus.log and bus.streams["records"] == [1, 2, 3 | 1 << 16]


REFUSED = [
    ("wrong CRC", lambda w: w[:5] + bytes([w[5] ^ 0x10]) + w[6:], Status.BAD_CRC),
    ("truncated", lambda w: w[:6] + b"\x00", Status.BAD_FRAME),
    ("COBS cut", lambda w: bytes([0xFE]) + w[1:], Status.BAD_FRAME),
    ("oversized", lambda w: encode_request(1, Command.ECHO, payload=bytes(65)),
     Status.OVERFLOW),
    ("unknown command", lambda w: encode_request(1, 0x42, 0, 4, 0, bytes(4)),
     Status.BAD_COMMAND),
    ("reserved flag", lambda w: encode_request(1, Command.WRITE, 0, 4, 0x40, bytes(4)),
     Status.BAD_COMMAND),
    ("outside every window", lambda w: encode_request(1, Command.WRITE, 0x30, 4, 0, bytes(4)),
     Status.BAD_ADDRESS),
    ("past the last register",
     lambda w: encode_request(1, Command.WRITE, NREGS, 4, 0, bytes(4)), Status.BAD_ADDRESS),
    ("register burst", lambda w: encode_request(1, Command.WRITE, NREGS - 2, 8, 0, bytes(8)),
     Status.BAD_LENGTH),
    ("part of a register", lambda w: encode_request(1, Command.READ, 0, 2), Status.BAD_LENGTH),
    ("count zero", lambda w: encode_request(1, Command.WRITE, 0, 0, 0, b""), Status.BAD_LENGTH),
    ("count zero, window", lambda w: encode_request(1, Command.READ, 0x22, 0),
     Status.BAD_LENGTH),
    ("payload short", lambda w: encode_request(1, Command.WRITE, 0x20, 8, 0, bytes(7)),
     Status.BAD_LENGTH),
    ("half an element", lambda w: encode_request(1, Command.WRITE, 0x20, 7, 0, bytes(7)),
     Status.BAD_LENGTH),
    ("too many bytes", lambda w: encode_request(1, Command.READ, 0x22, 66), Status.BAD_LENGTH),
    ("count's high byte", lambda w: encode_request(1, Command.READ, 0x22, 0x402),
     Status.BAD_LENGTH),
]


@pytest.mark.parametrize("name,damage,status", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_frames_are_answered_and_write_nothing(name, damage, status):
    good = encode_request(1, Command.WRITE, MAP.address("seed"), 4, 0, bytes([1, 2, 3, 4]))
    wire = damage(good)
    then = encode_request(2, Command.READ, MAP.address("seed"), 4)
    got, bus = run_core(wire + then)
    assert got == expect(wire + then)[0]
    assert statuses(got) == [status, Status.OK]
    assert [op for op, *_ in bus.log] == ["read"]       # only the following good READ


def test_start_while_busy_and_bus_errors():
    busy = {MAP.address("status"): MAP.pack("status", busy=1)}
    wire = b"".join([encode_request(1, Command.START),
                     encode_request(2, Command.STATUS),
                     encode_request(3, Command.WRITE, 0x22, 4, 0, bytes(4))])
    errors = {MAP.address("errors")}
    got, bus = run_core(wire, init=busy, errors=errors, stalls={0x22})
    assert got == expect(wire, init=busy, errors=errors, stalls={0x22})[0]
    responses = [decode_response(f) for f in split_frames(got)[0]]
    assert [(r.status, r.count) for r in responses] == [
        (Status.BUSY, 0), (Status.BUS_ERROR, 4), (Status.BUS_TIMEOUT, 0)]
    assert responses[1].payload == MAP.pack("status", busy=1).to_bytes(4, "little")
    assert not any(op == "write" for op, *_ in bus.log)


# -- the receive FIFO ---------------------------------------------------------------------------

def test_receive_fifo_keeps_order_drops_when_full_and_flags_the_next_byte():
    """16 bytes in block RAM and one in the output register: with the reader stalled, 17 of
    25 bytes stay, the rest are dropped, and the first byte after them carries ``lost``;
    then a reader that takes a symbol every other cycle gets them in order."""
    fifo = RxFifo(16)
    got = []

    async def writer(ctx):
        for b in list(range(1, 26)) + [0x80, 0x81]:
            if b == 0x80:
                ctx.set(fifo.byte.valid, 0)
                await ctx.tick().repeat(12)          # the reader makes room meanwhile
            ctx.set(fifo.byte.valid, 1)
            ctx.set(fifo.byte.payload.data, b)
            ctx.set(fifo.byte.payload.ferr, b == 3)
            await ctx.tick()
        ctx.set(fifo.byte.valid, 0)

    async def reader(ctx):
        await ctx.tick().repeat(30)
        for cycle in range(120):
            ctx.set(fifo.symbol.ready, cycle % 2)
            if cycle % 2 and ctx.get(fifo.symbol.valid):        # taken at this edge
                p = ctx.get(fifo.symbol.payload)
                got.append((p.data, p.ferr, p.lost))
            await ctx.tick()

    sim = Simulator(fifo)
    sim.add_clock(1e-6)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run()
    held = [(b, int(b == 3), 0) for b in range(1, 18)]
    assert got[:17] == held
    assert got[17:] == [(0x80, 0, 1), (0x81, 0, 0)]


# -- the whole link at UART level ------------------------------------------------------------

@pytest.mark.parametrize("rx_fifo,second", [(16, [(2, Status.OVERFLOW)]), (0, [])])
def test_link_over_the_uart_with_a_receive_overrun(rx_fifo, second):
    """Two frames back to back: the second arrives while the first's response (as long as
    the request) is still going out and overruns a 16-byte FIFO (its tail is answered
    OVERFLOW), or, without a FIFO, is dropped whole (no answer: nothing of it arrived); a
    third, after a pause, gets through."""
    params = HostParams(max_payload=64, rx_fifo=rx_fifo, clock_hz=4_000_000, baud=1_000_000)
    link = HostLink(params, MAP)
    bit, byte = params.bit_cycles, 10 * params.bit_cycles
    burst = (encode_request(1, Command.ECHO, payload=bytes(range(1, 61)))
             + encode_request(2, Command.ECHO, payload=bytes(range(1, 61))))
    later = b"\x00" + encode_request(3, Command.INFO)
    samples = (line_samples([(b, 1) for b in burst], bit, idle=0) + [1] * (150 * byte)
               + line_samples([(b, 1) for b in later], bit, idle=0) + [1] * (100 * byte))
    tx_line = []

    async def bench(ctx):
        for level in samples:
            ctx.set(link.rx, level)
            await ctx.tick()
            tx_line.append(ctx.get(link.tx))

    sim = Simulator(link)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    out = bytes(b for b, ferr in receive(tx_line, params.bit_cycles) if not ferr)
    responses = [decode_response(f) for f in split_frames(out)[0]]
    assert [(r.seq, r.status) for r in responses] == [
        (1, Status.OK), *second, (3, Status.OK)]
    assert responses[0].payload == bytes(range(1, 61))


# -- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"baud": 100}, r"host\.baud must be an integer from 9600 to 12000000, not 100"),
    ({"baud": 7_000_000}, r"host\.baud must be an integer from 9600 to 6000000 "
                          r"\(host\.clock_hz / 4\), not 7000000"),
    ({"baud": 2_900_000}, r"host\.baud must be within 1% of host\.clock_hz / n for an integer "
                          r"n \(the UART's bit time\), not 2900000 \(host\.clock_hz 24000000 "
                          r"gives 3000000 baud at n = 8\)"),
    ({"max_payload": 500}, r"host\.max_payload must be a power of two from 16 to 4096, "
                           r"not 500"),
    ({"bus_timeout": 0}, r"host\.bus_timeout must be an integer from 16 to 16777216, not 0"),
    ({"rx_fifo": 8}, r"host\.rx_fifo must be 0 \(no FIFO\) or a power of two from 16 to 4096, "
                     r"not 8"),
])
def test_host_configuration_errors_name_field_value_and_range(changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        DesignConfig().replace(host=changes)
