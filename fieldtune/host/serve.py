"""``fieldtune serve --sim``: the simulated SoC behind a pseudo-terminal, as if it were a board.

Opens a pseudo-terminal pair (raw mode, no echo), prints the path of its terminal side
(``/dev/pts/N``) on standard output, and relays bytes between it and the UART of the SoC behind
its host link simulated on CXXRTL (:class:`~fieldtune.host.transport.SimTransport`), until
interrupted (or, with ``--exit-after S``, S seconds after the last byte from the host). Another
program -- ``fieldtune run --port /dev/pts/N``, or anything that speaks docs/protocol.md through
pyserial -- then drives it exactly as it drives a board.

Time: the simulation runs while a frame is on the line or a run is busy (the SoC's ``busy``
pin), as fast as the machine simulates, and pauses while the line and the SoC are idle.
"""

import os
import pty
import select
import sys
import time
import tty

from ..cli_common import UserError, add_config_arguments, load_config
from ..finetune import yosys_env
from .transport import SimTransport


__all__ = ["add_arguments", "run", "PtyServer"]


#: Simulated seconds the SoC runs per relay step while it is busy (a training run) with no
#: bytes on the line: short enough to answer a poll promptly.
BUSY_STEP = 200e-6
#: Wall seconds a client should wait for an answer before resending: a frame of 512 bytes is
#: about 40,000 cycles, which a loaded machine may take seconds to simulate.
SUGGESTED_TIMEOUT = 10

#: Simulated seconds the server waits for an answer that is due before it stops expecting it.
ANSWER_WAIT = 2e-3


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--sim", action="store_true", required=True,
                        help="serve the SoC with its host link simulated on CXXRTL (the only "
                             "device there is to serve)")
    parser.add_argument("--baud", type=int, metavar="N",
                        help="the simulated link's baud (default: the configuration's "
                             "host.baud)")
    parser.add_argument("--exit-after", type=float, metavar="S",
                        help="stop S seconds after the last byte from the host (default: run "
                             "until interrupted)")


class PtyServer:
    """A pseudo-terminal whose other side is ``transport`` (a :class:`SimTransport`).
    ``path`` is the terminal a client opens.

    The simulation runs while the SoC is busy, while bytes are on their way to it, and while
    an answer is due: the device answers every non-empty frame once, so the server counts the
    frames the host completed (a 0x00 after another byte) against the delimiters that came
    back, and gives up on an answer after :data:`ANSWER_WAIT` simulated seconds."""

    def __init__(self, transport):
        self.transport = transport
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self.bytes_in = self.bytes_out = 0
        self._due = 0             # answers still to come
        self._since = 0.0         # simulated seconds waited for the next one
        self._last_in = 0

    def _frames(self, data):
        n, last = 0, self._last_in
        for b in data:
            if b == 0 and last != 0:
                n += 1
            last = b
        self._last_in = last
        return n

    def step(self, wait):
        """Relay once: take what the host sent (waiting up to ``wait`` wall seconds when
        nothing is going on), let the simulation run, hand back what it sent. Returns the
        number of bytes from the host."""
        t = self.transport
        busy = t.sim.get("busy")
        active = busy or t.uart.pending or self._due
        ready, _, _ = select.select([self.master], [], [], 0 if active else wait)
        data = b""
        if ready:
            try:
                data = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                data = b""
        if data:
            self.bytes_in += len(data)
            self._due += self._frames(data)
            t.send(data)
        if not (active or data):
            return 0
        before = t.now()
        # until an answer's delimiter (once the request is in), or a slice of a busy run
        out = t.receive(ANSWER_WAIT if self._due else BUSY_STEP)
        if out:
            self.bytes_out += len(out)
            os.write(self.master, out)
            self._due = max(0, self._due - out.count(0))
            self._since = 0.0
        elif self._due and not t.uart.pending:
            self._since += t.now() - before
            if self._since >= ANSWER_WAIT:
                self._due, self._since = 0, 0.0
        return len(data)

    def close(self):
        os.close(self.master)
        os.close(self._slave)


def run(args, console):
    config = load_config(args)
    if args.baud is not None:
        config = config.replace(host={"baud": args.baud})
    if args.exit_after is not None and not args.exit_after > 0:
        raise UserError(f"--exit-after must be a positive number of seconds, not "
                        f"{args.exit_after}")
    env = yosys_env(console)
    with console.status("building the simulated SoC with its host link (CXXRTL)"):
        transport = SimTransport(config, env=env)
    server = PtyServer(transport)
    print(server.path, flush=True)
    console.print(f"serving the simulated SoC ({config.host.baud:,} baud) on {server.path}; "
                  f"drive it with: fieldtune run --port {server.path}"
                  + (f" --baud {config.host.baud}" if args.baud else "")
                  + f" --timeout {SUGGESTED_TIMEOUT:g} (the simulation answers far slower than "
                    f"a board)", soft_wrap=True)
    last = time.monotonic()
    try:
        while True:
            if server.step(0.05):
                last = time.monotonic()
            if args.exit_after and time.monotonic() - last > args.exit_after:
                break
    finally:
        server.close()
        transport.close()
        console.print(f"served {server.bytes_in:,} bytes in, {server.bytes_out:,} out, "
                      f"{transport.sim_cycles:,} cycles simulated")
        sys.stdout.flush()
    return 0
