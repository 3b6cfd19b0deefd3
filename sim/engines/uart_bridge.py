"""A UART at bit level on a CXXRTL simulation: bytes in on a design's ``rx``, bytes out of its
``tx``, in native code.

:class:`UartBridge` attaches to a running :class:`~fieldtune.sim.engines.cxxrtl.CxxrtlSimulation`
(``uart_bridge.cc``, a small shared library independent of the design, compiled once and
cached like the models). :meth:`UartBridge.send` queues bytes; :meth:`UartBridge.run` clocks the
design, driving ``rx`` bit by bit (8N1, idle high, LSB first, ``bit_cycles`` per bit, bytes back
to back) and decoding what ``tx`` sends (the middle of every bit; a low stop bit is a framing
error, counted and dropped), until a delimiter byte (0x00) arrived (with nothing more queued to
send) or a cycle budget ran out;
:meth:`UartBridge.receive` returns the bytes decoded. Usage::

    model = cxxrtl.build(HostSystem(config), env=tool_env("YOSYS"))
    with model.simulate() as sim:
        uart = UartBridge(sim, bit_cycles=8)
        uart.send(request)
        uart.run(max_cycles=100_000)          # until a 0x00 came back, or 100,000 cycles
        response = uart.receive()

Timing contract: bytes queued while the line is idle start at the current cycle; a received
byte is available after the middle of its stop bit.
"""

import ctypes
from pathlib import Path

from .cxxrtl import compiler_program
from .hdl import cached_build, digest, run_checked, tool_version


__all__ = ["UartBridge", "build_bridge"]


_SOURCE = "uart_bridge.cc"
_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-w")

_LIBRARY = {}


def build_bridge(*, compiler=None, cache=None):
    """Path of the compiled bridge library (built on a cache miss)."""
    source = (Path(__file__).parent / _SOURCE).read_text()
    cxx = compiler_program(compiler)
    key = digest(source, cxx, tool_version([cxx, "--version"]), " ".join(_FLAGS))

    def compile_bridge(work):
        (work / _SOURCE).write_text(source)
        run_checked([cxx, *_FLAGS, "-o", "bridge.so", _SOURCE], cwd=work,
                    log=work / "bridge.log", what="compiling the UART bridge")
        return work / "bridge.so"

    return cached_build("cxxrtl", key, ".so", compile_bridge, directory=cache)


def _load(path):
    lib = _LIBRARY.get(path)
    if lib is not None:
        return lib
    lib = ctypes.CDLL(str(path))
    vp, u64 = ctypes.c_void_p, ctypes.c_uint64
    signatures = {
        "ft_uart_create": ([vp] * 8 + [u64], vp),
        "ft_uart_destroy": ([vp], None),
        "ft_uart_send": ([vp, ctypes.c_char_p, u64], None),
        "ft_uart_pending": ([vp], u64),
        "ft_uart_run": ([vp, u64, ctypes.c_int, ctypes.c_int], u64),
        "ft_uart_receive": ([vp, ctypes.c_char_p, u64], u64),
        "ft_uart_available": ([vp], u64),
        "ft_uart_framing_errors": ([vp], u64),
    }
    for fn, (args, res) in signatures.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = res
    _LIBRARY[path] = lib
    return lib


class UartBridge:
    """The UART on ``simulation``'s ``rx`` (input) and ``tx`` (output) ports, ``bit_cycles``
    clock cycles per bit (at least 2). The bridge lives as long as the simulation; it drives
    ``rx`` high (idle) at once."""

    def __init__(self, simulation, *, bit_cycles, rx="rx", tx="tx", compiler=None,
                 cache=None):
        self._bridge = None
        if not isinstance(bit_cycles, int) or bit_cycles < 2:
            raise ValueError(f"bit_cycles must be an integer of at least 2, not {bit_cycles!r}")
        self.simulation = simulation
        self.bit_cycles = bit_cycles
        self._lib = _load(build_bridge(compiler=compiler, cache=cache))
        fn = simulation.native_function
        self._bridge = self._lib.ft_uart_create(
            simulation.native_handle(), simulation.native_object(rx),
            simulation.native_object(tx), fn("ft_wait"), fn("ft_step"), fn("ft_set"),
            fn("ft_get"), fn("ft_cycles"), bit_cycles)

    def close(self):
        if self._bridge:
            self._lib.ft_uart_destroy(self._bridge)
            self._bridge = None

    def __del__(self):
        self.close()

    def _live(self):
        if not self._bridge:
            raise RuntimeError("this UART bridge is closed")
        return self._bridge

    def send(self, data):
        """Queue ``data`` (bytes) for ``rx``; it goes out while :meth:`run` clocks."""
        data = bytes(data)
        self._lib.ft_uart_send(self._live(), data, len(data))

    @property
    def pending(self):
        """Bytes queued or on the line towards ``rx``."""
        return self._lib.ft_uart_pending(self._live())

    @property
    def available(self):
        """Bytes received from ``tx`` and not yet taken by :meth:`receive`."""
        return self._lib.ft_uart_available(self._live())

    @property
    def framing_errors(self):
        """Bytes from ``tx`` dropped because their stop bit was low."""
        return self._lib.ft_uart_framing_errors(self._live())

    def run(self, max_cycles, *, until_delimiter=True):
        """Clock at most ``max_cycles`` cycles; with ``until_delimiter``, stop once a 0x00
        byte arrived on ``tx`` and no queued byte is left to start on ``rx``. Returns the
        cycles run."""
        return self._lib.ft_uart_run(self._live(), max_cycles, int(until_delimiter), 1)

    def receive(self):
        """The bytes received from ``tx`` since the last call."""
        n = self.available
        buf = ctypes.create_string_buffer(max(1, n))
        got = self._lib.ft_uart_receive(self._live(), buf, n)
        return buf.raw[:got]

