"""Evaluating one point of a space: validate, implement, run R1, project the time.

:func:`evaluate` runs on a worker (any process with fieldtune installed) and returns the
point's row, a plain dict:

``index``, ``config`` (the varied fields), ``block``, ``device``
    which point, what was implemented where.
``fits``, ``luts``, ``ffs``, ``dsps``, ``brams``, ``sprams``, ``fmax_mhz``, ``fmax_source``,
``design_hash``
    the implementation (:func:`fieldtune.fmax.measure`: cached by design hash in
    ``$FIELDTUNE_CACHE/fmax``, so a rerun or a resumed sweep implements nothing twice).
``accuracy``, ``cycles``, ``cycles_source``
    R1 on the golden engine (bit-exact with the SoC): test accuracy after the space's
    ``[run]``, and its training cycles from the cycle model
    (:func:`fieldtune.sim.soc_run.estimate_cycles`). Kept in ``$FIELDTUNE_CACHE/explore``
    by a hash of the design, the run and the golden model's sources.
``projected_time_s``
    ``cycles / Fmax`` of the SoC (``block = "soc"`` only: a block's own Fmax is not the
    clock a fine-tuning run gets).
``error``
    ``None``, or why the point has no figures: ``invalid configuration: ...``, ``tool
    failure: ...``, ``does not fit: ...``, ``R1 run failed: ...``, ``not built: ...``
    (``build="cached"`` and no record).
``tool_run``, ``cache_hit``, ``seconds``, ``worker``
    bookkeeping of the sweep.

A block other than the SoC needs only its own sections valid (the cross-section rules are
the whole design's); its accuracy and cycles come from the whole design when that is valid,
else they are ``None`` and ``note`` says why.
"""

import inspect
import json
import os
import socket
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from ..blocks import build_block, BLOCK_SECTIONS
from ..config import DesignConfig, SECTIONS, BOARD_DEVICES
from ..executor import scratch_dir
from ..fmax import measure, implement_options, projected_seconds, NO_BUILD
from ..sim.engines.hdl import digest, cache_dir
from ..toolchain import tool_env, ToolchainError
from ..sim.scenario import r1_features
from ..sim import golden, scenario, data, backbone
from ..sim.soc_run import run_finetune, estimate_cycles, DeviceError
from ..rtl.crossblock import check_soc


__all__ = ["evaluate", "row_template", "TOOL_FAILURE", "INVALID", "NO_FIT", "RUN_FAILED",
           "NOT_BUILT"]


#: Prefixes of ``error`` (one per reason a point has no figures).
INVALID = "invalid configuration"
TOOL_FAILURE = "tool failure"
NO_FIT = "does not fit"
RUN_FAILED = "R1 run failed"
NOT_BUILT = "not built"

#: Modules whose sources make an accuracy record stale when they change: the golden engine,
#: R1, and wherever the run and the cycle model live.
_GOLDEN_MODULES = (golden, scenario, data, backbone, inspect.getmodule(run_finetune),
                   inspect.getmodule(estimate_cycles))


def row_template(point, device=None):
    """A row with every key and no figures (what an invalid point reports)."""
    return {"index": point.index, "config": dict(point.values), "block": point.block,
            "device": device, "fits": False, "luts": None, "ffs": None, "dsps": None,
            "brams": None, "sprams": None, "fmax_mhz": None, "fmax_source": None,
            "design_hash": None, "accuracy": None, "cycles": None, "cycles_source": None,
            "projected_time_s": None, "error": None, "note": None, "tool_run": False,
            "cache_hit": False, "seconds": None, "worker": None}


def evaluate(point, *, build="auto", env=None, keep=None):
    """The row of ``point`` (see the module documentation). ``build`` is the Fmax cache
    policy (:data:`fieldtune.fmax.BUILD_POLICIES`); ``env`` the tool environment (default:
    this worker's, :func:`fieldtune.toolchain.tool_env`); ``keep`` a folder to keep each
    implementation's files in (default: a temporary folder in the worker's scratch space)."""
    start = time.perf_counter()
    config, device = point.changes()
    row = row_template(point, device)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    try:
        design, sections, device = _validate(point.block, config, device)
    except ValueError as error:
        row["error"] = f"{INVALID}: {error}"
        return _done(row, start)
    row["device"] = device
    if point.block == "perturb":
        # the perturbation benchmark's columns, so its ratios can be computed over a sweep
        row.update(variant=point.values.get("perturb"), family=sections.perturb.family,
                   lanes=sections.perturb.lanes)
    _implement(row, point, sections, device, build=build, env=env, keep=keep)
    if point.run is not None:
        _run_r1(row, point, design, build=build)
    return _done(row, start)


def _done(row, start):
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _validate(block, config, device):
    """``(whole design or a note why none, sections, device)``; ValueError for a point
    whose ``block`` cannot be built."""
    whole = BLOCK_SECTIONS[block] is None
    try:
        design = DesignConfig.from_dict(config)
    except ValueError as error:
        if whole:
            raise
        design = f"R1 needs a whole design, and this one is invalid: {error}"
    if whole:
        check_soc(design)
        sections = design
    else:
        sections = SimpleNamespace(**{name: SECTIONS[name].from_dict(config[name])
                                      for name in BLOCK_SECTIONS[block]})
    if device is None:
        if config["board"] not in BOARD_DEVICES:
            DesignConfig(board=config["board"])                 # raises naming the board
        device = BOARD_DEVICES[config["board"]]
    return design, sections, device


def _options(block, sections):
    """The implementation options: the SPRAM flow only for a block that holds the cache."""
    if hasattr(sections, "cache"):
        return implement_options(sections)
    return dict(implement_options(DesignConfig()), spram=False)


def _implement(row, point, sections, device, *, build, env, keep):
    if env is None and build != "cached":
        try:
            env = tool_env()
        except ToolchainError as error:
            row["error"] = f"{TOOL_FAILURE}: {error}"
            return
    try:
        with _workdir(keep, point.index) as workdir:
            fmax = measure(lambda: build_block(point.block, sections), device, env,
                           options=_options(point.block, sections), build=build,
                           workdir=workdir)
    except ValueError as error:        # a rule only the elaborated block checks
        row["error"] = f"{INVALID}: {error}"
        return
    except (RuntimeError, OSError) as error:
        row["error"] = f"{TOOL_FAILURE}: {_failure(error)}"
        return
    impl = fmax.implementation or {}
    row.update(design_hash=fmax.design_hash, fmax_source=fmax.source,
               fmax_mhz=fmax.mhz, fits=bool(impl.get("fits")) and fmax.mhz is not None,
               tool_run=fmax.built, cache_hit=bool(impl) and not fmax.built)
    for key in ("luts", "ffs", "dsps", "brams", "sprams"):
        row[key] = impl.get(key)
    if fmax.source == NO_BUILD:
        row["error"] = f"{NOT_BUILT}: no cached build of this design (--no-build)"
    elif not impl:
        row["error"] = f"{TOOL_FAILURE}: {fmax.source}"
    elif not row["fits"]:
        row["error"] = f"{NO_FIT}: {impl.get('reason') or 'no Fmax reported'}"


class _workdir:
    """A folder for one implementation: kept under ``keep``, else temporary in the worker's
    scratch space."""

    def __init__(self, keep, index):
        self.keep, self.index, self.tmp = keep, index, None

    def __enter__(self):
        if self.keep is not None:
            path = Path(self.keep) / f"point-{self.index}"
            path.mkdir(parents=True, exist_ok=True)
            return str(path)
        self.tmp = tempfile.TemporaryDirectory(prefix="fieldtune-point-", dir=scratch_dir())
        return self.tmp.name

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.cleanup()
        return False


def _failure(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line]
    return (errors[-1] if errors else lines[0] if lines else type(error).__name__)[:300]


def _run_r1(row, point, design, *, build):
    if isinstance(design, str):
        row["note"] = design
        return
    design = design.replace(train=point.run)
    key = digest(json.dumps(design.to_dict(), sort_keys=True), _golden_fingerprint())
    path = cache_dir("explore") / f"r1-{key}.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        if build == "cached":                # report what the caches hold, run nothing
            row["note"] = "R1 not run (--no-build) and no cached result"
            return
        try:
            run = run_finetune(design, r1_features(), engine="golden")
        except (DeviceError, ValueError) as error:
            # keep the first reason as the error; a second one is still said
            row["error" if row["error"] is None else "note"] = f"{RUN_FAILED}: {error}"
            return
        result = {"accuracy": run.accuracy, "cycles": run.cycles,
                  "cycles_source": run.counters.get("cycles_source")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result) + "\n")
        os.replace(tmp, path)
    row.update(accuracy=result["accuracy"], cycles=result["cycles"],
               cycles_source=result["cycles_source"])
    if point.block == "soc" and row["fits"]:
        row["projected_time_s"] = projected_seconds(row["cycles"], row["fmax_mhz"])


@lru_cache(maxsize=1)
def _golden_fingerprint():
    """A digest of the golden engine's and R1's sources: their change makes cached
    accuracies stale."""
    files = set()
    for module in _GOLDEN_MODULES:
        path = Path(module.__file__)
        files.update(path.parent.rglob("*.py") if path.name == "__init__.py" else [path])
    return digest(*(f.read_text() for f in sorted(files)))
