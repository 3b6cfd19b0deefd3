"""The seed expander: a keyed xoroshiro64 generator whose "+" outputs load every per-step
state of the perturbation engine (and the pool's fill source).

The golden model is :func:`fieldtune.sim.golden.perturb.expander_words`; the constants and
the reason for the warm-up feedback are in :mod:`.numerics` (``EXPANDER_*``) and
docs/numerics.md ("Seeding and replay").
"""

from amaranth.hdl import Module, Signal, Cat, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import WORD, EXPANDER_FEEDBACK, XOROSHIRO64_ABC


__all__ = ["SeedExpander", "KEY_BITS"]


#: Bits of the expander's key (its whole state).
KEY_BITS = 2 * WORD


def _rotl(value, amount):
    return Cat(value[WORD - amount:], value[:WORD - amount])


class SeedExpander(wiring.Component):
    """xoroshiro64 with a registered "+" output.

    Ports
    -----
    load : In(1)
        Take ``key`` as the state ``Cat(s0, s1)`` at the next edge and clear ``word``
        (priority over ``advance``).
    key : In(64)
    advance : In(1)
        Step at the next edge; ``word`` takes the output ``s0 + s1`` of the state left.
    warming : In(1)
        While stepping, XOR ``word ^ EXPANDER_FEEDBACK`` into the new ``s0`` (warm-up).
    word : Out(32)
        The output of the state one step back (0 after ``load``): a register, so the adder
        ends at a flip-flop.
    """

    load: In(1)
    key: In(KEY_BITS)
    advance: In(1)
    warming: In(1)
    word: Out(WORD)

    def elaborate(self, platform):
        m = Module()
        a, b, c = XOROSHIRO64_ABC
        s0, s1 = Signal(WORD), Signal(WORD)
        t = Signal(WORD)
        m.d.comb += t.eq(s1 ^ s0)
        feedback = Mux(self.warming, self.word ^ EXPANDER_FEEDBACK, 0)
        with m.If(self.load):
            m.d.sync += [s0.eq(self.key[:WORD]), s1.eq(self.key[WORD:]), self.word.eq(0)]
        with m.Elif(self.advance):
            m.d.sync += [s0.eq(_rotl(s0, a) ^ t ^ (t << b)[:WORD] ^ feedback),
                         s1.eq(_rotl(t, c)), self.word.eq((s0 + s1)[:WORD])]
        return m
