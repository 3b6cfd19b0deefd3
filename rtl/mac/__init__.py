"""Adapter MAC array and adapter weight memory."""

from .params import MacParams, ADAPTERS
from .layout import Layout
from .ops import Op, Region, Operand, Perturb, Dest, CoefSource, MAC_OP, mac_op
from .array import AdapterMACArray, feature_beat_layout, pipeline_stages


__all__ = ["MacParams", "ADAPTERS", "Layout", "Op", "Region", "Operand", "Perturb", "Dest",
           "CoefSource", "MAC_OP", "mac_op", "AdapterMACArray", "feature_beat_layout",
           "pipeline_stages", "from_config"]


def from_config(config):
    """The MAC array of a :class:`~fieldtune.config.DesignConfig` (``fieldtune generate mac``)."""
    return AdapterMACArray(config.mac)
