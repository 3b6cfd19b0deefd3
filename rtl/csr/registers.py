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

A ``stored`` register (all fields ``rw``, or all ``ro``) lives in a block RAM, not in
flip-flops: it has no port in ``regs``; hardware reads it through the bank's ``store`` port
(:func:`store_port`: a read address, data the cycle after), which also gives hardware
``scratch`` words of its own to write and read (the memory reads the hardware's address
whenever the bus does not need it). A stored ``ro`` register is written by hardware only,
through the same port (at its word, :meth:`RegisterBank.store_address`); the bus's writes
to it are ignored. A stored register's word is its bus address (:func:`store_words`: the
address selects the word as it is, no translation).
A bus read of a stored register returns the word last written to it, bits
outside its fields included (after reset: the fields' ``init``), and takes two cycles; a write
takes one. The hardware port has priority: a bus access to the memory waits while hardware
uses the port it needs. A reset that is not a reconfiguration leaves the memory as it was.

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


__all__ = ["Field", "Register", "RegisterBank", "ACCESS_MODES", "store_port", "scratch_base",
           "store_words"]


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
    ``locked``: it ignores writes while the bank's ``lock`` is high; ``stored``: it lives in
    block RAM (module documentation)."""
    name: str
    fields: tuple = field(default_factory=tuple)
    doc: str = ""
    locked: bool = False
    stored: bool = False

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.name.isidentifier():
            raise ValueError(f"Register name must be an identifier, not {self.name!r}")
        names = [f.name for f in self.fields]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Register {self.name!r} needs fields with distinct names, "
                             f"not {names}")
        if self.stored and (len({f.access for f in self.fields}) != 1
                            or self.fields[0].access not in ("rw", "ro")
                            or any(f.value is not None for f in self.fields)):
            raise ValueError(f"Register {self.name!r} is stored, so its fields must be all rw "
                             f"or all ro (written by hardware through the store port)")
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
    if reg.stored:
        return wiring.Signature(members)
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


def store_port(depth):
    """The hardware's port onto a bank's block RAM of ``depth`` words (the hardware's view).
    The memory reads word ``raddr`` every cycle the bus does not need it: ``rdata`` holds the
    word of the previous cycle's ``raddr`` when ``rvalid`` is high, which it always is after a
    cycle with ``ren`` (a read that goes before the bus's). ``wen`` writes ``wdata`` to word
    ``waddr`` (before the bus's writes too)."""
    return wiring.Signature({"raddr": Out(range(max(2, depth))), "ren": Out(1),
                             "rdata": In(DATA_WIDTH), "rvalid": In(1),
                             "waddr": Out(range(max(2, depth))), "wen": Out(1),
                             "wdata": Out(DATA_WIDTH)})


def scratch_base(stored):
    """Block-RAM word of the first scratch word after ``stored`` words of stored registers:
    the next power of two (a scratch address is then the base with the index in its low
    bits)."""
    return 1 << max(0, stored - 1).bit_length()


def store_words(registers):
    """``{name: word}``: the block-RAM word of each stored register of a bank of
    ``registers`` (in order), which is its bus address."""
    return {r.name: address for address, r in enumerate(registers) if r.stored}


class RegisterBank(wiring.Component):
    """Registers at word addresses 0, 1, ... in the order given.

    Parameters
    ----------
    registers : iterable of Register
    scratch : int
        Words of the block RAM for the hardware's own use, from :attr:`scratch_base` (the
        power of two after the stored registers' words).

    Attributes
    ----------
    bus : In(BusSignature)
        The target port.
    regs : Out(Signature)
        ``regs.<register>.<field>`` per the access table in the module documentation
        (nothing for a ``stored`` register).
    store : In(store_port(store_depth))
        The hardware's port onto the block RAM of the stored registers and the scratch words
        (only when there are any). It has priority over the bus.
    lock : In(1)
        While high, writes to ``locked`` registers are ignored.
    locked_write : Out(1)
        Strobe (registered, with the write's ``ack``): a write was ignored for ``lock``.
    """

    def __init__(self, registers, scratch=0):
        self.registers = tuple(registers)
        names = [r.name for r in self.registers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"RegisterBank needs registers with distinct names, not {names}")
        if isinstance(scratch, bool) or not isinstance(scratch, int) or scratch < 0:
            raise ValueError(f"scratch must be a non-negative integer, not {scratch!r}")
        self.addr_width = max(1, (len(self.registers) - 1).bit_length())
        #: Stored registers in block-RAM word order.
        self.stored = tuple(r.name for r in self.registers if r.stored)
        #: Their block-RAM words (:func:`store_words`: their bus addresses).
        self.store_words = store_words(self.registers)
        #: Block-RAM word of the first scratch word (:func:`scratch_base`).
        self.scratch_base = scratch_base(max(self.store_words.values(), default=-1) + 1)
        #: Words of the block RAM (stored registers, then scratch; 0: no block RAM).
        self.store_depth = self.scratch_base + scratch if self.stored or scratch else 0
        store = {"store": In(store_port(self.store_depth))} if self.store_depth else {}
        super().__init__({
            "bus": In(BusSignature(self.addr_width)),
            "regs": Out(wiring.Signature({r.name: Out(_field_members(r))
                                          for r in self.registers})),
            **store,
            "lock": In(1),
            "locked_write": Out(1),
        })

    def address(self, name):
        """Word address of register ``name``."""
        for i, r in enumerate(self.registers):
            if r.name == name:
                return i
        raise KeyError(name)

    def store_address(self, name):
        """Block-RAM word of stored register ``name`` (its bus address)."""
        return self.store_words[name]

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
        store = self._store(m, access)
        # the access's last cycle: the first, or the block RAM's last
        last = Signal()
        m.d.comb += last.eq(~store["hit"] | store["done"])
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
            if reg.stored:
                values.append(store["data"])
                continue
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
            values.append(value)
        # one multiplexer over the address (not a priority chain of comparisons)
        with m.Switch(bus.adr):
            for addr, value in enumerate(values):
                with m.Case(addr):
                    m.d.comb += read_value.eq(value)
        m.d.sync += bus.dat_r.eq(Mux(access & last, read_value, 0))   # 0 outside ack
        m.d.sync += self.locked_write.eq(self.lock & Cat(*locked).any())
        return m

    def _store(self, m, access):
        """The block RAM of the stored registers (word ``store_address``) and the scratch
        words, shared by the bus and the hardware's ``store`` port (which goes first).
        ``hit``: the bus access is to a stored register; ``done``: its last cycle (a
        write's first, a read's second, later while the hardware holds the port); ``data``:
        the word read. The memory is ``_norw``: no bus access reads and writes it at once,
        and the hardware reads a word it wrote only cycles later (its own contract)."""
        bus = self.bus
        hit = Signal()
        if not self.store_depth:
            return {"hit": hit, "done": Const(1), "data": Const(0, DATA_WIDTH)}
        at = sorted(self.store_words.values())
        init = [self.registers[a].reset_word() if a in at else 0
                for a in range(self.store_depth)]
        m.submodules.store_norw = mem = Memory(shape=DATA_WIDTH, depth=self.store_depth,
                                               init=init)
        wr, rd = mem.write_port(), mem.read_port(transparent_for=())
        word = Signal(range(max(2, self.store_depth)))        # the bus address's word
        m.d.comb += word.eq(bus.adr)
        with m.Switch(bus.adr):
            for a in at:
                with m.Case(a):
                    m.d.comb += hit.eq(1)
        blocked = Signal()              # a locked register's write while locked; read only
        m.d.comb += blocked.eq((self.lock & Cat(*(bus.adr == a for a in at
                                                   if self.registers[a].locked)).any())
                               | Cat(*(bus.adr == a for a in at
                                       if self.registers[a].fields[0].access == "ro")).any())
        hw = self.store
        reading = Signal()              # the bus's read was issued last cycle
        done = Signal()
        m.d.comb += done.eq(Mux(bus.we, ~hw.wen, reading))
        bus_read = access & hit & ~bus.we & ~reading & ~hw.ren
        m.d.comb += [rd.en.eq(1), rd.addr.eq(Mux(bus_read, word, hw.raddr)),
                     wr.en.eq(hw.wen | (access & hit & bus.we & ~blocked)),
                     wr.addr.eq(Mux(hw.wen, hw.waddr, word)),
                     wr.data.eq(Mux(hw.wen, hw.wdata, bus.dat_w)),
                     hw.rdata.eq(rd.data), hw.rvalid.eq(~reading)]
        m.d.sync += reading.eq(bus_read)
        return {"hit": hit, "done": done, "data": rd.data}
