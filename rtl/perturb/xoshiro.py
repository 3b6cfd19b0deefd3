"""xoshiro128++ (Blackman and Vigna): 128 state bits, 32 output bits per step.

Used as the seed expander of every engine and as a uniform bit source. The golden model is
:func:`fieldtune.sim.golden.perturb.xoshiro_step` / ``xoshiro_output``.
"""

from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import XOSHIRO_STATE, XOSHIRO_OUT


__all__ = ["Xoshiro128pp", "plus_plus_sum", "plus_plus_finish"]


def _rotl(value, amount):
    return Cat(value[32 - amount:], value[:32 - amount])


def plus_plus_sum(s0, s3):
    """First half of the ++ scrambler, ``s0 + s3`` (32 bits): a pipeline may register it."""
    return (s0 + s3)[:32]


def plus_plus_finish(total, s0):
    """Second half, ``rotl(total, 7) + s0`` (32 bits)."""
    return (_rotl(total, 7) + s0)[:32]


class Xoshiro128pp(wiring.Component):
    """One xoshiro128++ generator.

    Ports
    -----
    load : In(1)
        Replace the state by ``load_state`` at the next clock edge (takes priority).
    load_state : In(128)
        ``Cat(s0, s1, s2, s3)``.
    advance : In(1)
        Step the generator at the next clock edge.
    feedback : In(32)
        XORed into the next ``s0`` when stepping. The seed expander feeds its previous output
        back while warming up, which makes its state a nonlinear function of the key; other
        instances leave it at zero.
    word : Out(32)
        ``rotl(s0 + s3, 7) + s0`` of the current state (combinational).
    state : Out(128)
        The current state, ``Cat(s0, s1, s2, s3)`` (the state chain reads it).

    An all-zero state is a fixed point; the seed expander never loads one (its key words
    include non-zero constants) and a loaded source instance has probability 2**-128 of it.
    """

    load: In(1)
    load_state: In(XOSHIRO_STATE)
    advance: In(1)
    feedback: In(XOSHIRO_OUT)
    word: Out(XOSHIRO_OUT)
    state: Out(XOSHIRO_STATE)

    def elaborate(self, platform):
        m = Module()
        s = [Signal(32, name=f"s{i}") for i in range(4)]
        m.d.comb += [
            self.state.eq(Cat(*s)),
            self.word.eq(plus_plus_finish(plus_plus_sum(s[0], s[3]), s[0])),
        ]
        t = (s[1] << 9)[:32]
        s2 = s[2] ^ s[0]
        s3 = s[3] ^ s[1]
        s1 = s[1] ^ s2
        s0 = s[0] ^ s3
        with m.If(self.load):
            m.d.sync += [s[i].eq(self.load_state[32 * i:32 * (i + 1)]) for i in range(4)]
        with m.Elif(self.advance):
            m.d.sync += [s[0].eq(s0 ^ self.feedback), s[1].eq(s1), s[2].eq(s2 ^ t),
                         s[3].eq(_rotl(s3, 11))]
        return m
