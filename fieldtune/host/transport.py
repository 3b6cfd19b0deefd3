"""Byte pipes to a device running the host link (docs/protocol.md).

Every transport has the same few members, which :class:`~fieldtune.host.driver.HostDriver`
uses and nothing else:

``send(data)``
    Queue bytes towards the device.
``receive(timeout)``
    Bytes from the device: returns as soon as a frame delimiter (0x00) has arrived, or after
    ``timeout`` seconds with whatever came (possibly nothing).
``now()``
    The transport's clock in seconds: wall time on a serial port, *simulated* time in a
    simulation (so timeouts mean the same thing on a board and in the simulator).
``idle(seconds)``
    Let time pass without expecting anything; returns what arrived meanwhile.
``latency``
    Seconds a response may take beyond the bytes' time on the line (USB and OS buffering).
``baud``, ``close()``

Transports: :class:`SerialTransport` (pyserial: a board, or a pseudo-terminal that ``fieldtune
serve --sim`` opened), :class:`SimTransport` (the SoC behind its UART on CXXRTL, bit level),
:class:`GoldenTransport` (the host link's golden model on the SoC's golden model: fast, byte
exact, no timing), and :class:`FaultyLine`, which loses and corrupts bytes of another transport
in both directions (tests, ``fieldtune bench link --noise``).
"""

import random
import time
from contextlib import ExitStack

import serial

from ..rtl.csr.map import SocMap
from ..rtl.host.protocol import DELIMITER
from ..rtl.host.top import HostSystem
from ..sim.engines import cxxrtl
from ..sim.engines.uart_bridge import UartBridge
from ..sim.golden.host import HostLinkModel
from ..sim.soc_run import GoldenDevice


__all__ = ["SerialTransport", "SimTransport", "GoldenTransport", "FaultyLine", "TransportError",
           "BITS_PER_BYTE"]


#: Bits a byte takes on an 8N1 line (start, 8 data, stop).
BITS_PER_BYTE = 10


class TransportError(OSError):
    """The byte pipe itself failed (a port that does not exist, a device unplugged)."""


class SerialTransport:
    """A serial port through pyserial (``port``: a device path such as /dev/ttyUSB1 or
    /dev/pts/5, or any pyserial URL). TransportError if it cannot be opened."""

    #: USB serial adapters deliver received bytes in packets every few milliseconds, and a
    #: pseudo-terminal may have a simulation behind it that runs far slower than a board.
    latency = 0.5

    def __init__(self, port, baud):
        self.baud, self.port = baud, port
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0)
        except (serial.SerialException, ValueError, OSError) as e:
            raise TransportError(f"cannot open serial port {port}: {e}") from None
        self._serial.reset_input_buffer()

    def send(self, data):
        self._serial.write(bytes(data))
        self._serial.flush()

    def receive(self, timeout):
        self._serial.timeout = max(0.0, timeout)
        return self._serial.read_until(bytes([DELIMITER]))

    def idle(self, seconds):
        time.sleep(seconds)
        return b""

    def now(self):
        return time.monotonic()

    def close(self):
        self._serial.close()


class GoldenTransport:
    """The host link's golden model (:class:`~fieldtune.sim.golden.host.HostLinkModel`) on the
    SoC's golden model (:class:`~fieldtune.sim.soc_run.GoldenDevice`): every request is
    answered at once, byte for byte as the gateware answers it; the clock counts the line's
    time at ``config.host.baud`` (bytes both ways), nothing else."""

    latency = 0.0

    def __init__(self, config):
        self.config = config
        self.baud = config.host.baud
        self.device = GoldenDevice(config)
        self.link = HostLinkModel(SocMap(config), config.host.max_payload, self.device.bus)
        self._pending = bytearray()
        self._time = 0.0

    def _line(self, n):
        self._time += n * BITS_PER_BYTE / self.baud

    def send(self, data):
        data = bytes(data)
        self._line(len(data))
        for response in self.link.feed(data):
            self._pending += response

    def receive(self, timeout):
        end = self._pending.find(DELIMITER)
        if end < 0:
            self._time += timeout          # nothing will come: the host waits it out
            out, self._pending = bytes(self._pending), bytearray()
        else:
            out, self._pending = bytes(self._pending[:end + 1]), self._pending[end + 1:]
        self._line(len(out))
        return out

    def idle(self, seconds):
        self._time += seconds
        return b""

    def now(self):
        return self._time

    def close(self):
        pass


class SimTransport:
    """The SoC behind its host link (:class:`~fieldtune.rtl.host.top.HostSystem`) on CXXRTL,
    its UART driven at bit level (:class:`~fieldtune.sim.engines.uart_bridge.UartBridge`) at
    ``config.host.baud`` with the clock at ``config.host.clock_hz``: simulated time is cycles
    divided by the clock. ``env``: the YoWASP tool environment (Yosys). ``sim_cycles`` and
    ``sim_seconds``: the cycles simulated and the wall time they took."""

    #: The device answers within a few bus accesses of a frame's end.
    latency = 200e-6

    def __init__(self, config, *, env, vcd=None, log=None):
        self.config = config
        self.baud, self.clock_hz = config.host.baud, config.host.clock_hz
        self._stack = ExitStack()
        model = cxxrtl.build(HostSystem(config), env=env, log=log)
        self.sim = self._stack.enter_context(model.simulate())
        if vcd:
            self._stack.enter_context(self.sim.vcd(vcd))
        self.uart = UartBridge(self.sim, bit_cycles=config.host.bit_cycles)
        self.sim_cycles, self.sim_seconds = 0, 0.0

    def send(self, data):
        self.uart.send(data)

    def receive(self, timeout):
        t0 = time.perf_counter()
        self.sim_cycles += self.uart.run(max(1, round(timeout * self.clock_hz)))
        self.sim_seconds += time.perf_counter() - t0
        return self.uart.receive()

    def idle(self, seconds):
        """Let ``seconds`` of simulated time pass (the line idle unless bytes are queued);
        returns what arrived meanwhile."""
        t0 = time.perf_counter()
        self.sim_cycles += self.uart.run(max(1, round(seconds * self.clock_hz)),
                                         until_delimiter=False)
        self.sim_seconds += time.perf_counter() - t0
        return self.uart.receive()

    def now(self):
        return self.sim.cycles / self.clock_hz

    def close(self):
        self.uart.close()
        self._stack.close()


class FaultyLine:
    """``transport`` behind a bad line: every byte, in either direction, is lost with
    probability ``loss`` and gets one random bit flipped with probability ``flip``; with
    probability ``garbage`` a random byte is inserted after it (seeded: ``seed``).
    ``injected`` counts what was done."""

    def __init__(self, transport, *, loss=0.0, flip=0.0, garbage=0.0, seed=0):
        for name, p in (("loss", loss), ("flip", flip), ("garbage", garbage)):
            if not 0 <= p < 1:
                raise ValueError(f"{name} must be a probability from 0 to below 1, not {p!r}")
        self.inner = transport
        self.loss, self.flip, self.garbage = loss, flip, garbage
        self._rng = random.Random(seed)
        self.injected = {"lost": 0, "flipped": 0, "inserted": 0}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _mangle(self, data):
        out = bytearray()
        for b in bytes(data):
            r = self._rng.random
            if r() < self.loss:
                self.injected["lost"] += 1
                continue
            if r() < self.flip:
                b ^= 1 << self._rng.randrange(8)
                self.injected["flipped"] += 1
            out.append(b)
            if r() < self.garbage:
                out.append(self._rng.randrange(256))
                self.injected["inserted"] += 1
        return bytes(out)

    def send(self, data):
        self.inner.send(self._mangle(data))

    def idle(self, seconds):
        return self._mangle(self.inner.idle(seconds))

    def receive(self, timeout):
        return self._mangle(self.inner.receive(timeout))
