"""``fieldtune bench finetune``: R1 fine-tuning time on this machine's CPU against the projected
time on each board preset, measured in one run.

CPU rows (wall-clock training time, evaluation excluded, the fastest of ``--repeats`` runs so
the CPU gets its best case): the float skip-adapter algorithm in numpy (the device's algorithm),
and LoRA-All and FT-All in PyTorch when it is installed (``--torch-threads``: one thread by
default, see :func:`fieldtune.finetune.torch_references`). Device rows: the SoC of each preset
(:data:`PRESETS`) fine-tunes on the simulated SoC (``--engine``), and its training cycles are
divided by the post-route Fmax of that SoC on the preset's device (:mod:`fieldtune.fmax`:
a cached build of the same design, or a build run now, as ``fmax_source`` says).

``ratio_vs_lora_all`` = LoRA-All's CPU seconds / the row's seconds: how many times faster than
PyTorch LoRA-All (issue 5's target: at least 20 on the ECP5-85F, first order).
"""

from concurrent.futures import ThreadPoolExecutor

from ..config import PRESETS as KNOWN, DesignConfig
from ..demo import ENGINE_CHOICES
from ..finetune import (check_engine, float_first_order, float_mezo, simulate_modes,
                        torch_references, yosys_env)
from ..fmax import soc_fmax
from ..sim import reference
from ..sim.scenario import r1_features
from .report import emit


__all__ = ["add_arguments", "run", "PRESETS", "TARGET_RATIO", "COLUMNS"]


#: Board presets whose projected time is reported (``fieldtune.config.PRESETS`` names).
PRESETS = ("up5k", "ecp5-85f")
#: Issue 5: first-order fine-tuning on the ECP5-85F at least this many times faster than
#: PyTorch LoRA-All on the CPU.
TARGET_RATIO = 20.0

COLUMNS = [("method", "method"), ("where", "where"), ("accuracy_pct", "acc. %"),
           ("ms", "time ms"), ("ratio_vs_lora_all", "× LoRA-All"), ("cycles", "cycles"),
           ("fmax_mhz", "Fmax MHz")]


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def add_arguments(parser):
    parser.add_argument("--presets", type=_csv, default=list(PRESETS), metavar="NAME,...",
                        help=f"board presets to project (default: {','.join(PRESETS)})")
    parser.add_argument("--modes", type=_csv, default=["fo"], metavar="fo[,zo]",
                        help="device modes (default: fo; zo adds zeroth order and float MeZO)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES, default="cxxrtl",
                        help="SoC simulation engine for the cycle counts (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="CPU runs per method; the fastest counts (default: %(default)s)")
    parser.add_argument("--torch-threads", type=_csv, default=["1"], metavar="N,...",
                        help="PyTorch thread counts to measure, 'default' for PyTorch's own "
                             "(default: 1); the fastest counts")
    parser.add_argument("--drift", type=float, default=30.0, metavar="DEG",
                        help="rotation of the drift pool (default: %(default)s)")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--no-build", action="store_true",
                       help="no place and route: cached builds only, else Fmax not measured")
    build.add_argument("--rebuild", action="store_true",
                       help="place and route now even if a cached build exists")


def _check(args):
    for name in args.presets:
        if name not in KNOWN:
            raise ValueError(f"--presets must name presets among {', '.join(KNOWN)}, "
                             f"not {name!r}")
    for mode in args.modes:
        if mode not in ("fo", "zo"):
            raise ValueError(f"--modes must name 'fo' or 'zo', not {mode!r}")
    if not 1 <= args.repeats <= 100:
        raise ValueError(f"--repeats must be an integer from 1 to 100, not {args.repeats}")
    threads = []
    for t in args.torch_threads:
        if t == "default":
            threads.append(None)
        elif t.isdigit() and int(t) >= 1:
            threads.append(int(t))
        else:
            raise ValueError(f"--torch-threads must list positive integers or 'default', "
                             f"not {t!r}")
    return threads


def _fastest(fn, repeats):
    """The run with the smallest ``seconds`` of ``repeats`` calls of ``fn()``."""
    return min((fn() for _ in range(repeats)), key=lambda r: r.seconds)


def _row(method, where, seconds, accuracy, **extra):
    return {"method": method, "where": where, "seconds": seconds, "accuracy": accuracy,
            "ms": None if seconds is None else seconds * 1e3,
            "accuracy_pct": None if accuracy is None else 100 * accuracy, **extra}


def cpu_rows(config, drift, modes, repeats, threads, console):
    """Rows of the CPU methods (``seconds`` None and ``note`` when not run)."""
    ref = reference.r1_reference_data(drift)
    rows = []
    with console.status("CPU: float skip adapters (numpy)"):
        r = _fastest(lambda: float_first_order(ref, config.train, curve=False), repeats)
    rows.append(_row("skip adapters FO", "cpu", r.seconds, r.accuracy, note="float, numpy"))
    if "zo" in modes:
        with console.status("CPU: float MeZO Gaussian (numpy)"):
            r = _fastest(lambda: float_mezo(ref, config.train, seeds=1,
                                            eval_every=config.train.steps)[0], repeats)
        rows.append(_row("MeZO Gaussian ZO", "cpu", r.seconds, r.accuracy,
                         note="float, numpy, one seed"))
    torch, reason = reference.torch_status()
    for method, label in (("lora_all", "LoRA-All"), ("ft_all", "FT-All")):
        if torch is None:
            rows.append(_row(label, "cpu", None, None, note=reason))
            continue
        best = None
        for n in threads:
            with console.status(f"CPU: {label} (PyTorch, {n or 'default'} threads)"):
                r = _fastest(lambda: torch_references(drift, config.train, (method,),
                                                      curve=False, threads=n)[method], repeats)
            if best is None or r.seconds < best[0].seconds:
                best = (r, n or torch.get_num_threads())
        rows.append(_row(label, "cpu", best[0].seconds, best[0].accuracy,
                         note=f"PyTorch, {best[1]} thread{'s' * (best[1] > 1)}"))
    return rows


def device_rows(presets, modes, engine, drift, policy, console):
    """Rows of the simulated SoC of every preset, with the projected time on its device."""
    data = r1_features(drift)
    env = yosys_env(console) if engine != "golden" else None
    rows = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        configs = {p: DesignConfig.preset(p) for p in presets}
        # Place and route (subprocesses) runs beside the simulations.
        jobs = {p: pool.submit(soc_fmax, c, build=policy) for p, c in configs.items()}
        runs = {p: simulate_modes(c, data, modes, engine, console, env=env)
                for p, c in configs.items()}
        for p in presets:
            with console.status(f"waiting for place and route of the {p} SoC"):
                fmax = jobs[p].result()
            for mode, res in runs[p].items():
                rows.append(_row(f"device {mode.upper()}", fmax.device,
                                 fmax.seconds(res.cycles), res.accuracy, cycles=res.cycles,
                                 cycles_source=res.counters.get("cycles_source", engine),
                                 fmax_mhz=fmax.mhz, fmax_source=fmax.source, preset=p,
                                 board=configs[p].board, mode=mode, engine=engine,
                                 lanes=configs[p].mac.lanes))
    return rows


def run(args, console):
    threads = _check(args)
    check_engine(args.engine)
    policy = "cached" if args.no_build else "always" if args.rebuild else "auto"
    config = DesignConfig()
    rows = cpu_rows(config, args.drift, args.modes, args.repeats, threads, console)
    rows += device_rows(args.presets, args.modes, args.engine, args.drift, policy, console)
    lora = next((r["seconds"] for r in rows if r["method"] == "LoRA-All"), None)
    for r in rows:
        r["ratio_vs_lora_all"] = (lora / r["seconds"] if lora is not None and r["seconds"]
                                  else None)
    target = next((r for r in rows if r.get("preset") == "ecp5-85f" and r.get("mode") == "fo"),
                  None)
    met = (None if target is None or target["ratio_vs_lora_all"] is None
           else target["ratio_vs_lora_all"] >= TARGET_RATIO)
    extra = {"engine": args.engine, "drift_deg": args.drift, "repeats": args.repeats,
             "target": {"ratio_vs_lora_all_ecp5_85f_fo": TARGET_RATIO, "met": met}}
    emit("finetune", rows, COLUMNS, json_path=args.json, console=console, extra=extra,
         title=f"R1 fine-tuning ({args.drift:g}°): CPU measured here vs device cycles / Fmax "
               f"(engine {args.engine})")
    for r in rows:
        detail = r.get("note") or (f"{r['board']}, {r['lanes']} lanes, cycles: "
                                   f"{r['cycles_source']}; Fmax: {r['fmax_source']}"
                                   if "board" in r else "")
        console.print(f"  {r['method']} on {r['where']}: {detail}")
    if args.engine == "golden":
        console.print("[yellow]note:[/yellow] device accuracies and cycles come from the golden "
                      "model (--engine golden), not from a simulation of the SoC")
    if met is not None:
        console.print(f"ECP5-85F first order vs PyTorch LoRA-All: "
                      f"{target['ratio_vs_lora_all']:.1f}× (target ≥ {TARGET_RATIO:g}×: "
                      f"{'met' if met else 'NOT met'})")
    return rows
