"""``fieldtune run``: R1 fine-tuning through the host link, on a board or the simulated SoC.

``--sim`` runs the SoC behind its host link (:class:`~fieldtune.rtl.host.top.HostSystem`) on
CXXRTL with its UART driven at bit level; ``--port DEVICE`` opens a serial port (a board, or
the pseudo-terminal ``fieldtune serve --sim`` prints). Either way the same
:class:`~fieldtune.host.driver.HostDriver` carries the same training session
(:func:`fieldtune.host.session.finetune`) that ``fieldtune demo`` runs on its engines, so the
accuracy, the cycles and the weights are those of the demo's device run. ``--json FILE`` writes
``accuracy.device_fo`` / ``accuracy.device_zo`` and ``cycles.fo`` / ``cycles.zo`` as ``fieldtune
demo --json`` does, plus the weights' SHA-256 and the link's statistics (requests, resends,
timeouts, bytes).
"""

import hashlib
import json
import time
from pathlib import Path

from rich.progress import Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn

from ..boards.build import on_board
from ..boards.table import BOARDS
from ..build import build_config
from ..cli_common import UserError, add_config_arguments, load_config, output_file
from ..finetune import yosys_env
from ..sim.data import R1_DRIFT_DEG
from ..sim.scenario import r1_features
from ..sim.golden.schedule import RUNS, DEFAULT_RUN, run_epochs, describe_run
from ..simulate import slice_r1
from .driver import HostDriver
from .session import Session, finetune, run_limit, DeviceError
from .transport import SerialTransport, SimTransport


__all__ = ["add_arguments", "run", "add_link_arguments", "open_link", "MODES"]


MODES = {"fo": ("fo",), "zo": ("zo",), "both": ("fo", "zo")}


def add_link_arguments(parser, *, sim_help):
    """``--sim`` | ``--port DEVICE``, ``--baud N``, ``--timeout S``: where the device is."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sim", action="store_true", help=sim_help)
    where.add_argument("--port", metavar="DEVICE",
                       help="serial port of a board, or the pseudo-terminal of 'fieldtune serve "
                            "--sim' (e.g. /dev/ttyUSB1, /dev/pts/5)")
    parser.add_argument("--baud", type=int, metavar="N",
                        help="line rate (default: the configuration's host.baud, 3,000,000)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="seconds to wait for an answer beyond its time on the line before "
                             "resending (default: 0.5 on a port, 1 ms of simulated time with "
                             "--sim)")


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--board", choices=tuple(BOARDS),
                        help="the board on --port, as 'fieldtune build --board' built it: its "
                             "default preset (unless --preset/--config) and its SoC clock "
                             "(with --sim: that configuration, simulated)")
    add_link_arguments(parser, sim_help="the SoC behind its host link, simulated on CXXRTL "
                                        "with the UART at bit level")
    parser.add_argument("--mode", choices=tuple(MODES), default="both",
                        help="first order, zeroth order or both (default: %(default)s)")
    parser.add_argument("--json", metavar="FILE", type=output_file,
                        help="also write the figures as JSON")
    parser.add_argument("--drift", type=float, default=R1_DRIFT_DEG, metavar="DEG",
                        help="rotation of the drift pool in degrees (default: %(default)s)")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="perturbation seed (default: the configuration's [train] seed)")
    parser.add_argument("--schedule", choices=tuple(RUNS), default=DEFAULT_RUN,
                        help="the first-order run, as in 'fieldtune demo' (default: "
                             "%(default)s)")
    parser.add_argument("--epochs", type=int,
                        help="first-order epochs (default: the --schedule run's)")
    parser.add_argument("--steps", type=int, help="zeroth-order steps (default: [train])")
    parser.add_argument("--samples", type=int, metavar="N",
                        help="train on the first N fine-tuning samples only (default: all 256)")
    parser.add_argument("--test-samples", type=int, metavar="N",
                        help="evaluate on the first N test samples only (default: all 463)")


def link_config(args):
    """The design configuration with ``--board``, ``--baud``, ``--seed``, ``--epochs``,
    ``--steps``."""
    if getattr(args, "board", None) is not None:
        config = on_board(build_config(args))
    else:
        config = load_config(args)
    train = {k: v for k, v in (("seed", getattr(args, "seed", None)),
                               ("epochs", getattr(args, "epochs", None)),
                               ("steps", getattr(args, "steps", None))) if v is not None}
    changes = {"train": train} if train else {}
    if args.baud is not None:
        changes["host"] = {"baud": args.baud}
    return config.replace(**changes) if changes else config


def open_link(args, config, console):
    """The :class:`HostDriver` that ``--sim`` or ``--port`` names; UserError if nothing
    answers."""
    if args.timeout is not None and not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if args.sim:
        env = yosys_env(console)
        with console.status("building the simulated SoC with its host link (CXXRTL)"):
            transport = SimTransport(config, env=env)
        where = f"simulated SoC ({config.host.baud:,} baud, {config.host.clock_hz / 1e6:g} MHz)"
    else:
        transport = SerialTransport(args.port, config.host.baud)
        where = f"{args.port} ({config.host.baud:,} baud)"
    try:
        return HostDriver(transport, config, timeout=args.timeout), where
    except DeviceError as e:
        transport.close()
        raise UserError(f"no fieldtune SoC answers on {where}: {e}") from None


def _digest(weights):
    return hashlib.sha256(weights.astype("<i8").tobytes()).hexdigest()


def run(args, console):
    start = time.perf_counter()
    config = link_config(args)
    driver, where = open_link(args, config, console)
    try:
        data = r1_features(args.drift)
        if args.samples is not None or args.test_samples is not None:
            data = slice_r1(data, args.samples or data["n_finetune"],
                            args.test_samples or data["n_test"])
        if config.train.batch > data["n_finetune"]:
            raise UserError(f"--samples must be at least the batch ({config.train.batch}), "
                            f"not {data['n_finetune']}")
    except BaseException:
        driver.close()
        raise
    runs, links = {}, {}
    fo_run = describe_run(args.schedule, run_epochs(RUNS[args.schedule], config.train.epochs,
                                                    args.epochs))
    with driver, Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        for mode in MODES[args.mode]:
            total = fo_run["epochs"] if mode == "fo" else config.train.steps
            task = bar.add_task(f"{mode.upper()} over the host link", total=total)
            every = 1 if mode == "fo" else max(1, total // 10)
            session = Session(driver, config, max_cycles=run_limit(
                config, mode, data["n_finetune"], every))
            before = dict(vars(driver.stats))
            try:
                runs[mode] = finetune(session, data, mode=mode, eval_every=every,
                                      epochs=fo_run["epochs"],
                                      schedule=RUNS[args.schedule].schedule,
                                      progress=lambda d, t, task=task: bar.update(
                                          task, completed=d),
                                      source="host link")
            except DeviceError as e:
                raise UserError(f"{mode.upper()} run over {where}: {e}") from None
            links[mode] = {k: (v - before[k] if isinstance(v, int) else v)
                           for k, v in vars(driver.stats).items()}
    doc = report(config, data, runs, links, where=where, sim=args.sim, fo_run=fo_run,
                 wall_seconds=round(time.perf_counter() - start, 2))
    for mode, r in runs.items():
        run_name = f" ({fo_run['name']}, {fo_run['epochs']} epochs)" if mode == "fo" else ""
        console.print(f"{mode.upper()} over {where}: test accuracy {100 * r.accuracy:.1f} % "
                      f"(after drift {100 * data['after_drift_accuracy']:.1f} %), "
                      f"{r.cycles:,} training cycles, {links[mode]['resends']} resends"
                      f"{run_name}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


def report(config, data, runs, links, *, where, sim, fo_run, wall_seconds):
    """The JSON document of ``fieldtune run`` (keys as ``fieldtune demo --json`` where they
    mean the same)."""
    def per_mode(fn):
        return {m: (fn(runs[m]) if m in runs else None) for m in ("fo", "zo")}
    return {
        "command": "fieldtune run",
        "link": where,
        "simulated": sim,
        "baud": config.host.baud,
        "scenario": {"name": "R1", "seed": config.train.seed, "epochs": config.train.epochs,
                     "steps": config.train.steps, "batch": config.train.batch,
                     "n_finetune": data["n_finetune"], "n_test": data["n_test"],
                     "fo_run": fo_run},
        "accuracy": {"before_drift": data["before_drift_accuracy"],
                     "after_drift": data["after_drift_accuracy"],
                     "device_fo": runs["fo"].accuracy if "fo" in runs else None,
                     "device_zo": runs["zo"].accuracy if "zo" in runs else None},
        "cycles": per_mode(lambda r: int(r.cycles)),
        "eval_cycles": per_mode(lambda r: int(r.eval_cycles)),
        "curves": {f"device_{m}": [list(p) for p in r.curve] for m, r in runs.items()},
        "weights_sha256": per_mode(lambda r: _digest(r.weights)),
        "link_stats": links,
        "wall_seconds": wall_seconds,
    }
