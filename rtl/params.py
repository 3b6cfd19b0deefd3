"""Validated parameter sets for fieldtune's gateware.

Every block in :mod:`fieldtune.rtl` is configured by a frozen dataclass derived from
:class:`Params`. The dataclass checks every field in ``__post_init__`` and raises
:class:`ValueError` naming the field (``section.field``), the value and what is allowed, so a
bad configuration is rejected before anything is elaborated. The same objects are handed to the
golden models in :mod:`fieldtune.sim.golden`, so gateware and model can never disagree about a
width.

The helpers below are the only place that formats these messages; tests assert them verbatim.
"""

from dataclasses import dataclass, fields, asdict


__all__ = ["Params", "check_int", "check_choice", "check_pow2", "check_bool", "check_seed",
           "check_taps", "R1_TAPS", "R1_CLASSES", "MODES", "RunField", "RUN_FIELDS", "LR_STEPS_MAX",
           "TrainParams", "SocParams", "built_modes", "built_schedule", "built_early_stop",
           "run_fields", "EARLY_STOP_FIELDS", "run_register_names", "run_field_lsb"]


def _name(section, field):
    return f"{section}.{field}" if section else field


def check_int(section, field, value, lo, hi):
    """Require an integer (not a bool) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{_name(section, field)} must be an integer from {lo} to {hi}, "
                         f"not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{_name(section, field)} must be an integer from {lo} to {hi}, "
                         f"not {value}")
    return value


def check_pow2(section, field, value, lo, hi):
    """Require a power of two in ``[lo, hi]``."""
    if (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
            or value & (value - 1)):
        raise ValueError(f"{_name(section, field)} must be a power of two from {lo} to {hi}, "
                         f"not {value!r}")
    return value


def check_choice(section, field, value, choices):
    """Require one of ``choices`` (a sequence of strings)."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{_name(section, field)} must be one of {allowed}, not {value!r}")
    return value


def check_bool(section, field, value):
    if not isinstance(value, bool):
        raise ValueError(f"{_name(section, field)} must be true or false, not {value!r}")
    return value


def check_seed(section, field, value):
    """Seeds are 32-bit and must not be zero (xorshift-family states never leave zero)."""
    return check_int(section, field, value, 1, 2**32 - 1)


@dataclass(frozen=True)
class Params:
    """Base class of every parameter section.

    Subclasses set the class attribute ``section`` (the TOML table name) and validate their
    fields in ``_validate``; ``__post_init__`` calls it.
    """

    section = ""

    def __post_init__(self):
        self._validate()

    def _validate(self):  # pragma: no cover - overridden
        pass

    @classmethod
    def from_dict(cls, values):
        """Build from a mapping (a TOML table); unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                allowed = ", ".join(sorted(known))
                raise ValueError(f"{_name(cls.section, key)} is not a known field; "
                                 f"known fields are {allowed}")
        return cls(**values)

    def to_dict(self):
        return asdict(self)


#: Reference scenario R1 (DESIGN.md): adapter taps flatten(pool1), flatten(pool2), dense1.
R1_TAPS = (128, 64, 32)
#: Reference scenario R1: ten digit classes.
R1_CLASSES = 10


def check_taps(section, field, value):
    """Require a non-empty tuple of tap sizes, each 1 to 4096 features."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value or len(value) > 8:
        raise ValueError(f"{_name(section, field)} must be a list of 1 to 8 tap sizes, "
                         f"not {value!r}")
    for i, n in enumerate(value):
        check_int(section, f"{field}[{i}]", n, 1, 4096)
    return value


#: Fine-tuning modes: first order (InstantFT) and zeroth order (PeZO).
MODES = ("fo", "zo")


@dataclass(frozen=True)
class RunField:
    """One field of the run configuration, declared once.

    The sequencer latches it at start (its width in
    :func:`fieldtune.rtl.sequencer.run_config_layout`), the host writes it to
    ``register.field`` of the SoC's map (:class:`fieldtune.rtl.csr.map.SocMap`), and, for
    ``train`` fields, :class:`TrainParams` accepts ``lo`` to ``hi`` as the ``[train]``
    default (a power of two if ``pow2``). The register holds ``hi``: ``width`` is
    ``hi.bit_length()``; values the register holds beyond the legal range are flagged by the
    sequencer's checks at start, never wrapped."""
    name: str
    register: str
    field: str
    lo: int
    hi: int
    pow2: bool = False
    train: bool = False
    doc: str = ""
    #: The ``[soc]`` option that builds the field (empty: every design has it).
    option: str = ""

    @property
    def width(self):
        return self.hi.bit_length()


#: Learning-rate step points of a first-order run (run registers ``lr_step0`` ...): epoch ``e``
#: (0-based) trains at ``lr_shift + #{i : 1 <= lr_step_i <= e}``; 0 leaves a slot unused.
LR_STEPS_MAX = 4

#: The run configuration, in register order (several fields may share a register): the one
#: declaration of its widths and ranges (``mode``: :class:`~fieldtune.rtl.sequencer.Mode`;
#: record indices: the cache's 16-bit read index).
RUN_FIELDS = {f.name: f for f in (
    RunField("mode", "mode", "mode", 0, 7, doc="0 FO, 1 ZO, 2 EVAL, 3 LOAD, 4 DUMP"),
    RunField("epochs", "epochs", "epochs", 1, 1000, train=True),
    RunField("batch", "batch", "batch", 1, 256, pow2=True, train=True),
    RunField("lr_shift", "shifts", "lr_shift", 0, 24, train=True, doc="FO eta = 2**-n"),
    RunField("eps_shift", "shifts", "eps_shift", 0, 24, train=True, doc="ZO epsilon = 2**-n"),
    RunField("zo_lr_shift", "shifts", "zo_lr_shift", 0, 24, train=True, doc="ZO eta = 2**-n"),
    RunField("seed", "seed", "seed", 1, 2**32 - 1, train=True),
    RunField("steps", "steps", "steps", 1, 1_000_000, train=True),
    RunField("queries", "queries", "queries", 1, 16, pow2=True, train=True),
    RunField("step", "zo_step", "step", 0, 2**32 - 1),
    RunField("cursor", "zo_cursor", "cursor", 0, 2**16 - 1),
    RunField("eval_first", "eval_range", "first", 0, 2**16 - 1, doc="first record"),
    RunField("eval_count", "eval_range", "count", 1, 2**16 - 1, doc="records"),
    RunField("watchdog", "watchdog", "budget", 1, 2**32 - 1),
    RunField("order", "order", "shuffle", 0, 1,
             doc="FO: 0 records in cache order, 1 reshuffled every epoch"),
    RunField("order_seed", "order", "seed", 0, 2**16 - 1,
             doc="FO: key of epoch 0's order (epoch e: + e * 0x9E37)"),
    *(RunField(f"lr_step{i}", f"lr_steps_{'lo' if i < 2 else 'hi'}", f"step{i}", 0, 999,
               doc="FO: eta halves from this epoch on (0: unused)")
      for i in range(LR_STEPS_MAX)),
    RunField("stop_every", "early_stop", "every", 0, 100, option="early_stop",
             doc="FO: evaluate the held-out records after every this many epochs (0: never)"),
    RunField("holdout", "early_stop", "holdout", 0, 4096, option="early_stop",
             doc="FO: the last this many records are held out of training"),
    RunField("patience", "early_stop", "patience", 1, 16, option="early_stop",
             doc="FO: evaluations in a row without a new best that end the run"),
)}

#: Run fields built only with ``[soc] early_stop`` (:func:`run_fields`).
EARLY_STOP_FIELDS = tuple(f.name for f in RUN_FIELDS.values() if f.option == "early_stop")


def run_fields(early_stop=False):
    """The run fields of a design (:data:`RUN_FIELDS` without the early-stop ones unless
    ``early_stop``: a design built without it has neither their registers nor their
    inputs)."""
    return {n: f for n, f in RUN_FIELDS.items() if not f.option or early_stop}


def run_register_names(early_stop=False):
    """The run registers of a design, in map order (each holds its fields packed from bit 0 in
    declaration order): the order of their words in the register bank's block RAM, where the
    sequencer reads them (:class:`~fieldtune.rtl.csr.registers.RegisterBank`, ``stored``)."""
    return tuple(dict.fromkeys(f.register for f in run_fields(early_stop).values()))


def run_field_lsb(name):
    """Lowest bit of run field ``name`` in its register's word."""
    f = RUN_FIELDS[name]
    before = [g for g in RUN_FIELDS.values() if g.register == f.register]
    return sum(g.width for g in before[:before.index(f)])


@dataclass(frozen=True)
class TrainParams(Params):
    """Run-time training defaults (TOML table ``[train]``); the sequencer takes them from
    registers, so they do not change the generated hardware.

    Parameters
    ----------
    mode : str
        ``"fo"`` (first order) or ``"zo"`` (zeroth order).
    epochs : int
        First-order epochs over the fine-tuning set, 1 to 1000.
    batch : int
        Mini-batch size, a power of two from 1 to 256 (the batch mean is a shift).
    lr_shift : int
        First-order learning rate eta = 2**-lr_shift, 0 to 24:
        ``W <- W - eta * mean_n(dz_n (x) x_n)``.
    eps_shift : int
        Zeroth-order perturbation scale epsilon = 2**-eps_shift, 0 to 24 (the MAC array
        supports up to ``mac.weight_frac - mac.perturb_frac``).
    zo_lr_shift : int
        Zeroth-order learning rate 2**-zo_lr_shift, 0 to 24:
        ``W <- W - 2**-zo_lr_shift * (mean L+ - mean L-) / (2 epsilon) * z`` with losses in
        bits, so the float MeZO learning rate (losses in nats) it stands for is
        ``2**-zo_lr_shift / ln 2``.
    steps : int
        Zeroth-order step budget, 1 to 1,000,000.
    queries : int
        Zeroth-order queries (perturbation pairs) per step, a power of two from 1 to 16 (the
        mean over queries is a shift of the update, as the batch mean is).
    seed : int
        32-bit non-zero seed of the run.
    """

    section = "train"

    mode: str = "fo"
    epochs: int = 10
    batch: int = 16
    lr_shift: int = 4
    eps_shift: int = 6
    zo_lr_shift: int = 11
    steps: int = 2000
    queries: int = 1
    seed: int = 1

    def _validate(self):
        s = self.section
        check_choice(s, "mode", self.mode, MODES)
        for f in RUN_FIELDS.values():
            if f.train:
                check = check_pow2 if f.pow2 else check_int
                check(s, f.name, getattr(self, f.name), f.lo, f.hi)


@dataclass(frozen=True)
class SocParams(Params):
    """What the generated SoC contains (TOML table ``[soc]``).

    Parameters
    ----------
    modes : tuple of str
        Training modes built into the hardware, a non-empty subset of :data:`MODES`
        (``"fo"``, ``"zo"``; evaluation, weight load and dump are always built). Leaving
        ``"zo"`` out drops the perturbation engine and the sequencer's zeroth-order loops;
        leaving ``"fo"`` out drops the first-order loops (docs/benchmarks.md, "UP5K fit
        (issue 9)", has what each costs). A start of a mode not built is rejected
        (``errors.bad_mode``).
    schedule : bool
        Build the first-order run schedule (issue 16): the per-epoch record order and the
        learning-rate steps (run registers ``order``, ``lr_steps_lo``/``hi``; about 225 LUT4
        on the UP5K, docs/benchmarks.md). Without it a first-order start that sets any of them
        is rejected (``errors.bad_schedule``). Default true: the default first-order run of
        ``fieldtune demo`` (``shuffle20``) needs it.
    early_stop : bool
        Build the first-order early stop (issue 16; needs ``schedule``): run register
        ``early_stop`` (``every``, ``holdout``, ``patience``), the held-out evaluation between
        epochs and the ``stop_status`` register (epochs run, held-out count). Default false:
        the accuracy study found early stop does not pay on R1 (docs/benchmarks.md,
        "Accuracy against LoRA-All (issue 16)"), and with it off the register map and the
        generated RTL are those of a design without it. Illegal values at a first-order
        start raise ``errors.bad_schedule``.
    """

    section = "soc"

    modes: tuple = MODES
    schedule: bool = True
    early_stop: bool = False

    def _validate(self):
        value = self.modes
        if isinstance(value, list):
            value = tuple(value)
        if (not isinstance(value, tuple) or not value or len(set(value)) != len(value)
                or any(v not in MODES for v in value)):
            allowed = ", ".join(repr(m) for m in MODES)
            raise ValueError(f"soc.modes must be a non-empty list of distinct modes from "
                             f"{allowed}, not {self.modes!r}")
        object.__setattr__(self, "modes", tuple(v for v in MODES if v in value))
        check_bool(self.section, "schedule", self.schedule)
        check_bool(self.section, "early_stop", self.early_stop)
        if self.early_stop and not self.schedule:
            raise ValueError("soc.early_stop = true needs soc.schedule = true (early stop is "
                             "part of the first-order run schedule), not soc.schedule = false")
        if self.early_stop and "fo" not in self.modes:
            raise ValueError(f"soc.early_stop = true needs 'fo' in soc.modes (early stop ends a "
                             f"first-order run), not {list(self.modes)}")


def built_modes(config):
    """The training modes built into the SoC of ``config`` (any object with sections; one
    without a ``soc`` section builds both)."""
    soc = getattr(config, "soc", None)
    return soc.modes if soc is not None else MODES


def built_schedule(config):
    """Whether the SoC of ``config`` has the first-order run schedule (``[soc] schedule``;
    a configuration without a ``soc`` section has it)."""
    soc = getattr(config, "soc", None)
    return soc.schedule if soc is not None else True


def built_early_stop(config):
    """Whether the SoC of ``config`` has the first-order early stop (``[soc] early_stop``;
    a configuration without a ``soc`` section has not)."""
    soc = getattr(config, "soc", None)
    return soc.early_stop if soc is not None else False
