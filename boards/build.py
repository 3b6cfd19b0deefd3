"""Bitstreams for a board: plan, synthesis, place and route over seeds, packing, report.

:func:`plan` turns a configuration into a :class:`BoardPlan` (board, SoC clock and its PLL,
the :class:`~.top.BoardTop`, the Yosys options); :meth:`BoardPlan.prepare` renders the
amaranth-boards platform's build files without running any tool. :func:`build` runs them:

1. Yosys (the platform's script, with our read fix-ups and ``stat -json``),
2. a capacity check against the device (:data:`~.implement.DEVICES`) before placing,
3. nextpnr once per placement seed, in parallel, each writing ``--report`` JSON; the seed with
   the best worst-clock slack is kept,
4. the platform's packer (``icepack`` / ``ecppack``) and any further platform step whose tool
   is present (the OrangeCrab's ``dfu-suffix``; dfu-util programs without it).

The platform's tool list is not checked (amaranth-boards' ULX3S names openFPGALoader as
required even to build); the tools come from :func:`fieldtune.toolchain.tool_env`.

The :class:`BuildReport` keeps every resource used and available (``luts``, ``ffs``,
``brams``, ``sprams``, ``dsps`` and ``available``), Fmax per clock against its target, ``fits``,
``timing_met``, ``bitstream``, ``clock_mhz``, ``board`` and ``device``;
:meth:`~BuildReport.problems` names each resource or clock that fails, with its margin.
Resource figures are nextpnr's placed cells (iCE40 logic cells hold one LUT4 and one flip-flop
each, so ``luts`` counts logic cells there); ``synthesis`` keeps Yosys' own counts beside them.
"""

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..rtl.host.top import HostSystem
from .implement import (DEVICES, STAT_COMMAND, BenchHarness, count_resources, packed_cells,
                        read_fixups, synth_options)
from .table import board as board_named, soc_clock
from .top import BoardTop
from .usb_serial import USBHostSystem


__all__ = ["BoardPlan", "BuildReport", "BuildError", "run_tool", "SerialBenchSystem", "plan",
           "on_board", "build", "RESOURCES", "tool_variable"]


#: Resource names of a report, in order.
RESOURCES = ("luts", "ffs", "brams", "sprams", "dsps")

#: nextpnr ``--report`` utilization cell type of each resource, per family (``ffs`` on the
#: iCE40 are not separate cells: they share the logic cells, and come from Yosys).
_PLACED = {
    "ice40": {"luts": "ICESTORM_LC", "ffs": "ICESTORM_LC", "brams": "ICESTORM_RAM",
              "sprams": "ICESTORM_SPRAM", "dsps": "ICESTORM_DSP"},
    "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
             "sprams": None, "dsps": "MULT18X18D"},
}


class BuildError(RuntimeError):
    """A tool failed; the message has the telling lines of its log."""


def tool_variable(name):
    """Environment variable naming tool ``name`` ("nextpnr-ice40" -> "NEXTPNR_ICE40"), as
    Amaranth's build scripts use."""
    return name.upper().replace("-", "_")


class SerialBenchSystem(wiring.Component):
    """A block on a board without the host link, for quick builds of the flow: the inputs of
    ``core`` shifted in from ``rx`` and its outputs XOR-folded to ``tx``
    (:class:`~.implement.BenchHarness`), so the whole block is kept and placed, with its
    ``busy``/``done``/``error`` (where it has them) on the LEDs. It carries no protocol."""

    rx: In(1)
    tx: Out(1)
    busy: Out(1)
    done: Out(1)
    error: Out(1)

    def __init__(self, core):
        self.core = core
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.harness = harness = BenchHarness(self.core)
        m.d.comb += [harness.serial_in.eq(self.rx), self.tx.eq(harness.fold_out)]
        for status in ("busy", "done", "error"):
            if status in self.core.signature.members:
                m.d.comb += getattr(self, status).eq(getattr(self.core, status))
        return m


@dataclass(frozen=True)
class BoardPlan:
    """Everything a build of ``config`` on its board needs before any tool runs."""
    config: object                 # fieldtune.config.DesignConfig
    clock_mhz: float               # the SoC clock the PLL makes
    pll: object = None             # .pll settings, None: the board clock itself
    core: object = None            # factory of the block behind the link; None: the SoC

    @property
    def board(self):
        return board_named(self.config.board)

    @property
    def device(self):
        return DEVICES[self.board.device]

    @property
    def spram(self):
        return self.config.cache.memory == "spram"

    def system(self):
        """The host link and SoC (:class:`~fieldtune.rtl.host.top.HostSystem`) at the SoC
        clock (on the UART, or on USB serial, :class:`~.usb_serial.USBHostSystem`, as the
        configuration's :attr:`~fieldtune.config.DesignConfig.link` says), or ``core`` behind a
        :class:`SerialBenchSystem`."""
        if self.core is not None:
            return SerialBenchSystem(self.core())
        if self.config.link == "usb":
            return USBHostSystem(self.config)
        return HostSystem(self.config)

    def top(self):
        return BoardTop(self.board, self.system(), self.clock_mhz, self.pll)

    def overrides(self):
        """Amaranth platform overrides: Yosys options and script additions."""
        return {
            "synth_opts": synth_options(self.board.family, spram=self.spram),
            "script_after_read": "\n".join(read_fixups(spram=self.spram)),
            "script_after_synth": STAT_COMMAND,
        }

    def prepare(self):
        """The platform's :class:`amaranth.build.run.BuildPlan` (files only, no tools)."""
        return self.board.new_platform().prepare(self.top(), name="top", **self.overrides())


def plan(config, *, core=None):
    """The :class:`BoardPlan` of ``config`` on its board: the SoC clock and its PLL, and the
    host link's ``clock_hz`` set to it. ``core`` (a factory) replaces the host link and SoC by
    another block behind a :class:`SerialBenchSystem`, for quick builds. :class:`ValueError`
    when the board's PLL cannot make the clock or the link's baud rate cannot be made from
    it."""
    mhz, pll = soc_clock(config.board, config.clock_mhz)
    return BoardPlan(on_board(config), mhz, pll, core)


def on_board(config):
    """``config`` with ``host.clock_hz`` the SoC clock its board's PLL makes (what the board's
    bitstream runs at, so the host's driver and the gateware agree on the UART's bit time).
    :class:`ValueError` when the PLL cannot make the clock or the baud cannot be made from
    it."""
    mhz, _ = soc_clock(config.board, config.clock_mhz)
    return config.replace(host={"clock_hz": round(mhz * 1e6)})


@dataclass
class BuildReport:
    """What a board build made (see the module documentation)."""
    board: str
    device: str
    clock_mhz: float
    fits: bool = False
    timing_met: bool = False
    luts: int = 0
    ffs: int = 0
    brams: int = 0
    sprams: int = 0
    dsps: int = 0
    available: dict = field(default_factory=dict)
    fmax_mhz: float | None = None
    clocks: dict = field(default_factory=dict)      # net -> fmax_mhz, target_mhz, met
    bitstream: str | None = None
    seed: int | None = None
    seeds: dict = field(default_factory=dict)       # seed -> worst-clock Fmax (MHz)
    synthesis: dict = field(default_factory=dict)   # Yosys' counts
    utilization: dict = field(default_factory=dict)  # nextpnr's, every cell type
    pll: dict | None = None
    seconds: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    reason: str = ""

    def to_dict(self):
        return asdict(self)

    def problems(self):
        """One line per resource over capacity or clock under its target, with the margin."""
        lines = []
        for name in RESOURCES:
            used, cap = getattr(self, name), self.available.get(name)
            if cap is not None and used > cap:
                lines.append(f"{name}: {used} used of {cap} available on {self.device} "
                             f"({used - cap} over, {used / cap:.0%})")
        if self.reason:
            lines.append(self.reason)
        for net, c in self.clocks.items():
            if not c["met"]:
                lines.append(f"clock {net}: {c['fmax_mhz']:.2f} MHz reached, target "
                             f"{c['target_mhz']:.2f} MHz ({c['fmax_mhz'] - c['target_mhz']:+.2f}"
                             f" MHz, {c['fmax_mhz'] / c['target_mhz'] - 1:+.1%})")
        return lines


def run_tool(argv, cwd, env, what, timeout=None):
    """Run a tool; :class:`BuildError` naming it when it fails or outlives ``timeout`` s."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} did not finish within {timeout / 60:g} min") from None
    if proc.returncode != 0:
        logs = [p for p in Path(cwd).glob("*.rpt")] + [p for p in Path(cwd).glob("*.tim")]
        text = "\n".join(p.read_text(errors="replace") for p in logs) + proc.stderr + proc.stdout
        errors = [line for line in text.splitlines() if "ERROR" in line]
        raise BuildError(f"{what} failed (exit {proc.returncode}): "
                         + (errors[-1] if errors else text.strip()[-500:]))
    return proc


def _seed_argv(argv, seed, files):
    """nextpnr's command run in ``seed-N/``: inputs from the build folder, outputs local."""
    out = [("../" + a) if a in files else a for a in argv]
    return out + ["--seed", str(seed), "--report", "report.json", "--timing-allow-fail"]


def _clocks(report):
    out = {}
    for net, f in report.get("fmax", {}).items():
        # nextpnr-ice40 lists the PLL pad's input constraint under a packer net that clocks
        # nothing of ours.
        if net.startswith("$PACKER"):
            continue
        if "achieved" in f and "constraint" in f:
            out[net] = {"fmax_mhz": round(f["achieved"], 2),
                        "target_mhz": round(f["constraint"], 2),
                        "met": f["achieved"] >= f["constraint"]}
    return out


def _slack(clocks):
    return min((c["fmax_mhz"] / c["target_mhz"] for c in clocks.values()), default=0.0)


def _fill_placed(result, report, family):
    util = report.get("utilization", {})
    result.utilization = util
    for name, cell in _PLACED[family].items():
        used = util.get(cell, {}).get("used", 0) if cell else 0
        result.available[name] = util.get(cell, {}).get("available", 0) if cell else 0
        if name == "ffs" and family == "ice40":
            used = result.synthesis["ffs"]
        setattr(result, name, used)
    result.clocks = _clocks(report)
    result.fmax_mhz = min((c["fmax_mhz"] for c in result.clocks.values()), default=None)
    result.timing_met = bool(result.clocks) and all(c["met"] for c in result.clocks.values())
    result.fits = all(getattr(result, n) <= result.available[n] for n in RESOURCES)


class _Commands:
    """The platform's build commands (``build_top.json``), each run with its tool from the
    environment (Amaranth's variable names: YOSYS, NEXTPNR_ICE40, ...)."""

    def __init__(self, work, env):
        self.work, self.env = work, env
        self.commands = json.loads((work / "build_top.json").read_text())["commands"]

    def argv(self, index):
        name, *args = self.commands[index]
        return [self.env.get(tool_variable(name), name), *args]

    def run(self, index, *, cwd=None, argv=None, timeout=None):
        run_tool(argv or self.argv(index), cwd or self.work, self.env, self.commands[index][0],
             timeout)


def _synthesize(commands, result, dev):
    """Yosys; fills the report from its statistics. False when the design cannot fit."""
    commands.run(0)
    stat = json.loads((commands.work / "stat.json").read_text())
    cells = stat.get("design", stat["modules"].get("\\top", {})).get("num_cells_by_type", {})
    result.synthesis = {**count_resources(cells, dev.family), "cells": cells}
    result.available = {"luts": dev.luts, "ffs": dev.luts, "brams": dev.brams,
                        "sprams": dev.sprams, "dsps": dev.dsps}
    for name in RESOURCES:
        setattr(result, name, result.synthesis[name])
    if dev.family == "ice40":
        kinds = _logic_cells(commands)
        result.synthesis["logic_cells"] = kinds
        result.luts = sum(kinds.values())
    return all(getattr(result, n) <= result.available[n] for n in RESOURCES)


def _logic_cells(commands):
    """iCE40: the logic cells nextpnr's packer makes of the board's netlist
    (:func:`~fieldtune.boards.implement.packed_cells` with the board's own nextpnr command, in
    ``pack/``). The device's limit is cells of one LUT4 and one flip-flop, and a flip-flop
    shares one only with the LUT that alone feeds it, so Yosys' LUT4 count understates a
    design by up to its flip-flops: judged by LUT4s, a design 43 % over the UP5K passed this
    check and failed in the placer with 'no BELs remaining'. Returns ``{kind: n}``."""
    folder = commands.work / "pack"
    folder.mkdir(exist_ok=True)
    inputs = {p.name for p in commands.work.iterdir() if p.is_file()}
    argv = [("../" + a) if a in inputs else a for a in commands.argv(1)]
    for option in ("--asc", "--log"):   # nothing to write before placing; the log is ours
        if option in argv:
            i = argv.index(option)
            del argv[i:i + 2]
    try:
        return packed_cells(folder, argv, commands.env)["top"]
    except RuntimeError as e:
        raise BuildError(str(e)) from None


def _place(commands, result, family, seeds, jobs, timeout):
    """nextpnr over ``seeds`` in parallel, each given at most ``timeout`` s (a full device can
    leave the router circling for hours); the best placement's files join the build, seeds
    that failed become notes. :class:`BuildError` when every seed failed."""
    work = commands.work
    inputs = {p.name for p in work.iterdir() if p.is_file()}

    def place(seed):
        folder = work / f"seed-{seed}"
        folder.mkdir(exist_ok=True)
        try:
            commands.run(1, cwd=folder, argv=_seed_argv(commands.argv(1), seed, inputs),
                         timeout=timeout)
        except BuildError as e:
            return seed, e
        return seed, json.loads((folder / "report.json").read_text())

    with ThreadPoolExecutor(max_workers=min(seeds, jobs or os.cpu_count() or 1)) as pool:
        outcomes = dict(pool.map(place, range(1, seeds + 1)))
    failed = {s: e for s, e in outcomes.items() if isinstance(e, BuildError)}
    reports = {s: r for s, r in outcomes.items() if s not in failed}
    if not reports:
        raise BuildError("; ".join(f"seed {s}: {e}" for s, e in failed.items())
                         + (" (try more --seeds, or a smaller design)" if timeout else ""))
    result.notes.extend(f"seed {s} dropped: {e}" for s, e in failed.items())
    result.seeds = {s: round(min((c["fmax_mhz"] for c in _clocks(r).values()), default=0), 2)
                    for s, r in reports.items()}
    result.seed = max(reports, key=lambda s: (_slack(_clocks(reports[s])), -s))
    for item in (work / f"seed-{result.seed}").iterdir():
        shutil.copy(item, work / item.name)
    _fill_placed(result, reports[result.seed], family)


def _pack(commands, result):
    """The packer, then any further platform step whose tool is installed."""
    commands.run(2)
    for index in range(3, len(commands.commands)):
        name = commands.commands[index][0]
        if commands.env.get(tool_variable(name)) or shutil.which(name):
            commands.run(index)
        else:
            result.notes.append(f"{name} not found: skipped "
                                f"{' '.join(commands.commands[index])}")


def build(board_plan, workdir, env, *, seeds=1, jobs=None, status=None, pnr_minutes=None):
    """Build ``board_plan`` in ``workdir`` with the tool environment ``env``
    (:func:`fieldtune.toolchain.tool_env`), trying ``seeds`` placement seeds (at most ``jobs``
    at a time, default the CPU count; each given up after ``pnr_minutes`` when set).
    ``status(text)`` is told each step. Returns a
    :class:`BuildReport`; a design that does not fit or misses timing is reported, not
    raised. :class:`BuildError` when a tool fails for another reason."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, not {seeds!r}")
    status = status or (lambda text: None)
    b, dev = board_plan.board, board_plan.device
    result = BuildReport(board=b.name, device=b.device, clock_mhz=board_plan.clock_mhz)
    if board_plan.pll is not None:
        result.pll = {"primitive": type(board_plan.pll).primitive, **asdict(board_plan.pll),
                      "f_out_mhz": board_plan.pll.f_out}
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    bitstream = work / f"top{b.bitstream_suffix}"
    bitstream.unlink(missing_ok=True)     # never leave an older build to be programmed
    clock = time.perf_counter()

    def step(name, text, action, *args):
        status(text)
        t = time.perf_counter()
        outcome = action(*args)
        result.seconds[name] = round(time.perf_counter() - t, 1)
        return outcome

    step("elaborate", "elaborating the board top",
         lambda: board_plan.prepare().extract(work))
    commands = _Commands(work, env)
    if step("synthesis", "synthesizing (Yosys)", _synthesize, commands, result, dev):
        step("place_route", f"placing and routing (nextpnr, {seeds} seed"
             f"{'s' * (seeds > 1)})", _place, commands, result, dev.family, seeds, jobs,
             pnr_minutes * 60 if pnr_minutes else None)
        step("pack", "packing the bitstream", _pack, commands, result)
        result.bitstream = str(bitstream.resolve())
    else:
        result.reason = "stopped after synthesis: the design cannot be placed"
    result.seconds["total"] = round(time.perf_counter() - clock, 1)
    return result
