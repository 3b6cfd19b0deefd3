"""PeZO reuse pool: ``pool_size`` values generated once per seed into block RAM, read back
``lanes`` at a time with a per-step offset and stride.

The pool is ``pool_rows = pool_size / lanes`` rows of one value per lane (one wide memory, so
one address serves every lane: no crossbar). Filling writes value ``j`` of the fill source to
row ``j // lanes``, lane ``j % lanes`` (``pool_size`` cycles). Weight ``i`` of a step with row
offset ``R`` and odd row stride ``s`` reads::

    pool[((i // lanes) * s + R) mod pool_rows][i mod lanes]

the banked form of ``pool[(i * s + o) mod pool_size]``: the stride applies to whole rows so a
beat's lanes stay in one row. ``R`` and ``s`` are the pool's share of the per-step state chain
(``Cat(R, s)``, ``s`` forced odd so a pass visits every row before repeating one).

Adaptive scaling keeps the static-scaled values, with guard bits, in a narrow memory (one value
per address) with, per row, the sum of squares of its output codes and of its first
``last_lanes`` codes (a step's energy is then a sum over the rows it visits, one per cycle,
without squarers). Once the step's correction ``d`` is known, :attr:`rescale` rewrites the wide
memory with ``sat(round(x * (2**adapt_shift + d), adapt_shift + guard))`` for every value, one
per cycle through one shared corrector, so the lanes read corrected values with no per-lane
arithmetic.
"""

from amaranth.hdl import Module, Signal, Cat, Const, Mux, unsigned, signed
from amaranth.lib import wiring, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adaptive import Corrector
from .numerics import value_width, magnitude_width, ADAPT_GUARD_BITS
from .arith import round_half_away, square as squared


__all__ = ["ReusePool"]


class ReusePool(wiring.Component):
    """Pool memory, row sequencer and (adaptive) row energies and rescaler.

    Parameters
    ----------
    params : :class:`~fieldtune.rtl.perturb.params.PerturbParams` with ``reuse == "pool"``.

    Ports
    -----
    fill_start : In(1)
        Restart filling at value 0.
    fill_valid : In(1)
        Write the next value (at most one per cycle).
    fill_stored : In(unsigned(magnitude_width))
        Without adaptive scaling: the value as stored, its magnitude complemented (``~|v|``).
    fill_value : In(signed(value_width))
        With adaptive scaling: the guarded value (``ADAPT_GUARD_BITS`` more fraction bits,
        see :mod:`.adaptive`), rescaled into the pool once the step's correction is known.
    filled : Out(1)
        All ``pool_size`` values written since ``fill_start``.
    beat : Out(range(max(pool_size, beats) + 1))
        The fill's counter, which counts the step's beats while emitting: ``advance`` edges
        since the last ``load`` (the engine's beat count; it has no counter of its own).
    load, load_state : In(1), In(2 * log2(pool_rows))
        Per-step offsets ``Cat(R, s)`` from the state chain; loading also moves the read row
        to ``R`` (and clears ``beat``).
    state : Out(2 * log2(pool_rows))
    en : In(1)
        Read enable: on an enabled edge, ``values`` (and the energies) take row ``row``.
    advance : In(1)
        Move the read row by the stride (``row <= row + s``) and count a beat at the next
        edge (never while filling).
    values : Out(ArrayLayout(unsigned(magnitude_width), lanes))
        The row read at the last enabled edge (one cycle of latency; held while ``en`` is
        low): magnitudes ``|z|`` (:func:`~.numerics.magnitude_width` bits: 6 at the default
        Q3.5, so a row of 8 lanes is 48 bits, three 16-bit block RAMs instead of four),
        stored complemented (``~|z|``: the lane stage's sign flip then costs one LUT per bit,
        see :class:`~.engine.PerturbationEngine`). The lane stage gives each weight a fresh
        random sign, so storing ``|z|`` instead of ``z`` changes no distribution.
    energy, energy_partial : Out(unsigned(energy_width))
        Adaptive only: that row's sum of squared output codes (the guarded values rounded to
        the output format) over all lanes and over the lanes below ``last_lanes``.
    rescale : In(1)
        Adaptive only: start rewriting the wide memory with the correction applied
        (``rescaled`` rises ``pool_size + 5`` edges after it).
    magnitude, negative : In(adapt_bits), In(1)
        The correction ``d`` as ``|d|`` and ``d < 0``; must not change while rescaling.
    rescaled : Out(1)
        The last rescale has finished.
    """

    def __init__(self, params):
        if params.reuse != "pool":
            raise ValueError(f"ReusePool needs perturb.reuse 'pool', not {params.reuse!r}")
        self.params = params
        self.row_bits = params.pool_rows.bit_length() - 1
        w, lanes = params.width, params.lanes
        self.value_width = value_width(params)
        self.magnitude_width = magnitude_width(params)
        self.energy_width = 2 * (w - 1) + lanes.bit_length()
        super().__init__({
            "fill_start": In(1), "fill_valid": In(1), "fill_value": In(signed(self.value_width)),
            "fill_stored": In(self.magnitude_width),
            "filled": Out(1), "beat": Out(range(max(params.pool_size, params.beats) + 1)),
            "load": In(1), "load_state": In(2 * self.row_bits), "state": Out(2 * self.row_bits),
            "en": In(1), "advance": In(1),
            "values": Out(data.ArrayLayout(unsigned(self.magnitude_width), lanes)),
            "energy": Out(unsigned(self.energy_width)),
            "energy_partial": Out(unsigned(self.energy_width)),
            "rescale": In(1), "magnitude": In(params.adapt_bits), "negative": In(1),
            "rescaled": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        lanes, rows, rb = p.lanes, p.pool_rows, self.row_bits

        # "_norw": reads (emitting) and writes (filling, rescaling) never share a cycle, so the
        # synthesis flow leaves collisions undefined (boards/implement.py, read_fixups).
        m.submodules.values_norw = memory = Memory(
            shape=data.ArrayLayout(unsigned(self.magnitude_width), lanes), depth=rows, init=[],
            attrs={"ram_style": "block"})
        write = memory.write_port(granularity=1)
        read = memory.read_port(domain="sync")

        # Filling: value `index` goes to row index // lanes, lane index % lanes. Emitting,
        # the same counter counts the step's beats (`beat`): reset by `load`, one per
        # `advance`; `filled` is a flag of its own.
        index = Signal(range(max(p.pool_size, p.beats) + 1))
        filled = Signal()
        m.d.comb += [self.filled.eq(filled), self.beat.eq(index)]
        filling = self.fill_valid & ~filled
        with m.If(self.fill_start | self.load):
            m.d.sync += index.eq(0)
        with m.Elif(filling | self.advance):
            m.d.sync += index.eq(index + 1)
        with m.If(self.fill_start):
            m.d.sync += filled.eq(0)
        with m.Elif(filling & (index == p.pool_size - 1)):
            m.d.sync += filled.eq(1)

        # Per-step offsets and the read row: the row starts at R, so the chain reads R back
        # from it while loading (no copy of R; the pool is the chain's last member, whose
        # bits leave the chain after it).
        stride, current = Signal(rb), Signal(rb)
        m.d.comb += self.state.eq(Cat(current, stride))
        with m.If(self.load):
            m.d.sync += [stride.eq(self.load_state[rb:] | 1), current.eq(self.load_state[:rb])]
        with m.Elif(self.advance):
            m.d.sync += current.eq(current + stride)
        m.d.comb += [read.addr.eq(current), read.en.eq(self.en), self.values.eq(read.data)]

        stored = Signal(self.magnitude_width)
        if p.adaptive:
            target, value, strobe = self._adaptive(m, index, filling, current)
            # Magnitudes are stored complemented (see `values`): ~|v| is v - 1 for v < 0.
            m.d.comb += stored.eq(Mux(value[-1], value - 1, ~value))
        else:
            target, strobe = index, filling
            m.d.comb += stored.eq(self.fill_stored)
        lane_bits = lanes.bit_length() - 1
        lane = target[:lane_bits] if lane_bits else Const(0, 1)
        m.d.comb += [write.addr.eq(target[lane_bits:lane_bits + rb]),
                     write.en.eq(Mux(strobe, 1 << lane, 0))]
        for i in range(lanes):
            m.d.comb += write.data[i].eq(stored)
        return m

    def _adaptive(self, m, index, filling, current):
        """Narrow copy, row energies and the rescaler; returns what to write to the wide
        memory (address index, value, strobe)."""
        p = self.params
        lane_bits = p.lanes.bit_length() - 1
        lane = index[:lane_bits] if lane_bits else Const(0, 1)
        row = index[lane_bits:]

        m.submodules.narrow = narrow = Memory(shape=signed(self.value_width), depth=p.pool_size,
                                              init=[], attrs={"ram_style": "block"})
        narrow_write = narrow.write_port()
        narrow_read = narrow.read_port(domain="sync")
        m.d.comb += [narrow_write.addr.eq(index), narrow_write.data.eq(self.fill_value),
                     narrow_write.en.eq(filling)]

        # Row energies while filling, of the values rounded to output codes.
        ew = self.energy_width
        code = round_half_away(self.fill_value, ADAPT_GUARD_BITS)
        square = Signal(2 * (p.width - 1))
        m.d.comb += square.eq(squared(code))          # shifts and adds: no SB_MAC16
        full_sum, part_sum = Signal(ew), Signal(ew)
        full_next = full_sum + square
        part_next = part_sum + Mux(lane < p.last_lanes, square, 0)
        row_done = lane == p.lanes - 1
        tables = {"energy": full_next}
        if p.last_lanes < p.lanes:
            tables["energy_partial"] = part_next
        for name, value in tables.items():
            table = Memory(shape=unsigned(ew), depth=p.pool_rows, init=[])
            m.submodules[name] = table
            wr = table.write_port()
            rd = table.read_port(domain="sync")
            m.d.comb += [
                wr.addr.eq(row), wr.data.eq(value), wr.en.eq(filling & row_done),
                rd.addr.eq(current), rd.en.eq(self.en), getattr(self, name).eq(rd.data),
            ]
        if p.last_lanes == p.lanes:
            m.d.comb += self.energy_partial.eq(self.energy)
        with m.If(filling):
            m.d.sync += [full_sum.eq(Mux(row_done, 0, full_next)),
                         part_sum.eq(Mux(row_done, 0, part_next))]
        with m.If(self.fill_start):
            m.d.sync += [full_sum.eq(0), part_sum.eq(0)]

        # Rescaling: read value j, correct it (three registers), write it to the wide memory.
        m.submodules.corrector = corrector = Corrector(p)
        reading = Signal(range(p.pool_size + 1), init=p.pool_size)
        running = reading != p.pool_size
        # In flight: [read by the memory, in the corrector's three stages].
        flight = Signal(1 + Corrector.depth)
        target = Signal(range(p.pool_size + 1))
        strobe = flight[-1]
        with m.If(self.rescale):
            m.d.sync += [reading.eq(0), target.eq(0), flight.eq(0)]
        with m.Else():
            with m.If(running):
                m.d.sync += reading.eq(reading + 1)
            m.d.sync += flight.eq(Cat(running, flight[:-1]))
        m.d.comb += [
            narrow_read.addr.eq(reading), narrow_read.en.eq(1),
            corrector.value.eq(narrow_read.data), corrector.en.eq(1),
            corrector.magnitude.eq(self.magnitude), corrector.negative.eq(self.negative),
        ]
        result = corrector.corrected
        with m.If(strobe):
            m.d.sync += target.eq(target + 1)
        m.d.comb += self.rescaled.eq(~running & (flight == 0) & ~self.rescale)
        return target, result, strobe
