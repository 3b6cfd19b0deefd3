"""Out-of-context implementation of one block: synthesis, place and route, resource report.

:func:`implement` wraps a :class:`amaranth.lib.wiring.Component` in a :class:`BenchHarness`,
synthesizes it with Yosys and places and routes it with nextpnr for one :data:`DEVICES` entry,
and returns an :class:`Implementation` with the block's own resources and the post-route Fmax.

The harness registers every input (a shift chain fed by one pin) and folds every output (an XOR
tree into one registered pin), so pin count never limits a block and the synthesizer can neither
constant-fold inputs nor drop outputs. The block keeps its own hierarchy (``keep_hierarchy``),
so LUT/FF/BRAM/DSP figures are the block's alone, read from Yosys ``stat -json`` written with
``tee -o`` (never from stdout, which goes silent after ABC). Fmax and whole-chip utilization
come from nextpnr's ``--report`` JSON. Tool paths arrive as an environment from
:func:`fieldtune.toolchain.tool_env`; this module does not know where tools come from.

A block that does not fit (too many cells for the device, or nextpnr fails to place or route)
is reported with ``fits = False`` rather than raising.
"""

import json
import subprocess
import tempfile
from dataclasses import dataclass, field, asdict
from pathlib import Path

from amaranth.hdl import Elaboratable, Module, Signal, Cat, Value
from amaranth.lib import wiring
from amaranth.back import rtlil

from .devices import DEVICES, Device


__all__ = ["DEVICES", "Device", "Implementation", "BenchHarness", "implement", "hierarchy",
           "count_resources", "synth_script", "dut_module_name", "synth_options",
           "read_fixups", "STAT_COMMAND", "packed_cells", "pack_argv", "CELL_KINDS"]


@dataclass
class Implementation:
    """Resources of one block on one device (the block alone, not the harness)."""
    device: str
    luts: int = 0
    ffs: int = 0
    brams: int = 0
    sprams: int = 0
    dsps: int = 0
    lcs: int | None = None        # iCE40 logic cells (its real limit), else None
    fmax_mhz: float | None = None
    fits: bool = False
    reason: str = ""
    cells: dict = field(default_factory=dict)
    chip_utilization: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


class BenchHarness(Elaboratable):
    """Registers every input of ``dut`` from a serial shift chain and XOR-folds every output
    into one register, so a block is implemented with two data pins whatever its ports.

    The fold is a tree of registered 4-input XORs: each output feeds one LUT and a register,
    as it would feed a neighbouring block, so a wide-output block's Fmax measures the block
    and not a deep XOR tree of the harness."""

    def __init__(self, dut):
        self.dut = dut
        self.serial_in = Signal()
        self.fold_out = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        inputs, outputs = [], []
        for path, member, value in self.dut.signature.flatten(self.dut):
            (inputs if member.flow == wiring.In else outputs).append(value)
        in_width = sum(len(Value.cast(v)) for v in inputs)
        if in_width:
            chain = Signal(in_width)
            m.d.sync += chain.eq(Cat(self.serial_in, chain[:-1]))
            offset = 0
            for value in inputs:
                m.d.comb += value.eq(chain[offset:offset + len(Value.cast(value))])
                offset += len(Value.cast(value))
        level = [bit for value in outputs for bit in Value.cast(value)]
        while len(level) > 1:
            registered = []
            for i in range(0, len(level), 4):
                r = Signal(name=f"fold{len(level)}_{i // 4}")
                m.d.sync += r.eq(Cat(*level[i:i + 4]).xor())
                registered.append(r)
            level = registered
        m.d.sync += self.fold_out.eq(level[0] if level else 0)
        return m


_CELLS = {
    "ice40": {"luts": {"SB_LUT4": 1}, "ffs": "SB_DFF", "brams": {"SB_RAM40_4K": 1},
              "sprams": {"SB_SPRAM256KA": 1}, "dsps": {"SB_MAC16": 1}},
    # A CCU2C carry cell is two LUT4s; a TRELLIS_DPR16X4 distributed RAM occupies four.
    "ecp5": {"luts": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4}, "ffs": "TRELLIS_FF",
             "brams": {"DP16KD": 1, "PDPW16KD": 1}, "sprams": {},
             "dsps": {"MULT18X18D": 1, "ALU54B": 1}},
}


def count_resources(cells, family):
    """LUT4/FF/BRAM/SPRAM/DSP counts of a Yosys ``num_cells_by_type`` mapping."""
    spec = _CELLS[family]
    out = {}
    for key, table in spec.items():
        if isinstance(table, str):
            out[key] = sum(n for name, n in cells.items() if name.startswith(table))
        else:
            out[key] = sum(cells.get(name, 0) * w for name, w in table.items())
    return out


#: Yosys pattern of the memory names whose initial value an SPRAM flow drops.
SPRAM_SUFFIX_PATTERN = "*_spram"

#: Yosys pattern of the memory names that never read and write one address in the same
#: cycle. Amaranth's synchronous read ports say what a read returns on such a collision (the
#: old data), so Yosys' ``memory_libmap`` emulates it in soft logic on block RAMs that do not
#: promise it (iCE40: about one LUT4 per data bit, and an address compare, per memory). A
#: memory named so leaves the collision undefined instead; its owner documents why none can
#: happen (the simulators keep the old-data answer, so a collision would be a real bug that
#: the bit-exact tests cannot see).
NO_COLLISION_SUFFIX_PATTERN = "*_norw"


def synth_options(family, *, dsp=True, spram=False):
    """Options of ``synth_ice40`` / ``synth_ecp5`` for the DSP and SPRAM choices."""
    if family == "ice40":
        return " ".join(["-dsp"] * dsp + ["-spram"] * spram)
    return "" if dsp else "-nodsp"


def read_fixups(*, spram=False):
    """Yosys commands between reading Amaranth's RTLIL and synthesis (one list for the block
    benchmarks and the board builds)."""
    # SPRAM cannot be initialized, and Amaranth gives every Memory an (all-zero) initial
    # value; memories whose name ends in "_spram" are meant for SPRAM and never read before
    # written, so their initial value is dropped.
    uninit = [f"delete t:$meminit_v2 r:MEMID={SPRAM_SUFFIX_PATTERN} %i"] if spram else []
    no_collision = [f"setparam -set COLLISION_X_MASK 1 t:$memrd_v2 "
                    f"r:MEMID={NO_COLLISION_SUFFIX_PATTERN} %i"]
    # Amaranth names each element of an ArrayLayout view "x[0]" beside the wire "x";
    # ABC9's reintegration then creates a second "x[0]" and asserts
    # (YosysHQ/yosys#4349). Those alias wires need no public name.
    return [*uninit, *no_collision, "rename -hide w:*]"]


#: Yosys command writing the statistics a build reads (stdout goes silent after ABC).
STAT_COMMAND = "tee -q -o stat.json stat -json"


def synth_script(family, top_module, *, dsp=True, spram=False, keep=None):
    """The Yosys script synthesizing ``design.il`` for ``family``, keeping ``top_module``'s
    hierarchy (``keep``, a Yosys module pattern, instead: e.g. every module below it); it
    writes ``stat.json`` and ``synth.json``."""
    options = synth_options(family, dsp=dsp, spram=spram)
    synth = " ".join(filter(None, [f"synth_{family}", options]))
    fixups = read_fixups(spram=spram)
    return "\n".join([
        "read_rtlil design.il",
        *fixups[:-1],
        f"setattr -mod -set keep_hierarchy 1 {keep or top_module}",
        *fixups[-1:],
        f"{synth} -top top",
        STAT_COMMAND,
        "write_json synth.json",
    ]) + "\n"


def dut_module_name(stat):
    """The block's module (``top.dut``) in Yosys' ``stat -json`` output."""
    # Amaranth names the submodule "top.dut"; Yosys may escape it.
    for name in stat.get("modules", {}):
        if name.lstrip("\\") == "top.dut":
            return name
    raise RuntimeError(f"block module not found in Yosys statistics: {list(stat['modules'])}")


def _run_tool(cmd, work, env, timeout):
    """Run one tool in ``work``; a run past ``timeout`` seconds is killed and raises
    RuntimeError naming the tool and the limit (callers report it, never a traceback)."""
    try:
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        tool = Path(cmd[0]).name.removeprefix("yowasp-")
        raise RuntimeError(f"{tool} timed out after {timeout:g} s") from None


def _synthesize(dut, dev, env, work, timeout, script):
    """Write ``dut`` in its harness and ``script`` to ``work``, run Yosys there, and return
    its statistics (``stat.json``); raises RuntimeError with the log's tail when Yosys fails."""
    harness = BenchHarness(dut)
    text = rtlil.convert(harness, name="top", ports=[harness.serial_in, harness.fold_out])
    (work / "design.il").write_text(text)
    (work / "synth.ys").write_text(script)
    proc = _run_tool([env["YOSYS"], "-q", "-l", "yosys.log", "-s", "synth.ys"], work, env,
                     timeout)
    if proc.returncode != 0 or not (work / "stat.json").exists():
        log = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
        raise RuntimeError(f"yosys failed for {dev.name} (exit {proc.returncode}):\n"
                           f"{log[-3000:]}{proc.stderr[-2000:]}")
    return json.loads((work / "stat.json").read_text())


def implement(dut, device, env, *, workdir=None, dsp=True, spram=False, seed=1, timeout=3600,
              target_mhz=None):
    """Implement ``dut`` (a wiring.Component) on ``device`` (a key of :data:`DEVICES`).

    ``env`` is the tool environment from :func:`fieldtune.toolchain.tool_env`. Intermediate
    files (RTLIL, Yosys log and statistics, nextpnr log and report) stay in ``workdir`` when
    given. Returns an :class:`Implementation`; never raises for a design that does not fit.
    On the iCE40 the fit is judged by logic cells (``lcs``, the block's own, from nextpnr's
    packer), which a design's LUT4 count understates by its flip-flops that no LUT of their
    own feeds. nextpnr places and routes against ``target_mhz`` (default the device's).
    """
    dev = DEVICES[device]
    with tempfile.TemporaryDirectory(prefix="fieldtune-impl-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        stat = _synthesize(dut, dev, env, work, timeout,
                           synth_script(dev.family, "top.dut", dsp=dsp, spram=spram))
        result = Implementation(device=device)
        cells = stat["modules"][dut_module_name(stat)].get("num_cells_by_type", {})
        result.cells = dict(cells)
        for key, n in count_resources(cells, dev.family).items():
            setattr(result, key, n)
        logic = "luts"
        if dev.family == "ice40":
            # the device holds dev.luts logic cells, each one LUT4 and one flip-flop
            result.lcs = sum(packed_cells(work, pack_argv(dev, env), env, ["dut"],
                                         timeout=timeout)["dut"]
                             .values())
            logic = "lcs"
        over = [(k, getattr(result, k), cap) for k, cap in
                ((logic, dev.luts), ("brams", dev.brams), ("dsps", dev.dsps),
                 ("sprams", dev.sprams)) if getattr(result, k) > cap]
        if over:
            result.reason = "; ".join(f"{'logic cells' if k == 'lcs' else k} {n} > {cap}"
                                      for k, n, cap in over)
            return result
        pnr = env["NEXTPNR_ICE40" if dev.family == "ice40" else "NEXTPNR_ECP5"]
        unconstrained = ("--pcf-allow-unconstrained" if dev.family == "ice40"
                         else "--lpf-allow-unconstrained")
        cmd = [pnr, *dev.pnr_args, "--json", "synth.json", "--report", "report.json",
               "--freq", str(target_mhz or dev.target_mhz), "--seed", str(seed),
               "--timing-allow-fail", unconstrained, "--log", "nextpnr.log", "-q"]
        proc = _run_tool(cmd, work, env, timeout)
        if proc.returncode != 0 or not (work / "report.json").exists():
            log = (work / "nextpnr.log").read_text() if (work / "nextpnr.log").exists() else ""
            errors = [l for l in (log + proc.stderr).splitlines() if "ERROR" in l]
            result.reason = (errors[-1] if errors else f"nextpnr exit {proc.returncode}")[:300]
            return result
        report = json.loads((work / "report.json").read_text())
        result.chip_utilization = report.get("utilization", {})
        fmax = [v["achieved"] for v in report.get("fmax", {}).values() if "achieved" in v]
        result.fmax_mhz = round(min(fmax), 2) if fmax else None
        result.fits = True
        return result


#: How an iCE40 logic cell (ICESTORM_LC: one LUT4, one flip-flop, one carry bit) is used, as
#: :func:`packed_cells` counts it: a LUT with the flip-flop it feeds (``lut_ff``), a LUT alone
#: (``lut``), a flip-flop alone behind a pass-through LUT (``lone_ff``: a register loaded from
#: another register, a block RAM or a DSP, or from a LUT with other fanout), a carry bit with no
#: sum LUT (``carry``, e.g. a comparator).
CELL_KINDS = ("lut_ff", "lut", "lone_ff", "carry")


def _cell_kind(cell):
    params, conns = cell["parameters"], cell["connections"]
    inputs = sum(1 for port in ("I0", "I1", "I2", "I3") if conns.get(port))
    if params.get("DFF_ENABLE") == "1":
        return "lut_ff" if inputs > 1 else "lone_ff"
    if params.get("CARRY_ENABLE") == "1" and inputs <= 1:
        return "carry"
    return "lut"


def pack_argv(dev, env):
    """The nextpnr-ice40 command that packs a block's ``synth.json`` (no pin constraints):
    the ``argv`` of :func:`packed_cells` in the benchmarks' flow."""
    return [env["NEXTPNR_ICE40"], "--quiet", *dev.pnr_args, "--json", "synth.json",
            "--pcf-allow-unconstrained"]


def packed_cells(work, argv, env, modules=(), *, timeout=3600):
    """Logic cells per module of an iCE40 netlist, the one count of them that the board build
    and the benchmarks share. ``argv`` is the nextpnr-ice40 command that would place the
    netlist (tool, device, netlist, constraints: :func:`pack_argv`, or a board's own); run in
    ``work`` with ``--pack-only`` (seconds), it writes the packed netlist, whose cells keep the
    hierarchical name of the LUT or flip-flop they hold; each cell counts for the longest of
    ``modules`` (instance paths such as ``"dut.mac"``) its name starts with, a cell nextpnr
    made (carry feed-ins) for the first hierarchical net on its ports. Returns ``{module:
    {kind: n}}`` (:data:`CELL_KINDS`) for the module's own cells; ``"top"`` collects the
    rest. RuntimeError when nextpnr fails or runs past ``timeout`` seconds."""
    cmd = [*argv, "--pack-only", "--write", "packed.json", "--log", "pack.log"]
    proc = _run_tool(cmd, work, env, timeout)
    if proc.returncode != 0 or not (work / "packed.json").exists():
        raise RuntimeError(f"nextpnr --pack-only failed (exit {proc.returncode}): "
                           f"{proc.stderr[-1000:]}")
    netlist = json.loads((work / "packed.json").read_text())["modules"]["top"]
    net_names = {}
    for name, net in netlist["netnames"].items():
        for bit in net["bits"]:
            net_names.setdefault(bit, name)
    prefixes = sorted(modules, key=len, reverse=True)
    counts = {m: dict.fromkeys(CELL_KINDS, 0) for m in [*modules, "top"]}
    for name, cell in netlist["cells"].items():
        if cell["type"] != "ICESTORM_LC":
            continue
        if name.startswith("$nextpnr"):
            bits = (b for port in cell["connections"].values() for b in port)
            name = next((net_names[b] for b in bits if "." in net_names.get(b, "")), name)
        owner = next((m for m in prefixes if name.startswith(m + ".")), "top")
        counts[owner][_cell_kind(cell)] += 1
    return counts


def hierarchy(dut, device, env, *, workdir=None, dsp=True, spram=False, timeout=3600):
    """Synthesize ``dut`` for ``device`` keeping every module of its hierarchy, and return one
    row per module: ``{"module", "luts", "ffs", "dsps", "brams", "sprams", "own_luts"}``,
    totals including submodules (``own_luts``: the module's own cells), ``module`` the
    instance path from ``dut`` (``"dut"``, ``"dut.cache"``, ...), in path order.

    The same flow as :func:`implement` (harness, synthesis script) but with ``keep_hierarchy``
    on every module, so no optimization crosses a module boundary: the total is somewhat
    larger than a flattened build's. Synthesis only; no place and route.

    On the iCE40, where the device's limit is logic cells rather than LUT4s, each row also
    has ``lcs`` (logic cells, submodules included, :func:`packed_cells`) and ``lone_ffs`` (of
    them, cells holding a flip-flop alone): a flip-flop shares a cell only with the one LUT
    that feeds it, so a register copied from a register costs as much as a LUT."""
    dev = DEVICES[device]
    with tempfile.TemporaryDirectory(prefix="fieldtune-hier-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        stat = _synthesize(dut, dev, env, work, timeout,
                           synth_script(dev.family, "top.dut", dsp=dsp, spram=spram,
                                        keep="top.dut*"))
        modules = {name.lstrip("\\"): m for name, m in stat.get("modules", {}).items()}
        packed = None
        if dev.family == "ice40":
            packed = packed_cells(work, pack_argv(dev, env), env,
                                  [n[len("top."):] for n in modules
                                                  if n.startswith("top.dut")],
                                 timeout=timeout)
    own, children = {}, {}
    for name, module in modules.items():
        cells = {t.lstrip("\\"): n for t, n in module.get("num_cells_by_type", {}).items()}
        own[name] = count_resources({t: n for t, n in cells.items() if t not in modules},
                                    dev.family)
        children[name] = {t: n for t, n in cells.items() if t in modules}
    totals = {}

    def total(name):
        if name not in totals:
            t = dict(own[name])
            for child, n in children[name].items():
                for key, value in total(child).items():
                    t[key] += n * value
            totals[name] = t
        return totals[name]

    names = sorted(n for n in modules if n == "top.dut" or n.startswith("top.dut."))
    rows = [{"module": name[len("top."):], **total(name), "own_luts": own[name]["luts"]}
            for name in names]
    if packed is not None:
        for row in rows:
            inside = [c for m, c in packed.items() if m == row["module"]
                      or m.startswith(row["module"] + ".")]
            row["lcs"] = sum(sum(c.values()) for c in inside)
            row["lone_ffs"] = sum(c["lone_ff"] for c in inside)
    return rows
