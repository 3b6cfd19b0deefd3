"""The CXXRTL UART bridge at bit level: a loopback design (``tx`` is ``rx`` one flip-flop
later) returns every byte sent, at several bit times, with the delimiter stop and the cycle
budget honoured."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fieldtune.sim.engines import cxxrtl
from fieldtune.sim.engines.uart_bridge import UartBridge
from fieldtune.toolchain import tool_env


WHY = "the CXXRTL engine compiles with it (apt-get install g++)"


class Loopback(wiring.Component):
    rx: In(1, init=1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


@pytest.fixture(scope="module")
def model(require_programs):
    require_programs("g++", why=WHY)
    return cxxrtl.build(Loopback(), env=tool_env("YOSYS"))


@pytest.mark.parametrize("bit_cycles", [4, 8, 13])
def test_loopback_returns_every_byte(model, bit_cycles):
    data = bytes(range(1, 256)) + b"\x00" + bytes([0xFF, 0x55, 0xAA, 0x00])
    with model.simulate() as sim:
        uart = UartBridge(sim, bit_cycles=bit_cycles)
        uart.send(data)
        assert uart.pending == len(data)
        got = b""
        while len(got) < len(data):
            ran = uart.run(100 * bit_cycles * len(data))
            assert ran > 0
            got += uart.receive()
        assert got == data and uart.framing_errors == 0
        # 10 bits a byte, back to back: the echo of the last stop bit's middle ends the run
        assert sim.cycles == len(data) * 10 * bit_cycles - bit_cycles + bit_cycles // 2 + 1
        assert uart.pending == 1              # its stop bit is still on the line
        uart.run(bit_cycles, until_delimiter=False)
        assert uart.pending == 0


def test_run_stops_at_a_delimiter_once_rx_is_sent_else_at_the_budget(model):
    with model.simulate() as sim:
        uart = UartBridge(sim, bit_cycles=8)
        uart.send(b"\x05\x00")
        ran = uart.run(10**6)                 # the 0x00 came back, nothing left to send
        assert ran < 3 * 10 * 8 and uart.receive() == b"\x05\x00"
        uart.send(b"\x01\x00\x03")
        assert uart.run(10**5) == 10**5       # 0x03 was still to send: no early stop
        assert uart.receive() == b"\x01\x00\x03" and uart.pending == 0
        assert uart.run(1000, until_delimiter=True) == 1000    # an idle line
        assert uart.receive() == b""
    with pytest.raises(ValueError, match=r"^bit_cycles must be an integer of at least 2, not 1$"):
        UartBridge(None, bit_cycles=1)
