"""The quantizer: feature values in, codes and block scales out.

Numerics (the golden model :mod:`fieldtune.sim.golden.cache` states them in full): each
feature is saturated to signed ``Q(in_width-in_frac).in_frac`` (and clamped to zero for an
unsigned code book); a 4-bit code book scales each block by ``M * 2**E`` (6-bit mantissa rounded
up, 4-bit exponent) and picks the nearest integer level, ties to the upper code:
``code = #{k in 1..15 : floor(x * 2**7 / 2**E) >= T[k] * M}`` (``T`` the Q1.7 midpoints).

Serial datapath
    The quantizer runs once per record as features are written; training epochs only read the
    cache. So it is built for area, one adder at a time, with every intermediate in one block
    RAM (:func:`buffer_layout`):

    1. FILL: the block's values are written into the buffer as they arrive, one per cycle.
       PEAK: they are read back, one per cycle, for the largest magnitude ``a`` (so the
       producer's handshake and the magnitude comparison are separate paths at the UP5K's
       clock rates).
    2. SCALE: ``a`` is shifted right one bit per cycle while it has more than ``MANT_BITS``
       bits (``E`` counts the shifts, a sticky bit the ones shifted out); then
       ``M = a + sticky`` (a ceiling), renormalized when it reaches ``2**MANT_BITS``. The
       peak starts at 1, so an all-zero block gets the golden model's ``M = 1, E = 0``.
    3. BOUNDS: the 15 midpoints in the input's own scale,
       ``C[k] = ceil(T[k] * M * 2**E / 2**7)``, into the buffer. For an integer ``x``,
       ``floor(x * 2**7 / 2**E) >= T[k] * M`` iff ``x * 2**7 >= T[k] * M * 2**E`` iff
       ``x >= C[k]``: the same comparison, with the scaling done once per midpoint instead
       of once per value. Each ``C[k]`` by Horner's rule over the bits of ``M * 2**E``
       (``acc = 2 * acc + bit * T[k]``: ``MANT_BITS`` steps, then ``E`` doublings), then one
       step ``2 * acc + 255`` whose top bits are the ceiling, then a cycle to store them
       from the register (the adder does not reach the buffer's write data):
       ``MANT_BITS + E + 2`` cycles.
       ``C[k] < 2**(in_width-1)`` always (every ``T[k] < 2**7`` and ``M * 2**E <=
       2**(in_width-1)``); below the input range a midpoint is clamped to its lowest value,
       which every input passes just the same.
    4. Per value: read it, then a binary search over the (non-decreasing) ``C[k]``, one code
       bit per cycle from the top: ``code |= b`` if ``x >= C[code | b]``, for ``b = 8, 4, 2,
       1``; the midpoint of the next probe is read in the same cycle. The result is the
       number of midpoints ``x`` passes: exactly the golden model's count. Every value takes
       all four steps, so the comparison feeds the code and the buffer address, never the
       state machine.

    Registers are shared between phases where the phases allow: one ``value`` register is
    the running largest magnitude (PEAK), the shifter of SCALE and the value being coded
    (SEARCH), with one comparator for PEAK and SEARCH; the search's code is the output
    register itself.
"""

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Const, Array, Mux, Cat, signed, unsigned
from amaranth.lib import stream, data
from amaranth.lib.wiring import In, Out
from amaranth.lib.memory import Memory

from .params import ELEMENT_WIDTH
from .component import CacheComponent
from .codebooks import LEVEL_FRAC, thresholds, threshold_width
from .layout import CacheLayout, MANT_BITS, EXP_BITS


__all__ = ["Quantizer", "code_layout", "buffer_layout", "block_cycles", "SATURATION_BITS"]


#: Width of the saturating counter of saturated or clamped features.
SATURATION_BITS = 16
#: Midpoints per code book (codes 0..15), and the binary search's steps over them.
MIDPOINTS = 15
CODE_STEPS = 4
#: The phases of a 4-bit code book's quantizer (module documentation), one flip-flop each.
PHASES = ("FILL", "PEAK", "SCALE", "MULTIPLY", "DOUBLE", "STORE", "LOAD", "ALIGN", "SEARCH")


def code_layout(params):
    """Payload of the quantizer's output: one code with its block's scale.

    ``code`` (``code_bits``; two's complement for the pass-through code books), ``mant`` and
    ``exp`` (the block scale, zero for pass-through), ``first`` (first feature of its block)
    and ``last`` (last feature of its sample).
    """
    return data.StructLayout({
        "code": unsigned(params.code_bits),
        "mant": unsigned(MANT_BITS),
        "exp": unsigned(EXP_BITS),
        "first": 1,
        "last": 1,
    })


def buffer_layout(params):
    """``(shape, depth, bounds_base)`` of the quantizer's block buffer (4-bit code books):
    the values of the block being coded at ``0 .. max_block - 1``, the midpoints ``C[k]`` at
    ``bounds_base + k`` (``bounds_base``: a power of two, at least 16, so the address is ``k``
    with one more bit set), and the code book's midpoints ``T[k]`` (constants, the memory's
    initial value) at ``bounds_base + 16 + k``. One word holds a narrowed input, a ``C[k]``
    (same format: signed ``in_width`` bits) or a ``T[k]``.

    The memory is named ``buffer_norw`` (block RAM without collision logic, see
    ``boards/implement.py``): no cycle reads and writes one address. FILL only writes; the
    store step writes ``C[k]`` (at ``bounds_base + k``) while it reads ``T[k+1]`` (at
    ``bounds_base + 16 + k + 1``), two regions apart; every other state only reads."""
    lay = CacheLayout(params)
    base = max(32, 1 << (lay.max_block - 1).bit_length())
    return signed(max(params.in_width, threshold_width(params.codebook))), base + 32, base


def block_cycles(params, n):
    """Most cycles a block of ``n`` values takes from its first value accepted to its last
    code offered (4-bit code books; an always-ready consumer): fill, peak (``n + 1``), at
    most ``in_width - MANT_BITS + 2`` for the scale, ``MANT_BITS + E + 2`` per midpoint, then
    per value a read, a load and 4 search steps."""
    emax = params.in_width - MANT_BITS
    return 2 * n + 1 + emax + 2 + MIDPOINTS * (MANT_BITS + emax + 2) + n * (2 + CODE_STEPS)


class Quantizer(CacheComponent):
    """Quantize a stream of features, one sample after another, into codes.

    Parameters
    ----------
    params : CacheParams

    Attributes
    ----------
    i : In(stream.Signature(signed(16)))
        Raw features in sample order (tap 0 first); samples follow each other with no marker,
        the quantizer counts ``features`` per sample.
    o : Out(stream.Signature(code_layout(params)))
        One code per feature, in the same order.
    saturations : Out(16)
        Features saturated to ``in_width`` or clamped to zero (unsigned code books) or
        saturated to 8 bits (``pass8``); saturates at 65535.
    clear : In(1)
        Zeroes ``saturations``.
    last_in : Out(1)
        The next value ``i`` takes is the last of its sample (so a writer needs no feature
        counter of its own).
    pad : In(1)
        The values taken are fillers (the rest of a dropped record): not counted in
        ``saturations``.

    Timing
    ------
    Pass-through code books: one cycle from ``i`` to ``o``, one value per cycle. 4-bit code
    books (see the module documentation): ``i.ready`` is high, and one value is taken per
    cycle, only while a block fills; then the block is coded, its codes offered one at a time
    within :func:`block_cycles`, and ``i.ready`` rises again once the block's last code has
    been offered. A code stays on ``o.payload`` for the cycle after its transfer (a writer
    may decide its write a cycle ahead). ``o.payload.mant``/``exp`` are the current block's
    scale: the next block's scale is computed only once ``o`` is empty. Back-pressure on
    ``o`` stalls the search; nothing is lost.
    """

    def __init__(self, params):
        super().__init__(params, lambda p: {
            "i": In(stream.Signature(signed(ELEMENT_WIDTH))),
            "o": Out(stream.Signature(code_layout(p))),
            "saturations": Out(SATURATION_BITS),
            "clear": In(1),
            "last_in": Out(1),
            "pad": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # Input narrowing, shared by every code book.
        raw = self.i.payload
        lo, hi = -(1 << (p.in_width - 1)), (1 << (p.in_width - 1)) - 1
        x = Signal(signed(p.in_width))
        saturated = Signal()
        with m.If(raw > hi):
            m.d.comb += [x.eq(hi), saturated.eq(1)]
        with m.Elif(raw < (0 if p.unsigned else lo)):
            m.d.comb += [x.eq(0 if p.unsigned else lo), saturated.eq(1)]
        with m.Else():
            m.d.comb += x.eq(raw)

        count = Signal(SATURATION_BITS)
        bump = Signal()
        # the increment's carry out says the count is full: the adder's carry chain, no
        # comparator
        incremented = Signal(SATURATION_BITS + 1)
        m.d.comb += incremented.eq(count + 1)
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(bump & ~incremented[-1]):
            m.d.sync += count.eq(incremented)
        m.d.comb += self.saturations.eq(count)

        if p.scaled:
            self._elaborate_scaled(m, x, saturated, bump)
        else:
            self._elaborate_pass(m, x, saturated, bump)
        return m

    # -- pass-through -----------------------------------------------------------------------

    def _elaborate_pass(self, m, x, saturated, bump):
        p = self.params
        code = Signal(signed(p.code_bits))
        sat8 = Signal()
        if p.codebook == "pass8":
            shift = p.pass8_frac - p.in_frac
            wide = Signal(signed(p.in_width + max(shift, 0) + 1))
            if shift >= 0:
                m.d.comb += wide.eq(x << shift)
            else:
                m.d.comb += wide.eq((x + (1 << (-shift - 1))) >> -shift)
            with m.If(wide > 127):
                m.d.comb += [code.eq(127), sat8.eq(1)]
            with m.Elif(wide < -128):
                m.d.comb += [code.eq(-128), sat8.eq(1)]
            with m.Else():
                m.d.comb += code.eq(wide)
        else:
            m.d.comb += code.eq(x)

        feature = Signal(range(p.features))
        accept = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(~self.o.valid | self.o.ready),
                     bump.eq(accept & (saturated | sat8) & ~self.pad),
                     self.last_in.eq(feature == p.features - 1)]
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(accept):
            m.d.sync += [self.o.payload.code.eq(code),
                         self.o.payload.last.eq(feature == p.features - 1),
                         self.o.payload.first.eq(0),
                         feature.eq(Mux(feature == p.features - 1, 0, feature + 1))]

    # -- 4-bit code books -------------------------------------------------------------------

    def _elaborate_scaled(self, m, x, saturated, bump):
        p, lay = self.params, self.layout
        shape, depth, base = buffer_layout(p)
        levels = base + 16
        tvals = thresholds(p.codebook)
        m.submodules.buffer_norw = buffer = Memory(
            shape=shape, depth=depth, init=[0] * levels + list(tvals[1:]))
        wr = buffer.write_port()
        rd = buffer.read_port(transparent_for=())
        out = self.o.payload
        # one flip-flop per phase, so that every select of the datapath is one bit
        phase = Signal(len(PHASES), init=1)
        at = SimpleNamespace(**{name: phase[i] for i, name in enumerate(PHASES)})

        def goto(name):
            m.d.sync += phase.eq(1 << PHASES.index(name))

        nblocks = len(lay.blocks)
        block = Signal(range(nblocks))
        # value within the block (filled, coded); midpoint index (BOUNDS)
        pos = Signal(range(base))
        at_end, last_block = Signal(), Signal()     # pos is the block's last value
        ends = {n - 1 for _, n in lay.blocks}
        end = Array(Const(n - 1, range(base)) for _, n in lay.blocks)[block] \
            if len(ends) > 1 else ends.pop()
        sticky = Signal()
        mant = Signal(MANT_BITS)
        exp = Signal(EXP_BITS)
        # counts down: the mantissa bit of a Horner step (MULTIPLY), the doublings left
        # (DOUBLE), the code bit probed (SEARCH)
        steps = Signal(range(max(MANT_BITS, 1 << EXP_BITS, CODE_STEPS)))
        # datapath registers set before use: no domain reset, which leaves the flip-flops'
        # reset pin to the functional clear (an AND per bit otherwise). `value` is the
        # running largest magnitude (PEAK), is shifted down to the mantissa (SCALE), then
        # holds the value being coded (SEARCH): one register, one comparator.
        # |2 * T * M * 2**E + 255| < 2**(tw + in_width - 1): |T| < 2**(tw-1), M * 2**E <=
        # 2**(in_width-1)
        acc = Signal(signed(threshold_width(p.codebook) + p.in_width), reset_less=True)
        value = Signal(signed(p.in_width + (not p.unsigned)), reset_less=True)
        # `o` empty: a code offered stays on `o.payload` for the cycle after its transfer
        free, accept, peaking = Signal(), Signal(), Signal()
        m.d.comb += [at_end.eq(pos == end), last_block.eq(block == nblocks - 1),
                     self.last_in.eq(last_block & at_end), free.eq(~self.o.valid),
                     out.mant.eq(mant), out.exp.eq(exp),
                     # `i.ready` is the FILL flip-flop; it also selects what is written: a
                     # value at `pos` (FILL), else C[pos] at base + pos (STORE)
                     self.i.ready.eq(at.FILL), accept.eq(self.i.valid & at.FILL),
                     bump.eq(accept & saturated & ~self.pad), wr.en.eq(accept | at.STORE),
                     wr.addr.eq(Cat(pos, ~at.FILL)),
                     # reads only where a phase asks: the port holds T[pos] (MULTIPLY, DOUBLE)
                     # and the value loaded (ALIGN, while `o` is full)
                     rd.en.eq(at.PEAK | at.SCALE | at.STORE | at.LOAD | (at.ALIGN & free)
                              | at.SEARCH)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # Horner's rule for C[pos] = ceil(T[pos] * M * 2**E / 2**7): T[pos] on the read port
        assert max(tvals[1:]) < 1 << (LEVEL_FRAC + 1)       # so every C[k] < 2**(in_width-1)
        midpoint = rd.data[:threshold_width(p.codebook)].as_signed()
        ceiling_step = at.DOUBLE & (steps == 0)     # 2V + 255: >> 8 is ceil(V / 2**7)
        addend = Mux(at.MULTIPLY & mant.bit_select(steps, 1), midpoint, 0) \
            | Mux(ceiling_step, (1 << (LEVEL_FRAC + 2)) - 1, 0)
        lowest = -(1 << (p.in_width - 1))
        ceiling = acc[LEVEL_FRAC + 2:].as_signed()
        bound = Mux(ceiling < lowest, lowest, ceiling) if min(tvals[1:]) < -(1 << 7) \
            else ceiling
        m.d.comb += wr.data.eq(Mux(at.FILL, x, bound))

        # PEAK: a value read back is on `rd.data` the next cycle, then folded into `value`;
        # SEARCH: `value` against the midpoint read. The same comparison serves both.
        stored = rd.data[:p.in_width].as_signed()
        operand = stored
        if not p.unsigned:                          # magnitudes, up to 2**(in_width-1)
            operand = Mux(peaking & (stored < 0), -stored, stored)
        at_least = Signal()
        m.d.comb += at_least.eq(value >= operand)
        # SCALE: `value` shifted down to MANT_BITS bits (E counts, a sticky bit keeps what
        # falls out), once the previous block's codes are taken and the last value folded
        scaling = at.SCALE & ~self.o.valid & ~peaking
        shift = Signal()
        m.d.comb += shift.eq(scaling & value[MANT_BITS:].any())
        scaled = scaling & ~shift
        # the code so far: bit `steps` and those below it are still to be decided
        probe_bit = Signal(CODE_STEPS)
        m.d.comb += probe_bit.eq(Const(1, CODE_STEPS) << steps)
        found = Mux(at_least, out.code | probe_bit, out.code)
        coded = at.SEARCH & (steps == 0)
        # the read address: values at `pos` (PEAK, LOAD); the code book's T[pos+1] (SCALE
        # with pos = 0, STORE); C[8] (ALIGN), then C[probe] (SEARCH)
        low = Mux(at.ALIGN | at.SEARCH, Mux(at.SEARCH, found | (probe_bit >> 1), 8), pos[:4])
        m.d.comb += rd.addr.eq(Mux(at.PEAK | at.LOAD, pos,
                                   base | Cat(low, at.SCALE | at.STORE)))

        m.d.sync += peaking.eq(at.PEAK)
        with m.If(accept & at_end):                 # the peak starts at 1: an all-zero
            m.d.sync += value.eq(1)                 # block's scale is M = 1, E = 0
        with m.Elif((peaking & ~at_least) | (at.ALIGN & free) | shift):
            m.d.sync += value.eq(Mux(at.SCALE & ~peaking, value >> 1, operand))
        with m.If(scaled | at.STORE):
            m.d.sync += acc.eq(0)
        with m.Elif(at.MULTIPLY | at.DOUBLE):
            m.d.sync += acc.eq((acc << 1) + addend)
        # pos: the values in FILL, PEAK and SEARCH, the midpoints from SCALE to STORE
        with m.If(accept | at.PEAK | scaled | at.STORE | coded):
            m.d.sync += pos.eq(pos + 1)
            with m.If(((accept | at.PEAK | coded) & at_end) | (at.STORE & (pos == MIDPOINTS))):
                m.d.sync += pos.eq(0)
        with m.If(at.PEAK & at_end):
            m.d.sync += [exp.eq(0), sticky.eq(0)]
        with m.If(shift):
            m.d.sync += [sticky.eq(sticky | value[0]), exp.eq(exp + 1)]
        with m.If(scaled):                          # M = ceil(a / 2**E), renormalized
            rounded = value[:MANT_BITS + 1] + sticky
            with m.If(rounded[MANT_BITS]):
                m.d.sync += [mant.eq(1 << (MANT_BITS - 1)), exp.eq(exp + 1)]
            with m.Else():
                m.d.sync += mant.eq(rounded)
        with m.If(at.MULTIPLY | at.DOUBLE | at.SEARCH):
            m.d.sync += steps.eq(steps - 1)
        with m.If(at.MULTIPLY & (steps == 0)):
            m.d.sync += steps.eq(exp)
        with m.If(scaled | at.STORE):
            m.d.sync += steps.eq(MANT_BITS - 1)
        with m.If(at.ALIGN & free):
            m.d.sync += [out.code.eq(0), steps.eq(CODE_STEPS - 1)]
        with m.If(at.SEARCH):
            m.d.sync += out.code.eq(found)
        with m.If(coded):
            m.d.sync += [self.o.valid.eq(1), out.first.eq(pos == 0), out.last.eq(self.last_in)]
            with m.If(at_end):
                m.d.sync += block.eq(Mux(last_block, 0, block + 1))
        self._phases(m, at, goto, accept, at_end, scaled, steps, pos, free, coded)

    @staticmethod
    def _phases(m, at, goto, accept, at_end, scaled, steps, pos, free, coded):
        """The phase sequence (module documentation): per block FILL, PEAK, SCALE, then per
        midpoint MULTIPLY, DOUBLE, STORE, then per value LOAD, ALIGN, SEARCH."""
        with m.If(accept & at_end):
            goto("PEAK")
        with m.If(at.PEAK & at_end):
            goto("SCALE")
        with m.If(scaled | (at.STORE & (pos != MIDPOINTS))):
            goto("MULTIPLY")
        with m.If(at.MULTIPLY & (steps == 0)):
            goto("DOUBLE")
        with m.If(at.DOUBLE & (steps == 0)):
            goto("STORE")
        with m.If((at.STORE & (pos == MIDPOINTS)) | (coded & ~at_end)):
            goto("LOAD")
        with m.If(at.LOAD):
            goto("ALIGN")
        with m.If(at.ALIGN & free):
            goto("SEARCH")
        with m.If(coded & at_end):
            goto("FILL")

def from_config(config):
    """``fieldtune generate quantizer``: the quantizer of ``config.cache``."""
    return Quantizer(config.cache)
