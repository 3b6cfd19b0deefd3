"""The SoC's register and window map as plain data: :class:`SocMap`.

Built from a configuration without elaborating (or instantiating) anything: the SoC builds
its bus decoder and register bank from it, the host link checks addresses against it, and the
host driver, the benchmarks and the docs read it (``python -m fieldtune.rtl.csr.map`` prints
the default design's map as Markdown; docs/architecture.md, "SoC", holds it).

Word addresses: the registers from 0 upward in :func:`soc_registers` order, the windows from
:data:`WINDOW_BASE`. A *window* is a stream: every access to it moves the next element (see
:data:`WINDOWS`); on the host link an element takes :attr:`Window.element_bytes` bytes.
"""

from dataclasses import dataclass

from ..params import TrainParams, RUN_FIELDS, run_fields, built_early_stop
from ..cache.params import INDEX_WIDTH, ELEMENT_WIDTH
from ..mac.params import MacParams
from ..mac.layout import Layout
from ..cache.layout import CacheLayout
from ..cache.params import CacheParams
from ..perturb.params import PerturbParams
from ..sequencer import SEQUENCER_ERRORS, STORED_COUNTERS, counter_widths, default_watchdog
from .registers import Field, Register


__all__ = ["SocMap", "Window", "soc_registers", "run_registers", "RUN_REGISTER_DOCS", "ERRORS",
           "BLOCK_ERRORS", "COUNTER_REGISTERS", "COUNTER_DOCS", "WINDOWS", "WINDOW_BASE", "MAGIC",
           "VERSION", "BUS_ADDR_WIDTH", "stop_status_register"]


#: Word address bits of the SoC's bus.
BUS_ADDR_WIDTH = 6
#: Word address of the first window; the register bank sits below it.
WINDOW_BASE = 0x20

#: ``id.magic``: what a host reads first to know it talks to a fieldtune SoC.
MAGIC = 0xF17E
#: ``id.version``: the register map's version.
VERSION = 2

#: Sticky flags the SoC raises from its blocks (rising edges of their own flags).
BLOCK_ERRORS = {
    "mac_error": "the MAC array rejected an op or a coefficient overflowed its memory",
    "mac_framing": "a feature beat's last marker was out of place",
    "mac_saturated": "the MAC array clamped a value (warning: training saturated)",
    "cache_overflow": "a record arrived with the cache full (dropped)",
    "cache_record_error": "a malformed record (early or missing last, bad label; dropped)",
    "cache_read_error": "a sample index beyond the records was read",
}
#: Every error flag of the ``errors`` register, bit 0 first: name -> meaning.
ERRORS = {**SEQUENCER_ERRORS, **BLOCK_ERRORS}

#: Register of each counter (run configuration names are taken).
COUNTER_REGISTERS = {"cycles": "cycles", "samples": "samples", "epochs": "epochs_done",
                     "steps": "steps_done", "loss_sum": "loss_sum", "correct": "correct"}
COUNTER_DOCS = {
    "cycles": "clock cycles of the run",
    "samples": "forwards through the loss unit (ZO: two per sample and query)",
    "epochs": "FO epochs; ZO passes of the cursor over the records",
    "steps": "optimizer steps (mini-batch updates)",
    "loss_sum": "sum of those forwards' losses, bits Q.loss_frac",
    "correct": "those forwards with argmax == label",
}

#: Memory windows after the registers: name -> (word offset from the window base, doc).
WINDOWS = {
    "records": ("write: one element of the cache's record stream (bits 15:0 data, "
                "bit 16 last; the odd word forces last); read: records cached"),
    "weights": ("LOAD run: each write is the next weight (word-major, lane-minor, bits "
                "weight_width-1:0); DUMP run: each read is the next weight, sign-extended; "
                "err outside those runs"),
}


#: What each run register holds (its fields: :data:`~fieldtune.rtl.params.RUN_FIELDS`).
RUN_REGISTER_DOCS = {
    "mode": "what the next start runs",
    "epochs": "FO epochs",
    "batch": "mini-batch size (power of two)",
    "shifts": "learning rates and perturbation scale (TrainParams)",
    "seed": "perturbation seed",
    "steps": "ZO step budget",
    "queries": "ZO queries per step",
    "zo_step": "ZO perturbation step of the run's first query",
    "zo_cursor": "ZO first sample of the run's first mini-batch",
    "eval_range": "EVAL records first .. first+count-1",
    "watchdog": "cycles without datapath progress before a run is aborted",
    "order": "FO sample order and its seed",
    "lr_steps_lo": "FO learning-rate steps 0 and 1 (epochs)",
    "lr_steps_hi": "FO learning-rate steps 2 and 3 (epochs)",
    "early_stop": "FO early stop: held-out records, evaluation period, patience",
}


def run_registers(mac: MacParams, cache: CacheParams, perturb: PerturbParams,
                  early_stop=False):
    """The run registers, generated from :data:`~fieldtune.rtl.params.RUN_FIELDS` (fields
    grouped by register, in declaration order). They are ``locked`` while a run is busy (a
    write is ignored and flagged ``busy``): the sequencer reads them during the run, one word
    a cycle, when it needs them. They are ``stored``: held in the register bank's block RAM,
    not in flip-flops (:mod:`~fieldtune.rtl.csr.registers`). Reset values:
    :class:`TrainParams`' defaults for its fields, :func:`default_watchdog` for the watchdog,
    ``lo`` of the early-stop fields, 0 otherwise; the early-stop register only with
    ``early_stop`` (``[soc] early_stop``)."""
    t = TrainParams()
    init = {"watchdog": default_watchdog(mac, cache, perturb),
            "patience": RUN_FIELDS["patience"].lo}
    fields = {}
    for f in run_fields(early_stop).values():
        value = getattr(t, f.name) if f.train else init.get(f.name, 0)
        fields.setdefault(f.register, []).append(Field(f.field, f.width, "rw", init=value,
                                                       doc=f.doc))
    return tuple(Register(name, flds, doc=RUN_REGISTER_DOCS[name], locked=True, stored=True)
                 for name, flds in fields.items())


def stop_status_register():
    """The early-stop report (designs with ``[soc] early_stop``), read-only: epochs the last
    first-order run trained, its last held-out count and whether early stop ended it."""
    held = RUN_FIELDS["holdout"].width
    return Register("stop_status", [
        Field("epochs_run", RUN_FIELDS["epochs"].width, "ro", doc="FO epochs run"),
        Field("held_out_correct", held, "ro",
              doc="held-out records classified right at the last evaluation"),
        Field("stopped", 1, "ro", doc="early stop ended the run")],
        doc="FO early stop: epochs run and the held-out count")


def soc_registers(mac: MacParams, cache: CacheParams, perturb: PerturbParams,
                  early_stop=False):
    """The register map as data (word addresses follow this order). Reset values of the
    run configuration are :class:`~fieldtune.rtl.params.TrainParams`' defaults, so they do
    not depend on a design's ``[train]`` table (the runner writes every field). The design's
    constants (identification, geometry, sizes) are read-only fields with a ``value``.
    ``early_stop`` (``[soc] early_stop``) adds the ``early_stop`` run register and
    ``stop_status`` at the end (the addresses of the others stay)."""
    lay = Layout(mac)
    return (
        Register("id", [Field("magic", 16, "ro", doc=f"{MAGIC:#06x}", value=MAGIC),
                        Field("version", 8, "ro", doc="register map version", value=VERSION)],
                 doc="identification"),
        Register("geometry", [Field("lanes", 8, "ro", doc="MAC lanes (weights per word)",
                                    value=mac.lanes),
                              Field("classes", 8, "ro", doc="classes (logits)",
                                    value=mac.classes),
                              Field("beats", 16, "ro", doc="cache beats per sample",
                                    value=CacheLayout(cache).beats)],
                 doc="datapath geometry"),
        Register("capacity", [Field("records", 17, "ro", doc="forward cache capacity",
                                    value=cache.capacity),
                              Field("regions", 2, "ro", doc="weight regions",
                                    value=len(lay.regions))],
                 doc="cache capacity"),
        Register("weights", [Field("words", 24, "ro", doc="weight words (lanes weights each)",
                                   value=lay.words)],
                 doc="adapter weight memory size"),
        Register("control", [Field("start", 1, "w1p", doc="start a run of `mode`"),
                             Field("abort", 1, "w1p", doc="abort the run"),
                             Field("clear_cache", 1, "w1p", doc="forget every record")],
                 doc="strobes"),
        Register("status", [Field("busy", 1, "ro", doc="a run is in progress"),
                            Field("done", 1, "ro", doc="the last run ended"),
                            Field("error", 1, "ro", doc="an error flag is set"),
                             Field("records", 17, "ro", doc="records in the cache")],
                 doc="status"),
        Register("errors", [Field(name, 1, "w1c", doc=doc) for name, doc in ERRORS.items()],
                 doc="sticky error flags, write 1 to clear"),
        *run_registers(mac, cache, perturb),
        Register("next_step", [Field("step", 32, "ro")],
                 doc="ZO: perturbation step after the run (write it to zo_step to go on)"),
        Register("next_cursor", [Field("cursor", INDEX_WIDTH, "ro")],
                 doc="ZO: cursor after the run (write it to zo_cursor to go on)"),
        *(Register(COUNTER_REGISTERS[c], [Field("value", w, "ro")],
                   doc=f"counter: {COUNTER_DOCS[c]} (saturating)",
                   stored=c in STORED_COUNTERS)
          for c, w in counter_widths(cache).items()),
        *((*(r for r in run_registers(mac, cache, perturb, True) if r.name == "early_stop"),
           stop_status_register()) if early_stop else ()),
    )



@dataclass(frozen=True)
class Window:
    """A stream window: ``words`` word addresses from ``address`` (a power of two, aligned),
    every access moving the stream's next element. On the host link an element takes
    ``element_bytes`` bytes (little-endian, the word's low bytes); ``last_bit``: the word bit
    that ends a record (None: no records); ``signed``: reads are sign-extended elements."""
    name: str
    address: int
    words: int
    element_bytes: int
    last_bit: int | None
    signed: bool
    doc: str

    @property
    def addr_width(self):
        return (self.words - 1).bit_length()


class SocMap:
    """The SoC's registers and windows for ``config`` (anything with ``mac``, ``cache`` and
    ``perturb`` sections), as data.

    Attributes
    ----------
    config, mac
        The configuration and its ``mac`` section (weight formats for the weight window).
    registers : tuple of Register
        At word addresses 0, 1, ... in order.
    windows : dict of name -> Window
    bank_width : int
        Address bits of the register bank (its span below :data:`WINDOW_BASE`).
    """

    addr_width = BUS_ADDR_WIDTH

    def __init__(self, config):
        mac, cache, perturb = config.mac, config.cache, config.perturb
        self.config, self.mac = config, mac
        self.registers = soc_registers(mac, cache, perturb, built_early_stop(config))
        self.bank_width = max(1, (len(self.registers) - 1).bit_length())
        if 1 << self.bank_width > WINDOW_BASE:
            raise ValueError("the register map outgrew the space below the windows")
        self.windows = {
            "records": Window("records", WINDOW_BASE, 2, -(-ELEMENT_WIDTH // 8), ELEMENT_WIDTH,
                              False, WINDOWS["records"]),
            "weights": Window("weights", WINDOW_BASE + 2, 2, -(-mac.weight_width // 8), None,
                              True, WINDOWS["weights"]),
        }
        self._registers = {r.name: (i, r) for i, r in enumerate(self.registers)}

    def address(self, name):
        """Word address of a register or window by name."""
        if name in self.windows:
            return self.windows[name].address
        return self._registers[name][0]

    def register(self, name):
        return self._registers[name][1]

    def field(self, register, name):
        """``(lsb, Field)`` of ``register.name``."""
        for f, lsb in self.register(register).layout():
            if f.name == name:
                return lsb, f
        raise KeyError(f"{register}.{name}")

    def pack(self, register, **fields):
        """The word writing ``fields`` (by name) to ``register``, the others 0."""
        value = 0
        for f, lsb in self.register(register).layout():
            v = int(fields.pop(f.name, 0))
            if not 0 <= v < (1 << f.width):
                raise ValueError(f"{register}.{f.name} holds {f.width} bits, not {v}")
            value |= v << lsb
        if fields:
            raise ValueError(f"register {register} has no field {', '.join(fields)}")
        return value

    def unpack(self, register, word):
        """``{field: value}`` of a word read from ``register``."""
        return {f.name: word >> lsb & ((1 << f.width) - 1)
                for f, lsb in self.register(register).layout()}

    def decoder_targets(self):
        """``[(name, base, addr_width)]`` for :class:`~fieldtune.rtl.csr.bus.BusDecoder`:
        ``regs`` then every window."""
        return [("regs", 0, self.bank_width),
                *((w.name, w.address, w.addr_width) for w in self.windows.values())]

    def window_at(self, address):
        """The window holding word ``address``, or None."""
        for w in self.windows.values():
            if w.address <= address < w.address + w.words:
                return w
        return None

    def memory_map(self):
        """``{"registers": [{"name", "address", "doc", "fields": [{"name", "lsb", "width",
        "access", "init", "doc"}]}], "windows": [{"name", "address", "words",
        "element_bytes", "doc"}]}``."""
        return {"registers": [{"name": r.name, "address": i, "doc": r.doc,
                               "fields": [{"name": f.name, "lsb": lsb, "width": f.width,
                                           "access": f.access, "init": f.init, "doc": f.doc}
                                          for f, lsb in r.layout()]}
                              for i, r in enumerate(self.registers)],
                "windows": [{"name": w.name, "address": w.address, "words": w.words,
                             "element_bytes": w.element_bytes, "doc": w.doc}
                            for w in self.windows.values()]}

    def markdown(self):
        """The map as Markdown tables (docs/architecture.md holds the default design's)."""
        lines = ["| word | register | field | bits | access | reset | meaning |",
                 "|---|---|---|---|---|---|---|"]
        for addr, reg in enumerate(self.registers):
            for i, (f, lsb) in enumerate(reg.layout()):
                hi = lsb + f.width - 1
                bits = f"{hi}:{lsb}" if f.width > 1 else f"{lsb}"
                reset = f"{f.init:#x}" if f.access == "rw" else ""
                lines.append(f"| {addr:#04x} | {reg.name if i == 0 else ''} | {f.name} | "
                             f"{bits} | {f.access} | {reset} | "
                             f"{f.doc or (reg.doc if i == 0 else '')} |")
        lines += ["", "| word | window | words | what |", "|---|---|---|---|"]
        for w in self.windows.values():
            lines.append(f"| {w.address:#04x} | {w.name} | {w.words} | {w.doc} |")
        return "\n".join(lines) + "\n"

