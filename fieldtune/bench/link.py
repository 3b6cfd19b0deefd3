"""``fieldtune bench link``: throughput and latency of the host link, measured in simulation.

The SoC behind its host link (:class:`~fieldtune.rtl.host.top.HostSystem`) runs on CXXRTL
with its UART driven at bit level (:class:`~fieldtune.host.transport.SimTransport`); the host
driver (:class:`~fieldtune.host.driver.HostDriver`, stop and wait: one frame, then its answer)
performs each operation and the *simulated* time from its first byte out to its answer's last
byte in is the figure. Per baud (``--bauds``), rows:

* ``register_read``, ``register_write``: one register (4 payload bytes): the round-trip latency;
* ``echo``: the link self-test with a full payload (``host.max_payload`` bytes each way);
* ``burst_write``: one full frame of weights to the weight window (a LOAD run);
* ``burst_read``: one full frame of weights from it (a DUMP run);
* ``weights_load``, ``weights_dump``: every adapter weight, LOAD and DUMP runs included;
* ``records_load``: R1's 256 training records (one frame per record), as a session loads them.

``goodput_ratio`` = payload bytes per second / the line's byte rate (baud / 10, 8N1). Targets
(issue 10): burst-write goodput >= 0.90 at 3 Mbaud; R1's 256 records in <= 0.5 s at 3 Mbaud.
``--noise P`` loses and flips each byte with probability P in both directions
(:class:`~fieldtune.host.transport.FaultyLine`): the rows then include the resends.
"""

import numpy as np

from ..cli_common import add_config_arguments, load_config
from ..finetune import yosys_env
from ..host.driver import HostDriver
from ..host.session import Session
from ..host.transport import SimTransport, FaultyLine, BITS_PER_BYTE
from ..rtl.mac.layout import Layout
from ..rtl.sequencer import Mode
from ..sim.scenario import r1_features
from ..sim.soc_data import records_of, synthetic_data, record_stream
from .report import emit, csv_list


__all__ = ["add_arguments", "run", "measure", "COLUMNS", "TARGETS"]


#: Operation -> (goodput_ratio at least, seconds at most) at 3 Mbaud (issue 10).
TARGETS = {"burst_write": (0.90, None), "records_load": (None, 0.5)}
TARGET_BAUD = 3_000_000

COLUMNS = [("baud", "baud"), ("operation", "operation"), ("payload_bytes", "payload B"),
           ("frames", "frames"), ("line_bytes", "line B (both ways)"),
           ("seconds", "seconds (simulated)"), ("goodput_ratio", "goodput / line rate"),
           ("resends", "resends"), ("target", "target"), ("met", "met")]


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--bauds", type=csv_list, default=["3000000"], metavar="N,...",
                        help="line rates to measure (default: 3000000; each must suit "
                             "host.clock_hz)")
    parser.add_argument("--noise", type=float, default=0.0, metavar="P",
                        help="probability that a byte is lost, and that one is corrupted, in "
                             "each direction (default: 0, a clean line)")


def _records(config):
    """Training records for the record window: R1's when the design has R1's geometry, else
    synthetic ones filling the cache (at most 256)."""
    c = config.cache
    if sum(c.taps) == 224 and c.classes == 10:
        return records_of(r1_features(30), "train")
    n = min(256, c.capacity)
    return records_of(synthetic_data(config, n, 1), "train")


class _Meter:
    """Simulated seconds, line bytes, frames and resends of one operation."""

    def __init__(self, driver):
        self.driver = driver

    def __enter__(self):
        s, t = self.driver.stats, self.driver.transport
        self.start = (t.now(), s.bytes_sent + s.bytes_received, s.requests, s.resends)
        return self

    def __exit__(self, *exc):
        s, t = self.driver.stats, self.driver.transport
        t0, b0, r0, x0 = self.start
        self.seconds = t.now() - t0
        self.line_bytes = s.bytes_sent + s.bytes_received - b0
        self.frames, self.resends = s.requests - r0, s.resends - x0


def measure(config, driver, baud):
    """The rows of one baud on ``driver`` (a HostDriver on the simulated SoC)."""
    rows = []
    lay = Layout(config.mac)
    n_weights = lay.words * config.mac.lanes
    eb = driver.map.windows["weights"].element_bytes
    per_frame = min(n_weights, driver.max_payload // eb)
    rng = np.random.default_rng(1)
    weights = [int(v) & ((1 << config.mac.weight_width) - 1)
               for v in rng.integers(-64, 64, n_weights)]

    def row(operation, payload, m):
        rate = baud / BITS_PER_BYTE
        goodput = payload / m.seconds / rate if m.seconds else None
        target = TARGETS.get(operation) if baud == TARGET_BAUD else None
        met, text = None, None
        if target is not None:
            least, most = target
            met = (goodput >= least) if least is not None else (m.seconds <= most)
            text = f">= {least:.0%} goodput" if least is not None else f"<= {most} s"
        rows.append({"baud": baud, "operation": operation, "payload_bytes": payload,
                     "frames": m.frames, "line_bytes": m.line_bytes,
                     "seconds": round(m.seconds, 9),
                     "goodput_ratio": round(goodput, 4) if goodput is not None else None,
                     "resends": m.resends, "target": text, "met": met})

    with _Meter(driver) as m:
        driver.read("seed")
    row("register_read", 4, m)
    with _Meter(driver) as m:
        driver.write("seed", seed=7)
    row("register_write", 4, m)
    payload = bytes(range(1, 256)) * (driver.max_payload // 255 + 1)
    with _Meter(driver) as m:
        driver.echo(payload[:driver.max_payload])
    row("echo", 2 * driver.max_payload, m)

    with _Meter(driver) as whole:
        driver.write("mode", mode=Mode.LOAD.value)
        driver.start()
        with _Meter(driver) as m:
            driver.write_window("weights", weights[:per_frame])
        driver.write_window("weights", weights[per_frame:])
        driver.wait_done(10**7, "LOAD run")
    row("burst_write", per_frame * eb, m)
    row("weights_load", n_weights * eb, whole)
    with _Meter(driver) as whole:
        driver.write("mode", mode=Mode.DUMP.value)
        driver.start()
        with _Meter(driver) as m:
            first = driver.read_window("weights", per_frame).value
        rest = driver.read_window("weights", n_weights - per_frame).value
        driver.wait_done(10**7, "DUMP run")
    row("burst_read", per_frame * eb, m)
    row("weights_dump", n_weights * eb, whole)
    back = [v & ((1 << config.mac.weight_width) - 1) for v in first + rest]
    if back != weights:
        raise RuntimeError("the weights read back differ from those written")

    session = Session(driver, config)
    f, z, y = _records(config)
    session.clear_cache()
    payload = sum(len(r) for r in record_stream(f, z, y)) * \
        driver.map.windows["records"].element_bytes
    with _Meter(driver) as m:
        session.load_records(f, z, y)
    row("records_load", payload, m)
    loaded = driver.map.unpack("status", driver.read("status").value)["records"]
    if loaded != len(y):
        raise RuntimeError(f"the cache holds {loaded} records, {len(y)} were written")
    return rows


def run(args, console):
    config = load_config(args)
    if not 0 <= args.noise < 1:
        raise ValueError(f"--noise must be a probability from 0 to below 1, not {args.noise}")
    bauds = []
    for text in args.bauds:
        try:
            bauds.append(int(text))
        except ValueError:
            raise ValueError(f"--bauds must list integers, not {text!r}") from None
    env = yosys_env(console)
    rows = []
    for baud in bauds:
        cfg = config.replace(host={"baud": baud})
        with console.status(f"host link at {baud:,} baud (simulated SoC on CXXRTL)"):
            transport = SimTransport(cfg, env=env)
            if args.noise:
                transport = FaultyLine(transport, loss=args.noise, flip=args.noise, seed=1)
            with HostDriver(transport, cfg) as driver:
                rows += measure(cfg, driver, baud)
    emit("link", rows, COLUMNS, json_path=args.json, console=console,
         title="host link over the simulated SoC's UART (stop and wait; simulated seconds)",
         extra={"clock_hz": config.host.clock_hz, "max_payload": config.host.max_payload,
                "noise": args.noise})
    return rows
