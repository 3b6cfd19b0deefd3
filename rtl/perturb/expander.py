"""The seed expander: a keyed xoroshiro64 generator whose "+" outputs load every per-step
state of the perturbation engine (and the pool's fill source).

The golden model is :func:`fieldtune.sim.golden.perturb.expander_words`; the constants and
the reason for the warm-up feedback are in :mod:`.numerics` (``EXPANDER_*``) and
docs/numerics.md ("Seeding and replay").
"""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import (WORD, EXPANDER_FEEDBACK, EXPANDER_KEY, XOROSHIRO64_ABC, DOMAIN_STEP,
                       DOMAIN_POOL)


__all__ = ["SeedExpander"]


def _rotl(value, amount):
    return Cat(value[WORD - amount:], value[:WORD - amount])


class SeedExpander(wiring.Component):
    """xoroshiro64 with a registered "+" output, keyed from the request's ``seed`` and
    ``key`` (its step) here rather than by the engine: the key constants then fold into the
    state's next-value logic (no key multiplexer outside the expander).

    Ports
    -----
    seed, key : In(32)
        The request's seed and step; read on a keying edge only.
    load : In(1)
        Key the step domain at the next edge: ``(s0, s1) = (seed ^ K0 ^ DOMAIN_STEP, key ^
        K1)``, and clear ``word`` (priority over ``advance``).
    load_pool : In(1)
        Key the pool domain: ``(seed ^ K0 ^ DOMAIN_POOL, K1)`` (key 0), clear ``word``
        (priority over ``load``).
    advance : In(1)
        Step at the next edge; ``word`` takes the output ``s0 + s1`` of the state left.
    warming : In(1)
        While stepping, XOR ``word ^ EXPANDER_FEEDBACK`` into the new ``s0`` (warm-up).
    word : Out(32)
        The output of the state one step back (0 after keying): a register, so the adder
        ends at a flip-flop.
    """

    seed: In(WORD)
    key: In(WORD)
    load: In(1)
    load_pool: In(1)
    advance: In(1)
    warming: In(1)
    word: Out(WORD)

    def elaborate(self, platform):
        m = Module()
        a, b, c = XOROSHIRO64_ABC
        k0, k1 = EXPANDER_KEY
        s0, s1 = Signal(WORD), Signal(WORD)
        t = Signal(WORD)
        m.d.comb += t.eq(s1 ^ s0)
        feedback = Mux(self.warming, self.word ^ EXPANDER_FEEDBACK, 0)
        domain = Mux(self.load_pool, k0 ^ DOMAIN_POOL, k0 ^ DOMAIN_STEP)
        with m.If(self.load_pool):
            m.d.sync += [s0.eq(self.seed ^ domain), s1.eq(k1), self.word.eq(0)]
        with m.Elif(self.load):
            m.d.sync += [s0.eq(self.seed ^ domain), s1.eq(self.key ^ k1), self.word.eq(0)]
        with m.Elif(self.advance):
            m.d.sync += [s0.eq(_rotl(s0, a) ^ t ^ (t << b)[:WORD] ^ feedback),
                         s1.eq(_rotl(t, c)), self.word.eq((s0 + s1)[:WORD])]
        return m
