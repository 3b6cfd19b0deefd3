"""UART, 8N1, LSB first: a receiver and a transmitter with a bit time of ``bit_cycles`` clocks.

Receiver: the line passes a two-flip-flop synchronizer and is sampled every clock. A falling
edge starts a bit timer; half a bit later the start bit must still be low (else it was a
glitch and the receiver hunts again); then each data bit and the stop bit are taken one bit
time apart, in their middles. A low stop bit is a framing error: the byte goes out flagged
(``ferr``) and the receiver waits for the line to be idle (high) before it hunts for the next
start bit, so it resynchronizes on the first idle after any garbage.

Timing: the receiver's ``byte`` stream has no back-pressure (``valid`` for one cycle, about
``bit_cycles / 2 + 2`` cycles after the middle of the stop bit... the synchronizer's two cycles
plus the stop bit's middle); the transmitter takes a byte when idle and sends start, 8 data
bits and stop, ``10 * bit_cycles`` cycles per byte.
"""

from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import wiring, stream, data
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


__all__ = ["UartRx", "UartTx", "rx_byte_layout"]


def rx_byte_layout():
    """A received byte: ``data`` and ``ferr`` (its stop bit was low)."""
    return data.StructLayout({"data": 8, "ferr": 1})


class UartRx(wiring.Component):
    """UART receiver (see the module documentation).

    Attributes
    ----------
    rx : In(1)
        The line (idle high); synchronized inside.
    byte : Out(stream.Signature(rx_byte_layout()))
        Received bytes; ``ready`` is ignored (no back-pressure).
    """

    def __init__(self, bit_cycles):
        if bit_cycles < 4:
            raise ValueError(f"UART bit time must be at least 4 cycles, not {bit_cycles}")
        self.bit_cycles = bit_cycles
        super().__init__({"rx": In(1, init=1), "byte": Out(stream.Signature(rx_byte_layout()))})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.bit_cycles))
        # the data bits enter at the top behind a marker bit loaded at the start bit: the byte
        # is complete when the marker reaches bit 0 (no bit counter)
        shift = Signal(9)
        tick = Signal()
        m.d.comb += tick.eq(timer == 0)
        m.d.sync += timer.eq(timer - 1)
        with m.If(tick):
            m.d.sync += timer.eq(self.bit_cycles - 1)
        m.d.sync += self.byte.valid.eq(0)
        # the shift register is the byte: it holds still from the stop bit's middle until
        # the next byte's first data bit, long after ``valid``'s one cycle
        m.d.comb += self.byte.payload.data.eq(shift[1:])

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):        # wait for the line to be high
                with m.If(line):
                    m.next = "HUNT"
            with m.State("HUNT"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.bit_cycles // 2 - 1)
                    m.next = "START"
            with m.State("START"):       # the middle of the start bit must be low
                with m.If(tick):
                    m.d.sync += shift.eq(1 << 8)
                    with m.If(line):
                        m.next = "HUNT"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += shift.eq(Cat(shift[1:], line))
                    with m.If(shift[1]):         # the marker lands in bit 0: 8 bits taken
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    m.d.sync += [self.byte.valid.eq(1), self.byte.payload.ferr.eq(~line)]
                    with m.If(line):
                        m.next = "HUNT"
                    with m.Else():
                        m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """UART transmitter: ``byte`` stream in, ``tx`` line out (idle high)."""

    def __init__(self, bit_cycles):
        if bit_cycles < 1:
            raise ValueError(f"UART bit time must be at least 1 cycle, not {bit_cycles}")
        self.bit_cycles = bit_cycles
        super().__init__({"byte": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.bit_cycles))
        # the data bits then the stop bit (1), shifted out toward bit 0 with zeros behind: the
        # register is 0 once the stop bit is on the line (no bit counter)
        shift = Signal(9)
        busy = Signal()
        m.d.comb += self.byte.ready.eq(~busy)
        with m.If(busy):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += timer.eq(self.bit_cycles - 1)
                with m.If(shift == 0):           # the stop bit has lasted its bit time
                    m.d.sync += busy.eq(0)
                with m.Else():
                    m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1)]
        with m.Elif(self.byte.valid):
            m.d.sync += [busy.eq(1), self.tx.eq(0), timer.eq(self.bit_cycles - 1),
                         shift.eq(self.byte.payload | (1 << 8))]
        return m
