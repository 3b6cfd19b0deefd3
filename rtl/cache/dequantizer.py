"""The dequantizer: packed beats from the cache memory in, ``L`` fixed-point features out.

Per feature, a 4-bit code book computes ``LEVELS[code] * M`` (the level table is a 16-entry
ROM, one LUT per bit on a LUT4 fabric; the product in shifts and adds, :mod:`.arith`, so that
it takes no SB_MAC16 from the MAC array: about 100 LUT4 per datapath lane on iCE40) and shifts
it by the block exponent with rounding half up and saturation to signed
``Q(out_width-out_frac).out_frac``; pass-through code books only shift. The scale word and the
side units (z0, label) arrive in the meta word on the beats the layout's read schedule names
(:class:`~.layout.CacheLayout`); the side units leave in the beat's ``side`` field on the beat
that carries them (nothing assembles them: the consumer keeps what it needs, once).

The datapath has ``dequantizer_lanes`` lanes (default: one per feature of a beat). A consumer
that takes a beat only every few cycles (the MAC array holds each beat for its ``rows``
words) is served as fast by fewer lanes, each dequantizing one feature of the beat per cycle:
the default ``up5k`` design dequantizes one feature per cycle, a beat every 8 cycles, for a MAC
array taking one every 10 (R1's classes).
"""

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat, signed, unsigned
from amaranth.lib import stream, data
from amaranth.lib.wiring import In, Out

from .params import INDEX_WIDTH
from .component import CacheComponent
from .codebooks import LEVELS, LEVEL_FRAC, level_width
from .layout import CacheLayout, MANT_BITS, EXP_BITS, UNIT_BITS
from ..mac.layout import Layout


__all__ = ["Dequantizer", "packed_beat_layout", "feature_beat_layout", "LATENCY", "latency"]


#: Pipeline registers from a packed beat entering ``i`` to its features leaving ``o``: the beat
#: register (with the scales), level lookup with the multiplier, exponent shift with
#: rounding, saturation into the output register.
LATENCY = 4


def latency(params):
    """Cycles from a beat's transfer on ``i`` to it being valid on ``o`` (no back-pressure):
    :data:`LATENCY` plus the cycles of its lane groups after the first."""
    return LATENCY + params.beat_cycles - 1


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
    position within the sample. ``error``: the index asked for was out of range (every value
    of the sample is 0). (No ``index``: a consumer knows what it asked for.) ``side``: the
    beat's meta word, zeroed on error beats: the side units that
    :attr:`~.layout.CacheLayout.side_pos` places on this beat (z0 as signed Q8.8 in class
    order, then the label) are valid here; its other units are not (scale slots, or memory
    the layout does not use on this beat).
    """
    lay = CacheLayout(params)
    return data.StructLayout({
        "data": data.ArrayLayout(signed(params.out_width), params.lanes),
        "beat": range(lay.beats),
        "first": 1,
        "last": 1,
        "error": 1,
        "side": unsigned(lay.meta_width),
    })


def _balanced_product(a, b):
    """``a * b`` (``b`` unsigned) as :func:`~.arith.shift_add_mul`'s partial products summed
    pairwise: the same adders in ``ceil(log2(len(b)))`` levels instead of a chain of
    ``len(b) - 1`` (this product is the dequantizer's longest path on iCE40)."""
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


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
    """Dequantize packed beats into a stream of ``lanes`` features per beat.

    Parameters
    ----------
    params : CacheParams

    Attributes
    ----------
    i : In(stream.Signature(packed_beat_layout(params)))
    o : Out(stream.Signature(feature_beat_layout(params)))

    Timing
    ------
    ``P = params.dq_lanes`` lanes of datapath serve the beat's ``lanes`` features in
    ``n = params.beat_cycles`` lane groups, one group per cycle: group ``j`` is features
    ``j*P .. j*P+P-1`` of the beat. A beat waits in the beat register while its groups issue
    and the next one is taken with its last group, so a beat enters and leaves every ``n``
    cycles; :func:`latency` cycles from ``i`` to ``o``. The groups' results are written into
    ``o.payload.data`` as they come (when ``P`` divides ``lanes``, shifted in from the top
    lanes: group ``j`` reaches its lanes with the last group), and ``o.valid`` rises with
    the last one (the earlier groups of the next beat overwrite lanes of a beat already
    taken). Back-pressure: every register
    advances only when ``advance = ~o.valid | o.ready``, so a stall freezes the whole pipeline
    and nothing is lost. With ``P = lanes`` (the default) this is one beat per cycle.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "i": In(stream.Signature(packed_beat_layout(p))),
            "o": Out(stream.Signature(feature_beat_layout(p))),
        })

    @property
    def _nonnegative(self):
        """Every value is ``>= 0`` (an unsigned 4-bit code book): the datapath is unsigned."""
        return self.params.scaled and self.params.unsigned

    @property
    def _side_early(self):
        """The side fields (beat, error, side) are set from the beat register
        when a beat's last group leaves it, not carried down the pipeline: possible when a
        beat takes at least ``LATENCY - 1`` cycles, since by then the previous beat has
        reached the output register and been taken (everything advances only with the
        output free or taken), and ``o.valid`` stays low until the beat's own last group
        arrives."""
        return self.params.beat_cycles >= LATENCY - 1

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        s1_valid, s1 = self._beat_register(m, advance)
        s2_valid, s2 = self._products(m, advance, s1_valid, self._levels(m, s1))
        s3_valid, s3 = self._rounding(m, advance, s2_valid, s2)
        self._output(m, advance, s3_valid, s3)
        if self._side_early:
            self._side_fields(m, advance & s1_valid & s1["last_group"], s1)
        else:
            self._side_fields(m, advance & s3_valid & s3["last_group"], s3)
        return m

    def _beat_register(self, m, advance):
        """Stage 1: the beat and the scale word in force for it, held while its lane groups
        issue; yields one group (``group``, ``last_group``) per cycle."""
        p, lay = self.params, self.layout
        n = p.beat_cycles
        beat_in = self.i.payload.beat
        slot_layout = data.StructLayout({"mant": MANT_BITS, "exp": EXP_BITS})
        # the scale words in force for the beat held: loaded from a beat that brings new
        # ones as it is taken (so they are the beat register's scales, held across beats
        # without a copy: the last group of the previous beat reads them in the cycle they
        # change)
        scales = Signal(data.ArrayLayout(slot_layout, max(lay.slots, 1)), name="s1_scales")
        if p.scaled:
            new_scale = Const(sum(1 << j for j, n_ in enumerate(lay.new_scale) if n_),
                              lay.beats)
            fresh = Signal.like(scales)
            for i in range(lay.slots):
                unit = self.i.payload.meta[i * UNIT_BITS:(i + 1) * UNIT_BITS]
                m.d.comb += [fresh[i].mant.eq(unit[:MANT_BITS]),
                             fresh[i].exp.eq(unit[MANT_BITS:MANT_BITS + EXP_BITS])]
            is_new = new_scale.bit_select(beat_in, 1)
            with m.If(self.i.valid & self.i.ready & is_new):
                m.d.sync += scales.eq(fresh)
        group = Signal(range(n), name="s1_group")
        last_group = Signal()
        valid, regs = _stage(m, self.i.ready, self.i.valid, {
            "codes": self.i.payload.codes, "meta": self.i.payload.meta, "beat": beat_in,
            "error": self.i.payload.error,
        }, "s1")
        regs["scales"] = scales
        # the next beat is taken with the last group of the one held
        m.d.comb += [last_group.eq(group == n - 1),
                     self.i.ready.eq(advance & (~valid | last_group))]
        if n > 1:
            with m.If(advance & valid):
                m.d.sync += group.eq(Mux(last_group, 0, group + 1))
            # the codes shift down by a group as it issues (the next group's codes are then
            # the low ones: no multiplexer, and each code bit's flip-flop shares its cell with
            # the shift-or-load LUT instead of sitting alone behind the memory's output)
            with m.If(advance & valid & ~last_group):
                m.d.sync += regs["codes"].eq(regs["codes"] >> (p.dq_lanes * lay.code_bits))
        regs["group"], regs["last_group"] = group, last_group
        return valid, regs

    def _lane(self, group, u):
        """The beat lane of datapath lane ``u`` in lane group ``group`` (an int)."""
        return group * self.params.dq_lanes + u

    def _levels(self, m, s1):
        """The level of each datapath lane's code, whether it is to be zero (padding lanes,
        error beats: applied to the product as it is registered, a flip-flop reset, so the
        zeroing is not on the multiplier's path), and its slot's scale, from the beat register
        (combinational, into stage 2)."""
        p, lay = self.params, self.layout
        L, P, n, cb = p.lanes, p.dq_lanes, p.beat_cycles, lay.code_bits
        last_beat = lay.beats - 1
        real_lanes = lay.features - last_beat * L   # lanes holding features in the last beat
        if p.scaled:
            lw = level_width(p.codebook)
            # an unsigned code book's levels, products and sums need no sign bit
            level_shape = unsigned(lw - 1) if self._nonnegative else signed(lw)
            table = Array(Const(v, level_shape) for v in LEVELS[p.codebook])
        else:
            level_shape = signed(cb)
        slot_layout = data.StructLayout({"mant": MANT_BITS, "exp": EXP_BITS})
        levels = Signal(data.ArrayLayout(level_shape, P))
        zeros = Signal(P)
        scales = Signal(data.ArrayLayout(slot_layout, P))
        for u in range(P):
            lanes = [self._lane(j, u) for j in range(n)]
            code = s1["codes"][u * cb:(u + 1) * cb]       # shifted to the group (above)
            padding = Const(sum(1 << j for j, l in enumerate(lanes) if l >= real_lanes), n)
            m.d.comb += [
                zeros[u].eq(s1["error"]
                            | ((s1["beat"] == last_beat) & padding.bit_select(s1["group"], 1))),
                levels[u].eq(table[code] if p.scaled else code.as_signed()),
            ]
            if p.scaled:
                slots = Array(s1["scales"][min(l, L - 1) // lay.group] for l in lanes)
                m.d.comb += scales[u].eq(slots[s1["group"]] if n > 1 else slots[0])
        return {"levels": levels, "zeros": zeros, "scales": scales, **self._side(s1)}

    def _side(self, regs):
        """What travels beside the lanes to the output register."""
        keys = ("group", "last_group")
        if not self._side_early:
            keys += ("meta", "beat", "error")
        return {k: regs[k] for k in keys}

    def _products(self, m, advance, s1_valid, s2):
        """Stage 2: level * mantissa (zero where :meth:`_levels` says so: the register's
        reset), and the amount of the exponent shift: a right shift by ``pre - shift - E``,
        one register per lane (``s2``: :meth:`_levels`)."""
        p = self.params
        P = p.dq_lanes
        lw = len(s2["levels"][0])
        shift, pre = self._shifts()
        products = Signal(data.ArrayLayout(unsigned(lw + MANT_BITS) if self._nonnegative
                                           else signed(lw + MANT_BITS + 1), P))
        rights = Signal(data.ArrayLayout(range(pre - shift + 1), P))
        for u in range(P):
            if p.scaled:
                slot = s2["scales"][u]
                product = _balanced_product(s2["levels"][u], slot.mant)
                m.d.comb += rights[u].eq(pre - shift - slot.exp)
            else:
                product = s2["levels"][u]
                m.d.comb += rights[u].eq(pre - shift)
            m.d.comb += products[u].eq(Mux(s2["zeros"][u], 0, product))
        return _stage(m, advance, s1_valid, {"products": products, "rights": rights,
                                             **self._side(s2)}, "s2")

    def _shifts(self):
        """``(shift, pre)``: the output's left shift of a product before the block exponent,
        and the constant left shift that leaves only right shifts to do."""
        p = self.params
        if p.scaled:
            shift = p.out_frac - p.in_frac - LEVEL_FRAC     # plus the block exponent
            emax = p.in_width - MANT_BITS
        else:
            shift = p.out_frac - (p.pass8_frac if p.codebook == "pass8" else p.in_frac)
            emax = 0
        return shift, max(0, shift + emax)

    def _rounding(self, m, advance, s2_valid, s2):
        """Stage 3: shift by the block exponent keeping one bit below the output LSB, then
        round half up (add half an output LSB, drop it)."""
        P = self.params.dq_lanes
        _, pre = self._shifts()
        width = len(s2["products"][0]) + pre + 1
        rounded = Signal(data.ArrayLayout(unsigned(width) if self._nonnegative
                                          else signed(width + 1), P))
        for u in range(P):
            twice = (s2["products"][u] << (pre + 1)) >> s2["rights"][u]
            m.d.comb += rounded[u].eq((twice + 1) >> 1)
        return _stage(m, advance, s2_valid, {"rounded": rounded, **self._side(s2)}, "s3")

    def _output(self, m, advance, s3_valid, s3):
        """Stage 4, the output register: saturate each lane group into its lanes; with the
        beat's last group, the beat becomes valid."""
        p = self.params
        L, P, n = p.lanes, p.dq_lanes, p.beat_cycles
        lo, hi = -(1 << (p.out_width - 1)), (1 << (p.out_width - 1)) - 1
        out = self.o.payload
        with m.If(advance):
            m.d.sync += self.o.valid.eq(s3_valid & s3["last_group"])
        saturated = []
        for u in range(P):
            y = s3["rounded"][u]
            top = y[p.out_width - 1:]          # fits iff these bits are all equal
            if self._nonnegative:
                saturated.append(Mux(top == 0, y, hi))
            else:
                fits = (top == 0) | (top == (1 << len(top)) - 1)
                saturated.append(Mux(fits, y, Mux(y[-1], lo, hi)))
        with m.If(advance & s3_valid):
            if 1 < n and n * P == L:
                # each group enters the top lanes and the earlier ones move down: after the
                # last group, group j sits in its lanes. Only the top lanes' flip-flops are
                # loaded from the saturation (sharing its cells); the others from flip-flops,
                # instead of every lane from one shared saturation output.
                width = p.out_width
                flat = out.data.as_value()
                m.d.sync += flat.eq(Cat(flat[P * width:], *(v[:width] for v in saturated)))
            else:
                for j in range(n):
                    with m.If((s3["group"] == j) if n > 1 else 1):
                        m.d.sync += [out.data[self._lane(j, u)].eq(saturated[u])
                                     for u in range(P) if self._lane(j, u) < L]

    def _side_fields(self, m, when, regs):
        """The beat's position, error mark and meta word (its side units), from stage
        ``regs`` on ``when`` (:attr:`_side_early`)."""
        lay = self.layout
        last_beat = lay.beats - 1
        out = self.o.payload
        with m.If(when):
            m.d.sync += [
                out.side.eq(Mux(regs["error"], 0, regs["meta"])),
                out.beat.eq(regs["beat"]), out.first.eq(regs["beat"] == 0),
                out.last.eq(regs["beat"] == last_beat),
                out.error.eq(regs["error"]),
            ]


def from_config(config):
    """``fieldtune generate dequantizer`` (and ``bench hierarchy --block dequantizer``): the
    dequantizer of ``config.cache`` as the SoC builds it, as narrow as the MAC array's beat
    rate allows (:meth:`~.params.CacheParams.for_consumer` with its rows per beat)."""
    return Dequantizer(config.cache.for_consumer(Layout(config.mac).regions[0].rows))
