"""The host link's driver: register, window and run commands over a transport, with timeouts
and retries (docs/protocol.md).

:class:`HostDriver` speaks the wire protocol of :mod:`fieldtune.rtl.host.protocol` through the
golden codec (:mod:`fieldtune.sim.golden.host`) over any transport of
:mod:`fieldtune.host.transport`, and offers the device calls a training session drives
(:mod:`fieldtune.host.session`: ``write``, ``read``, ``write_window``, ``read_window``,
``start``, ``wait_done``, ``then``, ``flush``), so ``fieldtune run`` trains through the very
session code the demo uses. Usage::

    with HostDriver(SerialTransport("/dev/ttyUSB1", 3_000_000), config) as dev:
        dev.echo(b"hello")                  # link self-test
        dev.write("seed", seed=7)
        dev.read("status").value

Robustness: each request is preceded by a delimiter (ending whatever garbage the line produced)
and numbered (``seq``). A request is resent with the same ``seq`` after ``timeout`` without an
answer, or when the answer does not decode or says BAD_CRC, BAD_FRAME or OVERFLOW, at most
``retries`` times (then :class:`LinkError`). The device executes a resent WRITE, START or ABORT
once (it replays the first answer), so resending is safe; a register READ whose answer was lost
is asked again under a new ``seq`` (DUPLICATE); a window READ whose answer was lost cannot be
replayed (its stream moved on): :class:`StreamLost`. Any other status than OK raises
:class:`CommandError` naming the command, address and status.
"""

from dataclasses import dataclass, field

from ..rtl.csr.map import SocMap, MAGIC
from ..rtl.host.protocol import (Command, Status, Flags, PROTOCOL_VERSION, REGISTER_BYTES,
                                 OVERHEAD, COBS_BLOCK, DELIMITER)
from ..sim.golden.host import (encode_request, decode_response, split_frames, pack_elements,
                               unpack_elements, FrameError)
from ..sim.soc_run import DeviceError, Reading
from .transport import BITS_PER_BYTE


__all__ = ["HostDriver", "LinkError", "CommandError", "StreamLost", "LinkStats",
           "RESEND_STATUSES"]


#: Answers that say the request did not arrive intact: resend it. BAD_LENGTH too: this driver
#: sends only well-formed frames, so a length the device refuses comes from two frames merged
#: by a lost delimiter (CRC-16/XMODEM with initial value 0 passes ``A || 0x00 || B`` when it
#: passes A and B).
RESEND_STATUSES = (Status.BAD_CRC, Status.BAD_FRAME, Status.OVERFLOW, Status.BAD_LENGTH)

#: Bit of ``status`` that says the last run ended, and the first bit of its record count.
_DONE_BIT = 1


class LinkError(DeviceError):
    """The link failed: no intact answer after every retry."""


class StreamLost(LinkError):
    """A window READ's answer was lost; its elements cannot be read again (restart the run)."""


class CommandError(DeviceError):
    """The device answered a request with a status other than OK."""

    def __init__(self, what, status, count=0):
        self.status, self.count = Status(status), count
        super().__init__(f"{what}: the device answered {self.status.name}"
                         + (f" after {count} bytes" if count else ""))


@dataclass
class LinkStats:
    """What the link did: requests, resends and why, bytes each way, payload bytes moved."""
    requests: int = 0
    resends: int = 0
    timeouts: int = 0
    bad_answers: int = 0
    refused: dict = field(default_factory=dict)       # status name -> resends it caused
    bytes_sent: int = 0
    bytes_received: int = 0


class HostDriver:
    """The device calls over the host link of the SoC of ``config`` (a
    :class:`~fieldtune.config.DesignConfig`: its register map and ``[host]`` table).

    ``timeout``: seconds to wait for an answer beyond the bytes' time on the line (default:
    the transport's latency plus 1 ms; simulated seconds in a simulation); ``retries``: resends
    of one request before :class:`LinkError`; ``poll``: seconds between STATUS polls while a
    run is busy. On opening, INFO checks the protocol version and reads the device's largest
    payload, and ``id`` must hold the SoC's magic number."""

    def __init__(self, transport, config, *, timeout=None, retries=8, poll=0.0005):
        self.transport, self.config = transport, config
        self.map = SocMap(config)
        self.retries, self.poll = retries, poll
        self.timeout = timeout if timeout is not None else transport.latency + 1e-3
        self.baud = transport.baud
        self.stats = LinkStats()
        self._index = {r.name: i for i, r in enumerate(self.map.registers)}
        self._seq = 0
        self._buffer = b""
        version, self.max_payload = self.info()
        if version != PROTOCOL_VERSION:
            raise LinkError(f"the device speaks protocol version {version}, this host "
                            f"{PROTOCOL_VERSION}")
        magic = self.map.unpack("id", self.read("id").value)["magic"]
        if magic != MAGIC:
            raise LinkError(f"the device's id reads {magic:#06x}, not a fieldtune SoC "
                            f"({MAGIC:#06x})")

    # -- lifetime --

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def engine(self):
        """What the session's results name as their source."""
        return "host link"

    @property
    def sim_cycles(self):
        return getattr(self.transport, "sim_cycles", None)

    @property
    def sim_seconds(self):
        return getattr(self.transport, "sim_seconds", None)

    # -- requests --

    def _line_time(self, nbytes):
        return nbytes * BITS_PER_BYTE / self.baud

    def request(self, cmd, address=0, count=0, *, flags=0, payload=b"", answer_bytes=0,
                what=None, window_read=False):
        """Send one request and return its answer (a
        :class:`~fieldtune.sim.golden.host.Response` with status OK), resending as the
        module documentation says. ``answer_bytes``: the payload an OK answer carries (an
        answer with another length is two answers merged by a lost delimiter: resend)."""
        what = what or f"{Command(cmd).name} at {address:#x}"
        self.stats.requests += 1
        frame = bytes([DELIMITER]) + encode_request(self._next_seq(), cmd, address, count,
                                                    flags, payload)
        answer = answer_bytes + OVERHEAD + 2 + (answer_bytes + OVERHEAD) // COBS_BLOCK
        wait = self._line_time(len(frame) + answer) + self.timeout
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.resends += 1
            self.transport.send(frame)
            self.stats.bytes_sent += len(frame)
            response = self._answer(cmd, wait, answer_bytes)
            if response is None:
                continue
            if response.status == Status.DUPLICATE:
                # the first copy was executed and its answer lost
                if window_read:
                    raise StreamLost(f"{what}: the answer was lost and the window's stream "
                                     f"has moved on")
                frame = bytes([DELIMITER]) + encode_request(self._next_seq(), cmd, address,
                                                            count, flags, payload)
                continue
            if response.status in RESEND_STATUSES:
                name = response.status.name
                self.stats.refused[name] = self.stats.refused.get(name, 0) + 1
                continue
            if response.status != Status.OK:
                raise CommandError(what, response.status, response.count)
            return response
        raise LinkError(f"{what}: no intact answer after {self.retries + 1} attempts "
                        f"({self.stats.timeouts} timeouts so far on this link)")

    def _answer(self, cmd, wait, answer_bytes):
        """The answer to request ``cmd`` (the current ``seq``), or None (timeout, an answer
        that does not decode, or one that says the request arrived broken: resend). Answers
        to other requests (late answers to an earlier one) are skipped."""
        deadline = self.transport.now() + wait
        while True:
            frames, rest = split_frames(self._buffer)
            for i, raw in enumerate(frames):
                # frames after the one that decides stay for the next request
                self._buffer = b"".join(f + bytes([DELIMITER]) for f in frames[i + 1:]) + rest
                try:
                    response = decode_response(raw)
                except FrameError:
                    self.stats.bad_answers += 1
                    return None
                if response.status in RESEND_STATUSES:
                    return response
                if (response.seq, response.cmd) == (self._seq, int(cmd)):
                    if response.status == Status.OK and len(response.payload) != answer_bytes:
                        self.stats.bad_answers += 1
                        return None
                    return response
            self._buffer = rest
            left = deadline - self.transport.now()
            if left <= 0:
                self.stats.timeouts += 1
                return None
            data = self.transport.receive(left)
            self.stats.bytes_received += len(data)
            self._buffer += data

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # -- commands --

    def info(self):
        """``(protocol version, max payload)`` (INFO)."""
        r = self.request(Command.INFO, answer_bytes=4)
        return r.payload[0], int.from_bytes(r.payload[2:4], "little")

    def echo(self, data):
        """The link self-test: the device sends ``data`` back; LinkError if it differs."""
        data = bytes(data)
        r = self.request(Command.ECHO, count=0, payload=data, answer_bytes=len(data))
        if r.payload != data:
            raise LinkError(f"echo of {len(data)} bytes came back different")
        return r.payload

    def status(self):
        """``(status word, errors word)`` (STATUS)."""
        r = self.request(Command.STATUS, answer_bytes=2 * REGISTER_BYTES)
        return tuple(unpack_elements(r.payload, REGISTER_BYTES))

    def abort(self):
        self.request(Command.ABORT)

    def read_register(self, address):
        """One register (a READ moves one register: protocol 3)."""
        r = self.request(Command.READ, address, REGISTER_BYTES, answer_bytes=REGISTER_BYTES)
        return unpack_elements(r.payload, REGISTER_BYTES)[0]

    def write_register(self, address, word):
        self.request(Command.WRITE, address, REGISTER_BYTES,
                     payload=pack_elements([word], REGISTER_BYTES))

    # -- the device calls of a session --

    def write(self, register, **fields):
        self.write_register(self._index[register], self.map.pack(register, **fields))

    def read(self, register):
        return Reading.of(self.read_register(self._index[register]))

    def _chunk(self, window):
        return max(1, self.max_payload // window.element_bytes)

    def write_window(self, name, words):
        """Bus words to a window: elements packed, a frame per record (the record window:
        LAST on the element with bit ``last_bit``) or per ``max_payload`` bytes."""
        window = self.map.windows[name]
        eb, chunk = window.element_bytes, self._chunk(window)
        mask = (1 << 8 * eb) - 1
        bursts, current = [], []
        for w in words:
            current.append(w & mask)
            last = window.last_bit is not None and w >> window.last_bit & 1
            if last or len(current) == chunk:
                bursts.append((current, bool(last)))
                current = []
        if current:
            bursts.append((current, False))
        for elements, last in bursts:
            self.request(Command.WRITE, window.address, len(elements) * eb,
                         flags=Flags.LAST if last else 0,
                         payload=pack_elements(elements, eb), what=f"write {name} window")

    def read_window(self, name, count):
        """``count`` elements of a window (signed windows sign-extended)."""
        window = self.map.windows[name]
        eb, chunk, out = window.element_bytes, self._chunk(window), []
        while len(out) < count:
            n = min(chunk, count - len(out))
            r = self.request(Command.READ, window.address, n * eb, answer_bytes=n * eb,
                             what=f"read {name} window", window_read=True)
            out += unpack_elements(r.payload, eb, signed=window.signed)
        return Reading.of([v & 0xFFFF_FFFF for v in out])

    def start(self):
        self.request(Command.START)

    def wait_done(self, max_cycles, what):
        """Poll STATUS until ``done``; in a simulation LinkError after ``max_cycles`` device
        cycles of simulated time (on a board the device's watchdog ends a stuck run)."""
        clock = getattr(self.transport, "clock_hz", None)
        deadline = self.transport.now() + max_cycles / clock if clock else None
        while True:
            status, _ = self.status()
            if status >> _DONE_BIT & 1:
                return
            if deadline is not None and self.transport.now() > deadline:
                raise LinkError(f"timed out waiting for {what}")
            if self.poll:
                self._buffer += self.transport.idle(self.poll)

    def then(self, callback):
        callback()

    def flush(self):
        pass
