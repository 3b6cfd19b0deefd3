"""The dequantizer: packed beats from the cache memory in, ``L`` fixed-point features out.

Per lane, a 4-bit code book computes ``LEVELS[code] * M`` (the level table is a 16-entry ROM,
one LUT per bit on a LUT4 fabric; the product in shifts and adds, :mod:`.arith`, so that it
takes no SB_MAC16 from the MAC array: about 100 LUT4 per lane on iCE40) and shifts it by the block exponent with rounding half up
and saturation to signed ``Q(out_width-out_frac).out_frac``; pass-through code books only
shift. The scale word and the side units (z0, label) arrive in the meta word on the beats the
layout's read schedule names (:class:`~.layout.CacheLayout`).
"""

from amaranth.hdl import Module, Signal, Const, Array, Mux, signed, unsigned
from amaranth.lib import stream, data
from amaranth.lib.wiring import In, Out

from .params import INDEX_WIDTH, LOGIT_WIDTH
from .component import CacheComponent
from .codebooks import LEVELS, LEVEL_FRAC, level_width
from .layout import CacheLayout, MANT_BITS, EXP_BITS, UNIT_BITS
from .arith import shift_add_mul


__all__ = ["Dequantizer", "packed_beat_layout", "feature_beat_layout", "LATENCY"]


#: Cycles from a packed beat entering ``i`` to its features leaving ``o`` (no back-pressure):
#: scale select, level lookup, multiplier, exponent shift with rounding, saturation.
LATENCY = 5


def packed_beat_layout(params):
    """One beat as read from memory: the code word, the meta word (meaningful on beats that
    read one), the beat number within the sample, the sample index and the error mark."""
    lay = CacheLayout(params)
    return data.StructLayout({
        "codes": unsigned(lay.code_width),
        "meta": unsigned(lay.meta_width),
        "beat": range(lay.beats),
        "index": unsigned(INDEX_WIDTH),
        "error": 1,
    })


def feature_beat_layout(params):
    """The read stream's payload.

    ``data``: ``lanes`` signed ``Q(out_width-out_frac).out_frac`` features (feature
    ``beat * lanes + lane``; lanes past the last feature are 0). ``beat``, ``first``, ``last``:
    position within the sample. ``index``: the sample asked for. ``error``: the index was out of
    range (every value of the sample is 0). ``z0`` (signed Q8.8) and ``label``: valid on the
    ``last`` beat (they change on earlier beats while they are assembled).
    """
    lay = CacheLayout(params)
    return data.StructLayout({
        "data": data.ArrayLayout(signed(params.out_width), params.lanes),
        "beat": range(lay.beats),
        "first": 1,
        "last": 1,
        "index": unsigned(INDEX_WIDTH),
        "error": 1,
        "z0": data.ArrayLayout(signed(LOGIT_WIDTH), params.classes),
        "label": unsigned(params.label_bits),
    })


def _stage(m, advance, valid_in, fields, name):
    """Register ``fields`` (a dict of name -> value) and ``valid_in`` when ``advance``."""
    valid = Signal(name=f"{name}_valid")
    regs = {}
    for key, value in fields.items():
        regs[key] = Signal.like(value, name=f"{name}_{key}")
    with m.If(advance):
        m.d.sync += valid.eq(valid_in)
        m.d.sync += [regs[k].eq(v) for k, v in fields.items()]
    return valid, regs


class Dequantizer(CacheComponent):
    """Dequantize packed beats into a stream of ``lanes`` features per cycle.

    Parameters
    ----------
    params : CacheParams

    Attributes
    ----------
    i : In(stream.Signature(packed_beat_layout(params)))
    o : Out(stream.Signature(feature_beat_layout(params)))

    Timing
    ------
    A fully pipelined datapath: one beat per cycle in and out, :data:`LATENCY` cycles from
    ``i`` to ``o`` (the same for every code book). ``i.ready`` is ``~o.valid | o.ready``: back-pressure stalls every stage at
    once and nothing is lost.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "i": In(stream.Signature(packed_beat_layout(p))),
            "o": Out(stream.Signature(feature_beat_layout(p))),
        })

    def elaborate(self, platform):
        m = Module()
        p, lay = self.params, self.layout
        L, cb = p.lanes, lay.code_bits
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        beat_in = self.i.payload.beat

        # Stage 1: the scale word in force for this beat.
        slot_layout = data.StructLayout({"mant": MANT_BITS, "exp": EXP_BITS})
        scales = Signal(data.ArrayLayout(slot_layout, max(lay.slots, 1)))
        if p.scaled:
            held = Signal.like(scales)
            new_scale = Const(sum(1 << j for j, n in enumerate(lay.new_scale) if n), lay.beats)
            fresh = Signal.like(scales)
            for i in range(lay.slots):
                unit = self.i.payload.meta[i * UNIT_BITS:(i + 1) * UNIT_BITS]
                m.d.comb += [fresh[i].mant.eq(unit[:MANT_BITS]),
                             fresh[i].exp.eq(unit[MANT_BITS:MANT_BITS + EXP_BITS])]
            is_new = new_scale.bit_select(beat_in, 1)
            m.d.comb += scales.eq(Mux(is_new, fresh, held))
            with m.If(advance & self.i.valid & is_new):
                m.d.sync += held.eq(fresh)
        s1_valid, s1 = _stage(m, advance, self.i.valid, {
            "codes": self.i.payload.codes, "meta": self.i.payload.meta, "beat": beat_in,
            "index": self.i.payload.index, "error": self.i.payload.error, "scales": scales,
        }, "s1")

        # Stage 2: the level of each lane's code (zero for padding lanes and error beats).
        last_beat = lay.beats - 1
        real_lanes = lay.features - last_beat * L   # lanes holding features in the last beat
        if p.scaled:
            lw = level_width(p.codebook)
            table = Array(Const(v, signed(lw)) for v in LEVELS[p.codebook])
        else:
            lw = cb
        levels = Signal(data.ArrayLayout(signed(lw), L))
        for lane in range(L):
            code = s1["codes"][lane * cb:(lane + 1) * cb]
            zero = s1["error"]
            if lane >= real_lanes:
                zero = zero | (s1["beat"] == last_beat)
            value = table[code] if p.scaled else code.as_signed()
            m.d.comb += levels[lane].eq(Mux(zero, 0, value))
        side = {"meta": s1["meta"], "beat": s1["beat"], "index": s1["index"],
                "error": s1["error"]}
        s2_valid, s2 = _stage(m, advance, s1_valid, {"levels": levels, "scales": s1["scales"],
                                                     **side}, "s2")

        # Stage 3: level * mantissa, and the amount of the exponent shift: a right shift by
        # `pre - shift - E`, one register per lane (an exponent fanning out to every lane of a
        # wide slot is a long route on ECP5).
        if p.scaled:
            shift = p.out_frac - p.in_frac - LEVEL_FRAC     # plus the block exponent
            emax = p.in_width - MANT_BITS
        else:
            shift = p.out_frac - (p.pass8_frac if p.codebook == "pass8" else p.in_frac)
            emax = 0
        pre = max(0, shift + emax)     # constant left shift, so what remains is a right shift
        products = Signal(data.ArrayLayout(signed(lw + MANT_BITS + 1), L))
        rights = Signal(data.ArrayLayout(range(pre - shift + 1), L))
        for lane in range(L):
            if p.scaled:
                slot = s2["scales"][lane // lay.group]
                m.d.comb += [products[lane].eq(shift_add_mul(s2["levels"][lane], slot.mant)),
                             rights[lane].eq(pre - shift - slot.exp)]
            else:
                m.d.comb += [products[lane].eq(s2["levels"][lane]),
                             rights[lane].eq(pre - shift)]
        side = {k: s2[k] for k in side}
        s3_valid, s3 = _stage(m, advance, s2_valid, {"products": products, "rights": rights,
                                                     **side}, "s3")

        # Stage 4: shift by the block exponent keeping one bit below the output LSB, then
        # round half up (add half an output LSB, drop it).
        rounded = Signal(data.ArrayLayout(signed(len(products[0]) + pre + 2), L))
        for lane in range(L):
            twice = (s3["products"][lane] << (pre + 1)) >> s3["rights"][lane]
            m.d.comb += rounded[lane].eq((twice + 1) >> 1)
        side = {k: s3[k] for k in side}
        s4_valid, s4 = _stage(m, advance, s3_valid, {"rounded": rounded, **side}, "s4")

        # Stage 5 (the output register): saturate; assemble z0 and the label.
        lo, hi = -(1 << (p.out_width - 1)), (1 << (p.out_width - 1)) - 1
        out = self.o.payload
        with m.If(advance):
            m.d.sync += self.o.valid.eq(s4_valid)
        with m.If(advance & s4_valid):
            for lane in range(L):
                y = s4["rounded"][lane]
                top = y[p.out_width - 1:]          # fits iff these bits are all equal
                fits = (top == 0) | (top == (1 << len(top)) - 1)
                m.d.sync += out.data[lane].eq(Mux(fits, y, Mux(y[-1], lo, hi)))
            m.d.sync += [
                out.beat.eq(s4["beat"]), out.first.eq(s4["beat"] == 0),
                out.last.eq(s4["beat"] == last_beat), out.index.eq(s4["index"]),
                out.error.eq(s4["error"]),
            ]
            # Side units: each is loaded on the one beat whose meta word holds it.
            for k, (w, unit) in enumerate(lay.side_pos):
                value = Mux(s4["error"], 0, s4["meta"][unit * UNIT_BITS:(unit + 1) * UNIT_BITS])
                target = out.z0[k] if k < p.classes else out.label
                with m.If(s4["beat"] == lay.words[w].beat):
                    m.d.sync += target.eq(value)
        return m


def from_config(config):
    """``fieldtune generate dequantizer``: the dequantizer of ``config.cache``."""
    return Dequantizer(config.cache)
