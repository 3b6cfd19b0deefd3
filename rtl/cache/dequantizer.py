"""The dequantizer: packed beats from the cache memory in, ``L`` fixed-point features out.

Per lane, a 4-bit code book computes ``LEVELS[code] * M`` (the level table is a 16-entry ROM,
one LUT per bit on a LUT4 fabric) and shifts it by the block exponent with rounding half up
and saturation to signed ``Q(out_width-out_frac).out_frac``; pass-through code books only
shift. The scale word and the side units (z0, label) arrive in the meta word on the beats the
layout's read schedule names (:class:`~.layout.CacheLayout`).
"""

from amaranth.hdl import Module, Signal, Const, Array, Mux, signed, unsigned
from amaranth.lib import wiring, stream, data
from amaranth.lib.wiring import In, Out

from .params import CacheParams, INDEX_WIDTH, LOGIT_WIDTH
from .codebooks import LEVELS, LEVEL_FRAC, level_width
from .layout import CacheLayout, MANT_BITS, EXP_BITS, UNIT_BITS


__all__ = ["Dequantizer", "packed_beat_layout", "feature_beat_layout", "LATENCY"]


#: Cycles from a packed beat entering ``i`` to its features leaving ``o`` (no back-pressure).
LATENCY = 3


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


class Dequantizer(wiring.Component):
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
    ``i`` to ``o``. ``i.ready`` is ``~o.valid | o.ready``: back-pressure stalls every stage at
    once and nothing is lost.
    """

    def __init__(self, params):
        if not isinstance(params, CacheParams):
            raise ValueError(f"Dequantizer needs a CacheParams, not {type(params).__name__}")
        self.params = params
        self.layout = CacheLayout(params)
        super().__init__({
            "i": In(stream.Signature(packed_beat_layout(params))),
            "o": Out(stream.Signature(feature_beat_layout(params))),
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

        # Stage 2: level * mantissa per lane (or the raw code for pass-through).
        last_beat = lay.beats - 1
        real_lanes = lay.features - last_beat * L   # lanes holding features in the last beat
        if p.scaled:
            lw = level_width(p.codebook)
            product_shape = signed(lw + MANT_BITS + 1)
            table = Array(Const(v, signed(lw)) for v in LEVELS[p.codebook])
        else:
            product_shape = signed(cb)
        products = Signal(data.ArrayLayout(product_shape, L))
        exps = Signal(data.ArrayLayout(unsigned(EXP_BITS), L))
        for lane in range(L):
            code = s1["codes"][lane * cb:(lane + 1) * cb]
            pad = Const(0)
            if lane >= real_lanes:
                pad = s1["beat"] == last_beat
            if p.scaled:
                slot = s1["scales"][lane // lay.group]
                m.d.comb += [products[lane].eq(Mux(pad, 0, table[code] * slot.mant)),
                             exps[lane].eq(slot.exp)]
            else:
                m.d.comb += products[lane].eq(Mux(pad, 0, code.as_signed()))
        s2_valid, s2 = _stage(m, advance, s1_valid, {
            "products": products, "exps": exps, "meta": s1["meta"], "beat": s1["beat"],
            "index": s1["index"], "error": s1["error"]}, "s2")

        # Stage 3 (the output register): shift with rounding half up, saturate.
        lo, hi = -(1 << (p.out_width - 1)), (1 << (p.out_width - 1)) - 1
        if p.scaled:
            shift = p.out_frac - p.in_frac - LEVEL_FRAC     # plus the block exponent
            emax = p.in_width - MANT_BITS
        else:
            shift = p.out_frac - (p.pass8_frac if p.codebook == "pass8" else p.in_frac)
            emax = 0
        pre = max(0, shift + emax)     # constant left shift, so what remains is a right shift
        out = self.o.payload
        with m.If(advance):
            m.d.sync += self.o.valid.eq(s2_valid)
        with m.If(advance & s2_valid):
            for lane in range(L):
                wide = s2["products"][lane] << (pre + 1)
                right = pre - shift - (s2["exps"][lane] if p.scaled else 0)
                if isinstance(right, int):
                    halved = wide >> right
                else:
                    halved = wide >> right.as_unsigned()
                y = Signal(signed(len(wide) + 1), name=f"y{lane}")
                m.d.comb += y.eq((halved + 1) >> 1)
                m.d.sync += out.data[lane].eq(Mux(s2["error"], 0,
                                                  Mux(y > hi, hi, Mux(y < lo, lo, y))))
            m.d.sync += [
                out.beat.eq(s2["beat"]), out.first.eq(s2["beat"] == 0),
                out.last.eq(s2["beat"] == last_beat), out.index.eq(s2["index"]),
                out.error.eq(s2["error"]),
            ]
            # Side units: each is loaded on the one beat whose meta word holds it.
            for k, (w, unit) in enumerate(lay.side_pos):
                value = Mux(s2["error"], 0, s2["meta"][unit * UNIT_BITS:(unit + 1) * UNIT_BITS])
                target = out.z0[k] if k < p.classes else out.label
                with m.If(s2["beat"] == lay.words[w].beat):
                    m.d.sync += target.eq(value)
        return m


def from_config(config):
    """``fieldtune generate dequantizer``: the dequantizer of ``config.cache``."""
    return Dequantizer(config.cache)
