"""``fieldtune demo``: the main job on built-in defaults, offline.

Reference scenario R1 end to end: load the int8 backbone (pretrained in numpy and shipped; it
is pretrained again if the file is missing), rotate the drift pool, fine-tune the adapters on
the simulated SoC in first order (InstantFT) and zeroth order (PeZO), and evaluate. The table
sets the device's accuracy beside the float references on the same samples with the same
hyperparameters (:mod:`fieldtune.finetune`), and projects the fine-tuning time on the design's
board as ``cycles / Fmax`` with the post-route Fmax of the last build of the same design, or of
a build run now, in parallel with the simulation (:mod:`fieldtune.fmax`); it says which. Each
other device gets its preset's projection (cycles estimated for that preset's SoC, Fmax from a
cached build or one shipped in the package; never built by default: an ECP5 place and route
takes many minutes).

Every device figure names the engine that produced it; ``--engine golden`` gives the golden
numpy model's figures, which are *not* a device simulation and are labelled so.
"""

import datetime
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.table import Table

from .boards.table import BOARDS
from .cli_common import add_config_arguments, load_config, output_file, pyplot
from .config import DesignConfig
from .finetune import (check_engine, estimated_cycles, float_first_order, float_mezo,
                       hyperparameters, torch_references, yosys_env, ModeRuns, ENGINE_KINDS,
                       MEZO_SEEDS)
from .fmax import soc_fmax, Fmax, NO_BUILD
from .rtl.cache.params import CODEBOOKS
from .sim import reference
from .sim.backbone import SHIPPED_PATH
from .sim.data import R1_DRIFT_DEG
from .sim.engines import registry
from .sim.scenario import r1_features
from .sim.golden.schedule import RUNS, DEFAULT_RUN, run_epochs, describe_run


__all__ = ["add_arguments", "run", "ENGINE_CHOICES", "MODES", "FLOAT_METHODS",
           "PROJECTED_PRESETS"]


#: Presets whose board the demo projects the fine-tuning time on, besides the design's own
#: (one per device; the boards' other presets are not built by default).
PROJECTED_PRESETS = ("up5k", "ecp5-85f")
#: Engines a user may name; the installed SoC runner decides which it supports.
ENGINE_CHOICES = (*registry.names(), "golden")
MODES = {"fo": ("fo",), "zo": ("zo",), "both": ("fo", "zo")}
#: Float reference key -> label.
FLOAT_METHODS = {"skip_adapters": "float skip adapters (numpy)",
                 "mezo_gaussian": "float MeZO Gaussian (numpy)",
                 "lora_all": "LoRA-All, rank 4 (PyTorch)", "ft_all": "FT-All (PyTorch)",
                 "ft_last": "FT-Last (PyTorch)", "lora_last": "LoRA-Last, rank 4 (PyTorch)"}


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--drift", type=float, default=R1_DRIFT_DEG, metavar="DEG",
                        help="rotation of the drift pool in degrees (default: %(default)s)")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="seed of the run: the device's perturbation seed and the float "
                             "references' seed (default: the configuration's [train] seed)")
    parser.add_argument("--mode", choices=tuple(MODES), default="both",
                        help="first order, zeroth order or both (default: %(default)s)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES,
                        help="SoC simulation engine (default: the fastest one that runs here, "
                             "by measurement: docs/benchmarks.md; 'golden' runs the numpy "
                             "golden model instead of simulating the SoC)")
    parser.add_argument("--schedule", choices=tuple(RUNS), default=DEFAULT_RUN,
                        help="the device's first-order run: " + "; ".join(
                            f"{name}: {run.description}" for name, run in RUNS.items())
                        + " (default: %(default)s, chosen by measurement: docs/benchmarks.md)")
    parser.add_argument("--epochs", type=int,
                        help="first-order epochs of the device and the float references "
                             "(default: the --schedule run's on the device, [train] for the "
                             "float references)")
    parser.add_argument("--steps", type=int, help="zeroth-order steps (default: [train])")
    parser.add_argument("--codebook", choices=CODEBOOKS,
                        help="forward-cache code book (default: [cache]); pass16 keeps the "
                             "16-bit features")
    parser.add_argument("--json", metavar="FILE", type=output_file,
                        help="also write the figures as JSON")
    parser.add_argument("--plot", metavar="FILE.png", type=output_file,
                        help="plot test accuracy against epoch and step (needs matplotlib: "
                             "pip install 'fieldtune[plot]')")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--no-build", action="store_true",
                       help="skip place and route: use a cached build of this design if there "
                            "is one, else report Fmax as not measured")
    build.add_argument("--rebuild", action="store_true",
                       help="place and route now even if a cached build exists")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the PyTorch baselines even if PyTorch is installed")


def _config(args):
    config = load_config(args)
    train = {k: v for k, v in (("seed", args.seed), ("epochs", args.epochs),
                               ("steps", args.steps)) if v is not None}
    changes = {"train": train} if train else {}
    if args.codebook:
        changes["cache"] = {"codebook": args.codebook}
    return config.replace(**changes) if changes else config


#: Engines that simulate the SoC at roughly 10^3-10^4 cycles/s (DESIGN.md, docs/benchmarks.md).
SLOW_ENGINES = registry.names(slow=True)
#: Cycles beyond which a slow engine takes more than a few minutes.
SLOW_CYCLES = 1_000_000


def _warn_if_slow(config, data, modes, engine, console):
    """Say so before a run on a slow engine that would take hours."""
    if engine not in SLOW_ENGINES:
        return
    cycles = sum(estimated_cycles(config, m, data["n_finetune"]) for m in modes)
    if cycles > SLOW_CYCLES:
        console.print(f"[yellow]warning:[/yellow] about {cycles:,} cycles of training on "
                      f"{engine}, which simulates the SoC at about 10^3-10^4 cycles/s: this "
                      f"takes hours; --epochs/--steps shorten it, --engine "
                      f"{registry.default_engine()} is fast")


def _float_references(config, drift, modes, status, *, torch=True):
    """Float references with the device's hyperparameters: name -> dict (accuracy, curve,
    seconds, reason, ...). ``status(text)``: a context manager showing what runs."""
    ref = reference.r1_reference_data(drift)
    out = {}
    with status("float references (numpy)"):
        if "fo" in modes:
            r = float_first_order(ref, config.train)
            out["skip_adapters"] = {"accuracy": r.accuracy, "curve": list(zip(r.curve_x,
                                                                              r.curve_accuracy)),
                                    "seconds": r.seconds, "params": r.params}
        if "zo" in modes:
            runs = float_mezo(ref, config.train)
            accs = [r.accuracy for r in runs]
            out["mezo_gaussian"] = {
                "accuracy": sum(accs) / len(accs), "seeds": [r.params["seed"] for r in runs],
                "per_seed": accs, "curve": list(zip(runs[0].curve_x, runs[0].curve_accuracy)),
                "seconds": sum(r.seconds for r in runs) / len(runs), "params": runs[0].params,
                "note": f"mean over {MEZO_SEEDS} seeds; curve of the first"}
    if torch and "fo" in modes and reference.torch_status()[0] is not None:
        with status("float references (PyTorch)"):
            refs = torch_references(drift, config.train)
    else:
        reason = ("not run: --no-torch" if not torch else
                  "not run: first order not requested" if "fo" not in modes else
                  reference.torch_status()[1])
        refs = {m: None for m in reference.TORCH_METHODS}
    for method, r in refs.items():
        if r is None or not r.ran:
            out[method] = {"accuracy": None, "reason": r.reason if r is not None else reason}
        else:
            out[method] = {"accuracy": r.accuracy,
                           "curve": list(zip(r.curve_x, r.curve_accuracy)),
                           "seconds": r.seconds, "params": r.params}
    return out


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f} %"


def _seconds(value):
    if value is None:
        return "-"
    return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


def _cycles(value, source=None):
    if value is None:
        return "-"
    return f"≈{value:,} (estimate)" if source == "estimate" else f"{value:,}"


def other_designs(config):
    """Board -> ``(preset name, DesignConfig)`` for every device of
    :data:`PROJECTED_PRESETS` other than ``config``'s: the first preset made for that device,
    with ``config``'s training section (the demo projects its time there from the preset's
    cycles and a cached or shipped build)."""
    out, devices = {}, {BOARDS[config.board].device}
    for name in PROJECTED_PRESETS:
        design = DesignConfig.preset(name)
        device = BOARDS[design.board].device
        if device not in devices:
            devices.add(device)
            out[design.board] = (name, design.replace(train=config.train))
    return out


def _projection(fmax, cycles, cycles_source, design):
    return {"device": fmax.device, "design": design, "fmax_mhz": fmax.mhz,
            "fmax_source": fmax.source, "fo": fmax.seconds(cycles["fo"]),
            "zo": fmax.seconds(cycles["zo"]), "cycles": cycles, "cycles_source": cycles_source}


def projections(config, data, cycles, sources, fmaxes):
    """``projected_time_s`` of the report: this design on its board with the run's ``cycles``
    (``sources``: mode -> where they came from), then each other device's preset with its
    estimated cycles (:func:`fieldtune.sim.soc_data.estimate_cycles`, within 2 % of the SoC)."""
    out = {config.board: _projection(fmaxes[config.board], cycles, sources,
                                     f"this design ({config.mac.lanes} lanes)")}
    for board, (preset, design) in other_designs(config).items():
        est = {m: (estimated_cycles(design, m, data["n_finetune"]) if cycles[m] is not None
                   else None) for m in cycles}
        out[board] = _projection(fmaxes[board], est, {m: "estimate" if est[m] else None
                                                      for m in est},
                                 f"preset {preset} ({design.mac.lanes} lanes)")
    return out


def device_config(config, fo_run):
    """``config`` with the first-order run's epochs (``fo_run``: :func:`describe_run`'s
    dict), the configuration the device trains under; the float references keep
    ``config``."""
    return config.replace(train={"epochs": fo_run["epochs"]})


def report(config, data, runs, floats, fmaxes, *, engine, drift, fo_run, wall_seconds=None):
    """The demo's figures as the JSON document (see ``fieldtune demo --help``). ``fmaxes``:
    board -> :class:`~fieldtune.fmax.Fmax`, the design's own board first, then the boards of
    :func:`other_designs`; ``fo_run``: the device's first-order run (:func:`describe_run`)."""
    hp = hyperparameters(config.train)
    cycles = {m: (runs[m].cycles if m in runs else None) for m in ("fo", "zo")}
    sources = {m: (runs[m].counters.get("cycles_source", engine) if m in runs else None)
               for m in ("fo", "zo")}
    boards = projections(device_config(config, fo_run), data, cycles, sources, fmaxes)
    fmax = fmaxes[config.board]
    return {
        "command": "fieldtune demo",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "engine": engine,
        "device_figures_from": ENGINE_KINDS.get(engine, engine),
        "scenario": {
            "name": "R1", "drift": "rotate", "drift_deg": drift, "seed": config.train.seed,
            "epochs": hp["epochs"], "steps": hp["steps"], "batch": hp["batch"],
            "queries": hp["queries"], "lr": hp["lr"], "lr_shift": hp["lr_shift"],
            "eps": hp["eps"], "eps_shift": hp["eps_shift"], "zo_lr": hp["zo_lr"],
            "zo_lr_shift": hp["zo_lr_shift"], "codebook": config.cache.codebook,
            "block_size": config.cache.block_size, "lanes": config.mac.lanes,
            "adapter": config.mac.adapter, "perturb": {k: getattr(config.perturb, k) for k in
                                                       ("source", "shape", "scaling", "reuse")},
            "fo_run": fo_run,
            "engine": engine, "board": config.board, "device": fmax.device,
            "n_finetune": data["n_finetune"], "n_test": data["n_test"]},
        "accuracy": {
            "before_drift": data["before_drift_accuracy"],
            "after_drift": data["after_drift_accuracy"],
            "device_fo": runs["fo"].accuracy if "fo" in runs else None,
            "device_zo": runs["zo"].accuracy if "zo" in runs else None,
            "float": {k: (floats[k]["accuracy"] if k in floats else None)
                      for k in FLOAT_METHODS},
        },
        "float_not_run": {k: v["reason"] for k, v in floats.items() if v.get("reason")},
        "cycles": cycles,
        "cycles_source": sources,
        "eval_cycles": {m: (runs[m].eval_cycles if m in runs else None) for m in ("fo", "zo")},
        "projected_time_s": boards,
        "curves": {**{f"device_{m}": [list(p) for p in r.curve] for m, r in runs.items()},
                   **{f"float_{k}": [list(p) for p in v["curve"]]
                      for k, v in floats.items() if v.get("curve")}},
        "simulation": {m: {"wall_seconds": r.wall_seconds,
                           "sim_cycles_per_second": r.sim_cycles_per_second,
                           "counters": r.counters} for m, r in runs.items()},
        "float_seconds": {k: v["seconds"] for k, v in floats.items() if "seconds" in v},
        "wall_seconds": wall_seconds,
    }


def tables(doc):
    """Rich tables of a :func:`report` document: accuracies, then the projected times."""
    sc, acc = doc["scenario"], doc["accuracy"]
    engine = doc["engine"]
    where = "golden model" if engine == "golden" else f"SoC on {engine}"
    board = doc["projected_time_s"][sc["board"]]
    t = Table(title=f"R1: {sc['drift_deg']:g}° rotation, {sc['n_finetune']} fine-tuning / "
                    f"{sc['n_test']} test samples, seed {sc['seed']}",
              caption=f"device first order: {sc['fo_run']['name']} "
                      f"({sc['fo_run']['description']}; {sc['fo_run']['epochs']} epochs), "
                      f"batch {sc['batch']}, η 2^-{sc['lr_shift']}, {sc['codebook']} cache; "
                      f"float first order: {sc['epochs']} epochs; zeroth order: "
                      f"{sc['steps']} steps, batch {sc['batch']}, ε 2^-{sc['eps_shift']}, "
                      f"η 2^-{sc['zo_lr_shift']}/ln 2 (device: {sc['perturb']['shape']} "
                      f"{sc['perturb']['reuse']}); float MeZO: mean of 3 seeds; PyTorch: "
                      f"{sc['epochs']} epochs, Adam, images. Time: device = cycles / Fmax, "
                      f"CPU = measured here")
    for header in ("", "test accuracy", "cycles", "time"):
        t.add_column(header, justify="left" if not header else "right")
    float_time = lambda k: _seconds(doc["float_seconds"].get(k))
    t.add_row("before drift (int8 backbone, upright)", _pct(acc["before_drift"]), "", "")
    t.add_row("after drift (frozen backbone)", _pct(acc["after_drift"]), "", "",
              end_section=True)
    if acc["device_fo"] is not None:
        t.add_row(f"device first order, {sc['fo_run']['name']} ({where})",
                  _pct(acc["device_fo"]),
                  _cycles(doc["cycles"]["fo"], doc["cycles_source"]["fo"]),
                  _seconds(board["fo"]))
    if acc["float"]["skip_adapters"] is not None:
        t.add_row(FLOAT_METHODS["skip_adapters"], _pct(acc["float"]["skip_adapters"]), "",
                  float_time("skip_adapters"), end_section=True)
    if acc["device_zo"] is not None:
        t.add_row(f"device zeroth order ({where})", _pct(acc["device_zo"]),
                  _cycles(doc["cycles"]["zo"], doc["cycles_source"]["zo"]),
                  _seconds(board["zo"]))
    if acc["float"]["mezo_gaussian"] is not None:
        t.add_row(FLOAT_METHODS["mezo_gaussian"], _pct(acc["float"]["mezo_gaussian"]), "",
                  float_time("mezo_gaussian"), end_section=True)
    for k in ("lora_all", "ft_all", "ft_last", "lora_last"):
        reason = doc["float_not_run"].get(k)
        t.add_row(FLOAT_METHODS[k], reason if reason else _pct(acc["float"][k]), "",
                  float_time(k))
    p = Table(title="projected fine-tuning time = cycles / post-route Fmax",
              caption="≈: cycles estimated for that preset's SoC, not simulated")
    for header in ("board", "design", "Fmax", "Fmax from", "first order", "zeroth order"):
        p.add_column(header, justify="right" if header in ("Fmax", "first order",
                                                           "zeroth order") else "left")
    for name, b in doc["projected_time_s"].items():
        mark = lambda m: ("≈" if b["cycles_source"][m] == "estimate" and b[m] is not None
                          else "") + _seconds(b[m])
        p.add_row(f"{name} ({b['device']})", b["design"],
                  "-" if b["fmax_mhz"] is None else f"{b['fmax_mhz']:.1f} MHz",
                  b["fmax_source"], mark("fo"), mark("zo"))
    return t, p


def plot(doc, path):
    """Test accuracy against epoch (first order) and step (zeroth order), device and float."""
    plt = pyplot()
    curves = doc["curves"]
    panels = [(m, unit) for m, unit in (("fo", "epoch"), ("zo", "step"))
              if f"device_{m}" in curves]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    floats = {"fo": ("float_skip_adapters", "float skip adapters"),
              "zo": ("float_mezo_gaussian", "float MeZO Gaussian (seed 1 of 3)")}
    for ax, (mode, unit) in zip(axes[0], panels):
        x, y = zip(*curves[f"device_{mode}"])
        ax.plot(x, [100 * v for v in y], "o-", label=f"device ({doc['engine']})")
        key, label = floats[mode]
        if key in curves:
            fx, fy = zip(*curves[key])
            ax.plot(fx, [100 * v for v in fy], "s--", label=label)
        ax.axhline(100 * doc["accuracy"]["before_drift"], color="gray", ls=":",
                   label="before drift")
        ax.set_xlabel(unit)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("first order" if mode == "fo" else "zeroth order")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"R1, {doc['scenario']['drift_deg']:g}° rotation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _engine_line(engine, *, chosen):
    """What simulates the SoC, and why that engine."""
    if engine == "golden":
        return "engine: golden numpy model (--engine golden)"
    why = "--engine" if chosen else "default: the fastest engine that runs here"
    return f"engine: {registry.get(engine).label} ({why})"


def run(args, console):
    start = time.perf_counter()
    config = _config(args)
    if args.plot:
        pyplot()
    engine = args.engine or registry.default_engine()
    check_engine(engine)
    console.print(_engine_line(engine, chosen=args.engine is not None))
    modes = MODES[args.mode]
    fo_run = describe_run(args.schedule, run_epochs(RUNS[args.schedule], config.train.epochs,
                                                    args.epochs))
    device = device_config(config, fo_run)
    policy = "cached" if args.no_build else "always" if args.rebuild else "auto"
    # The design's own board is built now when no build of it exists; the other devices'
    # presets only from a cached or shipped build (an ECP5 place and route takes many
    # minutes), unless --rebuild asks for every build.
    others = "always" if policy == "always" else "cached"
    designs = {config.board: (config, policy),
               **{b: (c, others) for b, (_, c) in other_designs(config).items()}}
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Place and route runs as subprocesses beside the simulation (2 cores).
        fmax_jobs = {b: pool.submit(soc_fmax, c, build=p) for b, (c, p) in designs.items()}
        with console.status("R1: " + ("loading the backbone" if SHIPPED_PATH.exists()
                                      else "pretraining the backbone (shipped file missing)")
                            + f", rotating the drift pool by {args.drift:g}°"):
            data = r1_features(args.drift)
        env = yosys_env(console) if engine != "golden" else None
        _warn_if_slow(device, data, modes, engine, console)
        with ModeRuns(device, data, modes, engine, console, env=env,
                      schedule=RUNS[args.schedule].schedule) as sims:
            # The float references (one core) start once a core is free of simulations (the
            # first-order run ends long before the zeroth-order one): their times stay those
            # of one core, and the demo takes about as long as its longest simulation.
            sims.free_core()
            floats = _float_references(config, args.drift, modes, sims.status,
                                       torch=not args.no_torch)
            runs = sims.results()
        fmaxes = {}
        for b, job in fmax_jobs.items():
            if not job.done():
                with console.status(f"waiting for place and route on {BOARDS[b].device}"):
                    job.result()
            fmaxes[b] = job.result()
    if args.no_build:
        fmaxes = {b: Fmax(None, "not measured (--no-build)", f.device, f.design_hash)
                  if f.source == NO_BUILD else f for b, f in fmaxes.items()}
    doc = report(config, data, runs, floats, fmaxes, engine=engine, drift=args.drift,
                 fo_run=fo_run, wall_seconds=round(time.perf_counter() - start, 2))
    for t in tables(doc):
        console.print(t)
    if engine == "golden":
        console.print("[yellow]note:[/yellow] device figures come from the golden numpy "
                      "model (--engine golden), not from a simulation of the SoC")
    if args.plot:
        plot(doc, args.plot)
        console.print(f"wrote {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
        console.print(f"wrote {args.json}")
    console.print(f"demo finished in {doc['wall_seconds']:.1f} s")
    return 0


def _json_default(value):
    # numpy scalars and arrays in counters
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
