"""Per-epoch record order (issue 16): the keyed Feistel walk of
:mod:`fieldtune.sim.golden.order`, with no memory (UP5K, alone: 124 LUT4 and 67 flip-flops for a
10-bit walk, 115 and 61 for 8 bits; 60 MHz).

A counter ``c`` walks ``0 .. 2^bits - 1``; each ``c`` goes through :data:`ROUNDS` Feistel rounds
on two ``bits/2``-bit halves, one round per cycle, with the round keys drawn on the fly from a
16-bit xorshift started at the epoch's key state; results not below ``count`` are skipped. In
cache order (``shuffle`` low) the candidate is ``c`` itself. The epoch's key state starts at
``seed`` on ``first`` and adds :data:`KEY_STEP` on every ``next_epoch`` (0 stands for
``KEY_STEP``), so epoch ``e`` visits exactly
``epoch_order(count, seed, e, order, bits)`` — the golden model, bit for bit.

Timing contract: ``first`` or ``next_epoch`` (one-cycle pulses, any time) restart the walk and
drop an index on offer. A candidate takes :data:`CANDIDATE_CYCLES` cycles in shuffle order (a
start, one per round, a range check) and 2 in cache order; the first index below ``count`` is
offered (``index.valid``) that many cycles per candidate after the restart, and held until
taken. After one is taken the next is computed at once, so a consumer that spends more than
``CANDIDATE_CYCLES * (1 + skipped)`` cycles per record never waits (R1: 256 records in a walk of
256 or more, some 500 cycles per record). Once the walk has passed ``2^bits`` candidates the
epoch is over and nothing more is offered. ``count`` and ``shuffle`` must be stable during an
epoch, ``seed`` when ``first`` is pulsed; ``1 <= count <= 2^bits``.

Replaying a mini-batch (the sequencer reads each sample of a batch once per phase of its
program): ``mark`` (a pulse, not while an index is being taken) remembers the walk's position,
the candidate pending now (the next index to be offered); ``rewind`` (a pulse) restarts the walk
there, so the indices since the mark are offered again, in the same order. ``first`` and
``next_epoch`` set the mark to the walk's start.
"""

from amaranth.hdl import Module, Signal, Cat, Const, Mux
from amaranth.lib import enum
from amaranth.lib import wiring, stream
from amaranth.lib.wiring import In, Out

__all__ = ["RecordOrder", "SEED_BITS", "ROUNDS", "KEY_STEP", "CANDIDATE_CYCLES", "index_bits"]


#: Width of the order seed and of the key state.
SEED_BITS = 16
#: Feistel rounds (4: a balanced Feistel network with 4 rounds is a strong pseudo-random
#: permutation in the Luby-Rackoff sense; fewer leave visible structure in the order).
ROUNDS = 4
#: Added to the key state per epoch (odd, the 16-bit golden ratio constant).
KEY_STEP = 0x9E37
#: Cycles per candidate in shuffle order: a start, one per round, a range check.
CANDIDATE_CYCLES = ROUNDS + 2


def index_bits(n):
    """Bits of the walk over ``n`` records: ``ceil(log2 n)``, at least 2, rounded up to even."""
    if n < 1:
        raise ValueError(f"record count must be at least 1, not {n}")
    b = max(2, (n - 1).bit_length())
    return b + (b & 1)


class Phase(enum.Enum, shape=2):
    NEXT = 0        # start the next candidate (or wait: the walk is over)
    ROUND = 1       # one Feistel round per cycle
    CHECK = 2       # below count? offer it, else the next candidate
    OFFER = 3       # index.valid until taken


def _xorshift16(s):
    s = s ^ (s << 7)[:SEED_BITS]
    s = s ^ (s >> 9)
    return s ^ (s << 8)[:SEED_BITS]


class RecordOrder(wiring.Component):
    """The record walk (see the module documentation).

    Parameters
    ----------
    bits : int
        Width of the walk: even, 2 to 24; ``2^bits`` is at least the largest record count.
    """

    def __init__(self, bits):
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 24 \
                or bits % 2:
            raise ValueError(f"bits must be an even integer from 2 to 24, not {bits!r}")
        self.bits = bits
        super().__init__({
            "seed": In(SEED_BITS),
            "count": In(bits + 1),
            "shuffle": In(1),
            "first": In(1),
            "next_epoch": In(1),
            "mark": In(1),
            "rewind": In(1),
            "index": Out(stream.Signature(bits)),
        })

    def elaborate(self, platform):
        m = Module()
        bits, half = self.bits, self.bits // 2
        base = Signal(SEED_BITS)                # the epoch's key state, before the 0 fix
        walk = Signal(bits + 1)                 # the pending candidate (2^bits: epoch over)
        mark = Signal(bits + 1)                 # where `rewind` restarts the walk
        left, right = Signal(half), Signal(half)
        key_state = Signal(SEED_BITS)
        rnd = Signal(range(ROUNDS))
        phase = Signal(Phase)
        candidate = Cat(right, left)            # (L << half) | R; held while offered

        m.d.comb += [self.index.payload.eq(candidate),
                     self.index.valid.eq(phase == Phase.OFFER)]
        step = _xorshift16(key_state)
        t = (right + step[:half])[:half]
        f = t.rotate_left(1) ^ (t >> 1)

        with m.Switch(phase):
            with m.Case(Phase.NEXT):            # start candidate `walk`
                with m.If(~walk[bits]):
                    m.d.sync += [Cat(right, left).eq(walk[:bits]), rnd.eq(0),
                                 key_state.eq(Mux(base == 0, KEY_STEP, base)),
                                 phase.eq(Mux(self.shuffle, Phase.ROUND, Phase.CHECK))]
            with m.Case(Phase.ROUND):           # L, R = R, L ^ F(R, k_r)
                m.d.sync += [key_state.eq(step), left.eq(right), right.eq(left ^ f),
                             rnd.eq(rnd + 1)]
                with m.If(rnd == ROUNDS - 1):
                    m.d.sync += phase.eq(Phase.CHECK)
            with m.Case(Phase.CHECK):
                with m.If(candidate < self.count):
                    m.d.sync += phase.eq(Phase.OFFER)
                with m.Else():
                    m.d.sync += [walk.eq(walk + 1), phase.eq(Phase.NEXT)]
            with m.Case(Phase.OFFER):
                with m.If(self.index.ready):
                    m.d.sync += [walk.eq(walk + 1), phase.eq(Phase.NEXT)]
        with m.If(self.mark):
            m.d.sync += mark.eq(walk)
        with m.If(self.first | self.next_epoch):        # wins over the phases' updates
            m.d.sync += [walk.eq(0), mark.eq(0), phase.eq(Phase.NEXT)]
        with m.Elif(self.rewind):
            m.d.sync += [walk.eq(mark), phase.eq(Phase.NEXT)]
        with m.If(self.first):
            m.d.sync += base.eq(self.seed)
        with m.Elif(self.next_epoch):
            m.d.sync += base.eq(base + Const(KEY_STEP, SEED_BITS))
        return m
