"""cocotb testbench (run by test_host_cocotb.py, not collected by pytest): cocotbext-uart's
UartSource and UartSink talk to the emitted Verilog of HostSystem (host link and SoC) on
Icarus. The environment gives the clock, the baud the host side uses (the device's baud
times 1 + error) and the design's register map facts."""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Timer
from cocotbext.uart import UartSource, UartSink

from fieldtune.rtl.host.protocol import Command, Status, PROTOCOL_VERSION
from fieldtune.sim.golden.host import (encode_request, decode_response, pack_elements,
                                       unpack_elements, split_frames)


CLOCK_PS = int(os.environ["HOST_TB_CLOCK_PS"])
BAUD = float(os.environ["HOST_TB_BAUD"])
SEED = int(os.environ["HOST_TB_SEED_ADDRESS"])
ID = int(os.environ["HOST_TB_ID_ADDRESS"])
MAGIC = int(os.environ["HOST_TB_MAGIC"])
MODE = int(os.environ["HOST_TB_MODE_ADDRESS"])
WEIGHTS = int(os.environ["HOST_TB_WEIGHTS_ADDRESS"])
N_WEIGHTS = int(os.environ["HOST_TB_WEIGHTS"])
LOAD, DUMP = int(os.environ["HOST_TB_LOAD"]), int(os.environ["HOST_TB_DUMP"])


class Host:
    def __init__(self, dut):
        self.source = UartSource(dut.rx, baud=BAUD)
        self.sink = UartSink(dut.tx, baud=BAUD)
        self.pending = b""
        self.seq = 0

    async def exchange(self, cmd, address=0, count=0, flags=0, payload=b"", wire=None,
                       timeout_us=20_000):
        self.seq = (self.seq + 1) & 0xFF
        if wire is None:
            wire = encode_request(self.seq, cmd, address, count, flags, payload)
        await self.source.write(wire)
        waited = 0
        while True:
            frames, self.pending = split_frames(self.pending)
            if frames:
                assert len(frames) == 1, frames
                return decode_response(frames[0])
            if not self.sink.empty():
                self.pending += bytes(self.sink.read_nowait())
                continue
            await Timer(10, "us")
            waited += 10
            assert waited < timeout_us, "no response"


@cocotb.test()
async def host_link_over_uart(dut):
    # reset asserted before the first clock edge (an X on rst would reach every register)
    dut.rst.value = 1
    host = Host(dut)
    cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps").start(start_high=False))
    await Timer(10 * CLOCK_PS, "ps")
    dut.rst.value = 0
    await Timer(5, "us")

    r = await host.exchange(Command.INFO)
    assert r.status == Status.OK and r.payload[0] == PROTOCOL_VERSION
    echo = bytes(range(256)) * 2
    r = await host.exchange(Command.ECHO, payload=echo[:int.from_bytes(r.payload[2:], "little")])
    assert r.status == Status.OK and r.payload == echo[:len(r.payload)] and len(r.payload) >= 64

    r = await host.exchange(Command.READ, ID, 4)
    assert r.status == Status.OK and unpack_elements(r.payload, 4)[0] & 0xFFFF == MAGIC
    r = await host.exchange(Command.WRITE, SEED, 4, payload=pack_elements([0x1234_5678], 4))
    assert (r.status, r.count) == (Status.OK, 4)                   # count: bytes
    r = await host.exchange(Command.READ, SEED, 4)
    assert unpack_elements(r.payload, 4) == [0x1234_5678]

    bad = bytearray(encode_request(99, Command.WRITE, SEED, 4, 0, bytes(4)))
    bad[4] ^= 0x01
    r = await host.exchange(None, wire=bytes(bad))
    assert r.status == Status.BAD_CRC
    r = await host.exchange(Command.READ, SEED, 4)
    assert unpack_elements(r.payload, 4) == [0x1234_5678]         # nothing written

    # weights: a LOAD run through the window, then a DUMP run reads them back
    weights = [(i * 37 - 500) for i in range(N_WEIGHTS)]
    assert (await host.exchange(Command.WRITE, MODE, 4, payload=pack_elements([LOAD], 4))
            ).status == Status.OK
    assert (await host.exchange(Command.START)).status == Status.OK
    r = await host.exchange(Command.WRITE, WEIGHTS, 2 * N_WEIGHTS,
                            payload=pack_elements(weights, 2))
    assert (r.status, r.count) == (Status.OK, 2 * N_WEIGHTS)
    assert (await host.exchange(Command.WRITE, MODE, 4, payload=pack_elements([DUMP], 4))
            ).status == Status.OK
    assert (await host.exchange(Command.START)).status == Status.OK
    r = await host.exchange(Command.READ, WEIGHTS, 2 * N_WEIGHTS)
    assert r.status == Status.OK
    assert unpack_elements(r.payload, 2, signed=True) == weights
    r = await host.exchange(Command.STATUS)
    status, errors = unpack_elements(r.payload, 4)
    assert r.status == Status.OK and errors == 0 and status & 2      # done, no error flag
