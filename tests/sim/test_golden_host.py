"""The host link's codec and device model (sim/golden/host.py): COBS and CRC against their
definitions, frames round-trip, every status of the device model reached with nothing
written where the protocol says so."""

import pytest
from amaranth.lib.crc import catalog
from hypothesis import given, settings, strategies as st

from fieldtune.config import DesignConfig
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.host.protocol import Command, Status, Flags, COBS_BLOCK, PROTOCOL_VERSION
from fieldtune.sim.golden.host import (cobs_encode, cobs_decode, rcobs_encode, rcobs_decode,
                                       crc16, encode_request,
                                       decode_response, pack_elements, unpack_elements,
                                       HostLinkModel, MemoryBus, FrameError, split_frames)


MAP = SocMap(DesignConfig())
MAX = 64


def device(**bus):
    b = MemoryBus(MAP, **bus)
    return HostLinkModel(MAP, MAX, b), b


def ask(dev, *args, **kwargs):
    out = dev.feed(encode_request(*args, **kwargs))
    assert len(out) == 1
    return decode_response(out[0])


@given(st.binary(max_size=700))
def test_cobs_round_trip_without_zeros(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert cobs_decode(enc) == data
    assert len(enc) <= len(data) + 1 + len(data) // COBS_BLOCK


def test_cobs_known_vectors():
    # Wikipedia's examples (the encoder always ends with a block)
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    assert cobs_encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255)) + b"\x01"
    with pytest.raises(FrameError, match="runs past the end"):
        cobs_decode(b"\x05\x11")


@given(st.lists(st.sampled_from([0, 1, 0x55, 0xFF]) | st.integers(1, 255), max_size=800))
def test_reverse_cobs_round_trip_is_cobs_with_the_codes_after_their_blocks(values):
    data = bytes(values)
    enc = rcobs_encode(data)
    assert 0 not in enc
    assert rcobs_decode(enc) == data
    assert len(enc) == len(cobs_encode(data))      # the same blocks, the same overhead


def test_reverse_cobs_known_vectors():
    assert rcobs_encode(b"") == b"\x01"
    assert rcobs_encode(b"\x00") == b"\x01\x01"
    assert rcobs_encode(b"\x11\x22\x00\x33") == b"\x11\x22\x03\x33\x02"
    assert rcobs_encode(bytes(range(1, 255))) == bytes(range(1, 255)) + b"\xff\x01"
    assert rcobs_encode(bytes(range(1, 255)) + b"\x00") == \
        bytes(range(1, 255)) + b"\xff\x01\x01"
    with pytest.raises(FrameError, match="runs past the start"):
        rcobs_decode(b"\x11\x05")
    with pytest.raises(FrameError, match="zero byte"):
        rcobs_decode(b"\x11\x00\x03")


def test_crc_is_xmodem():
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@given(st.binary(max_size=300))
def test_crc_matches_amaranths_model(data):
    assert crc16(data) == catalog.CRC16_XMODEM(data_width=8).compute(data)


def test_elements_pack_little_endian_and_sign_extend():
    assert pack_elements([0x0102, -1], 2) == b"\x02\x01\xff\xff"
    assert unpack_elements(b"\x02\x01\xff\xff", 2, signed=True) == [0x0102, -1]


def test_write_read_and_every_command():
    dev, bus = device()
    seed = MAP.address("seed")
    r = ask(dev, 1, Command.WRITE, seed, 4, payload=pack_elements([0xDEADBEEF], 4))
    assert (r.status, r.count, r.address) == (Status.OK, 4, seed)      # count: bytes
    assert bus.words[seed] == 0xDEADBEEF
    r = ask(dev, 2, Command.READ, seed, 4)
    assert unpack_elements(r.payload, 4) == [0xDEADBEEF] and r.count == 4
    r = ask(dev, 3, Command.WRITE, MAP.address("records"), 6, Flags.LAST,
            pack_elements([1, 2, 3], 2))
    assert (r.status, r.count) == (Status.OK, 6)
    assert bus.streams["records"] == [1, 2, 3 | 1 << 16]
    assert ask(dev, 4, Command.ECHO, payload=b"\x00hello\x00").payload == b"\x00hello\x00"
    info = ask(dev, 5, Command.INFO)
    assert info.payload == bytes([PROTOCOL_VERSION, 0]) + MAX.to_bytes(2, "little")
    assert ask(dev, 6, Command.START).status == Status.OK
    assert bus.log[-1] == ("write", MAP.address("control"), MAP.pack("control", start=1))
    assert ask(dev, 7, Command.ABORT).status == Status.OK
    assert bus.log[-1] == ("write", MAP.address("control"), MAP.pack("control", abort=1))
    assert ask(dev, 8, Command.STATUS).count == 8


@pytest.mark.parametrize("request_args,status", [
    ((1, 0x77), Status.BAD_COMMAND),
    ((1, Command.READ, 0, 4, 0x02), Status.BAD_COMMAND),
    ((1, Command.READ, 0x3F, 4), Status.BAD_ADDRESS),
    ((1, Command.READ, 0, 0), Status.BAD_LENGTH),
    ((1, Command.READ, 0, 8), Status.BAD_LENGTH),               # one register at a time
    ((1, Command.READ, 0x22, 0), Status.BAD_LENGTH),
    ((1, Command.READ, 0x22, 3), Status.BAD_LENGTH),            # half an element
    ((1, Command.READ, 0x22, MAX + 2), Status.BAD_LENGTH),
    ((1, Command.READ, 0, 4, 0, b"x"), Status.BAD_LENGTH),
    ((1, Command.WRITE, 0x20, 4, 0, b"abc"), Status.BAD_LENGTH),
    ((1, Command.WRITE, 0x20, 3, 0, b"abc"), Status.BAD_LENGTH),
    ((1, Command.WRITE, len(MAP.registers), 4, 0, bytes(4)), Status.BAD_ADDRESS),
    ((1, Command.START, 0, 0, 0, b"x"), Status.BAD_LENGTH),
])
def test_refused_requests_touch_nothing(request_args, status):
    dev, bus = device()
    assert ask(dev, *request_args).status == status
    assert bus.log == []


def test_frame_errors():
    dev, bus = device()
    good = encode_request(9, Command.WRITE, 0, 4, payload=b"\x01\x02\x03\x04")
    bad_crc = bytearray(good)
    bad_crc[5] ^= 0x40
    assert decode_response(dev.feed(bad_crc)[0]).status == Status.BAD_CRC
    assert decode_response(dev.feed(b"\x02\x09\x00")[0]).status == Status.BAD_FRAME
    assert decode_response(dev.feed(b"\x05\x09\x01\x00")[0]).status == Status.BAD_FRAME
    assert decode_response(dev.feed(good, framing_errors=[3])[0]).status == Status.BAD_FRAME
    assert decode_response(dev.feed(good, overruns=[3])[0]).status == Status.OVERFLOW
    long = encode_request(9, Command.ECHO, payload=bytes(MAX + 1))
    assert decode_response(dev.feed(long)[0]).status == Status.OVERFLOW
    assert bus.log == []
    assert dev.feed(b"\x00\x00\x00") == []                      # empty frames: no response
    assert dev.feed(b"\x00", overruns=[0]) == []       # only lost bytes before it: no frame
    assert decode_response(dev.feed(good)[0]).status == Status.OK


def test_resent_writes_are_not_repeated_and_window_reads_not_replayed():
    dev, bus = device(errors={MAP.address("weights")})
    w = encode_request(4, Command.WRITE, 0x20, 2, payload=b"\x05\x00")
    assert [decode_response(r).status for r in dev.feed(w + w)] == [Status.OK, Status.OK]
    assert bus.streams["records"] == [5]
    r = encode_request(5, Command.READ, 0x20, 2)
    assert [decode_response(x).status for x in dev.feed(r + r)] == [Status.OK,
                                                                    Status.DUPLICATE]
    w = encode_request(6, Command.WRITE, MAP.address("weights"), 2, payload=b"\x05\x00")
    assert [(decode_response(x).status, decode_response(x).count)
            for x in dev.feed(w + w)] == [(Status.BUS_ERROR, 0)] * 2


def test_busy_start_writes_nothing():
    busy = MAP.pack("status", busy=1)
    dev, bus = device(init={MAP.address("status"): busy})
    assert ask(dev, 1, Command.START).status == Status.BUSY
    assert [op for op, *_ in bus.log] == ["read"]


def test_bus_errors_and_timeouts_report_progress():
    dev, bus = device(stalls={MAP.address("errors")})
    r = ask(dev, 1, Command.STATUS)                 # status, then errors
    assert (r.status, r.count, len(r.payload)) == (Status.BUS_TIMEOUT, 4, 4)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_every_delimited_frame_is_answered_once(chunks):
    dev, _ = device()
    wire = b"\x00".join(chunks) + b"\x00"
    frames, _ = split_frames(wire)
    assert len(dev.feed(wire)) == len(frames)
