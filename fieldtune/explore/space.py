"""Design spaces: a base design, fields with lists of values or ranges, and objectives.

A space is TOML::

    description = "lanes x code book on the iCEBreaker"
    base = "up5k"                 # a preset, or a [base] table shaped like a config file
    block = "soc"                 # what each point implements: "soc" (default) or a block
    objectives = { luts = "min", projected_time_s = "min", accuracy = "max" }

    [run]                         # R1 on the golden engine (fields of [train]; optional)
    mode = "fo"
    epochs = 10

    [fields]                      # the cartesian product of these, in this order
    lanes = [4, 8]                # every block's lane count
    "cache.codebook" = ["unf4", "int4"]
    "perturb.pool_size" = { start = 64, stop = 1024, factor = 2 }   # 64, 128, ..., 1024
    device = ["up5k", "ecp5-85f"] # implement on this device instead of the board's
    perturb = ["pezo-*"]          # variants of ``fieldtune bench perturb`` (names, patterns)

Field names are ``section.field`` of :class:`~fieldtune.config.DesignConfig` (nested tables
``[fields.cache]`` work too), ``board``, and the shorthands above. Ranges are ``{start,
stop, step}`` (arithmetic, ``stop`` included when reached) or ``{start, stop, factor}``
(geometric). A point whose configuration is invalid is still a point: it is evaluated to a
row with the configuration's error (:mod:`fieldtune.explore.point`).

Shipped spaces live in ``fieldtune/explore/spaces/NAME.toml`` (:func:`shipped_spaces`).
"""

import fnmatch
import itertools
import tomllib
from dataclasses import dataclass, field, fields as dataclass_fields
from pathlib import Path

from ..bench.perturb import VARIANTS as PERTURB_VARIANTS
from ..blocks import BLOCKS
from ..config import DesignConfig, SECTIONS
from ..boards.devices import DEVICES


__all__ = ["Space", "Point", "OBJECTIVES", "SHIPPED", "shipped_spaces", "load_space",
           "parse_space", "expand_values"]


#: Point figures a space may optimize -> what "better" means by default.
OBJECTIVES = {"luts": "min", "ffs": "min", "dsps": "min", "brams": "min",
              "fmax_mhz": "max", "cycles": "min", "projected_time_s": "min",
              "accuracy": "max"}

#: Folder of the spaces that ship with the package.
SHIPPED = Path(__file__).resolve().parent / "spaces"

#: Keys of a space file.
_KEYS = ("description", "base", "block", "objectives", "run", "fields")
#: Field names that are not ``section.field``.
_SHORTHANDS = ("lanes", "device", "board", "perturb")
_RANGE_KEYS = {"start", "stop", "step", "factor"}


@dataclass(frozen=True)
class Point:
    """One design of a space: ``index`` in the space, ``values`` (varied field -> value, in
    the space's field order), and everything a worker needs to evaluate it."""
    index: int
    values: dict
    base: dict
    block: str
    run: dict | None

    def changes(self):
        """``(config dict, device or None)``: the base design with this point's values."""
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.base.items()}
        device = None
        for name, value in self.values.items():
            if name == "device":
                device = value
            elif name == "board":
                config["board"] = value
            elif name == "lanes":
                for section in ("perturb", "cache", "mac"):
                    config.setdefault(section, {})["lanes"] = value
            elif name == "perturb":
                source, shape, scaling, reuse = PERTURB_VARIANTS[value]
                config.setdefault("perturb", {}).update(source=source, shape=shape,
                                                        scaling=scaling, reuse=reuse)
            else:
                section, key = name.split(".", 1)
                config.setdefault(section, {})[key] = value
        return config, device


@dataclass(frozen=True)
class Space:
    """A parsed space (see the module documentation)."""
    name: str
    description: str
    base: dict
    block: str
    objectives: dict
    run: dict | None
    fields: dict = field(default_factory=dict)

    def points(self):
        """Every :class:`Point`, the first field varying slowest."""
        names = list(self.fields)
        combos = itertools.product(*(self.fields[n] for n in names))
        return [Point(i, dict(zip(names, combo)), self.base, self.block, self.run)
                for i, combo in enumerate(combos)]

    def __len__(self):
        n = 1
        for values in self.fields.values():
            n *= len(values)
        return n


def shipped_spaces():
    """``{name: description}`` of the spaces shipped with the package."""
    out = {}
    for path in sorted(SHIPPED.glob("*.toml")):
        with open(path, "rb") as f:
            out[path.stem] = tomllib.load(f).get("description", "")
    return out


def load_space(name_or_path):
    """The space in a TOML file, or the shipped space of that name."""
    path = Path(name_or_path)
    if not path.suffix and not path.is_file():
        path = SHIPPED / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(f"space must be a TOML file or one of "
                             f"{', '.join(shipped_spaces())}, not {str(name_or_path)!r}")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as error:
        raise ValueError(f"space {str(path)!r} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"space {str(path)!r} is not valid TOML: {error}") from None
    return parse_space(doc, name=path.stem)


def parse_space(doc, *, name="space"):
    """A :class:`Space` from a parsed TOML document; ValueError naming what is wrong."""
    for key in doc:
        if key not in _KEYS:
            raise ValueError(f"{key} is not a known space key; known keys are "
                             f"{', '.join(_KEYS)}")
    base = doc.get("base", {})
    if isinstance(base, str):
        base = {"preset": base}
    if not isinstance(base, dict):
        raise ValueError(f"base must be a preset name or a table, not {base!r}")
    try:
        base_config = DesignConfig.from_dict(base).to_dict()
    except ValueError as error:
        raise ValueError(f"base: {error}") from None
    block = doc.get("block", "soc")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {', '.join(map(repr, BLOCKS))}, not {block!r}")
    objectives = doc.get("objectives", {"luts": "min", "projected_time_s": "min",
                                        "accuracy": "max"})
    if not isinstance(objectives, dict) or not objectives:
        raise ValueError("objectives must be a table of figure = \"min\" or \"max\"")
    for key, sense in objectives.items():
        if key not in OBJECTIVES:
            raise ValueError(f"objectives.{key} is not a point figure; figures are "
                             f"{', '.join(OBJECTIVES)}")
        if sense not in ("min", "max"):
            raise ValueError(f"objectives.{key} must be 'min' or 'max', not {sense!r}")
    run = doc.get("run")
    if run is not None:
        if not isinstance(run, dict):
            raise ValueError(f"run must be a table of [train] fields, not {run!r}")
        try:
            SECTIONS["train"].from_dict({**base_config["train"], **run})
        except ValueError as error:
            raise ValueError(f"run: {error}") from None
    fields_doc = doc.get("fields", {})
    if not isinstance(fields_doc, dict):
        raise ValueError(f"fields must be a table, not {fields_doc!r}")
    fields = {}
    for key, values in _flatten(fields_doc):
        fields[key] = _field_values(key, values)
    return Space(name=name, description=doc.get("description", ""), base=base_config,
                 block=block, objectives=dict(objectives), run=dict(run) if run else None,
                 fields=fields)


def _flatten(table, prefix=""):
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not _is_range(value) and not prefix:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _is_range(value):
    return isinstance(value, dict) and set(value) <= _RANGE_KEYS and "start" in value


def _field_values(key, values):
    if key not in _SHORTHANDS:
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ValueError(f"fields.{key} is not a field; fields are section.field (sections "
                             f"{', '.join(SECTIONS)}) or {', '.join(_SHORTHANDS)}")
        if name not in {f.name for f in dataclass_fields(SECTIONS[section])}:
            try:
                SECTIONS[section].from_dict({name: None})       # raises naming the fields
            except ValueError as error:
                raise ValueError(f"fields.{key}: {error}") from None
    values = expand_values(f"fields.{key}", values)
    if key == "perturb":
        values = _variants(values)
    if key == "device":
        for device in values:
            if device not in DEVICES:
                raise ValueError(f"fields.device must name devices among "
                                 f"{', '.join(map(repr, DEVICES))}, not {device!r}")
    return values


def expand_values(name, values):
    """A field's list of values: a list as given, one value, or a range table."""
    if _is_range(values):
        return _range(name, values)
    if isinstance(values, dict):
        raise ValueError(f"{name} must be a list, a value or a range {{start, stop, step}} "
                         f"or {{start, stop, factor}}, not a table with keys "
                         f"{', '.join(values)}")
    values = values if isinstance(values, list) else [values]
    if not values:
        raise ValueError(f"{name} must list at least one value")
    return values


def _range(name, spec):
    start, stop = spec.get("start"), spec.get("stop")
    step, factor = spec.get("step"), spec.get("factor")
    for key, v in (("start", start), ("stop", stop), ("step", step), ("factor", factor)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"{name}.{key} must be an integer, not {v!r}")
    if stop is None or (step is None) == (factor is None):
        raise ValueError(f"{name} must be a range {{start, stop, step}} or "
                         f"{{start, stop, factor}}")
    if step is not None and step < 1 or factor is not None and factor < 2:
        raise ValueError(f"{name}: step must be at least 1 and factor at least 2")
    if step is not None:
        values = list(range(start, stop + 1, step))
    else:
        values, v = [], start
        while v <= stop and v > 0:
            values.append(v)
            v *= factor
    if not values:
        raise ValueError(f"{name} is an empty range ({start} to {stop})")
    return values


def _variants(patterns):
    chosen = []
    for pattern in patterns:
        matches = [n for n in PERTURB_VARIANTS if fnmatch.fnmatchcase(n, str(pattern))]
        if not matches:
            raise ValueError(f"fields.perturb: {pattern!r} matches no variant of the "
                             f"perturbation benchmark; variants are "
                             f"{', '.join(PERTURB_VARIANTS)}")
        chosen.extend(n for n in matches if n not in chosen)
    return chosen
