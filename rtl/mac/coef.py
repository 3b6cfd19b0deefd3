"""Scaling of the ``dz`` stream on its way into the coefficient memory.

After a BATCH op with ``cshift``, every ``dz`` (signed ``coef_width`` bits) is stored as
``sat(round_half_up(dz * 2**cshift))`` (the golden model's
:func:`~fieldtune.sim.golden.mac.stored_coefficients`). Narrower than a shift of the whole
value followed by a saturation of the result:

- right shifts (``cshift < 0``): ``(dz >> r) + dz[r - 1]``, never out of range; ``r`` is capped
  at ``coef_width``, where the result is 0 whatever ``dz`` (the sign shifted out is added back);
- left shifts (``cshift > 0``): the low ``coef_width`` bits of ``dz << l`` unless the bits
  shifted through the sign differ from it (``l < coef_width``: the top ``l + 1`` bits of
  ``dz`` are not all equal; ``l >= coef_width``: ``dz != 0``), then the bound of ``dz``'s
  sign; ``l`` is capped at ``coef_width + 1``.

Timing: three registers (input, shifted, result) that move together when ``advance``.
"""

from amaranth.hdl import Signal, Array, Mux, Cat, signed
from amaranth.lib import data


__all__ = ["dz_shift_layout", "dz_shift", "dz_scale_pipeline"]


def dz_shift_layout(cw):
    """The shift of one mini-batch's ``dz``, decoded once from ``cshift`` (at the BATCH op):
    ``right`` (0 for none), ``right_m1`` (``right - 1``, the rounding bit's index), ``left``,
    ``mask`` (the bits of ``dz`` that must equal ``sign`` for ``dz << left`` to fit) and
    ``zero`` (``left >= cw``: only 0 fits)."""
    return data.StructLayout({"right": range(cw + 1), "right_m1": range(cw), "left": range(cw + 2),
                              "mask": cw, "zero": 1})


def dz_shift(shift, cshift, cw):
    """Assignments decoding signed ``cshift`` into ``shift`` (a :func:`dz_shift_layout`)."""
    neg = cshift < 0
    right = Mux(-cshift > cw, cw, (-cshift).as_unsigned())
    left = Mux(cshift > cw + 1, cw + 1, cshift.as_unsigned())
    # bits cw-1-left .. cw-1 of dz: a mask of left+1 ones at the top (all of them for left >=
    # cw - 1)
    masks = Array(((1 << cw) - 1) ^ ((1 << max(cw - 1 - l, 0)) - 1) for l in range(cw + 2))
    return [shift.right.eq(Mux(neg, right, 0)),
            shift.right_m1.eq(Mux(neg, right - 1, 0)),
            shift.left.eq(Mux(neg, 0, left)),
            shift.mask.eq(Mux(neg, 0, masks[left])),
            shift.zero.eq(~neg & (left >= cw))]


def dz_scale_pipeline(m, advance, valid, dz, shift, cw):
    """``dz`` (signed ``cw``) scaled by ``shift``, through three registers moved when
    ``advance``. Returns ``(valid, value, clamped)`` of the last register (``clamped``: the
    value saturated)."""
    a_v, a = Signal(name="dz_a_valid"), Signal(signed(cw), name="dz_a")
    b_v = Signal(name="dz_b_valid")
    b_right = Signal(signed(cw), name="dz_b_right")
    b_lost = Signal(name="dz_b_lost")
    b_left = Signal(signed(cw), name="dz_b_left")
    b_over = Signal(name="dz_b_over")
    b_neg = Signal(name="dz_b_neg")
    b_is_right = Signal(name="dz_b_is_right")
    c_v, c = Signal(name="dz_c_valid"), Signal(signed(cw), name="dz_c")
    c_clamped = Signal(name="dz_c_clamped")
    sign = a[cw - 1]
    expect = Mux(shift.zero, 0, Cat(*([sign] * cw)))
    lo, hi = -(1 << (cw - 1)), (1 << (cw - 1)) - 1
    with m.If(advance):
        m.d.sync += [
            a_v.eq(valid), a.eq(dz),
            b_v.eq(a_v),
            b_right.eq(a >> shift.right),
            b_lost.eq((shift.right != 0) & Array(a[i] for i in range(cw))[shift.right_m1]),
            b_left.eq((a << shift.left)[:cw]),
            b_over.eq(((a ^ expect) & shift.mask).any()),
            b_neg.eq(sign),
            b_is_right.eq(shift.right != 0),
            c_v.eq(b_v),
            c.eq(Mux(b_is_right, b_right + b_lost,
                     Mux(b_over, Mux(b_neg, lo, hi), b_left))),
            c_clamped.eq(~b_is_right & b_over),
        ]
    return c_v, c, c_clamped
