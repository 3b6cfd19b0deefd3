"""The perturbation engine: the z vector of any ``(seed, step)``, replayable, L lanes a cycle.

:class:`PerturbationEngine` composes the cores of this package according to its
:class:`~fieldtune.rtl.perturb.params.PerturbParams`:

* a seed expander (:class:`~.expander.SeedExpander` keyed by ``(seed, step)``) that loads every
  per-step state (draw sources, sign source, pool offsets) through one shift chain, 32 bits a
  cycle, so a step's vector is a pure function of ``(seed, step)``: replay is a new request;
* draw lanes (a :class:`~.source.UniformSource` and a shaper each: :class:`~.uniform.
  UniformShaper`, :class:`~.clt.CltShaper`, :class:`~.icdf.IcdfShaper`; with adaptive
  scaling a :class:`~.adaptive.Corrector`), ``lanes`` of them without reuse,
  ``lanes / reuse_factor`` on the fly, or one filling a :class:`~.pool.ReusePool` (which
  applies the adaptive correction to the whole pool once per step);
* adaptive scaling's measuring pass and :class:`~.adaptive.ScaleSolver`;
* a lane stage: a fresh random sign per weight (both reuse modes), zero padding of the last
  beat, and the output register.

The golden model is :func:`fieldtune.sim.golden.perturb.vectors`; ``docs/architecture.md``
("Perturbation engine") describes a request's phases and ``docs/numerics.md`` the formulas.
"""

from contextlib import contextmanager

from amaranth.hdl import Module, Signal, Cat, Const, Mux, Array, signed, unsigned
from amaranth.lib import wiring, data, stream
from amaranth.lib.wiring import In, Out

from .adaptive import ScaleSolver, Corrector
from .arith import square, const_mul, round_half_away
from .clt import CltShaper
from .icdf import IcdfShaper
from .numerics import (WORD, EXPANDER_WARMUP, ADAPT_GUARD_BITS, draw_bits, source_layout,
                       signs_from_expander, fill_from_expander, draws_from_expander, draw_field)
from .params import PerturbParams
from .pool import ReusePool
from .source import UniformSource
from .uniform import UniformShaper, uniform_magnitude
from .expander import SeedExpander


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
        ``{seed, step}``; accepted (``ready`` high) only while the engine is idle, and in
        pool mode only once the pool holds the request's seed (a request with another seed
        waits, presented, while the pool refills: the engine reads its seed meanwhile;
        with ``seed_compare=False`` only the first request after a reset refills it).
        Without adaptive scaling the expander keys on the payload on the accepting edge,
        so the engine keeps no copy of it. Any 32-bit seed works at run time (the expander
        key has non-zero constants).
    z : Out(stream.Signature(beat_layout(params)))
        ``beats = ceil(dimension / lanes)`` beats per request; beat ``b`` lane ``l`` carries
        element ``i = b * lanes + l`` as a signed ``Q(width-frac_bits).frac_bits`` code;
        lanes with ``i >= dimension`` (only in the last beat) are zero; ``last`` marks the
        final beat. One beat per cycle while ``ready`` is high; when ``ready`` drops the
        beat is held (the whole pipeline stalls) and nothing is lost or repeated.
    busy : Out(1)
        A request is being served (the engine is not idle: from the refill or the
        acceptance to the transfer of the last beat).
    seeded : Out(1)
        Pool mode: the pool holds the values of the last request's seed (other modes have
        nothing to seed: always high).
    clamped : Out(1)
        Adaptive scaling: the current step's correction hit its limit (norm not reached).

    Timing, in clock edges from the first edge a request is presented at (the engine idle)
    to the edge that transfers the first beat with ``z.ready`` high (:meth:`latency`; W =
    10: the expander's warm-up steps, ``EXPANDER_WARMUP + 2``; C = :attr:`chain_words`):

    * always: ``W + C + output_depth + 1`` (key the expander on the accepting edge, warm
      it up, load the per-step state 32 bits a cycle, fill the pipeline); with adaptive
      scaling 1 more (a KEY cycle keys it from the registers); in pool mode with
      ``seed_compare`` 1 more (``look``: a cycle to compare the request's seed with the
      pool's, registered);
    * pool mode, when the pool does not hold the request's seed: first a fill, before the
      request is accepted, ``2 + look + W + fill_words + pool_size + fill_depth + 1``;
    * adaptive scaling, the first request of a ``(seed, step)``: first a measuring pass,
      ``1 + W + C + measure_walk * (beats + measure_depth) + 3 + S`` (``S`` = the solver's
      :meth:`~.adaptive.ScaleSolver.latency_of`, 34 by default; ``measure_walk`` = 1 in pool
      mode, else the draws per beat, which one squarer takes in turn), and in pool mode the
      rescaling of the pool, ``pool_size + 6``; the correction is cached, so replays of the
      same step skip both.

    Then the beats follow back to back while ``ready`` is high; the ``busy`` output falls on
    the edge that transfers the last beat.
    """

    def __init__(self, params, *, seed_compare=True):
        if not isinstance(params, PerturbParams):
            raise TypeError(f"params must be a PerturbParams, not {type(params).__name__}")
        self.params = params
        #: Pool mode: the pool remembers its seed and refills when a request brings another.
        #: Without (``seed_compare=False``) it refills only on the first request after a
        #: reset, for a caller that resets the engine whenever the seed may change (the SoC:
        #: at every run start): no 32-bit seed register and compare.
        self.seed_compare = seed_compare
        p = params
        self.draw_layout = source_layout(p.source, draw_bits(p))
        #: A sign source of its own (reuse modes with more lanes than an expander word).
        self.sign_layout = source_layout(p.source, p.lanes) \
            if p.signed_reuse and not signs_from_expander(p) else None
        self.shaper_depth = shaper_class(p).depth_of(p)
        #: Register stages from an issued beat to the lane values (pool read; or raw bits,
        #: shaper and, with adaptive scaling, the per-draw corrector).
        self.value_depth = 1 if p.reuse == "pool" else \
            1 + self.shaper_depth + (Corrector.depth if p.adaptive else 0)
        #: Register stages from an issued beat to the output register.
        self.output_depth = self.value_depth + 1
        #: Measuring pass (adaptive only): the pipeline stage whose values are measured
        #: (pool: 0, its row energies are read ahead; draws: the shaper's output), and the
        #: cycles each beat takes (pool: 1; draws: one per draw, one squarer walks them).
        self.measure_depth = 0 if p.reuse == "pool" else 1 + self.shaper_depth
        self.measure_walk = 1 if p.reuse == "pool" else p.draws
        chain = []
        if p.reuse != "pool" and not draws_from_expander(p):
            chain.append(p.draws * self.draw_layout.state_bits)
        if self.sign_layout is not None:
            chain.append(self.sign_layout.state_bits)
        if p.reuse == "pool":
            chain.append(2 * (p.pool_rows.bit_length() - 1))
        self.chain_bits = sum(chain)
        self.chain_words = -(-self.chain_bits // WORD)
        self.fill_words = 0 if fill_from_expander(p) else \
            -(-self.draw_layout.state_bits // WORD)
        #: The pool's fill takes uniform magnitudes straight from the expander's word.
        self.fill_direct = (p.reuse == "pool" and fill_from_expander(p)
                            and p.shape == "uniform" and not p.adaptive)
        self.fill_depth = 0 if self.fill_direct else 1 + self.shaper_depth
        super().__init__({
            "request": In(stream.Signature(Request)),
            "z": Out(stream.Signature(beat_layout(p))),
            "busy": Out(1), "seeded": Out(1), "clamped": Out(1),
        })

    def latency(self, *, fill=False, measure=False):
        """Clock edges from the edge that accepts a request to the edge that transfers its
        first beat (``z.ready`` held high); see the class documentation."""
        p = self.params
        w = EXPANDER_WARMUP + 2
        look = p.reuse == "pool" and self.seed_compare
        cycles = look + p.adaptive + w + self.chain_words + self.output_depth + 1
        if fill:
            cycles += 2 + look + w + self.fill_words + p.pool_size + self.fill_depth + 1
        if measure:
            cycles += (1 + w + self.chain_words + self.measure_walk * (p.beats + self.measure_depth)
                       + 3 + ScaleSolver.latency_of(p))
            if p.reuse == "pool":
                cycles += p.pool_size + 6
        return cycles

    def elaborate(self, platform):
        m = Module()
        p = self.params
        beats = p.beats

        expander, word, warming = self._expander(m)
        count = Signal(range(max(EXPANDER_WARMUP + 1, self.chain_words, self.fill_words) + 1))

        draws, signs, pool, load, seal = self._chain(m, word)

        # -- the beat pipeline: valid/last per stage, one global enable --------------------
        depth = self.output_depth
        valid = [Signal(name=f"valid{i}") for i in range(depth + 1)]
        last = [Signal(name=f"last{i}") for i in range(depth + 1)]
        en = Signal()
        emitting, measuring, flush = Signal(), Signal(), Signal()
        # beats issued since the step's state was loaded (pool mode: the pool counts them)
        issued = pool.beat if pool is not None else Signal(range(beats + 1))
        issue = Signal()
        m.d.comb += [
            issue.eq((emitting | measuring) & en & (issued != beats)),
            valid[0].eq(issue),
            last[0].eq(issued == beats - 1),
        ]
        with m.If(flush):
            m.d.sync += [v.eq(0) for v in valid[1:]]
            if pool is None:
                m.d.sync += issued.eq(0)
        with m.Elif(en):
            m.d.sync += [valid[i].eq(valid[i - 1]) for i in range(1, depth + 1)]
            m.d.sync += [last[i].eq(last[i - 1]) for i in range(1, depth + 1)]
            if pool is None:
                with m.If(issue):
                    m.d.sync += issued.eq(issued + 1)
        pipe = _Pipeline(en, issue, flush, valid, last, emitting, measuring)

        solver = None
        if p.adaptive:
            m.submodules.solver = solver = ScaleSolver(p, self._total_width())
            m.d.comb += self.clamped.eq(solver.clamped)
        negate = None                   # signs that travel with the beat from its issue
        if p.reuse == "pool":
            lane_values, measure = self._pool_values(m, pool, pipe, solver)
        else:
            lane_values, measure, negate = self._draw_values(m, draws, pipe, solver, expander)

        self._lanes(m, lane_values, signs, negate, pipe, expander)

        # -- control ----------------------------------------------------------------------
        idle = Signal()
        seed, step, refill, look, remember = self._intake(m, pool, idle)
        m.d.comb += [expander.seed.eq(seed), expander.key.eq(step)]
        request = self.request.payload
        if p.reuse == "pool":
            m.d.comb += self.seeded.eq(pool.filled & ~pool.fill_start)
            fill = self._fill(m, expander, pool)
        else:
            m.d.comb += self.seeded.eq(1)
        m.d.comb += self.busy.eq(~idle)
        if p.adaptive:
            # the last correction's (seed, step): replays of that step skip the measuring
            scale = {"valid": Signal(), "seed": Signal(32), "step": Signal(32),
                     "set": [seed, step]}
            cached = scale["valid"] & (scale["seed"] == seed) & (scale["step"] == step)

        with m.FSM(name="phase"):
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1),
                             self.request.ready.eq(~(self.request.valid & (look | refill)))]
                if p.adaptive:
                    m.d.sync += [seed.eq(request.seed), step.eq(request.step)]
                with m.If(self.request.valid & ~look):
                    if p.reuse == "pool":
                        with m.If(refill):
                            m.d.sync += remember
                            m.next = "FILL_KEY"
                    with m.If(~refill):
                        if p.adaptive:
                            m.next = "KEY"
                        else:               # KEY's work, on the accepting edge
                            m.d.comb += [expander.load.eq(1), flush.eq(1)]
                            m.d.sync += count.eq(0)
                            m.next = "WARM"

            @contextmanager
            def keyed(prefix, keying, chain_load, chain_seal, words, actions, key_state=True):
                """KEY (the expander keys on `keying`; unless `key_state` is false: IDLE does
                it), WARM, LOAD (shift `words` words into a chain); `actions` are comb
                statements of the KEY cycle. The body runs in LOAD's last cycle (WARM's
                without words; the caller's transition)."""
                if key_state:
                    with m.State(f"{prefix}KEY"):
                        m.d.comb += [keying.eq(1), *actions]
                        m.d.sync += count.eq(0)
                        m.next = f"{prefix}WARM"
                with m.State(f"{prefix}WARM"):
                    m.d.comb += [expander.advance.eq(1), warming.eq(1)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == EXPANDER_WARMUP + 1):
                        m.d.sync += count.eq(0)
                        if words:
                            m.next = f"{prefix}LOAD"
                        else:                   # nothing to load: the body runs here
                            yield
                if words:
                    with m.State(f"{prefix}LOAD"):
                        m.d.comb += [expander.advance.eq(1), chain_load.eq(1),
                                     chain_seal.eq(count == words - 1)]
                        m.d.sync += count.eq(count + 1)
                        with m.If(count == words - 1):
                            yield

            if p.reuse == "pool":
                with keyed("FILL_", expander.load_pool, fill["load"], fill["seal"],
                           self.fill_words, [pool.fill_start.eq(1)]):
                    m.d.sync += count.eq(0)
                    m.next = "FILL_RUN"
                with m.State("FILL_RUN"):
                    # the pool counts its values; those in flight when it is full are dropped
                    m.d.comb += fill["issue"].eq(1)
                    with m.If(pool.filled):
                        m.next = "IDLE"         # the request is accepted now
            with keyed("", expander.load, load, seal, self.chain_words, [flush.eq(1)],
                       key_state=p.adaptive):
                m.next = "EMIT"
                if p.adaptive:
                    with m.If(~cached):
                        m.next = "MEASURE"
            with m.State("EMIT"):
                m.d.comb += [emitting.eq(1), en.eq(~self.z.valid | self.z.ready)]
                with m.If(self.z.valid & self.z.ready & self.z.payload.last):
                    m.next = "IDLE"
            if p.adaptive:
                self._measure_states(m, pipe, solver, measure, pool, count, scale)
        return m

    def _intake(self, m, pool, idle):
        """How a request is taken: ``(seed, step, refill, look, remember)``. Without adaptive
        scaling the expander keys on the request itself, on the edge that accepts it (no
        copy of seed and step); the measuring pass keys it twice, from registers that follow
        the request while ``idle``. Pool mode: ``refill`` (the pool lacks the request's
        seed: it waits, not accepted, while the pool refills; an aborted fill leaves the pool
        unfilled), ``look`` (the request is not yet compared) and ``remember`` (statements
        of the refill's first edge)."""
        p = self.params
        request = self.request.payload
        if p.adaptive:
            seed, step = Signal(32), Signal(32)
        else:
            seed, step = request.seed, request.step
        refill, look, remember = Const(0), Const(0), []
        if p.reuse == "pool":
            # Registered (the pool's count and the compare would otherwise reach `ready` and
            # all the accepting edge starts): `ready` holds the pool's seed. With the
            # compare a request is looked at for a cycle (`seen`: it was presented, the
            # engine idle, the cycle before), so `ready` is its seed's.
            ready = Signal()
            refill = ~ready
            if self.seed_compare:
                pool_seed = Signal(32)
                seen = Signal()
                m.d.sync += [seen.eq(idle & self.request.valid),
                             ready.eq(pool.filled & (pool_seed == request.seed))]
                look = ~seen
                remember = [pool_seed.eq(request.seed)]
            else:
                m.d.sync += ready.eq(pool.filled)
        return seed, step, refill, look, remember

    def _measure_states(self, m, pipe, solver, measure, pool, count, scale):
        """Adaptive scaling's states: MEASURE (the step's energy, beat by beat), SOLVE (the
        correction; cached for the step in ``scale``), RESCALE (pool mode: the pool
        rewritten with it), then KEY again."""
        p = self.params
        total = Signal(len(solver.energy))
        with m.State("MEASURE"):
            m.d.comb += [pipe.measuring.eq(1), pipe.en.eq(measure["enable"])]
            m.d.sync += count.eq(0)
            with m.If(measure["valid"]):
                m.d.sync += total.eq(total + measure["energy"])
                with m.If(measure["last"]):
                    m.next = "SOLVE"
        with m.State("SOLVE"):
            m.d.comb += [solver.energy.eq(total), solver.start.eq(count == 0)]
            m.d.sync += count.eq(1)
            with m.If(solver.done):
                seed, step = scale["set"]
                m.d.sync += [scale["valid"].eq(1), scale["seed"].eq(seed),
                             scale["step"].eq(step), total.eq(0)]
                m.next = "RESCALE" if p.reuse == "pool" else "KEY"
        if p.reuse == "pool":
            with m.State("RESCALE"):
                m.d.comb += pool.rescale.eq(count == 1)
                m.d.sync += count.eq(2)
                with m.If((count == 2) & pool.rescaled):
                    m.next = "KEY"

    def _expander(self, m):
        """The seed expander (:class:`~.expander.SeedExpander`), keyed by the control;
        ``word`` is its registered output, ``warming`` its warm-up feedback."""
        m.submodules.expander = expander = SeedExpander()
        return expander, expander.word, expander.warming

    def _chain(self, m, word):
        """The per-step state chain (draw sources, sign source, pool offsets), loaded from
        the expander one ``word`` a cycle while ``load``; ``seal`` marks the last word.
        Returns ``(draws, signs, pool, load, seal)``."""
        p = self.params
        members, draws = [], []
        if p.reuse != "pool" and not draws_from_expander(p):
            for g in range(p.draws):
                source = UniformSource(self.draw_layout)
                m.submodules[f"draw{g}"] = source
                draws.append(source)
                members.append(source)
        signs = pool = None
        if self.sign_layout is not None:
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
            m.d.comb += [member.load.eq(load),
                         member.load_state.eq(shifted[offset:offset + width])]
            if isinstance(member, UniformSource):
                m.d.comb += member.seal.eq(seal)
            offset += width

        return draws, signs, pool, load, seal

    def _total_width(self):
        """Width of a step's energy: ``dimension`` squares of ``width``-bit codes."""
        p = self.params
        return 2 * (p.width - 1) + p.dimension.bit_length()

    # -- value paths ------------------------------------------------------------------------

    def _pool_values(self, m, pool, pipe, solver):
        """Lane values (complemented magnitudes, see :meth:`_lanes`) from the pool, and the
        measuring pass: the energy of each beat's row, read from the pool's row energies."""
        p = self.params
        m.d.comb += [pool.en.eq(pipe.en), pool.advance.eq(pipe.issue)]
        values = [pool.values[l] for l in range(p.lanes)]
        if not p.adaptive:
            return values, None
        m.d.comb += [pool.magnitude.eq(solver.magnitude), pool.negative.eq(solver.negative)]
        # The energies arrive with the row (stage 1); register them so the accumulator does
        # not extend the memory read path.
        energy = Signal(len(pool.energy))
        valid, done = Signal(), Signal()
        m.d.sync += [
            energy.eq(Mux(pipe.last[1], pool.energy_partial, pool.energy)),
            valid.eq(pipe.valid[1] & pipe.en), done.eq(pipe.valid[1] & pipe.last[1] & pipe.en),
        ]
        with m.If(pipe.flush):
            m.d.sync += [valid.eq(0), done.eq(0)]
        return values, {"enable": 1, "valid": valid, "last": done, "energy": energy}

    def _draw_values(self, m, draws, pipe, solver, expander):
        """Lane values (complemented codes) from the draw lanes: source (or the seed
        expander's word, :func:`~.numerics.draws_from_expander`), raw-bit register, shaper
        and, with adaptive scaling, the two-stage corrector; and the measuring pass (one
        squarer walking the draws of each beat). Returns ``(lanes, measure, negate)``:
        ``negate``, with draws from the expander, the beat's signs taken from the same word
        at its issue and carried to the lane stage (else None)."""
        p = self.params
        hold = None
        if p.hold > 1:
            hold = Signal(range(p.hold))
            with m.If(pipe.flush):
                m.d.sync += hold.eq(0)
            with m.Elif(pipe.issue):
                m.d.sync += hold.eq(Mux(hold == p.hold - 1, 0, hold + 1))
        negate = None
        if not draws:                   # the expander steps once per issued beat
            m.d.comb += expander.advance.eq(pipe.issue)
            negate = expander.word[WORD - p.lanes:]
            for i in range(self.value_depth):
                delayed = Signal(p.lanes, name=f"negate{i + 1}")
                with m.If(pipe.en):
                    m.d.sync += delayed.eq(negate)
                negate = delayed
        shaped, values = [], []
        for g in range(p.draws):
            raw = Signal(self.draw_layout.bits, name=f"raw{g}")
            if draws:
                # Held draws advance on the last beat of their hold, so every beat of the
                # hold samples the same state.
                source = draws[g]
                advance = pipe.issue if hold is None else pipe.issue & (hold == p.hold - 1)
                m.d.comb += source.advance.eq(advance)
                with m.If(pipe.en):
                    m.d.sync += raw.eq(source.bits)
            else:
                # the word of a hold's first beat (the expander moves on at every issue)
                low, high = draw_field(p, g)
                with m.If(pipe.en if hold is None else pipe.en & (hold == 0)):
                    m.d.sync += raw.eq(expander.word[low:high])
            shaper = make_shaper(p)
            m.submodules[f"shaper{g}"] = shaper
            m.d.comb += [shaper.bits.eq(raw), shaper.en.eq(pipe.en)]
            shaped.append(shaper.value)
            value = shaper.value
            if p.adaptive:
                corrector = Corrector(p)
                m.submodules[f"corrector{g}"] = corrector
                m.d.comb += [corrector.value.eq(shaper.value), corrector.en.eq(pipe.en),
                             corrector.magnitude.eq(solver.magnitude),
                             corrector.negative.eq(solver.negative)]
                value = corrector.corrected
            # The lane stage wants complemented codes; one inverter per bit of a draw.
            complement = Signal(p.width, name=f"complement{g}")
            m.d.comb += complement.eq(~value)
            values.append(complement)
        lanes = [values[l % p.draws] for l in range(p.lanes)]
        measure = self._walk(m, shaped, pipe) if p.adaptive else None
        return lanes, measure, negate

    def _walk(self, m, shaped, pipe):
        """Measuring pass of the draw lanes: the pipeline advances once every ``draws``
        cycles while one squarer takes the draws of the beat at the shaper's output in turn.

        A draw serves ``share = lanes / draws`` lanes of a full beat; in the padded last
        beat draw ``g`` serves ``q + [g < r]`` of the ``last_lanes`` valid lanes (``q, r =
        divmod(last_lanes, draws)``), so its square counts that many times.
        """
        p = self.params
        n = p.draws
        stage = 1 + self.shaper_depth                # where the shaped values are
        walk = Signal(range(n))
        with m.If(pipe.flush | (walk == n - 1)):
            m.d.sync += walk.eq(0)
        with m.Elif(pipe.measuring):
            m.d.sync += walk.eq(walk + 1)
        # Stage A: pick a draw and round it to its output code; stage B: square it.
        code = Signal(signed(p.width))
        draw_a, draw_b = Signal(range(n)), Signal(range(n))
        valid_a, valid_b = Signal(), Signal()
        last_a, last_b = Signal(), Signal()
        done_a, done_b = Signal(), Signal()
        squared = Signal(2 * (p.width - 1))
        picked = Array(shaped)[walk] if n > 1 else shaped[0]
        m.d.sync += [
            code.eq(round_half_away(picked, ADAPT_GUARD_BITS)),
            draw_a.eq(walk), valid_a.eq(pipe.measuring & pipe.valid[stage]),
            last_a.eq(pipe.last[stage]), done_a.eq(pipe.last[stage] & (walk == n - 1)),
            squared.eq(square(code)),
            draw_b.eq(draw_a), valid_b.eq(valid_a), last_b.eq(last_a), done_b.eq(done_a),
        ]
        with m.If(pipe.flush):
            m.d.sync += [valid_a.eq(0), valid_b.eq(0)]
        share = p.lanes // n
        q, r = divmod(p.last_lanes, n)
        partial = const_mul(squared, q) + Mux(draw_b < r, squared, 0) if r else \
            const_mul(squared, q)
        energy = Mux(last_b, partial, squared << (share.bit_length() - 1))
        return {"enable": walk == n - 1, "valid": valid_b, "last": valid_b & done_b,
                "energy": energy}

    def _lanes(self, m, values, signs, negate, pipe, expander):
        """Lane stage: a fresh sign per weight (reuse modes: from ``signs``, from ``negate``
        (carried with the beat, see :meth:`_draw_values`), or the top bits of the seed
        expander's word, which then steps once per beat), zero padding of the last beat, the
        output register.

        Values arrive complemented, ``w = ~v``, so flipping the sign costs one LUT per bit on
        a carry chain: ``z = (w + n) ^ ~n`` is ``w + 1 = -v`` for ``n = 1`` and ``~w = v`` for
        ``n = 0``. The pool's values are magnitudes narrower than a code
        (:func:`~.numerics.magnitude_width` bits ``k``): ``(Cat(w, 1) + n) ^ ~n`` is then
        ``k + 1`` bits, sign-extended.
        """
        p = self.params
        vd = self.value_depth
        if not p.signed_reuse:
            lane_codes = [(~w).as_signed() for w in values]
        else:
            if negate is not None:
                pass                            # carried from the issue with the draws
            elif signs is None:
                negate = expander.word[WORD - p.lanes:]
                m.d.comb += expander.advance.eq(pipe.emitting & pipe.en & pipe.valid[vd])
            elif self.sign_layout.kind == "xoshiro128pp":
                # Take the bits one stage early into a register: the ++ output's adders
                # then do not lengthen the lane stage.
                negate = Signal(p.lanes)
                m.d.comb += signs.advance.eq(pipe.emitting & pipe.en & pipe.valid[vd - 1])
                with m.If(signs.advance):
                    m.d.sync += negate.eq(signs.bits)
            else:
                negate = signs.bits
                m.d.comb += signs.advance.eq(pipe.emitting & pipe.en & pipe.valid[vd])
            lane_codes = [_flip(w, negate[l], p.width) for l, w in enumerate(values)]
        out = Signal(data.ArrayLayout(signed(p.width), p.lanes))
        with m.If(pipe.en):
            for l, code in enumerate(lane_codes):
                # Lanes past the dimension exist only in the last beat: zero them there.
                m.d.sync += out[l].eq(Mux(pipe.last[vd], 0, code) if l >= p.last_lanes
                                      else code)
        depth = self.output_depth
        m.d.comb += [
            self.z.payload.data.eq(out),
            self.z.payload.last.eq(pipe.last[depth]),
            self.z.valid.eq(pipe.valid[depth] & pipe.emitting),
        ]

    def _fill(self, m, expander, pool):
        """The pool's fill lane: one draw a cycle, from the top bits of the expander's word
        (keyed in domain POOL; it steps once per value) or from a draw source loaded from
        it, shaped into the pool. Uniform draws without adaptive scaling straight from the
        word (:attr:`fill_direct`): the magnitude the pool stores, combinational from the
        word (a register), into the pool's write port (block RAM inputs are registered);
        otherwise a raw-bit register and a shaper."""
        p = self.params
        controls = {"load": Signal(name="fill_load"), "seal": Signal(name="fill_seal"),
                    "issue": Signal(name="fill_issue")}
        if fill_from_expander(p):
            bits = expander.word[WORD - draw_bits(p):]
            with m.If(controls["issue"]):
                m.d.comb += expander.advance.eq(1)
        else:
            m.submodules.fill_source = source = UniformSource(self.draw_layout)
            m.d.comb += [
                source.load.eq(controls["load"]), source.seal.eq(controls["seal"]),
                source.load_state.eq(Cat(expander.word, source.state)[:len(source.state)]),
                source.advance.eq(controls["issue"]),
            ]
            bits = source.bits
        if self.fill_direct:
            m.d.comb += [pool.fill_valid.eq(controls["issue"]),
                         pool.fill_stored.eq(~uniform_magnitude(p, bits))]
            return controls
        m.submodules.fill_shaper = shaper = make_shaper(p)
        m.d.comb += shaper.en.eq(1)
        raw = Signal(len(bits), name="fill_raw")
        valid = [controls["issue"]] + [Signal(name=f"fill_valid{i}")
                                       for i in range(1, self.fill_depth + 1)]
        m.d.sync += [raw.eq(bits)] + [valid[i].eq(valid[i - 1])
                                      for i in range(1, self.fill_depth + 1)]
        m.d.comb += [shaper.bits.eq(raw), pool.fill_valid.eq(valid[-1])]
        value = shaper.value
        if p.adaptive:
            m.d.comb += pool.fill_value.eq(value)
        else:   # magnitudes are stored complemented: ~|v| is v - 1 for v < 0
            m.d.comb += pool.fill_stored.eq(Mux(value[-1], value - 1, ~value))
        return controls


def _flip(w, n, width):
    """``-v`` for ``n`` else ``v``, signed ``width`` bits, of a complemented value ``w = ~v``
    (a ``width``-bit code, or a narrower magnitude)."""
    k = min(len(w) + 1, width)
    wide = w if k == len(w) else Cat(w, Const(1, 1))
    code = ((wide + n)[:k] ^ (~n).replicate(k)).as_signed()
    return code if k == width else Cat(code, code[-1].replicate(width - k)).as_signed()


class _Pipeline:
    """The control signals of the beat pipeline, handed to the value paths."""

    def __init__(self, en, issue, flush, valid, last, emitting, measuring):
        self.en, self.issue, self.flush = en, issue, flush
        self.valid, self.last = valid, last
        self.emitting, self.measuring = emitting, measuring


def from_config(config):
    """The engine of a :class:`~fieldtune.config.DesignConfig` (its ``perturb`` section)."""
    return PerturbationEngine(config.perturb)
