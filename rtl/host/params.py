"""Parameters of the host link (TOML table ``[host]``)."""

from dataclasses import dataclass

from ..params import Params, check_int, check_pow2
from .protocol import OVERHEAD


__all__ = ["HostParams", "MIN_BIT_CYCLES", "MAX_BAUD_ERROR"]


#: Fewest clock cycles per UART bit: the receiver needs a start bit's middle and a margin.
MIN_BIT_CYCLES = 4
#: Largest mismatch between the configured baud and the one the divider makes (a part of the
#: +-2 % a link tolerates end to end).
MAX_BAUD_ERROR = 0.01


@dataclass(frozen=True)
class HostParams(Params):
    """Host link configuration.

    Parameters
    ----------
    baud : int
        UART bit rate, 9600 to 12,000,000 (default 3 Mbaud).
    clock_hz : int
        Frequency of the clock the link runs on, 1 MHz to 500 MHz (default 24 MHz); the bit
        time is ``round(clock_hz / baud)`` cycles, at least :data:`MIN_BIT_CYCLES`, within
        :data:`MAX_BAUD_ERROR` of the configured baud.
    max_payload : int
        Largest payload of a frame in bytes, a power of two from 16 to 4096 (the payload
        buffer holds ``max_payload`` bytes: one block RAM at 512; the header and the CRC are
        not kept in it).
    rx_fifo : int
        Received bytes held in block RAM while the link executes a frame (one more waits in
        the FIFO's output register), a power of two from 16 to 4096 (default 256: one block
        RAM); or 0: no FIFO, no block RAM, and bytes that arrive while a frame is executed or
        answered are dropped. Without a FIFO a host must not resend while the device may still
        be answering an earlier copy (the copy's dropped head makes its tail an OVERFLOW frame
        that drops the resend's head in turn): :class:`fieldtune.host.driver.HostDriver`
        resends at once after an error answer, so it needs the FIFO on a noisy line.
    bus_timeout : int
        Cycles a bus access may take before the link gives up (BUS_TIMEOUT), 16 to 2**24.
    """

    section = "host"

    baud: int = 3_000_000
    clock_hz: int = 24_000_000
    max_payload: int = 512
    rx_fifo: int = 256
    bus_timeout: int = 1 << 16

    def _validate(self):
        s = self.section
        check_int(s, "baud", self.baud, 9600, 12_000_000)
        check_int(s, "clock_hz", self.clock_hz, 1_000_000, 500_000_000)
        check_pow2(s, "max_payload", self.max_payload, 16, 4096)
        if self.rx_fifo != 0:
            try:
                check_pow2(s, "rx_fifo", self.rx_fifo, 16, 4096)
            except ValueError:
                raise ValueError(f"host.rx_fifo must be 0 (no FIFO) or a power of two from 16 "
                                 f"to 4096, not {self.rx_fifo!r}") from None
        check_int(s, "bus_timeout", self.bus_timeout, 16, 1 << 24)
        fastest = self.clock_hz // MIN_BIT_CYCLES
        if self.baud > fastest:
            raise ValueError(f"host.baud must be an integer from 9600 to {fastest} "
                             f"(host.clock_hz / {MIN_BIT_CYCLES}), not {self.baud}")
        actual = self.clock_hz / self.bit_cycles
        if abs(actual / self.baud - 1) > MAX_BAUD_ERROR:
            raise ValueError(f"host.baud must be within {MAX_BAUD_ERROR:.0%} of "
                             f"host.clock_hz / n for an integer n (the UART's bit time), not "
                             f"{self.baud} (host.clock_hz {self.clock_hz} gives "
                             f"{actual:.0f} baud at n = {self.bit_cycles})")

    @property
    def bit_cycles(self):
        """Clock cycles per UART bit."""
        return max(1, round(self.clock_hz / self.baud))

    @property
    def frame_bytes(self):
        """Bytes of the longest frame (header, payload, CRC) before COBS."""
        return self.max_payload + OVERHEAD
