"""The training SoC behind its host link: what a board (or a UART-level simulation) runs.

::

    rx --> HostLink --bus--> SoC --> busy, done, error
    tx <--

Pins: ``rx`` (In, idle high) and ``tx`` (Out) are the UART at ``host.baud``, clocked by the
``sync`` domain at ``host.clock_hz``; ``busy``, ``done`` and ``error`` are the SoC's status
outputs (for LEDs). The wire protocol is docs/protocol.md.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..soc import SoC
from .link import HostLink


__all__ = ["HostSystem"]


class HostSystem(wiring.Component):
    """:class:`~fieldtune.rtl.soc.SoC` and :class:`~fieldtune.rtl.host.link.HostLink` of a
    configuration (anything with ``perturb``, ``cache``, ``mac``, ``loss`` and ``host``
    sections, e.g. :class:`fieldtune.config.DesignConfig`).

    Attributes
    ----------
    rx : In(1)
    tx : Out(1)
    busy, done, error : Out(1)
        A run is in progress; the last run ended; an error flag is set.
    """

    def __init__(self, config):
        self.config = config
        self.soc = SoC(config)
        self.link = HostLink(config.host, self.soc.map)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.soc = soc = self.soc
        wiring.connect(m, link.bus, soc.bus)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx), self.busy.eq(soc.busy),
                     self.done.eq(soc.done), self.error.eq(soc.error)]
        return m
