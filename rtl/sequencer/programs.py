"""The sequencer's programs as typed data.

A :class:`Program` is what one loop body of a run does: a tuple of :class:`Phase` s, each a
tuple of actions done once or once per sample of the mini-batch. An action is one transfer on
one of the sequencer's streams:

* :class:`MacOp`: a micro-op on ``mac_cmd``; its fields are constants or :class:`Dynamic`
  values the sequencer computes at run time (shifts, coefficient bases, the zeroth-order
  gradient);
* :class:`Fetch`: a sample read on ``fetch`` (``forward``: the read feeds a forward whose
  loss the loss unit computes, with its zeroth-order sign);
* :class:`PerturbRequest`: a perturbation request ``(seed, step)`` on ``zreq``.

:func:`programs` builds the programs of a design (dense or low-rank adapters); they are the
gateware counterparts of :func:`fieldtune.sim.golden.train.fo_program` / ``zo_program``. The
sequencer gives every action a state of its own (:attr:`Action.state`, names that show in
waveforms), so nothing is parsed back from names.
"""

import enum as py_enum
from dataclasses import dataclass, field

from ..mac.ops import Op, Region, Operand, Perturb, Dest, CoefSource
from ..loss.unit import ZOSign


__all__ = ["Dynamic", "MacOp", "Fetch", "PerturbRequest", "Phase", "Program", "programs"]


class Dynamic(py_enum.Enum):
    """Run-time values a :class:`MacOp` field may take (the sequencer's run registers)."""
    #: First-order update shift ``C_FO - lr_shift - log2 batch`` (BATCH).
    FO_CSHIFT = "cs"
    #: Zeroth-order update shift ``C_ZO - zo_lr_shift - log2 batch + eps_shift``.
    ZO_CSHIFT = "cs_z"
    #: Perturbation shift ``K0 - eps_shift``.
    ZSHIFT = "k"
    #: The current sample's ``dz`` in the coefficient memory (``n * classes``).
    COEF_BASE = "cb"
    #: The current sample's ``v`` (low rank: ``v_base + n * rank * taps``).
    V_BASE = "vb"
    #: The zeroth-order query's gradient (its loss-difference sum, averaged over queries).
    GRADIENT = "g"


@dataclass(frozen=True)
class MacOp:
    """A micro-op; see :data:`fieldtune.rtl.mac.ops.MAC_OP`. Integer or :class:`Dynamic`
    fields."""
    op: Op
    region: Region = Region.W
    operand: Operand = Operand.NONE
    perturb: Perturb = Perturb.NONE
    zshift: "int | Dynamic" = 0
    dest: Dest = Dest.OUT
    coef_source: CoefSource = CoefSource.MEMORY
    cshift: "int | Dynamic" = 0
    coef_base: "int | Dynamic" = 0
    v_base: "int | Dynamic" = 0
    imm: "int | Dynamic" = 0

    @property
    def has_results(self):
        """A MATVEC whose results go to the ``out`` stream (the loss unit)."""
        return self.op == Op.MATVEC and self.dest == Dest.OUT

    def fields(self):
        """``{field: value}`` of every ``MAC_OP`` field but ``op``'s kind."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def used_fields(self):
        """:meth:`fields` without those the MAC array ignores for this op (the micro-code
        leaves them don't care): ``imm`` but for an UPDATE by the immediate, ``coef_base``
        but for an UPDATE or COLACC by the coefficient memory (every other field the array
        checks on every op, so they keep their values)."""
        fields = self.fields()
        if not (self.op == Op.UPDATE and self.coef_source == CoefSource.IMM):
            del fields["imm"]
        if not (self.op in (Op.UPDATE, Op.COLACC) and self.coef_source == CoefSource.MEMORY):
            del fields["coef_base"]
        return fields


@dataclass(frozen=True)
class Fetch:
    """Read the current sample from the forward cache; ``forward``: its loss goes to the loss
    unit with zeroth-order sign ``sign``."""
    forward: bool = False
    sign: ZOSign = ZOSign.NONE


@dataclass(frozen=True)
class PerturbRequest:
    """Ask the perturbation engine for ``z`` of ``(seed, step of the current query)``."""


@dataclass(frozen=True)
class Phase:
    """Actions done once (``each`` false) or once per sample of the mini-batch."""
    name: str
    actions: tuple
    each: bool = False


@dataclass(frozen=True)
class Program:
    """A loop body of a run: its phases in order; ``then`` names the control state that
    follows the last phase."""
    name: str
    phases: tuple
    then: str
    states: tuple = field(init=False, default=())

    def __post_init__(self):
        names = tuple(f"{self.name}_{ph.name}_{i}_{type(a).__name__}"
                      for ph in self.phases for i, a in enumerate(ph.actions))
        object.__setattr__(self, "states", names)


def _forward(lowrank, sign=Perturb.NONE):
    loss = {Perturb.NONE: ZOSign.NONE, Perturb.PLUS: ZOSign.PLUS, Perturb.MINUS: ZOSign.MINUS}
    z = {"perturb": sign, "zshift": Dynamic.ZSHIFT} if sign != Perturb.NONE else {}
    read = Fetch(forward=True, sign=loss[sign])
    if not lowrank:
        return (MacOp(Op.MATVEC, Region.W, operand=Operand.STREAM, **z), read)
    return (MacOp(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL, **z), read,
            MacOp(Op.MATVEC, Region.B, operand=Operand.LOCAL, **z))


def programs(regions, colacc_cshift):
    """The programs of a design with ``regions`` weight regions (1 dense, 2 low-rank), by
    name: first order (``FO``), a zeroth-order query's forwards (``ZF``) and update (``ZU``),
    evaluation (``EV``; ``HO``: of the held-out records, first-order early stop), weight
    load (``LD``) and dump (``DP``). ``then`` names the control states of
    :class:`~fieldtune.rtl.sequencer.Sequencer`."""
    lowrank = regions == 2
    batch = Phase("batch", (MacOp(Op.BATCH, cshift=Dynamic.FO_CSHIFT),))
    if not lowrank:
        fo = (batch, Phase("forward", _forward(False), each=True),
              Phase("update", (MacOp(Op.UPDATE, Region.W, operand=Operand.STREAM,
                                     coef_base=Dynamic.COEF_BASE), Fetch()), each=True))
    else:
        fo = (batch, Phase("forward", _forward(True), each=True),
              Phase("colacc", (MacOp(Op.COLACC, Region.B, coef_base=Dynamic.COEF_BASE,
                                     v_base=Dynamic.V_BASE, cshift=colacc_cshift),), each=True),
              Phase("update_b", (MacOp(Op.MATVEC, Region.A, operand=Operand.STREAM,
                                       dest=Dest.LOCAL), Fetch(),
                                 MacOp(Op.UPDATE, Region.B, operand=Operand.LOCAL,
                                       coef_base=Dynamic.COEF_BASE)), each=True),
              Phase("update_a", (MacOp(Op.UPDATE, Region.A, operand=Operand.STREAM,
                                       coef_base=Dynamic.V_BASE), Fetch()), each=True))
    zo_forward = (Phase("pair", (PerturbRequest(), *_forward(lowrank, Perturb.PLUS),
                                 PerturbRequest(), *_forward(lowrank, Perturb.MINUS)),
                        each=True),)
    zo_update = (Phase("update", (PerturbRequest(), *(
        MacOp(Op.UPDATE, Region(i), operand=Operand.Z, coef_source=CoefSource.IMM,
              imm=Dynamic.GRADIENT, cshift=Dynamic.ZO_CSHIFT) for i in range(regions)))),)
    every = tuple(Region(i) for i in range(regions))
    return {p.name: p for p in (
        Program("FO", fo, then="FO_NEXT"),
        Program("ZF", zo_forward, then="ZF_NEXT"),
        Program("ZU", zo_update, then="ZU_NEXT"),
        Program("EV", (Phase("forward", _forward(lowrank), each=True),), then="DRAIN"),
        Program("HO", (Phase("forward", _forward(lowrank), each=True),), then="HO_DONE"),
        Program("LD", (Phase("load", tuple(MacOp(Op.LOAD, r) for r in every)),), then="DRAIN"),
        Program("DP", (Phase("dump", tuple(MacOp(Op.DUMP, r) for r in every)),), then="DRAIN"),
    )}
