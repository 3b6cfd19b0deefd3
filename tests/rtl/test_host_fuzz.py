"""Fuzzing the host link's core with hypothesis: random and mutated frames, garbage, UART
framing errors and overruns, at byte level on CXXRTL (sim/host_bench.py), against the golden
device model (sim/golden/host.py). Per example: the response bytes are the model's, byte for
byte; the bus target's registers and streams are the model's (so nothing outside an accepted
request's target changed); every well-delimited frame got exactly one response; the core was
idle again within a fixed bound after the last byte. At least 10,000 frames per run."""

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from fieldtune.config import DesignConfig
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.host.params import HostParams
from fieldtune.rtl.host.protocol import Command, Status, DELIMITER
from fieldtune.sim.golden.host import (HostLinkModel, MemoryBus, encode_request, split_frames,
                                       decode_response)
from fieldtune.sim.host_bench import HostBench
from fieldtune.toolchain import tool_env


MAP = SocMap(DesignConfig())
PARAMS = HostParams(max_payload=64, bus_timeout=32, rx_fifo=16)
ERRORS, STALLS = {MAP.address("geometry"), MAP.address("weights") + 1}, {MAP.address("capacity")}
#: Most cycles from the last symbol to idle: a frame's execution (every element a few
#: cycles and at most one bus timeout), the CRC pass and the COBS encoder's two passes.
SETTLE = 16 * PARAMS.frame_bytes + 2 * PARAMS.bus_timeout + 64
EXAMPLES, FRAMES_PER_EXAMPLE = 60, 170
NREGS = len(MAP.registers)

frames_run = []


@pytest.fixture(scope="module")
def bench(require_programs):
    require_programs("g++", why="the fuzzing bench runs on CXXRTL")
    b = HostBench(PARAMS, MAP, errors=ERRORS, stalls=STALLS, env=tool_env("YOSYS"))
    yield b
    b.close()


addresses = st.one_of(st.integers(0, NREGS + 1), st.integers(0x1E, 0x25),
                      st.integers(0, 0xFFFF))
counts = st.one_of(st.sampled_from([2, 4, 8, 64]), st.integers(0, 8), st.integers(0, 80),
                   st.integers(0, 0xFFFF))          # bytes


@st.composite
def requests(draw):
    """A request's wire bytes: mostly well-formed, some with random fields."""
    cmd = draw(st.one_of(st.sampled_from(list(Command)), st.integers(0, 255)))
    address, count = draw(addresses), draw(counts)
    flags = draw(st.sampled_from([0, 0, 1, 2, 0x80]))
    if cmd == Command.WRITE and draw(st.booleans()) and count <= 80:
        payload = draw(st.binary(min_size=count, max_size=count))
    else:
        payload = draw(st.binary(max_size=draw(st.sampled_from([0, 8, 80]))))
    return encode_request(draw(st.integers(0, 3)), cmd, address, count, flags, payload)


@st.composite
def mutated(draw):
    """A request damaged: bit flips, bytes dropped, inserted or cut off, or pure garbage."""
    wire = bytearray(draw(requests()))
    how = draw(st.sampled_from(["flip", "drop", "insert", "cut", "garbage", "noise"]))
    if how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(wire) - 1))
            wire[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "drop":
        del wire[draw(st.integers(0, len(wire) - 2))]
    elif how == "insert":
        wire.insert(draw(st.integers(0, len(wire) - 1)), draw(st.integers(0, 255)))
    elif how == "cut":                               # the host vanished mid-frame
        wire = wire[:draw(st.integers(0, len(wire) - 1))]
    elif how == "garbage":
        wire = bytearray(draw(st.binary(min_size=1, max_size=90))) + bytes([DELIMITER])
    else:                                            # line noise between frames
        wire = bytearray(draw(st.binary(max_size=4))) + wire
    return bytes(wire)


@st.composite
def sessions(draw):
    """``(symbols, frames sent)``: symbols ``(byte, framing_error, lost)`` of a stream of
    frames, a few of them hit by a UART framing error or a receive overrun."""
    wires = draw(st.lists(st.one_of(requests(), requests(), mutated()),
                          min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
    raw = b"".join(wires)
    symbols = [(b, False, False) for b in raw]
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(symbols) - 1))
        ferr = draw(st.booleans())
        symbols[i] = (symbols[i][0], ferr, not ferr)
    return symbols, len(wires)


def delimited_frames(symbols):
    """Frames the line delimited: a delimiter (not a framing error) after anything else (a
    delimiter that only follows lost bytes ends nothing: nothing of a frame arrived)."""
    n, started = 0, False
    for byte, ferr, lost in symbols:
        if ferr:
            started = True
        elif byte == DELIMITER:
            n += started
            started = False
        else:
            started = True
    return n


def check_session(bench, symbols):
    bus = MemoryBus(MAP, errors=ERRORS, stalls=STALLS)
    model = HostLinkModel(MAP, PARAMS.max_payload, bus)
    expected = []
    for byte, ferr, lost in symbols:
        r = model.symbol(byte, ferr, lost)
        if r is not None:
            expected.append(r)
    result = bench.run(symbols, max_settle=SETTLE)       # TimeoutError if not idle in time
    frames, rest = split_frames(result.responses)
    assert rest == b""
    assert len(frames) == len(expected) == delimited_frames(symbols)
    assert result.responses == b"".join(expected)
    assert result.words == bus.words
    for name, words in bus.streams.items():
        assert result.streams[name] == words[:len(result.streams[name])]
        assert len(result.streams[name]) == min(len(words), 4096)
    assert result.reads == bus.reads
    return frames


def test_random_and_mutated_frames(bench):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(sessions())
    def check(session):
        symbols, sent = session
        check_session(bench, symbols)
        frames_run.append(sent)

    frames_run.clear()
    check()
    assert sum(frames_run) >= 10_000


def test_a_host_that_vanishes_mid_frame_leaves_the_link_responsive(bench):
    half = encode_request(1, Command.WRITE, 0x20, 4, 0, bytes(8))[:7]
    good = encode_request(2, Command.INFO)
    # the cut frame and the good one merge into one frame (BAD_CRC or BAD_FRAME); a host
    # sends a delimiter first, after which the next frame succeeds
    merged = check_session(bench, [(b, False, False) for b in half + good])
    assert len(merged) == 1 and decode_response(merged[0]).status != Status.OK
    answers = check_session(bench, [(b, False, False) for b in half + b"\x00" + good])
    assert [decode_response(a).status for a in answers][-1] == Status.OK
    assert decode_response(answers[-1]).seq == 2
