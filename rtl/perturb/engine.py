"""The perturbation engine: the z vector of any ``(seed, step)``, replayable, L lanes a cycle.

:class:`PerturbationEngine` composes the cores of this package according to its
:class:`~fieldtune.rtl.perturb.params.PerturbParams`:

* a seed expander (:class:`~.xoshiro.Xoshiro128pp` keyed by ``(seed, step)``) that loads every
  per-step state (draw sources, sign source, pool offsets) through one shift chain, 32 bits a
  cycle, so a step's vector is a pure function of ``(seed, step)``: replay is a new request;
* draw lanes (a :class:`~.source.UniformSource` and a shaper each: :class:`~.uniform.
  UniformShaper`, :class:`~.clt.CltShaper`, :class:`~.icdf.IcdfShaper`), ``lanes`` of them
  without reuse, ``lanes / reuse_factor`` on the fly, or one filling a
  :class:`~.pool.ReusePool`;
* a lane stage: a fresh random sign per weight (both reuse modes), the adaptive correction
  (:mod:`.adaptive`), zero padding of the last beat, and the output register.

The golden model is :func:`fieldtune.sim.golden.perturb.vectors`; ``docs/architecture.md``
("Perturbation engine") has the timing diagram and ``docs/numerics.md`` the formulas.
"""

from amaranth.hdl import Module, Signal, Cat, Const, Mux, signed, unsigned
from amaranth.lib import wiring, data, stream
from amaranth.lib.wiring import In, Out

from .adaptive import ScaleSolver, correction_product, corrected
from .arith import square, const_mul
from .clt import CltShaper, adder_tree
from .icdf import IcdfShaper
from .numerics import (WORD, EXPANDER_KEY, EXPANDER_WARMUP, DOMAIN_STEP, DOMAIN_POOL,
                       draw_bits, source_layout, value_width)
from .params import PerturbParams
from .pool import ReusePool
from .source import UniformSource
from .uniform import UniformShaper
from .xoshiro import Xoshiro128pp


__all__ = ["PerturbationEngine", "Request", "beat_layout", "from_config"]


#: A request: the vector of step ``step`` under seed ``seed`` (both 32-bit).
Request = data.StructLayout({"seed": unsigned(32), "step": unsigned(32)})


def beat_layout(params):
    """Payload of the z stream: ``data`` (``lanes`` signed ``Q(width-frac_bits).frac_bits``
    codes) and ``last`` (the final beat of a vector)."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(params.width), params.lanes),
        "last": unsigned(1),
    })


def shaper_class(params):
    """The shaper class for ``params.shape``."""
    if params.shape == "uniform":
        return UniformShaper
    if params.shape in ("clt4", "clt12"):
        return CltShaper
    return IcdfShaper


def make_shaper(params):
    """A shaper for ``params.shape``."""
    return shaper_class(params)(params)


class PerturbationEngine(wiring.Component):
    """Streams the perturbation vector of a requested ``(seed, step)``.

    Parameters
    ----------
    params : :class:`~fieldtune.rtl.perturb.params.PerturbParams`

    Ports
    -----
    request : In(stream.Signature(Request))
        ``{seed, step}``; accepted (``ready`` high) only while the engine is idle. Any 32-bit
        seed works at run time (the expander key has non-zero constants).
    z : Out(stream.Signature(beat_layout(params)))
        ``beats = ceil(dimension / lanes)`` beats per request; beat ``b`` lane ``l`` carries
        element ``i = b * lanes + l`` as a signed ``Q(width-frac_bits).frac_bits`` code;
        lanes with ``i >= dimension`` (only in the last beat) are zero; ``last`` marks the
        final beat. One beat per cycle while ``ready`` is high; when ``ready`` drops the
        beat is held (the whole pipeline stalls) and nothing is lost or repeated.
    busy : Out(1)
        A request is being served (from acceptance to the transfer of the last beat).
    seeded : Out(1)
        Pool mode: the pool holds the values of the last request's seed (other modes have
        nothing to seed: always high).
    clamped : Out(1)
        Adaptive scaling: the current step's correction hit its limit (norm not reached).

    Timing, in clock edges from the edge that accepts a request to the edge that transfers
    the first beat with ``z.ready`` high (:meth:`latency`; W = 9: eight expander warm-up steps
    and one for the register its words pass through; C = :attr:`chain_words`):

    * always: ``1 + W + C + output_depth + 1`` (key the expander, warm it up, load the
      per-step state 32 bits a cycle, fill the pipeline);
    * pool mode, when the pool does not hold the request's seed: first a fill,
      ``1 + W + fill_words + pool_size + fill_depth + 1``;
    * adaptive scaling, the first request of a ``(seed, step)``: first a measuring pass,
      ``1 + W + C + beats + measure_depth + 5``, and in pool mode the rescaling of the pool,
      ``pool_size + 5``; the correction is cached, so replays of the same step skip both.

    Then the beats follow back to back while ``ready`` is high; the ``busy`` output falls on
    the edge that transfers the last beat.
    """

    def __init__(self, params):
        if not isinstance(params, PerturbParams):
            raise TypeError(f"params must be a PerturbParams, not {type(params).__name__}")
        self.params = params
        p = params
        self.draw_layout = source_layout(p.source, draw_bits(p))
        self.sign_layout = source_layout(p.source, p.lanes) if p.signed_reuse else None
        self.shaper_depth = shaper_class(p).depth_of(p)
        #: Register stages from an issued beat to the lane values (pool read; or raw bits,
        #: shaper and, with adaptive scaling, the per-draw corrector).
        self.value_depth = 1 if p.reuse == "pool" else \
            1 + self.shaper_depth + (2 if p.adaptive else 0)
        #: Register stages from an issued beat to the output register.
        self.output_depth = self.value_depth + 1
        #: Stages from an issued beat to the edge that adds its energy (adaptive only).
        self.measure_depth = 2 if p.reuse == "pool" else 3 + self.shaper_depth
        chain = []
        if p.reuse != "pool":
            chain.append(p.draws * self.draw_layout.state_bits)
        if p.signed_reuse:
            chain.append(self.sign_layout.state_bits)
        if p.reuse == "pool":
            chain.append(2 * (p.pool_rows.bit_length() - 1))
        self.chain_bits = sum(chain)
        self.chain_words = -(-self.chain_bits // WORD)
        self.fill_words = -(-self.draw_layout.state_bits // WORD)
        self.fill_depth = 1 + self.shaper_depth
        super().__init__({
            "request": In(stream.Signature(Request)),
            "z": Out(stream.Signature(beat_layout(p))),
            "busy": Out(1), "seeded": Out(1), "clamped": Out(1),
        })

    def latency(self, *, fill=False, measure=False):
        """Clock edges from the edge that accepts a request to the edge that transfers its
        first beat (``z.ready`` held high); see the class documentation."""
        p = self.params
        w = EXPANDER_WARMUP + 1
        cycles = 1 + w + self.chain_words + self.output_depth + 1
        if fill:
            cycles += 1 + w + self.fill_words + p.pool_size + self.fill_depth + 1
        if measure:
            cycles += 1 + w + self.chain_words + p.beats + self.measure_depth + 5
            if p.reuse == "pool":
                cycles += p.pool_size + 5
        return cycles

    def elaborate(self, platform):
        m = Module()
        p = self.params
        lanes, beats = p.lanes, p.beats

        # -- request, caches, status ------------------------------------------------------
        seed, step = Signal(32), Signal(32)
        m.d.comb += self.busy.eq(~self.request.ready)

        m.submodules.expander = expander = Xoshiro128pp()
        # The expander's words pass through a register (its ++ output has two 32-bit adders),
        # so warming up takes one more step and `word` lags the generator by one.
        word = Signal(WORD)
        with m.If(expander.advance):
            m.d.sync += word.eq(expander.output)
        count = Signal(range(max(EXPANDER_WARMUP, self.chain_words, self.fill_words,
                                 p.pool_size if p.reuse == "pool" else 1) + 1))

        # -- the per-step state chain -----------------------------------------------------
        members = []
        draws = []
        if p.reuse != "pool":
            for g in range(p.draws):
                source = UniformSource(self.draw_layout)
                m.submodules[f"draw{g}"] = source
                draws.append(source)
                members.append(source)
        if p.signed_reuse:
            m.submodules.signs = signs = UniformSource(self.sign_layout)
            members.append(signs)
        if p.reuse == "pool":
            m.submodules.pool = pool = ReusePool(p)
            members.append(pool)
        chain = Cat(*(member.state for member in members))
        shifted = Cat(word, chain)[:len(chain)]
        load = Signal()                 # shift one expander word into the chain
        seal = Signal()                 # the last load cycle
        offset = 0
        for member in members:
            width = len(member.state)
            m.d.comb += [member.load.eq(load), member.load_state.eq(shifted[offset:offset + width])]
            if isinstance(member, UniformSource):
                m.d.comb += member.seal.eq(seal)
            offset += width

        # -- the beat pipeline: valid/last per stage, one global enable --------------------
        depth = self.output_depth
        valid = [Signal(name=f"valid{i}") for i in range(depth + 1)]
        last = [Signal(name=f"last{i}") for i in range(depth + 1)]
        en = Signal()
        emitting, measuring = Signal(), Signal()
        flush = Signal()
        issued = Signal(range(beats + 1))
        issue = Signal()
        m.d.comb += [
            issue.eq((emitting | measuring) & en & (issued != beats)),
            valid[0].eq(issue),
            last[0].eq(issued == beats - 1),
        ]
        with m.If(flush):
            m.d.sync += [v.eq(0) for v in valid[1:]] + [issued.eq(0)]
        with m.Elif(en):
            m.d.sync += [valid[i].eq(valid[i - 1]) for i in range(1, depth + 1)]
            m.d.sync += [last[i].eq(last[i - 1]) for i in range(1, depth + 1)]
            with m.If(issue):
                m.d.sync += issued.eq(issued + 1)

        vd = self.value_depth
        solver = None
        if p.adaptive:
            # The solver sees the step's total: up to `beats` beat energies.
            m.submodules.solver = solver = ScaleSolver(
                p, self._energy_width() + p.beats.bit_length())
            m.d.comb += self.clamped.eq(solver.clamped)
        lane_values, energy = self._values(m, p, draws, members, en, issue, flush, valid,
                                           last, solver)

        # -- lane stage: a fresh sign per weight, padding, the output register -------------
        signed_values = lane_values
        if p.signed_reuse:
            if self.sign_layout.kind == "xoshiro128pp":
                # Take the bits one stage early into a register: the ++ output's adders
                # then do not lengthen the lane stage.
                negate = Signal(lanes)
                m.d.comb += signs.advance.eq(emitting & en & valid[vd - 1])
                with m.If(signs.advance):
                    m.d.sync += negate.eq(signs.bits)
            else:
                negate = signs.bits
                m.d.comb += signs.advance.eq(emitting & en & valid[vd])
            signed_values = [Mux(negate[l], -v, v) for l, v in enumerate(lane_values)]
        out = Signal(data.ArrayLayout(signed(p.width), lanes))
        with m.If(en):
            for l, v in enumerate(signed_values):
                # Lanes past the dimension exist only in the last beat: zero them there.
                m.d.sync += out[l].eq(Mux(last[vd], 0, v) if l >= p.last_lanes else v)
        m.d.comb += [
            self.z.payload.data.eq(out),
            self.z.payload.last.eq(last[depth]),
            self.z.valid.eq(valid[depth] & emitting),
        ]

        # -- control ----------------------------------------------------------------------
        def key(domain, key_word):
            return Cat(seed, key_word, Const(EXPANDER_KEY[0] ^ domain, 32),
                       Const(EXPANDER_KEY[1], 32))

        scale_valid = Signal()
        scale_seed, scale_step = Signal(32), Signal(32)
        cached = scale_valid & (scale_seed == seed) & (scale_step == step)
        if p.reuse == "pool":
            pool_seed = Signal(32)
            m.d.comb += self.seeded.eq(pool.filled & (pool_seed == seed))
            fill = self._fill(m, p, word, pool)
        else:
            m.d.comb += self.seeded.eq(1)

        with m.FSM(name="phase"):
            with m.State("IDLE"):
                m.d.comb += self.request.ready.eq(1)
                with m.If(self.request.valid):
                    m.d.sync += [seed.eq(self.request.payload.seed),
                                 step.eq(self.request.payload.step)]
                    if p.reuse == "pool":
                        with m.If(~pool.filled | (pool_seed != self.request.payload.seed)):
                            m.next = "FILL_KEY"
                        with m.Else():
                            m.next = "KEY"
                    else:
                        m.next = "KEY"
            if p.reuse == "pool":
                with m.State("FILL_KEY"):
                    m.d.comb += [expander.load.eq(1),
                                 expander.load_state.eq(key(DOMAIN_POOL, Const(0, 32))),
                                 pool.fill_start.eq(1)]
                    m.d.sync += count.eq(0)
                    m.next = "FILL_WARM"
                with m.State("FILL_WARM"):
                    m.d.comb += expander.advance.eq(1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == EXPANDER_WARMUP):
                        m.d.sync += count.eq(0)
                        m.next = "FILL_LOAD"
                with m.State("FILL_LOAD"):
                    m.d.comb += [expander.advance.eq(1), fill["load"].eq(1),
                                 fill["seal"].eq(count == self.fill_words - 1)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.fill_words - 1):
                        m.d.sync += count.eq(0)
                        m.next = "FILL_RUN"
                with m.State("FILL_RUN"):
                    with m.If(count != p.pool_size):
                        m.d.comb += fill["issue"].eq(1)
                        m.d.sync += count.eq(count + 1)
                    with m.If(pool.filled):
                        m.d.sync += pool_seed.eq(seed)
                        m.next = "KEY"
            with m.State("KEY"):
                m.d.comb += [expander.load.eq(1),
                             expander.load_state.eq(key(DOMAIN_STEP, step)), flush.eq(1)]
                m.d.sync += count.eq(0)
                m.next = "WARM"
            with m.State("WARM"):
                m.d.comb += expander.advance.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(count == EXPANDER_WARMUP):
                    m.d.sync += count.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [expander.advance.eq(1), load.eq(1),
                             seal.eq(count == self.chain_words - 1)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == self.chain_words - 1):
                    m.next = "EMIT"
                    if p.adaptive:
                        with m.If(~cached):
                            m.next = "MEASURE"
            with m.State("EMIT"):
                m.d.comb += [emitting.eq(1), en.eq(~self.z.valid | self.z.ready)]
                with m.If(self.z.valid & self.z.ready & self.z.payload.last):
                    m.next = "IDLE"
            if p.adaptive:
                md = self.measure_depth
                total = Signal(len(solver.energy))
                with m.State("MEASURE"):
                    m.d.comb += [measuring.eq(1), en.eq(1)]
                    m.d.sync += count.eq(0)
                    with m.If(valid[md]):
                        m.d.sync += total.eq(total + energy)
                        with m.If(last[md]):
                            m.next = "SOLVE"
                with m.State("SOLVE"):
                    m.d.comb += [solver.energy.eq(total), solver.start.eq(count == 0)]
                    m.d.sync += count.eq(1)
                    with m.If(solver.done):
                        m.d.sync += [scale_valid.eq(1), scale_seed.eq(seed),
                                     scale_step.eq(step), total.eq(0)]
                        m.next = "RESCALE" if p.reuse == "pool" else "KEY"
                if p.reuse == "pool":
                    with m.State("RESCALE"):
                        m.d.comb += pool.rescale.eq(count == 1)
                        m.d.sync += count.eq(2)
                        with m.If((count == 2) & pool.rescaled):
                            m.next = "KEY"
        return m

    # -- value path -------------------------------------------------------------------------

    def _energy_width(self):
        # A beat's sum of squares: lanes values of value_width bits, symmetric.
        return 2 * (value_width(self.params) - 1) + self.params.lanes.bit_length()

    def _values(self, m, p, draws, members, en, issue, flush, valid, last, solver):
        """Lane values at stage ``value_depth`` (pool rows, or draws fanned out to lanes) and
        the energy of the beat at stage ``measure_depth`` (adaptive scaling)."""
        if p.reuse == "pool":
            pool = members[-1]
            m.d.comb += [pool.en.eq(en), pool.advance.eq(issue)]
            energy = None
            if p.adaptive:
                m.d.comb += [pool.magnitude.eq(solver.magnitude),
                             pool.negative.eq(solver.negative)]
                # Registered, so the accumulator does not extend the memory read path.
                energy = Signal(self._energy_width())
                with m.If(en):
                    m.d.sync += energy.eq(Mux(last[self.measure_depth - 1],
                                              pool.energy_partial, pool.energy))
            return [pool.values[l] for l in range(p.lanes)], energy
        hold = Signal(range(p.hold)) if p.hold > 1 else None
        if hold is not None:
            with m.If(flush):
                m.d.sync += hold.eq(0)
            with m.Elif(issue):
                m.d.sync += hold.eq(Mux(hold == p.hold - 1, 0, hold + 1))
        values, squares = [], []
        for g, source in enumerate(draws):
            # Held draws advance on the last beat of their hold, so every beat of the hold
            # samples the same state.
            m.d.comb += source.advance.eq(issue if hold is None else issue & (hold == p.hold - 1))
            raw = Signal(self.draw_layout.bits, name=f"raw{g}")
            with m.If(en):
                m.d.sync += raw.eq(source.bits)
            shaper = make_shaper(p)
            m.submodules[f"shaper{g}"] = shaper
            m.d.comb += [shaper.bits.eq(raw), shaper.en.eq(en)]
            value = shaper.value
            if p.adaptive:
                # Two corrector stages (product, then round/add/saturate); the square of the
                # uncorrected value feeds the measuring pass.
                held = Signal(signed(value_width(p)), name=f"held{g}")
                product = Signal.like(correction_product(held, solver.magnitude),
                                      name=f"product{g}")
                value = Signal(signed(p.width), name=f"corrected{g}")
                sq = Signal(2 * (value_width(p) - 1), name=f"square{g}")
                with m.If(en):
                    m.d.sync += [
                        held.eq(shaper.value),
                        product.eq(correction_product(shaper.value, solver.magnitude)),
                        value.eq(corrected(held, product, solver.negative, p.adapt_shift,
                                           p.width)),
                        sq.eq(square(shaper.value)),
                    ]
                squares.append(sq)
            values.append(value)
        energy = self._draw_energy(m, p, squares, last, en) if p.adaptive else None
        return [values[l % p.draws] for l in range(p.lanes)], energy

    def _draw_energy(self, m, p, squares, last, en):
        """Sum of squares of a beat's valid elements from the squares of its draws: each draw
        serves ``lanes / draws`` lanes of a full beat; in a padded last beat only its lanes
        below ``last_lanes`` count."""
        share = p.lanes // p.draws
        full = adder_tree(squares) << (share.bit_length() - 1)
        counts = [sum(1 for l in range(p.last_lanes) if l % p.draws == g)
                  for g in range(p.draws)]
        partial = adder_tree([const_mul(sq, c) for sq, c in zip(squares, counts)])
        energy = Signal(self._energy_width())
        with m.If(en):
            m.d.sync += energy.eq(Mux(last[self.measure_depth - 1], partial, full))
        return energy

    def _fill(self, m, p, word, pool):
        """The pool's fill lane: a draw source loaded from the expander (domain POOL) and a
        shaper, one value a cycle into the pool."""
        m.submodules.fill_source = source = UniformSource(self.draw_layout)
        m.submodules.fill_shaper = shaper = make_shaper(p)
        controls = {"load": Signal(name="fill_load"), "seal": Signal(name="fill_seal"),
                    "issue": Signal(name="fill_issue")}
        m.d.comb += [
            source.load.eq(controls["load"]), source.seal.eq(controls["seal"]),
            source.load_state.eq(Cat(word, source.state)[:len(source.state)]),
            source.advance.eq(controls["issue"]),
            shaper.en.eq(1),
        ]
        raw = Signal(self.draw_layout.bits, name="fill_raw")
        valid = [controls["issue"]] + [Signal(name=f"fill_valid{i}")
                                       for i in range(1, self.fill_depth + 1)]
        m.d.sync += [raw.eq(source.bits)] + [valid[i].eq(valid[i - 1])
                                              for i in range(1, self.fill_depth + 1)]
        m.d.comb += [shaper.bits.eq(raw), pool.fill_valid.eq(valid[-1]),
                     pool.fill_value.eq(shaper.value)]
        return controls


def from_config(config):
    """The engine of a :class:`~fieldtune.config.DesignConfig` (its ``perturb`` section)."""
    return PerturbationEngine(config.perturb)
