"""Uniform bit sources: banks of xoshiro128++ or LFSR instances with a loadable state.

A :class:`UniformSource` gives ``layout.bits`` fresh random bits per step. Its state is
loaded from the seed expander through the engine's state chain, so every lane, draw and step
gets its own stream from one seed (``docs/numerics.md``, "Seeding and replay").
"""

from amaranth.hdl import Module, Cat
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .numerics import SourceLayout
from .params import SOURCES
from .xoshiro import Xoshiro128pp
from .lfsr import Lfsr


__all__ = ["UniformSource"]


class UniformSource(wiring.Component):
    """``layout.instances`` generators side by side; their outputs concatenated (instance 0
    lowest) and cut to ``layout.bits`` bits.

    Parameters
    ----------
    layout : :class:`~fieldtune.rtl.perturb.numerics.SourceLayout`

    Ports
    -----
    load, load_state : In(1), In(layout.state_bits)
        Load every instance (``load_state`` is instance 0 first) at the next clock edge.
    seal : In(1)
        With ``load``: an LFSR instance whose loaded state is all zero loads 1 instead.
    advance : In(1)
        Step every instance at the next clock edge.
    bits : Out(layout.bits)
        Random bits of the current state (combinational).
    state : Out(layout.state_bits)
    """

    def __init__(self, layout):
        if not isinstance(layout, SourceLayout) or layout.kind not in SOURCES:
            raise TypeError(f"layout must be a SourceLayout, not {layout!r}")
        self.layout = layout
        super().__init__({
            "load": In(1), "load_state": In(layout.state_bits), "seal": In(1),
            "advance": In(1), "bits": Out(layout.bits), "state": Out(layout.state_bits),
        })

    def elaborate(self, platform):
        m = Module()
        lay = self.layout
        n = lay.instance_state
        outputs, states = [], []
        for i in range(lay.instances):
            if lay.kind == "xoshiro128pp":
                gen = Xoshiro128pp()
            else:
                gen = Lfsr(lay.leap)
                m.d.comb += gen.seal.eq(self.seal)
            m.submodules[f"gen{i}"] = gen
            m.d.comb += [
                gen.load.eq(self.load),
                gen.load_state.eq(self.load_state[n * i:n * (i + 1)]),
                gen.advance.eq(self.advance),
            ]
            outputs.append(gen.word if lay.kind == "xoshiro128pp" else gen.bits)
            states.append(gen.state)
        m.d.comb += [self.bits.eq(Cat(*outputs)[:lay.bits]), self.state.eq(Cat(*states))]
        return m
