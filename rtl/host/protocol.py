"""The host link's wire protocol as plain data: frame layout, command and status codes.

Importable without Amaranth or any elaboration: the gateware (:mod:`fieldtune.rtl.host`), the
golden codec and device model (:mod:`fieldtune.sim.golden.host`) and the host driver all read
their numbers from here. ``docs/protocol.md`` describes the protocol byte by byte.

Layers, outside in::

    UART 8N1 bytes  ->  COBS blocks, 0x00 ends a frame  ->  frame = header | payload | CRC

Requests are COBS encoded, responses reverse COBS (each block's code byte after its data).
A *frame* (after decoding) is::

    offset  0      1      2..3         4..5        6             7 ..         n-2..n-1
            seq    cmd    address LE   count LE    flags/status  payload      CRC-16 BE

Requests carry ``flags`` in byte 6, responses the :class:`Status`; a response repeats the
request's ``seq``, ``cmd`` and ``address`` and carries in ``count`` the bytes it moved (its
payload's, or a WRITE's); a request's ``count`` is in bytes too (READ, WRITE). The CRC is
CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection, no final XOR) of bytes
``0 .. n-3``, sent most significant byte first, so the CRC of a whole good frame is 0.
"""

from dataclasses import dataclass
from enum import IntEnum, IntFlag


__all__ = ["Command", "Status", "Flags", "HEADER", "CRC_BYTES", "OVERHEAD", "DELIMITER",
           "COBS_BLOCK", "CRC_POLY", "CRC_INIT", "PROTOCOL_VERSION", "REGISTER_BYTES",
           "SEQ", "CMD", "ADDRESS", "COUNT", "FLAGS", "STATUS", "INFO_BYTES", "STATUS_BYTES",
           "Header", "REPLAYED_COMMANDS", "RESERVED_FLAGS"]


#: Version of this protocol (INFO's first byte). 2: responses in reverse COBS; 3: ``count``
#: in bytes, a register READ or WRITE moves one register.
PROTOCOL_VERSION = 3

#: Byte offsets of the header fields (both directions; byte 6 is ``flags`` in a request and
#: ``status`` in a response).
SEQ, CMD, ADDRESS, COUNT, FLAGS = 0, 1, 2, 4, 6
STATUS = FLAGS
#: Header bytes before the payload.
HEADER = 7
#: CRC bytes after the payload.
CRC_BYTES = 2
#: Bytes of a frame besides its payload.
OVERHEAD = HEADER + CRC_BYTES
#: The frame delimiter on the wire (COBS leaves no other zero byte).
DELIMITER = 0x00
#: Longest run of data bytes in one COBS block (code byte 0xFF).
COBS_BLOCK = 254
#: CRC-16/XMODEM.
CRC_POLY, CRC_INIT = 0x1021, 0x0000
#: Bytes a register takes on the wire (one 32-bit bus word, little-endian).
REGISTER_BYTES = 4
#: STATUS answers the ``status`` and ``errors`` registers (two words).
STATUS_BYTES = 2 * REGISTER_BYTES
#: INFO answers: protocol version, 0, maximum payload (16-bit LE).
INFO_BYTES = 4


class Command(IntEnum):
    """Request codes (byte 1)."""
    #: Link self-test: the response's payload is the request's payload.
    ECHO = 0x01
    #: ``count`` bytes from ``address``: one register (4 bytes), or a window's elements
    #: (a whole number of them: the window is read ``count / element_bytes`` times).
    #: Response payload: the register or the elements, packed.
    READ = 0x02
    #: ``count`` bytes (the payload: a register or packed elements) to ``address``, as READ.
    WRITE = 0x03
    #: Start a run of the configured ``mode`` (BUSY if one is running; nothing written).
    START = 0x04
    #: Abort the run (writes ``control.abort``).
    ABORT = 0x05
    #: Response payload: the ``status`` and ``errors`` registers.
    STATUS = 0x06
    #: Response payload: :data:`PROTOCOL_VERSION`, 0, the maximum payload (16-bit LE).
    INFO = 0x07


#: Commands a repeated ``seq`` does not execute again (the previous status is replayed).
REPLAYED_COMMANDS = frozenset({Command.WRITE, Command.START, Command.ABORT})


class Flags(IntFlag):
    """Request flags (byte 6); the other bits are reserved and must be 0 (BAD_COMMAND)."""
    #: WRITE to a window with a ``last`` bit: the final element carries it (ends a record).
    LAST = 0x01


#: Flag bits that must be 0.
RESERVED_FLAGS = 0xFF & ~int(Flags.LAST)


class Status(IntEnum):
    """Response codes (byte 6). The order of the checks is in docs/protocol.md."""
    OK = 0x00
    #: The frame's CRC is wrong (``seq``/``cmd`` echo whatever arrived).
    BAD_CRC = 0x01
    #: ``count`` is not one register's bytes (registers) or not a whole number of
    #: elements, 0 or past the maximum payload (windows), or the payload's length is not
    #: what the command and ``count`` need.
    BAD_LENGTH = 0x02
    #: ``address`` is in no register or window.
    BAD_ADDRESS = 0x03
    #: Unknown command, or reserved flag bits set.
    BAD_COMMAND = 0x04
    #: START while a run is busy (nothing written).
    BUSY = 0x05
    #: The frame was longer than the maximum, or bytes of it were lost (they arrived while
    #: the device was busy: dropped without a receive FIFO, or the FIFO overran).
    OVERFLOW = 0x06
    #: Broken framing: a UART framing error, a COBS block cut by the delimiter, or fewer
    #: than :data:`OVERHEAD` bytes.
    BAD_FRAME = 0x07
    #: A bus target answered ``err`` (``count``: bytes of the elements moved before it).
    BUS_ERROR = 0x08
    #: A bus target did not answer within ``host.bus_timeout`` cycles (``count`` as
    #: BUS_ERROR).
    BUS_TIMEOUT = 0x09
    #: A READ of a window with the same ``seq`` and ``cmd`` as the previous good frame: not
    #: executed again (a window read consumes its stream; re-read with a new ``seq``).
    #: A repeated WRITE, START or ABORT is not executed again either: it is answered with
    #: the previous frame's status and count, so a resent write is idempotent.
    DUPLICATE = 0x0A


@dataclass(frozen=True)
class Header:
    """The seven header bytes: ``seq``, ``cmd``, ``address``, ``count`` and ``flags`` (a
    request) or ``status`` (a response) in ``code``."""
    seq: int
    cmd: int
    address: int = 0
    count: int = 0
    code: int = 0

    def __post_init__(self):
        for name, bits in (("seq", 8), ("cmd", 8), ("address", 16), ("count", 16),
                           ("code", 8)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value < 1 << bits:
                raise ValueError(f"header {name} must be an integer from 0 to "
                                 f"{(1 << bits) - 1}, not {value!r}")

    def to_bytes(self):
        return bytes([self.seq, self.cmd]) + self.address.to_bytes(2, "little") \
            + self.count.to_bytes(2, "little") + bytes([self.code])

    @classmethod
    def from_bytes(cls, raw):
        raw = bytes(raw)
        if len(raw) < HEADER:
            raise ValueError(f"a header takes {HEADER} bytes, not {len(raw)}")
        return cls(raw[SEQ], raw[CMD], int.from_bytes(raw[ADDRESS:ADDRESS + 2], "little"),
                   int.from_bytes(raw[COUNT:COUNT + 2], "little"), raw[FLAGS])
