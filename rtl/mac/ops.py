"""The micro-op interface of :class:`~fieldtune.rtl.mac.AdapterMACArray`.

A sequencer drives the array with one :data:`MAC_OP` payload per operation on the array's
``cmd`` stream. Every operation walks one weight *region* word by word in memory order
(beat ``k`` outer, row ``r`` inner; word ``base + k * rows + r``); see docs/architecture.md for
the table of operations, their streams and their timing.

Regions: a dense design has one region (``W``, classes x features). A low-rank design has
``A`` (per tap, rank x tap features; the rows of a beat are the rank rows of the beat's tap)
and ``B`` (classes x rank*taps, the rank*taps inputs padded to whole beats with weights that
stay zero).
"""



from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum


__all__ = ["Op", "Region", "Operand", "Perturb", "Dest", "CoefSource", "MAC_OP",
           "IMM_WIDTH", "COEF_ADDR_WIDTH", "mac_op"]


class Op(enum.Enum, shape=3):
    #: ``y = (W [+-] z << zshift) . x`` per row, narrowed to the feature format (the frozen
    #: logits z0 are added by the loss unit).
    MATVEC = 0
    #: ``W <- sat(W - round(a_row * b_lane / 2**update_shift))`` (first- and zeroth-order steps).
    UPDATE = 1
    #: ``W <- sat(z << zshift)`` (random low-rank init) or 0 (operand ``NONE``).
    INIT = 2
    #: ``v = B^T dz / 2**(coef_width - 1 - cshift)`` into the coefficient memory (low-rank
    #: first order).
    COLACC = 3
    #: Write weight words from the ``wload`` stream.
    LOAD = 4
    #: Read weight words out on the ``wdump`` stream.
    DUMP = 5
    #: Start a mini-batch: the coefficient write pointer returns to 0, and the ``dz``
    #: written from now on are stored as ``sat(round(dz * 2**cshift))``.
    BATCH = 6


class Region(enum.Enum, shape=1):
    #: Dense ``W``, or low-rank ``A``.
    W = 0
    A = 0
    #: Low-rank ``B``.
    B = 1


class Operand(enum.Enum, shape=2):
    """Second operand ``b`` of MATVEC (the vector) and UPDATE (the lane vector)."""
    #: The feature stream ``x`` (a beat serves all rows of a beat).
    STREAM = 0
    #: The local buffer (low-rank intermediate ``u``).
    LOCAL = 1
    #: The perturbation stream ``z`` (one beat per word).
    Z = 2
    #: Zero.
    NONE = 3


class Perturb(enum.Enum, shape=2):
    NONE = 0
    PLUS = 1
    MINUS = 2


class Dest(enum.Enum, shape=1):
    #: The ``out`` stream.
    OUT = 0
    #: The local buffer.
    LOCAL = 1


class CoefSource(enum.Enum, shape=1):
    #: Coefficient memory, entry ``coef_base + row index``.
    MEMORY = 0
    #: The op's ``imm`` field, for every row.
    IMM = 1


#: Width of the immediate coefficient (the zeroth-order loss-difference sum).
IMM_WIDTH = 32

#: Width of coefficient-memory addresses.
COEF_ADDR_WIDTH = 16

#: One micro-op.
MAC_OP = data.StructLayout({
    "op": Op,
    "region": Region,
    "operand": Operand,
    "perturb": Perturb,
    "zshift": unsigned(5),
    "dest": Dest,
    "coef_source": CoefSource,
    "cshift": signed(6),
    "coef_base": unsigned(COEF_ADDR_WIDTH),
    "v_base": unsigned(COEF_ADDR_WIDTH),
    "imm": signed(IMM_WIDTH),
})


def mac_op(op, region=Region.W, *, operand=Operand.NONE, perturb=Perturb.NONE, zshift=0,
           dest=Dest.OUT, coef_source=CoefSource.MEMORY, cshift=0, coef_base=0, v_base=0,
           imm=0):
    """A micro-op as a dict (the golden model runs it; a testbench sets it as the payload)."""
    return {"op": Op(op), "region": Region(region), "operand": Operand(operand),
            "perturb": Perturb(perturb), "zshift": int(zshift),
            "dest": Dest(dest), "coef_source": CoefSource(coef_source), "cshift": int(cshift),
            "coef_base": int(coef_base), "v_base": int(v_base), "imm": int(imm)}
