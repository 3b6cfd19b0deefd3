"""The design configuration: one validated object describing a whole fieldtune design.

A :class:`DesignConfig` is made of parameter sections, one per gateware room (``perturb``,
``cache``, ``mac``, ``loss``) plus run-time training defaults (``train``), the target
``board``, its SoC clock (``clock_mhz``) and its host link (``serial``: ``"uart"``, or ``"usb"``
for USB CDC-ACM serial on a board that has it; default the board's). Every section validates
itself on construction; :class:`DesignConfig` then checks what crosses sections (for example
that the cache, the MAC array and the perturbation engine agree on the lane count). Every
error is a :class:`ValueError` naming the field, the value and what is allowed, raised before
anything is elaborated.

Configurations come from named presets (:data:`PRESETS`), from TOML files, or both::

    cfg = DesignConfig.from_toml("my.toml")      # tables [perturb], [cache], ...; preset = "..."
    cfg = DesignConfig.preset("up5k")
    cfg = cfg.replace(perturb={"reuse": "onthefly"})
"""

import tomllib
from dataclasses import dataclass, field, replace as dc_replace
from pathlib import Path

import tomli_w

from .rtl.crossblock import check_geometry
from .rtl.params import TrainParams, SocParams, check_choice
from .rtl.perturb.params import PerturbParams
from .rtl.cache.params import CacheParams
from .rtl.mac.params import MacParams
from .rtl.loss.params import LossParams
from .rtl.host.params import HostParams
from .boards.devices import DEVICES
from .boards.table import BOARDS, DEFAULT_BOARD, soc_clock


__all__ = ["DesignConfig", "PRESETS", "BOARDS", "SECTIONS"]

#: Keys of the configuration outside the sections.
TOP_LEVEL = ("board", "clock_mhz", "serial")

#: Section name -> parameter class.
SECTIONS = {
    "perturb": PerturbParams,
    "cache": CacheParams,
    "mac": MacParams,
    "loss": LossParams,
    "train": TrainParams,
    "host": HostParams,
    "soc": SocParams,
}


#: Lanes of the default design (preset ``up5k``, the iCEBreaker's): both training modes fit the
#: UP5K's 5,280 logic cells with the host link at 4 lanes (4 of its 8 SB_MAC16), not at 8
#: (docs/benchmarks.md, "What each mode and lane costs on the iCEBreaker").
DEFAULT_LANES = 4


@dataclass(frozen=True)
class DesignConfig:
    """A whole design. See the module documentation. The defaults are the iCEBreaker's design
    (preset ``up5k``): :data:`DEFAULT_LANES` lanes, the MAC array's row accumulators in block
    RAM (108 logic cells a block RAM: the UP5K runs out of cells before block RAM) and its
    perturbation shifters in the SB_MAC16 that 4 lanes leave free (about 33 cells a lane)."""

    board: str = DEFAULT_BOARD
    #: SoC clock in MHz made by the board's PLL; None: the board's default
    #: (:attr:`fieldtune.boards.table.Board.soc_mhz`).
    clock_mhz: float | None = None
    perturb: PerturbParams = field(default_factory=lambda: PerturbParams(lanes=DEFAULT_LANES))
    cache: CacheParams = field(default_factory=lambda: CacheParams(lanes=DEFAULT_LANES))
    mac: MacParams = field(default_factory=lambda: MacParams(
        lanes=DEFAULT_LANES, acc_memory="bram", perturb_shifter="multipliers"))
    loss: LossParams = field(default_factory=LossParams)
    train: TrainParams = field(default_factory=TrainParams)
    host: HostParams = field(default_factory=HostParams)
    soc: SocParams = field(default_factory=SocParams)
    #: Host link, "uart" or "usb" (:data:`fieldtune.boards.table.LINKS`); None: the board's
    #: default (:attr:`fieldtune.boards.table.Board.link`).
    serial: str | None = None

    def __post_init__(self):
        check_choice("", "board", self.board, tuple(BOARDS))
        if self.clock_mhz is not None:
            soc_clock(self.board, self.clock_mhz)    # raises naming what the PLL can make
        if self.serial is not None:
            links = BOARDS[self.board].links
            if self.serial not in links:
                raise ValueError(f"serial must be one of {', '.join(map(repr, links))} on "
                                 f"board {self.board!r}, not {self.serial!r}")
        # An SPRAM cache needs a device with single-port RAM (the UP5K); ECP5 builds keep the
        # cache in block RAM.
        if self.cache.memory == "spram" and not DEVICES[BOARDS[self.board].device].sprams:
            raise ValueError(f"cache.memory must be 'bram' on board {self.board!r} (its FPGA "
                             f"has no SPRAM), not 'spram'")
        # Perturbations shifted by multipliers take a second one per MAC lane.
        if self.mac.perturb_shifter == "multipliers" and not self._shifters_fit(self.mac.lanes):
            raise ValueError(f"mac.perturb_shifter must be 'logic' on board {self.board!r} at "
                             f"{self.mac.lanes} lanes (2 multipliers a lane, its FPGA has "
                             f"{self._dsps()}), not 'multipliers'")
        if not isinstance(self.train, TrainParams):
            raise ValueError(f"train must be a TrainParams, not {type(self.train).__name__}")
        # Lanes, taps and classes agree (fieldtune.rtl.crossblock, the rules' one home); the
        # formats that meet in the SoC are checked when it is built (check_soc). Block-level
        # builds need none of them.
        check_geometry(self)
        if not isinstance(self.soc, SocParams):
            raise ValueError(f"soc must be a SocParams, not {type(self.soc).__name__}")
        if self.train.mode not in self.soc.modes:
            raise ValueError(f"train.mode must be one of the built soc.modes "
                             f"{list(self.soc.modes)}, not {self.train.mode!r}")

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values, *, base=None):
        """Build from a mapping shaped like the TOML file.

        ``values`` may name a ``preset`` to start from (default: ``base`` or the defaults),
        a ``board`` and any section tables; fields not given keep the base's values.
        """
        values = dict(values)
        preset = values.pop("preset", None)
        if preset is not None:
            base = cls.preset(preset)
        elif base is None:
            base = cls()
        for key in values:
            if key not in TOP_LEVEL and key not in SECTIONS:
                allowed = ", ".join([*TOP_LEVEL, "preset", *SECTIONS])
                raise ValueError(f"{key} is not a known configuration key; "
                                 f"known keys are {allowed}")
        return base.replace(**values)

    @classmethod
    def from_toml(cls, path, *, base=None):
        """Load a TOML file (see :meth:`from_dict` for its shape). A file that cannot be read
        raises ``OSError``; one that is not TOML, ``ValueError`` naming the file."""
        try:
            values = tomllib.loads(Path(path).read_bytes().decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a valid TOML file: {e}") from None
        return cls.from_dict(values, base=base)

    @classmethod
    def preset(cls, name):
        """A named preset from :data:`PRESETS`."""
        check_choice("", "preset", name, tuple(PRESETS))
        return cls.from_dict(PRESETS[name], base=cls())

    def replace(self, **changes):
        """A copy with some fields changed. Section changes may be mappings of fields::

            cfg.replace(board="ulx3s-85f", cache={"memory": "bram"})
        """
        kwargs = {}
        for key, value in changes.items():
            if key in TOP_LEVEL:
                kwargs[key] = value
            elif key in SECTIONS:
                section_cls = SECTIONS[key]
                if isinstance(value, dict):
                    current = getattr(self, key).to_dict()
                    for k in value:
                        if k not in current:
                            section_cls.from_dict({k: None})  # raises naming the field
                    current.update(value)
                    value = section_cls.from_dict(current)
                kwargs[key] = value
            else:
                allowed = ", ".join([*TOP_LEVEL, *SECTIONS])
                raise ValueError(f"{key} is not a known configuration key; "
                                 f"known keys are {allowed}")
        return dc_replace(self, **kwargs)

    @property
    def link(self):
        """The host link built: :attr:`serial`, or the board's default."""
        return self.serial or BOARDS[self.board].link

    def with_lanes(self, lanes):
        """A copy with every block's lane count set to ``lanes``. A perturbation shifter in
        multipliers (``mac.perturb_shifter``, two multipliers a lane) becomes one in logic where
        the board's FPGA has too few multipliers for ``lanes``."""
        mac = {"lanes": lanes}
        if self.mac.perturb_shifter == "multipliers" and not self._shifters_fit(lanes):
            mac["perturb_shifter"] = "logic"
        return self.replace(perturb={"lanes": lanes}, cache={"lanes": lanes}, mac=mac)

    def _dsps(self):
        return DEVICES[BOARDS[self.board].device].dsps

    def _shifters_fit(self, lanes):
        """The board's FPGA has the two multipliers a lane that shifters in multipliers take."""
        return 2 * lanes <= self._dsps()

    def to_dict(self):
        out = {"board": self.board}
        if self.clock_mhz is not None:
            out["clock_mhz"] = self.clock_mhz
        if self.serial is not None:
            out["serial"] = self.serial
        for name in SECTIONS:
            section = getattr(self, name).to_dict()
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    def to_toml(self):
        """The configuration as TOML text (round-trips through :meth:`from_toml`)."""
        return tomli_w.dumps(self.to_dict())


def _lanes(n):
    return {"perturb": {"lanes": n}, "cache": {"lanes": n}, "mac": {"lanes": n}}


def _ecp5(board, lanes):
    """An ECP5 board's preset: the cache in block RAM, the MAC array's read register on and its
    accumulators and perturbation shifters in logic (flip-flops are plenty there, time is
    not), the loss unit's pipelined ``log2 e`` multiplication."""
    return {"board": board, "perturb": {"lanes": lanes},
            "cache": {"lanes": lanes, "memory": "bram"},
            "mac": {"lanes": lanes, "read_register": True, "acc_memory": "flops",
                    "perturb_shifter": "logic"},
            "loss": {"serial": False}}


#: Named presets. ``up5k`` (iCEBreaker, the default board): the built-in defaults (both modes,
#: :data:`DEFAULT_LANES` lanes, row accumulators in block RAM, perturbation shifters in
#: multipliers).
#: ``ecp5-85f`` (ULX3S-85F): 32 lanes, the MAC array's read register on (108 vs 72 MHz).
#: ``orangecrab``: 32 lanes on the OrangeCrab 85F.
#: ``ecp5-12f``, ``ecp5-25f``, ``ecp5-45f`` (ULX3S) and ``orangecrab-25f``: the boards' default
#: presets, sized by their multipliers (docs/boards.md records which are measured): on the
#: 25F (ULX3S and OrangeCrab) 16 lanes are the most its 28 multipliers allow (lanes divide
#: R1's 224 features: 32 would need 32), measured at 60 and 48 MHz.
#: ``tiny``: 4 lanes, 64-value pool; small enough for quick simulations.
#: ``up5k-fo``: first order only on the iCEBreaker, 4 lanes, row accumulators in block RAM,
#: perturbation shifters in logic: the room a first-order board has left (4,712 of 5,280 logic
#: cells with the host link at session 8's design). The default (``up5k``, both modes) fills
#: 5,218 with the host link and places and routes at 22.3 MHz (docs/benchmarks.md).
#: The ECP5 presets keep the loss unit's pipelined ``log2 e`` multiplication (``[loss]
#: serial = false``): their forwards are shorter than the serial unit's 195-407 cycles.
PRESETS = {
    "up5k": {},
    **{name: _ecp5(board, lanes)
       for name, board, lanes in (("ecp5-85f", "ulx3s-85f", 32),
                                  ("orangecrab", "orangecrab-85f", 32),
                                  ("ecp5-12f", "ulx3s-12f", 8), ("ecp5-25f", "ulx3s-25f", 16),
                                  ("ecp5-45f", "ulx3s-45f", 16),
                                  ("orangecrab-25f", "orangecrab-25f", 16))},
    "up5k-fo": {"board": "icebreaker", "clock_mhz": 18.0, **_lanes(4),
                "soc": {"modes": ["fo"]},
                "mac": {"lanes": 4, "acc_memory": "bram", "perturb_shifter": "logic"}},
    "tiny": {"board": "icebreaker", **_lanes(4),
             "perturb": {"lanes": 4, "pool_size": 64}},
}
