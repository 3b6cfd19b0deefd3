"""A small memory-mapped bus: one initiator (the host link, or a testbench), many targets.

Protocol (a subset of Wishbone B4 "classic", 32-bit words, word addresses)::

    initiator: cyc, adr, we, dat_w   held stable from the cycle cyc rises until a response
    target:    ack | err             exactly one of them, high for exactly one cycle
               dat_r                 valid in the cycle ack is high (reads), 0 in every
                                     other cycle

A target may take any number of cycles to respond but must respond: every address inside the
decoder's range is answered with ``ack`` or ``err``, never ignored, so a host can never hang on a
bad address. The initiator drops ``cyc`` (or starts the next transaction with new ``adr``) in
the cycle after the response; targets therefore gate their response with ``~ack & ~err`` of the
previous cycle, which makes back-to-back transfers take two cycles each.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BusSignature", "BusDecoder", "DATA_WIDTH"]


#: Bus word width.
DATA_WIDTH = 32


class BusSignature(wiring.Signature):
    """The bus seen from the initiator. A target uses ``In(BusSignature(...))``.

    Parameters
    ----------
    addr_width : int
        Word address bits, 1 to 30.
    """

    def __init__(self, addr_width):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 30:
            raise ValueError(f"Bus address width must be an integer from 1 to 30, "
                             f"not {addr_width!r}")
        self.addr_width = addr_width
        super().__init__({
            "cyc": Out(1),
            "we": Out(1),
            "adr": Out(addr_width),
            "dat_w": Out(DATA_WIDTH),
            "dat_r": In(DATA_WIDTH),
            "ack": In(1),
            "err": In(1),
        })

    def __eq__(self, other):
        return isinstance(other, BusSignature) and other.addr_width == self.addr_width

    def __hash__(self):
        return hash(("BusSignature", self.addr_width))

    def __repr__(self):
        return f"BusSignature({self.addr_width})"


class BusDecoder(wiring.Component):
    """Routes one initiator bus to targets at fixed, aligned base addresses.

    ``targets`` is a list of ``(name, base, addr_width)``: target ``name`` answers word
    addresses ``base`` to ``base + 2**addr_width - 1`` (``base`` aligned to its size) and
    appears as the initiator-side port ``self.targets[name]`` (``Out(BusSignature(addr_width))``)
    with addresses relative to its base. An address no target claims is answered with ``err``
    one cycle later.

    Timing: combinational routing; latency is the target's. Targets hold ``dat_r`` at 0
    outside their ``ack`` cycle (the bus protocol above), so the read data is the OR of
    theirs: no multiplexer over the address.
    """

    def __init__(self, addr_width, targets):
        members = {"bus": In(BusSignature(addr_width))}
        self._targets = []
        spans = []
        for name, base, width in targets:
            size = 1 << width
            if width > addr_width or base % size or base + size > (1 << addr_width):
                raise ValueError(f"Bus target {name!r} at {base:#x} with {size} words must be "
                                 f"aligned to its size and inside {1 << addr_width} words")
            for other, (b, s) in spans:
                if base < b + s and b < base + size:
                    raise ValueError(f"Bus target {name!r} at {base:#x} overlaps {other!r}")
            spans.append((name, (base, size)))
            self._targets.append((name, base, width))
            members[f"t_{name}"] = Out(BusSignature(width))
        super().__init__(members)

    @property
    def targets(self):
        return {name: getattr(self, f"t_{name}") for name, _, _ in self._targets}

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        claimed = Signal()
        unmapped_err = Signal()
        dat_r, ack, err = 0, 0, 0
        for name, base, width in self._targets:
            port = getattr(self, f"t_{name}")
            hit = Signal(name=f"hit_{name}")
            m.d.comb += [
                hit.eq((bus.adr >> width) == (base >> width)),
                port.adr.eq(bus.adr[:width]),
                port.we.eq(bus.we),
                port.dat_w.eq(bus.dat_w),
                port.cyc.eq(bus.cyc & hit),
            ]
            with m.If(hit):
                m.d.comb += claimed.eq(1)
            # only the addressed target responds (its cyc is the only one high)
            dat_r, ack, err = dat_r | port.dat_r, ack | port.ack, err | port.err
        # Unclaimed addresses: answer err after one cycle, once.
        m.d.sync += unmapped_err.eq(bus.cyc & ~claimed & ~unmapped_err)
        m.d.comb += [bus.dat_r.eq(dat_r), bus.ack.eq(ack), bus.err.eq(err | unmapped_err)]
        return m
