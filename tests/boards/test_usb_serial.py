# amaranth: UnusedElaboratable=no
"""USB CDC-ACM serial (OrangeCrab): the bridge between LUNA's streams and the host link's byte
streams in Amaranth's simulator (both directions, back-pressure, nothing lost), the host link
answering over it as the golden model does, the configuration choice and the build plan."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fieldtune.boards.build import plan
from fieldtune.boards.table import BOARDS, Board
from fieldtune.boards.usb_serial import (FRAME_DELIMITER, USBHostSystem, USBSerialBridge,
                                         USBStreamHost)
from fieldtune.config import DesignConfig
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.host.protocol import Command
from fieldtune.rtl.host.top import HostSystem
from fieldtune.sim.golden.host import HostLinkModel, MemoryBus, encode_request

SYNC_PERIOD, USB_PERIOD = 1 / 48e6, 1 / 12e6


def simulate(dut, to_device, *, seed, until_bytes, rx=None, tx=None, ready_rate=0.5,
             valid_rate=0.5):
    """Run ``dut`` (with ``usb_rx``/``usb_tx``) with ``sync`` at 48 MHz and ``usb`` at 12 MHz:
    ``to_device`` enters ``usb_rx`` with random gaps and ``usb_tx`` is drained with random
    ``ready``; when ``rx``/``tx`` are given (the bridge alone), ``rx`` is drained the same
    way and ``tx`` (a list of bytes) enters ``tx``. Returns ``(from_host, to_host)``: bytes
    leaving ``rx`` and ``(byte, last)`` leaving ``usb_tx``, until ``until_bytes`` left
    ``usb_tx``."""
    rng = random.Random(seed)
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.domains.usb = ClockDomain("usb")
    m.submodules.dut = dut
    from_host, to_host = [], []

    def producer(port, data, domain):
        async def bench(ctx):
            for byte in data:
                while rng.random() > valid_rate:
                    await ctx.tick(domain)
                ctx.set(port.valid, 1)
                ctx.set(port.payload, byte)
                await ctx.tick(domain).until(port.ready)
                ctx.set(port.valid, 0)
        return bench

    def consumer(port, out, domain, fields=lambda p: p):
        async def bench(ctx):
            while True:
                ready = rng.random() < ready_rate
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick(domain).sample(port.valid, port.payload)
                if valid and ready:
                    out.append(fields(payload))
        return bench

    sim = Simulator(m)
    sim.add_clock(SYNC_PERIOD, domain="sync")
    sim.add_clock(USB_PERIOD, domain="usb")
    sim.add_testbench(producer(dut.usb_rx, to_device, "usb"))
    sim.add_testbench(consumer(dut.usb_tx, to_host, "usb",
                               lambda p: (p.data, p.last)), background=True)
    if rx is not None:
        sim.add_testbench(consumer(dut.rx, from_host, "sync"), background=True)
    if tx is not None:
        sim.add_testbench(producer(dut.tx, tx, "sync"), background=True)

    async def watch(ctx):
        while len(to_host) < until_bytes or (rx is not None and len(from_host) < rx):
            await ctx.tick("usb")
    sim.add_testbench(watch)
    sim.run()
    return from_host, to_host


@pytest.mark.parametrize("ready_rate, valid_rate", [(1.0, 1.0), (0.3, 0.9), (0.9, 0.2)])
def test_bridge_moves_every_byte_both_ways_in_order(ready_rate, valid_rate):
    rng = random.Random(7)
    down = [rng.randrange(256) for _ in range(300)]
    up = [rng.choice([FRAME_DELIMITER, rng.randrange(256)]) for _ in range(300)]
    from_host, to_host = simulate(USBSerialBridge(8), down, seed=1, until_bytes=len(up),
                                  rx=len(down), tx=up, ready_rate=ready_rate,
                                  valid_rate=valid_rate)
    assert from_host == down
    assert [b for b, _ in to_host] == up
    # a packet ends at every frame delimiter, and at the last byte: none waits for more
    assert all(last for b, last in to_host if b == FRAME_DELIMITER)
    assert to_host[-1][1] == 1


def test_bridge_back_pressure_holds_bytes_and_loses_none():
    # The host link stalls (ready 5 % of its cycles): the FIFO fills, usb_rx.ready drops (LUNA
    # then holds the packet and NAKs the host), and every byte still arrives in order.
    down = list(range(200))
    from_host, _ = simulate(USBSerialBridge(4), down, seed=3, until_bytes=0, rx=len(down),
                            tx=[], ready_rate=0.05, valid_rate=1.0)
    assert from_host == down


def test_bad_depth_is_named():
    for bad in (2, 6, 512, "8"):
        with pytest.raises(ValueError, match=rf"^USB serial FIFO depth must be a power of two "
                                             rf"from 4 to 256, not {bad!r}$"):
            USBSerialBridge(bad)


def test_host_link_answers_over_usb_as_the_golden_model(tiny_design):
    # ECHO of 300 bytes (five full 64-byte packets and a short one back) and INFO, through
    # the bridge, HostCore and the SoC; the answers are the golden model's, byte for byte.
    config, _ = tiny_design
    wire = (encode_request(1, Command.ECHO, payload=bytes(range(1, 256)) + bytes(45))
            + encode_request(2, Command.INFO))
    soc_map = SocMap(config)
    expected = b"".join(HostLinkModel(soc_map, config.host.max_payload,
                                      MemoryBus(soc_map)).feed(wire))
    _, to_host = simulate(USBStreamHost(config), list(wire), seed=5,
                          until_bytes=len(expected), ready_rate=0.7, valid_rate=0.7)
    assert bytes(b for b, _ in to_host) == expected
    assert [i for i, (b, last) in enumerate(to_host) if b == FRAME_DELIMITER and last] \
        == [i for i, b in enumerate(expected) if b == FRAME_DELIMITER]


def test_orangecrab_defaults_to_usb_and_keeps_the_header_uart():
    for name, preset in (("orangecrab-25f", "orangecrab-25f"), ("orangecrab-85f", "orangecrab")):
        assert BOARDS[name].links == ("uart", "usb") and BOARDS[name].link == "usb"
        assert DesignConfig.preset(preset).link == "usb"
        assert DesignConfig.preset(preset).replace(serial="uart").link == "uart"
    config = DesignConfig.from_dict({"preset": "orangecrab-25f", "serial": "uart"})
    assert config.link == "uart" and config.to_dict()["serial"] == "uart"
    assert "serial" not in DesignConfig.preset("orangecrab-25f").to_dict()
    assert DesignConfig.preset("ecp5-25f").link == "uart"


def test_bad_link_choices_are_named():
    with pytest.raises(ValueError, match=r"^serial must be one of 'uart' on board "
                                         r"'icebreaker', not 'usb'$"):
        DesignConfig(board="icebreaker", serial="usb")
    with pytest.raises(ValueError, match=r"^serial must be one of 'uart', 'usb' on board "
                                         r"'orangecrab-25f', not 'USB'$"):
        DesignConfig.preset("orangecrab-25f").replace(serial="USB")
    base = BOARDS["icebreaker"]
    with pytest.raises(ValueError, match=r"^USB serial on board 'icebreaker' needs an ECP5 "
                                         r"with a 48 MHz board clock, not ice40 at 12.0 MHz$"):
        Board(**{**base.__dict__, "usb": "usb"})
    with pytest.raises(ValueError, match=r"^link of board 'icebreaker' must be one of "
                                         r"'uart', not 'usb'$"):
        Board(**{**base.__dict__, "link": "usb"})


def test_usb_plan_has_the_pins_the_pll_and_the_clocks(tmp_path):
    config = DesignConfig.preset("orangecrab-25f")
    plan(config).prepare().extract(tmp_path)
    lpf = (tmp_path / "top.lpf").read_text()
    for pin, site in (("d_p", "N1"), ("d_n", "M2"), ("pullup", "N2")):
        assert f'LOCATE COMP "usb_0__{pin}__io" SITE "{site}"' in lpf
    assert "uart_0__rx" not in lpf
    assert "12000000.0 HZ" in lpf and lpf.count("48000000.0 HZ") >= 2
    rtlil = (tmp_path / "top.il").read_text()
    assert rtlil.count("cell \\EHXPLLL ") == 1          # SoC at 48 MHz: only USB's PLL
    assert "parameter \\CLKOS_DIV 48" in rtlil and "parameter \\CLKOP_DIV 12" in rtlil
    # serial = "uart": the UART host system (its header pins: test_build_plan)
    assert isinstance(plan(config.replace(serial="uart")).system(), HostSystem)
    assert isinstance(plan(config).system(), USBHostSystem)
