# amaranth: UnusedElaboratable=no
"""Registers and the bus decoder: every access answered, access modes as documented."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from fieldtune.rtl.csr.bus import BusDecoder, BusSignature
from fieldtune.rtl.csr.registers import Field, Register, RegisterBank
from fieldtune.sim.engines.pysim import simulate, bus_read, bus_write, BusError


def _bank():
    return RegisterBank([
        Register("control", [Field("start", 1, "w1p"), Field("mode", 2, "rw", init=1)]),
        Register("lr", [Field("shift", 5, "rw", init=4)]),
        Register("status", [Field("busy", 1, "ro"), Field("errors", 4, "w1c")]),
        Register("cycles", [Field("count", 32, "ro")]),
        Register("spare", [Field("x", 8, "rw")]),
    ])


def test_access_modes():
    bank = _bank()

    async def tb(ctx):
        assert await bus_read(ctx, bank.bus, 0) == 1 << 1      # mode init 1, start reads 0
        assert await bus_read(ctx, bank.bus, 1) == 4
        await bus_write(ctx, bank.bus, 1, 0xFFFF_FFFF)
        assert await bus_read(ctx, bank.bus, 1) == 31          # only the field's bits
        assert ctx.get(bank.regs.lr.shift) == 31
        ctx.set(bank.regs.status.busy, 1)
        ctx.set(bank.regs.cycles.count, 0xDEADBEEF)
        assert await bus_read(ctx, bank.bus, 3) == 0xDEADBEEF
        await bus_write(ctx, bank.bus, 3, 0)                   # read-only: ignored
        assert await bus_read(ctx, bank.bus, 3) == 0xDEADBEEF
        # w1c: hardware sets bits 0 and 2, software clears bit 0 only.
        ctx.set(bank.regs.status.errors_set, 0b0101)
        await ctx.tick()
        ctx.set(bank.regs.status.errors_set, 0)
        assert await bus_read(ctx, bank.bus, 2) == 1 | (0b0101 << 1)
        await bus_write(ctx, bank.bus, 2, 0b0001 << 1)
        assert await bus_read(ctx, bank.bus, 2) == 1 | (0b0100 << 1)
        # w1p: one-cycle pulse of the written bits, mode written alongside.
        await bus_write(ctx, bank.bus, 0, 0b101)
        assert await bus_read(ctx, bank.bus, 0) == 0b100         # mode = 2, start reads 0
        assert ctx.get(bank.regs.control.mode) == 2
        with pytest.raises(BusError):
            await bus_read(ctx, bank.bus, 7)                   # past the last register

    simulate(bank, tb)
    assert bank.memory_map()[2]["fields"][1] == {"name": "errors", "lsb": 1, "width": 4,
                                                "access": "w1c", "init": 0, "doc": ""}


def test_w1p_pulses_exactly_one_cycle():
    bank = _bank()
    seen = []

    async def tb(ctx):
        await bus_write(ctx, bank.bus, 0, 1)
        await bus_write(ctx, bank.bus, 1, 3)

    async def sampler(ctx):
        for _ in range(12):
            *_, v = await ctx.tick().sample(bank.regs.control.start)
            seen.append(v)

    simulate(bank, tb, sampler)
    assert sum(seen) == 1


def test_w1c_set_wins_over_clear():
    bank = _bank()

    async def tb(ctx):
        ctx.set(bank.regs.status.errors_set, 0b1000)
        await bus_write(ctx, bank.bus, 2, 0b1000 << 1)  # clear while hardware keeps setting
        ctx.set(bank.regs.status.errors_set, 0)
        assert (await bus_read(ctx, bank.bus, 2) >> 1) & 0b1000

    simulate(bank, tb)


class _Pair(wiring.Component):
    def __init__(self):
        self.dec = BusDecoder(8, [("a", 0x00, 3), ("b", 0x40, 3)])
        self.a = _bank()
        self.b = _bank()
        super().__init__({"bus": wiring.In(BusSignature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dec, m.submodules.a, m.submodules.b = self.dec, self.a, self.b
        wiring.connect(m, wiring.flipped(self.bus), self.dec.bus)
        wiring.connect(m, self.dec.targets["a"], self.a.bus)
        wiring.connect(m, self.dec.targets["b"], self.b.bus)
        return m


def test_decoder_routes_and_refuses_unmapped():
    dut = _Pair()

    async def tb(ctx):
        await bus_write(ctx, dut.bus, 0x01, 9)
        await bus_write(ctx, dut.bus, 0x41, 17)
        assert await bus_read(ctx, dut.bus, 0x01) == 9
        assert await bus_read(ctx, dut.bus, 0x41) == 17
        assert ctx.get(dut.a.regs.lr.shift) == 9 and ctx.get(dut.b.regs.lr.shift) == 17
        for bad in (0x20, 0x3F, 0x80, 0xFF, 0x47):   # 0x47: inside b's window, past its regs
            with pytest.raises(BusError):
                await bus_read(ctx, dut.bus, bad)
        assert await bus_read(ctx, dut.bus, 0x01) == 9   # still answering after errors

    simulate(dut, tb)


def test_bad_declarations():
    with pytest.raises(ValueError, match=r"^Field 'x' width must be an integer from 1 to 32, "
                                         r"not 33$"):
        Field("x", 33)
    with pytest.raises(ValueError, match=r"^Field 'x' access must be one of rw, ro, w1p, w1c, "
                                         r"not 'wo'$"):
        Field("x", 1, "wo")
    with pytest.raises(ValueError, match=r"fields take 40 bits, more than 32"):
        Register("r", [Field("a", 20), Field("b", 20)])
    with pytest.raises(ValueError, match=r"overlaps 'a'"):
        BusDecoder(8, [("a", 0x00, 4), ("b", 0x08, 2)])


def test_constant_fields_read_back_without_a_port_and_data_is_zero_outside_ack():
    bank = RegisterBank([
        Register("id", [Field("magic", 16, "ro", value=0xF17E), Field("rev", 4, "ro")]),
        Register("lr", [Field("shift", 5, "rw", init=4)]),
    ])
    assert not hasattr(bank.regs.id, "magic")

    async def tb(ctx):
        ctx.set(bank.regs.id.rev, 3)
        assert await bus_read(ctx, bank.bus, 0) == 0xF17E | 3 << 16
        await ctx.tick()
        assert ctx.get(bank.bus.dat_r) == 0        # the decoder ORs its targets' data
        assert await bus_read(ctx, bank.bus, 1) == 4
        await ctx.tick()
        assert ctx.get(bank.bus.dat_r) == 0

    simulate(bank, tb)
    with pytest.raises(ValueError, match=r"^Field 'x' value must be a read-only field's "
                                         r"constant from 0 to 15, not 16$"):
        Field("x", 4, "ro", value=16)
    with pytest.raises(ValueError, match=r"^Field 'x' value must be a read-only field's "):
        Field("x", 4, "rw", value=1)


def test_locked_registers_ignore_writes_while_locked_and_say_so():
    bank = RegisterBank([
        Register("run", [Field("epochs", 10, "rw", init=10)], locked=True),
        Register("free", [Field("x", 8, "rw")]),
    ])
    strobes = []                    # per access: cycles with locked_write high

    async def tb(ctx):
        async def write(addr, value):
            strobes.append(0)
            await bus_write(ctx, bank.bus, addr, value)
            await ctx.tick()

        ctx.set(bank.lock, 1)
        await write(0, 7)                                      # locked: ignored, flagged
        await write(1, 5)                                      # not a locked register
        assert await bus_read(ctx, bank.bus, 0) == 10
        assert await bus_read(ctx, bank.bus, 1) == 5
        ctx.set(bank.lock, 0)
        await write(0, 7)
        assert await bus_read(ctx, bank.bus, 0) == 7
        assert ctx.get(bank.regs.run.epochs) == 7

    async def watch(ctx):
        async for _, _, strobe in ctx.tick().sample(bank.locked_write):
            if strobe:
                strobes[-1] += 1

    simulate(bank, tb, processes=[watch])
    assert strobes == [1, 0, 0]


def test_stored_registers_read_back_the_written_word_from_block_ram():
    bank = RegisterBank([
        Register("free", [Field("x", 8, "rw", init=3)]),
        Register("run", [Field("epochs", 10, "rw", init=10), Field("seed", 20, "rw", init=7)],
                 locked=True, stored=True),
        Register("more", [Field("budget", 32, "rw", init=0x1_0000)], stored=True),
        Register("status", [Field("busy", 1, "ro")]),
        Register("count", [Field("value", 32, "ro")], stored=True),
    ])
    # a stored register's block-RAM word is its bus address
    assert bank.stored == ("run", "more", "count") and bank.store_address("more") == 2
    assert not hasattr(bank.regs.run, "epochs")                       # no flip-flops

    async def tb(ctx):
        assert await bus_read(ctx, bank.bus, 1) == 10 | 7 << 10      # reset values
        assert await bus_read(ctx, bank.bus, 2) == 0x1_0000
        await bus_write(ctx, bank.bus, 1, 0xFFFF_FFFF)
        assert await bus_read(ctx, bank.bus, 1) == 0xFFFF_FFFF       # the word written
        await bus_write(ctx, bank.bus, 2, 0x1234_5678)
        assert await bus_read(ctx, bank.bus, 2) == 0x1234_5678
        assert await bus_read(ctx, bank.bus, 1) == 0xFFFF_FFFF       # the other one kept
        ctx.set(bank.lock, 1)
        await bus_write(ctx, bank.bus, 1, 5)                          # locked: ignored
        assert await bus_read(ctx, bank.bus, 1) == 0xFFFF_FFFF
        await bus_write(ctx, bank.bus, 2, 9)                          # not locked
        assert await bus_read(ctx, bank.bus, 2) == 9
        ctx.set(bank.regs.status.busy, 1)
        assert await bus_read(ctx, bank.bus, 3) == 1                  # flip-flop registers
        assert await bus_read(ctx, bank.bus, 0) == 3
        # a stored read-only register: the bus's writes are ignored, the hardware's kept
        await bus_write(ctx, bank.bus, 4, 0x55)
        assert await bus_read(ctx, bank.bus, 4) == 0
        ctx.set(bank.store.waddr, bank.store_address("count"))
        ctx.set(bank.store.wdata, 0xDEAD_BEEF)
        ctx.set(bank.store.wen, 1)
        await ctx.tick()
        ctx.set(bank.store.wen, 0)
        assert await bus_read(ctx, bank.bus, 4) == 0xDEAD_BEEF

    simulate(bank, tb)
    for fields in ([Field("a", 4, "w1p")], [Field("a", 4, "ro"), Field("b", 4, "rw")]):
        with pytest.raises(ValueError, match=r"^Register 'r' is stored, so its fields must be "
                                             r"all rw or all ro \(written by hardware through "
                                             r"the store port\)$"):
            Register("r", fields, stored=True)
    with pytest.raises(ValueError, match=r"^scratch must be a non-negative integer, not -1$"):
        RegisterBank([Register("r", [Field("a", 4)])], scratch=-1)


def test_the_hardware_reads_and_writes_the_block_ram_before_the_bus():
    bank = RegisterBank([Register("run", [Field("x", 8, "rw", init=5)], stored=True),
                         Register("more", [Field("y", 8, "rw", init=6)], stored=True)],
                        scratch=2)
    hw = bank.store

    async def tb(ctx):
        # the memory reads the hardware's address every cycle the bus leaves it
        ctx.set(hw.raddr, 1)
        await ctx.tick()
        assert (ctx.get(hw.rdata), ctx.get(hw.rvalid)) == (6, 1)
        ctx.set(hw.wen, 1)
        ctx.set(hw.waddr, bank.scratch_base + 1)
        ctx.set(hw.wdata, 0xCAFE_F00D)
        await ctx.tick()
        ctx.set(hw.wen, 0)
        ctx.set(hw.raddr, 3)
        await ctx.tick()
        assert ctx.get(hw.rdata) == 0xCAFE_F00D
        # a bus read takes the memory for a cycle (rvalid low after it); the hardware's
        # reads (ren) go first, so the bus waits while it reads
        ctx.set(hw.ren, 1)
        ctx.set(hw.raddr, 0)
        ctx.set(bank.bus.cyc, 1)
        ctx.set(bank.bus.adr, 1)
        for _ in range(3):
            *_, ack = await ctx.tick().sample(bank.bus.ack)
            assert not ack and ctx.get(hw.rdata) == 5 and ctx.get(hw.rvalid)
        ctx.set(hw.ren, 0)
        await ctx.tick()
        assert not ctx.get(hw.rvalid)                   # the bus's word this cycle
        for _ in range(2):
            *_, ack, data = await ctx.tick().sample(bank.bus.ack, bank.bus.dat_r)
            if ack:
                break
        assert ack and data == 6
        ctx.set(bank.bus.cyc, 0)

    simulate(bank, tb)


def test_stored_register_access_times():
    bank = RegisterBank([Register("plain", [Field("x", 8, "rw")]),
                         Register("run", [Field("x", 8, "rw")], stored=True)])
    took = []

    async def tb(ctx):
        for addr, we in ((0, 1), (0, 0), (1, 1), (1, 0)):
            ctx.set(bank.bus.cyc, 1)
            ctx.set(bank.bus.we, we)
            ctx.set(bank.bus.adr, addr)
            ctx.set(bank.bus.dat_w, 0x5A)
            n = 0
            while True:
                n += 1
                *_, ack = await ctx.tick().sample(bank.bus.ack)
                if ack:
                    break
            took.append(n)
            ctx.set(bank.bus.cyc, 0)
            await ctx.tick()

    simulate(bank, tb)
    assert took == [2, 2, 2, 3]     # ack 1, 1, 1, 2 cycles after cyc rises
