"""Golden model of the host link: the wire codec (COBS, CRC-16/XMODEM, frames) and the device
side's frame decoder, byte for byte what :mod:`fieldtune.rtl.host` does.

Codec (what a host uses)::

    wire = encode_request(seq=5, cmd=Command.WRITE, address=0x20, count=6, payload=b"...")
    resp = decode_response(next_frame)         # Response(seq, cmd, address, count, status,
                                               #          payload); raises FrameError

Requests are COBS encoded, responses *reverse* COBS (each block's code byte after its data,
so the device encodes a response as it streams out, without looking ahead).

Device model (what the gateware is checked against)::

    dev = HostLinkModel(SocMap(config), max_payload=512, bus=MemoryBus(soc_map))
    responses = dev.feed(wire)                 # wire bytes in, complete response frames out

:class:`HostLinkModel` consumes received *symbols* (a byte, optionally flagged with a UART
framing error or a preceding receive overrun) and acts on a bus model with the interface of
:class:`MemoryBus` (``read(address) -> (result, value)``, ``write(address, value) -> result``,
results ``"ack"``, ``"err"``, ``"timeout"``). The protocol and its checks are documented in
``docs/protocol.md`` and :mod:`fieldtune.rtl.host.protocol`.
"""

from dataclasses import dataclass

from ...rtl.host.protocol import (Command, Status, Flags, HEADER, CRC_BYTES, OVERHEAD,
                                  DELIMITER, COBS_BLOCK, CRC_POLY, CRC_INIT, PROTOCOL_VERSION,
                                  REGISTER_BYTES, SEQ, CMD, ADDRESS, Header,
                                  INFO_BYTES, REPLAYED_COMMANDS,
                                  RESERVED_FLAGS)


__all__ = ["FrameError", "cobs_encode", "cobs_decode", "rcobs_encode", "rcobs_decode",
           "encode_response", "crc16", "pack_frame", "unpack_frame",
           "encode_request", "decode_response", "Response", "pack_elements",
           "unpack_elements", "element_layout", "MemoryBus", "HostLinkModel", "split_frames"]


class FrameError(ValueError):
    """A frame that does not decode: broken COBS, too short, or a wrong CRC."""


# -- codec ------------------------------------------------------------------------------------

def cobs_encode(data):
    """COBS encoding of ``data`` (no zero byte in the result, no delimiter appended).
    Every block but a full one (code 0xFF) stands for its bytes and a zero; the final
    block's zero is not part of the data."""
    out = bytearray([0])
    code_at, code = 0, 1
    for b in bytes(data):
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == COBS_BLOCK + 1:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of :func:`cobs_encode`; raises :class:`FrameError` on a zero byte or a block
    cut short."""
    data = bytes(data)
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            raise FrameError(f"COBS: zero byte at {i}")
        if i + code > len(data):
            raise FrameError(f"COBS: block at {i} of {code - 1} bytes runs past the end")
        block = data[i + 1:i + code]
        if 0 in block:
            raise FrameError(f"COBS: zero byte in the block at {i}")
        out += block
        i += code
        if code != COBS_BLOCK + 1 and i < len(data):
            out.append(0)
    return bytes(out)


def rcobs_encode(data):
    """Reverse COBS (responses): the blocks of :func:`cobs_encode`, each with its code byte
    *after* its data bytes, so an encoder needs no look-ahead. A zero byte becomes the code
    of the bytes since the previous code; 254 non-zero bytes in a row get a code 0xFF put in
    before the next byte (or the final code); the final code (as if a zero followed) ends
    it. No zero byte in the result, no delimiter appended."""
    out = bytearray()
    run = 0
    for b in bytes(data) + b"\x00":          # the final code: as if a zero followed
        if run == COBS_BLOCK:
            out.append(COBS_BLOCK + 1)
            run = 0
        if b == 0:
            out.append(run + 1)
            run = 0
        else:
            out.append(b)
            run += 1
    return bytes(out)


def rcobs_decode(data):
    """Inverse of :func:`rcobs_encode`, read from the end; raises :class:`FrameError` on a
    zero byte or a block that runs past the start."""
    data = bytes(data)
    pieces = []
    end, final = len(data), True
    while end > 0:
        code = data[end - 1]
        if code == 0:
            raise FrameError(f"reverse COBS: zero byte at {end - 1}")
        start = end - code
        if start < 0:
            raise FrameError(f"reverse COBS: block ending at {end - 1} of {code - 1} bytes "
                             f"runs past the start")
        block = data[start:end - 1]
        if 0 in block:
            raise FrameError(f"reverse COBS: zero byte in the block ending at {end - 1}")
        pieces.append(block if final or code == COBS_BLOCK + 1 else block + b"\x00")
        end, final = start, False
    return b"".join(reversed(pieces))


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


#: CRC-16/XMODEM of each byte value shifted through a zero register (bitwise definition).
_CRC_TABLE = _crc_table()


def crc16(data, crc=CRC_INIT):
    """CRC-16/XMODEM of ``data`` (``crc``: the value to continue from); table-driven from the
    bitwise definition above (polynomial :data:`CRC_POLY`, MSB first)."""
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ b]
    return crc


def pack_frame(header: Header, payload=b""):
    """Header, payload and CRC (big-endian): a frame before COBS."""
    body = header.to_bytes() + bytes(payload)
    return body + crc16(body).to_bytes(CRC_BYTES, "big")


def unpack_frame(frame):
    """``(Header, payload)`` of a frame; :class:`FrameError` if short or its CRC is wrong."""
    frame = bytes(frame)
    if len(frame) < OVERHEAD:
        raise FrameError(f"a frame takes at least {OVERHEAD} bytes, not {len(frame)}")
    if crc16(frame) != 0:
        raise FrameError("CRC mismatch")
    return Header.from_bytes(frame), frame[HEADER:-CRC_BYTES]


def encode_request(seq, cmd, address=0, count=0, flags=0, payload=b""):
    """Wire bytes of a request: COBS of the frame, then the delimiter."""
    return cobs_encode(pack_frame(Header(seq, int(cmd), address, count, int(flags)),
                                  payload)) + bytes([DELIMITER])


@dataclass(frozen=True)
class Response:
    seq: int
    cmd: int
    address: int
    count: int
    status: Status
    payload: bytes


def encode_response(seq, cmd, address=0, count=0, status=Status.OK, payload=b""):
    """Wire bytes of a response: reverse COBS of the frame, then the delimiter."""
    return rcobs_encode(pack_frame(Header(seq, int(cmd), address, count, int(status)),
                                   payload)) + bytes([DELIMITER])


def decode_response(encoded):
    """A :class:`Response` from one frame's wire bytes (reverse COBS, delimiter optional)."""
    encoded = bytes(encoded)
    if encoded.endswith(bytes([DELIMITER])):
        encoded = encoded[:-1]
    header, payload = unpack_frame(rcobs_decode(encoded))
    try:
        status = Status(header.code)
    except ValueError:
        raise FrameError(f"unknown status {header.code:#04x}") from None
    return Response(header.seq, header.cmd, header.address, header.count, status, payload)


def split_frames(wire):
    """``(frames, rest)``: the complete COBS frames (without delimiter, empty ones dropped) in
    ``wire`` and the bytes after the last delimiter."""
    parts = bytes(wire).split(bytes([DELIMITER]))
    return [p for p in parts[:-1] if p], parts[-1]


def pack_elements(values, element_bytes):
    """Elements (ints, negative ones two's complement) as little-endian bytes."""
    mask = (1 << 8 * element_bytes) - 1
    return b"".join((int(v) & mask).to_bytes(element_bytes, "little") for v in values)


def unpack_elements(raw, element_bytes, signed=False):
    raw = bytes(raw)
    if len(raw) % element_bytes:
        raise ValueError(f"{len(raw)} bytes are not whole {element_bytes}-byte elements")
    return [int.from_bytes(raw[i:i + element_bytes], "little", signed=signed)
            for i in range(0, len(raw), element_bytes)]


def element_layout(soc_map, address):
    """``(kind, element_bytes)`` of the region holding ``address``: ``("registers", 4)``,
    ``("window", bytes)`` or None."""
    if 0 <= address < len(soc_map.registers):
        return "registers", REGISTER_BYTES
    window = soc_map.window_at(address)
    if window is not None:
        return "window", window.element_bytes
    return None


# -- bus model --------------------------------------------------------------------------------

class MemoryBus:
    """A bus target model for the host link's tests: the SoC's address map with plain storage.

    Registers are words (every one read/write, reset 0 or ``init``); a window write appends the
    word to ``streams[name]``; a window read returns how many reads that window answered
    before (a counter from 0). Addresses in ``errors`` answer ``err``, in ``stalls`` never
    answer. ``log`` lists ``(op, address, value)`` of every access that was answered ``ack``.
    """

    def __init__(self, soc_map, init=None, errors=(), stalls=()):
        self.map = soc_map
        self.words = [0] * len(soc_map.registers)
        for addr, value in (init or {}).items():
            self.words[addr] = value
        self.streams = {w.name: [] for w in soc_map.windows.values()}
        self.reads = {w.name: 0 for w in soc_map.windows.values()}
        self.errors = set(errors)
        self.stalls = set(stalls)
        self.log = []

    def _answer(self, address):
        if address in self.stalls:
            return "timeout"
        if address in self.errors:
            return "err"
        if element_layout(self.map, address) is None:
            return "err"
        return "ack"

    def read(self, address):
        result = self._answer(address)
        if result != "ack":
            return result, 0
        window = self.map.window_at(address)
        if window is None:
            value = self.words[address]
        else:
            value = self.reads[window.name] & 0xFFFF_FFFF
            self.reads[window.name] += 1
        self.log.append(("read", address, value))
        return "ack", value

    def write(self, address, value):
        result = self._answer(address)
        if result != "ack":
            return result
        window = self.map.window_at(address)
        if window is None:
            self.words[address] = value
        else:
            self.streams[window.name].append(value)
        self.log.append(("write", address, value))
        return "ack"


# -- device model ------------------------------------------------------------------------------

_COMMANDS = frozenset(int(c) for c in Command)


class _Receiver:
    """COBS decoding of received symbols into one frame at a time (the gateware's
    :class:`~fieldtune.rtl.host.framing.CobsDecoder` and frame buffer)."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.reset()

    def reset(self):
        self.frame = bytearray()      # the bytes kept (at most capacity)
        self.length = 0               # bytes decoded
        self.started = False
        self.remaining = 0            # data bytes left in the block
        self.zero_follows = False     # the block ends in an implied zero
        self.broken = False           # COBS or UART framing error
        self.lost = False             # receive overrun

    def _emit(self, b):
        if self.length < self.capacity:
            self.frame.append(b)
        self.length += 1

    def symbol(self, byte, framing_error=False, overrun=False):
        """One received symbol; returns True when it ends a (non-empty) frame."""
        if overrun:
            self.lost = True
        if framing_error:
            self.broken = True
            self.started = True
            return False
        if byte == DELIMITER:
            if not self.started:
                # nothing of a frame arrived (bytes lost before a delimiter were a whole
                # frame or noise): no frame, no answer
                self.lost = False
                return False
            if self.remaining:
                self.broken = True
            return True
        self.started = True
        if self.remaining == 0:
            if self.zero_follows:
                self._emit(0)
            self.remaining = byte - 1
            self.zero_follows = byte != COBS_BLOCK + 1
        else:
            self._emit(byte)
            self.remaining -= 1
        return False


class HostLinkModel:
    """The device side of the host link at byte level (see the module documentation).

    Parameters
    ----------
    soc_map : SocMap
        The target's registers and windows.
    max_payload : int
        Largest payload of a frame (``host.max_payload``).
    bus : MemoryBus or alike
        The bus the commands act on.
    """

    def __init__(self, soc_map, max_payload, bus):
        self.map = soc_map
        self.max_payload = max_payload
        self.bus = bus
        self.rx = _Receiver(max_payload + OVERHEAD)
        self.last = None              # (seq, cmd, status, count) of the last good frame
        self.status_addr = soc_map.address("status")
        if soc_map.address("errors") != self.status_addr + 1:
            raise ValueError("the host link's STATUS reads the errors register right after "
                             "status")
        self.control_addr = soc_map.address("control")
        self.busy_lsb = soc_map.field("status", "busy")[0]
        self.start_word = soc_map.pack("control", start=1)
        self.abort_word = soc_map.pack("control", abort=1)

    def feed(self, wire, framing_errors=(), overruns=()):
        """Received bytes (indices in ``framing_errors``/``overruns`` flagged); returns the
        wire bytes of every response, one ``bytes`` per frame."""
        out = []
        framing_errors, overruns = set(framing_errors), set(overruns)
        for i, b in enumerate(bytes(wire)):
            r = self.symbol(b, i in framing_errors, i in overruns)
            if r is not None:
                out.append(r)
        return out

    def symbol(self, byte, framing_error=False, overrun=False):
        """One received symbol; the response's wire bytes if it ended a frame."""
        if not self.rx.symbol(byte, framing_error, overrun):
            return None
        rx = self.rx
        frame, length = bytes(rx.frame), rx.length
        received = frame[:HEADER] + bytes(HEADER - min(HEADER, len(frame)))
        seq, cmd = received[SEQ], received[CMD]
        address = int.from_bytes(received[ADDRESS:ADDRESS + 2], "little")
        if rx.lost or length > rx.capacity:
            status, count, payload = Status.OVERFLOW, 0, b""
        elif rx.broken or length < OVERHEAD:
            status, count, payload = Status.BAD_FRAME, 0, b""
        elif crc16(frame) != 0:
            status, count, payload = Status.BAD_CRC, 0, b""
        else:
            status, count, payload = self._execute(frame)
            self.last = (seq, cmd, status, count)
        rx.reset()
        return encode_response(seq, cmd, address, count, status, payload)

    # -- commands --

    def _execute(self, frame):
        header = Header.from_bytes(frame)
        payload = frame[HEADER:-CRC_BYTES]
        duplicate = (self.last is not None
                     and (self.last[0], self.last[1]) == (header.seq, header.cmd))
        if duplicate and header.cmd in REPLAYED_COMMANDS:
            return self.last[2], self.last[3], b""
        if header.cmd not in _COMMANDS or header.code & RESERVED_FLAGS:
            return Status.BAD_COMMAND, 0, b""
        cmd = Command(header.cmd)
        if cmd == Command.ECHO:
            return Status.OK, len(payload), payload
        if cmd in (Command.READ, Command.WRITE):
            return self._transfer(cmd, header, payload, duplicate)
        if payload:
            return Status.BAD_LENGTH, 0, b""
        if cmd == Command.INFO:
            info = bytes([PROTOCOL_VERSION, 0]) + self.max_payload.to_bytes(2, "little")
            return Status.OK, INFO_BYTES, info
        if cmd == Command.STATUS:
            return self._move(Command.READ, self.status_addr, 2, REGISTER_BYTES, 1, b"", 0)
        if cmd == Command.START:
            result, value = self.bus.read(self.status_addr)
            if result != "ack":
                return _bus_status(result), 0, b""
            if value >> self.busy_lsb & 1:
                return Status.BUSY, 0, b""
            result = self.bus.write(self.control_addr, self.start_word)
            return (Status.OK if result == "ack" else _bus_status(result)), 0, b""
        # ABORT
        result = self.bus.write(self.control_addr, self.abort_word)
        return (Status.OK if result == "ack" else _bus_status(result)), 0, b""

    def _transfer(self, cmd, header, payload, duplicate):
        region = element_layout(self.map, header.address)
        if region is None:
            return Status.BAD_ADDRESS, 0, b""
        kind, eb = region
        count = header.count                        # bytes
        if kind == "registers":
            fits = count == REGISTER_BYTES          # one register
        else:
            fits = 0 < count <= self.max_payload and count % eb == 0
        want = count if cmd == Command.WRITE else 0
        if not fits or len(payload) != want:
            return Status.BAD_LENGTH, 0, b""
        if duplicate and kind == "window":          # a READ: replaying it would lose data
            return Status.DUPLICATE, 0, b""
        return self._move(cmd, header.address, count // eb, eb, 0, payload, header.code)

    def _move(self, cmd, address, count, eb, step, payload, flags):
        """READ or WRITE ``count`` elements of ``eb`` bytes from ``address`` (``step``: 1
        for the two registers of STATUS, 0 for one register or a window). Returns the
        status, the bytes moved and the payload read."""
        window = self.map.window_at(address)
        out = bytearray()
        for i in range(count):
            if cmd == Command.READ:
                result, value = self.bus.read(address)
                if result != "ack":
                    return _bus_status(result), i * eb, bytes(out)
                out += (value & ((1 << 8 * eb) - 1)).to_bytes(eb, "little")
            else:
                value = int.from_bytes(payload[i * eb:(i + 1) * eb], "little")
                if (window is not None and window.last_bit is not None
                        and flags & Flags.LAST and i == count - 1):
                    value |= 1 << window.last_bit
                result = self.bus.write(address, value)
                if result != "ack":
                    return _bus_status(result), i * eb, b""
            address += step
        return Status.OK, count * eb, bytes(out)


def _bus_status(result):
    return Status.BUS_ERROR if result == "err" else Status.BUS_TIMEOUT
