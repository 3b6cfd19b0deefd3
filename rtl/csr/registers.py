"""Registers declared as data, with their access modes; the memory map is generated from them.

A :class:`Register` is a list of :class:`Field` packed from bit 0 upward into one 32-bit bus
word. :class:`RegisterBank` lays registers out at consecutive word addresses and exposes each
field to the gateware as a port of the interface ``bank.regs.<register>``:

=========  ============================================  =======================================
access     software (bus)                                hardware port(s)
=========  ============================================  =======================================
``rw``     read and write; reset value ``init``          ``Out(width)``: the current value
``ro``     read only (writes ignored)                    ``In(width)``: value to show (none for
                                                         a constant ``value``)
``w1p``    write: pulse; reads as 0                      ``Out(width)``: written bits for 1 cycle
``w1c``    read; writing 1 clears a bit                  ``Out(width)`` sticky bits;
                                                         ``In(width)`` ``<name>_set``: set bits
=========  ============================================  =======================================

A ``w1c`` bit that hardware sets in the same cycle software clears it stays set (no event is
lost). A ``locked`` register ignores writes while the bank's ``lock`` input is high (the write
is answered with ``ack`` and raises the ``locked_write`` strobe): hardware that reads those
fields during an operation needs no copy of its own.

A ``mirrored`` register (``rw`` fields only) reads back from a copy in a block RAM instead of
its flip-flops, which keeps it out of the read multiplexer (about one LUT4 per bit): a read
returns the word last written to it, bits outside its fields included (after reset: the
fields' ``init``), and takes three cycles; a write takes two (the copy is written 16 bits a
cycle). A reset that is not a reconfiguration leaves the copy as it was.

Timing: a bus access is answered with ``ack`` one cycle after ``cyc`` rises (two cycles per
access back to back); an address past the last register is answered with ``err``; ``dat_r``
is 0 outside the ``ack`` cycle.
"""

from dataclasses import dataclass, field

from amaranth.hdl import Module, Signal, Mux, Const, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .bus import BusSignature, DATA_WIDTH


__all__ = ["Field", "Register", "RegisterBank", "ACCESS_MODES"]


#: Access modes, see the module documentation.
ACCESS_MODES = ("rw", "ro", "w1p", "w1c")


@dataclass(frozen=True)
class Field:
    """One field: ``name``, ``width`` bits, ``access`` mode, reset value ``init``, ``doc``;
    ``value``: a read-only field fixed when the design is generated (the bank holds the
    constant and has no port for it)."""
    name: str
    width: int = 1
    access: str = "rw"
    init: int = 0
    doc: str = ""
    value: "int | None" = None

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"Field name must be an identifier, not {self.name!r}")
        if not isinstance(self.width, int) or not 1 <= self.width <= DATA_WIDTH:
            raise ValueError(f"Field {self.name!r} width must be an integer from 1 to "
                             f"{DATA_WIDTH}, not {self.width!r}")
        if self.access not in ACCESS_MODES:
            raise ValueError(f"Field {self.name!r} access must be one of "
                             f"{', '.join(ACCESS_MODES)}, not {self.access!r}")
        if not 0 <= self.init < (1 << self.width):
            raise ValueError(f"Field {self.name!r} init must be from 0 to "
                             f"{(1 << self.width) - 1}, not {self.init!r}")
        if self.value is not None and (self.access != "ro"
                                       or not 0 <= self.value < (1 << self.width)):
            raise ValueError(f"Field {self.name!r} value must be a read-only field's constant "
                             f"from 0 to {(1 << self.width) - 1}, not {self.value!r}")


@dataclass(frozen=True)
class Register:
    """A named register of fields packed LSB first; ``doc`` describes it for the memory map;
    ``locked``: it ignores writes while the bank's ``lock`` is high; ``mirrored``: it reads
    back from a block-RAM copy (module documentation)."""
    name: str
    fields: tuple = field(default_factory=tuple)
    doc: str = ""
    locked: bool = False
    mirrored: bool = False

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.name.isidentifier():
            raise ValueError(f"Register name must be an identifier, not {self.name!r}")
        names = [f.name for f in self.fields]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Register {self.name!r} needs fields with distinct names, "
                             f"not {names}")
        if self.mirrored and any(f.access != "rw" for f in self.fields):
            raise ValueError(f"Register {self.name!r} is mirrored, so its fields must be rw")
        if sum(f.width for f in self.fields) > DATA_WIDTH:
            raise ValueError(f"Register {self.name!r} fields take "
                             f"{sum(f.width for f in self.fields)} bits, more than "
                             f"{DATA_WIDTH}")

    def reset_word(self):
        """The word of the fields' ``init`` values."""
        return sum(f.init << lsb for f, lsb in self.layout())

    def layout(self):
        """``[(field, lsb)]``."""
        out, lsb = [], 0
        for f in self.fields:
            out.append((f, lsb))
            lsb += f.width
        return out


def _field_members(reg):
    members = {}
    for f in reg.fields:
        if f.value is not None:
            continue
        if f.access == "ro":
            members[f.name] = In(f.width)
        else:
            members[f.name] = Out(f.width, init=f.init if f.access == "rw" else 0)
        if f.access == "w1c":
            members[f.name + "_set"] = In(f.width)
    return wiring.Signature(members)


class RegisterBank(wiring.Component):
    """Registers at word addresses 0, 1, ... in the order given.

    Attributes
    ----------
    bus : In(BusSignature)
        The target port.
    regs : Out(Signature)
        ``regs.<register>.<field>`` per the access table in the module documentation.
    lock : In(1)
        While high, writes to ``locked`` registers are ignored.
    locked_write : Out(1)
        Strobe (registered, with the write's ``ack``): a write was ignored for ``lock``.
    """

    def __init__(self, registers):
        self.registers = tuple(registers)
        names = [r.name for r in self.registers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"RegisterBank needs registers with distinct names, not {names}")
        self.addr_width = max(1, (len(self.registers) - 1).bit_length())
        super().__init__({
            "bus": In(BusSignature(self.addr_width)),
            "regs": Out(wiring.Signature({r.name: Out(_field_members(r))
                                          for r in self.registers})),
            "lock": In(1),
            "locked_write": Out(1),
        })

    def address(self, name):
        """Word address of register ``name``."""
        for i, r in enumerate(self.registers):
            if r.name == name:
                return i
        raise KeyError(name)

    def memory_map(self):
        """The map as data: ``[{"name", "address", "fields": [{"name", "lsb", "width",
        "access", "init", "doc"}], "doc"}]`` (for docs and the host driver)."""
        return [{"name": r.name, "address": i, "doc": r.doc,
                 "fields": [{"name": f.name, "lsb": lsb, "width": f.width, "access": f.access,
                             "init": f.init, "doc": f.doc} for f, lsb in r.layout()]}
                for i, r in enumerate(self.registers)]

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        responded = Signal()
        access = Signal()
        m.d.comb += access.eq(bus.cyc & ~responded)
        m.d.sync += [responded.eq(0), bus.ack.eq(0), bus.err.eq(0)]
        mirror = self._mirror(m, access)
        # the access's last cycle: the first, or the mirror's last
        last = Signal()
        m.d.comb += last.eq(~mirror["hit"] | mirror["done"])
        in_range = bus.adr < len(self.registers)
        with m.If(access & last):
            m.d.sync += [responded.eq(1), bus.ack.eq(in_range), bus.err.eq(~in_range)]

        read_value = Signal(DATA_WIDTH)
        values, locked = [], []
        for addr, reg in enumerate(self.registers):
            ports = getattr(self.regs, reg.name)
            selected = Signal(name=f"sel_{reg.name}")
            m.d.comb += selected.eq(access & last & (bus.adr == addr))
            write = selected & bus.we
            if reg.locked:
                locked.append(write)
                write = write & ~self.lock
            word = []
            for f, lsb in reg.layout():
                if f.value is not None:
                    word.append((Const(f.value, f.width), lsb))
                    continue
                port = getattr(ports, f.name)
                bits = bus.dat_w[lsb:lsb + f.width]
                if f.access == "rw":
                    with m.If(write):
                        m.d.sync += port.eq(bits)
                    word.append((port, lsb))
                elif f.access == "ro":
                    word.append((port, lsb))
                elif f.access == "w1p":
                    m.d.sync += port.eq(Mux(write, bits, 0))
                elif f.access == "w1c":
                    setter = getattr(ports, f.name + "_set")
                    clear = Mux(write, bits, 0)
                    m.d.sync += port.eq((port & ~clear) | setter)
                    word.append((port, lsb))
            value = 0
            for port, lsb in word:
                value = value | (port.as_unsigned() << lsb)
            values.append(mirror["data"] if reg.mirrored else value)
        # one multiplexer over the address (not a priority chain of comparisons)
        with m.Switch(bus.adr):
            for addr, value in enumerate(values):
                with m.Case(addr):
                    m.d.comb += read_value.eq(value)
        m.d.sync += bus.dat_r.eq(Mux(access & last, read_value, 0))   # 0 outside ack
        m.d.sync += self.locked_write.eq(self.lock & Cat(*locked).any())
        return m

    def _mirror(self, m, access):
        """The block-RAM copy of the mirrored registers: 16-bit halves at ``2 a`` (low) and
        ``2 a + 1`` of register address ``a``. ``hit``: the access is to a mirrored
        register; ``done``: its last cycle (a write's second, a read's third); ``data``: the
        word read. The memory is ``_norw``: one bus access at a time either reads or writes
        it, never both."""
        bus = self.bus
        mirrored = [a for a, r in enumerate(self.registers) if r.mirrored]
        hit = Signal()
        if not mirrored:
            return {"hit": hit, "done": Const(1), "data": Const(0, DATA_WIDTH)}
        half = DATA_WIDTH // 2
        init = [0] * (2 << self.addr_width)
        for a in mirrored:
            word = self.registers[a].reset_word()
            init[2 * a], init[2 * a + 1] = word & (1 << half) - 1, word >> half
        m.submodules.mirror_norw = mem = Memory(shape=half, depth=len(init), init=init)
        wr, rd = mem.write_port(), mem.read_port(transparent_for=())
        phase = Signal(2)               # cycle of the access
        lo = Signal(half)
        done = Signal()
        with m.Switch(bus.adr):
            for a in mirrored:
                with m.Case(a):
                    m.d.comb += hit.eq(1)
        blocked = Signal()              # a locked register's write while locked
        m.d.comb += blocked.eq(self.lock & Cat(*(bus.adr == a for a in mirrored
                                                  if self.registers[a].locked)).any())
        m.d.comb += [done.eq(phase == Mux(bus.we, 1, 2)),
                     wr.addr.eq(Cat(phase[0], bus.adr)), rd.addr.eq(Cat(phase[0], bus.adr)),
                     wr.data.eq(Mux(phase[0], bus.dat_w[half:], bus.dat_w[:half])),
                     wr.en.eq(access & hit & bus.we & ~blocked),
                     rd.en.eq(access & hit & ~bus.we)]
        with m.If(access & hit):
            m.d.sync += phase.eq(Mux(done, 0, phase + 1))
        with m.If(phase == 1):
            m.d.sync += lo.eq(rd.data)
        return {"hit": hit, "done": done, "data": Cat(lo, rd.data)}
