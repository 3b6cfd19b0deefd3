"""fieldtune: FPGA accelerators for on-device fine-tuning, generated with Amaranth HDL.

Subpackages: :mod:`fieldtune.rtl` (gateware), :mod:`fieldtune.sim` (golden models, data,
references, simulation engines), :mod:`fieldtune.boards` (board tops and builds). The command
line lives in :mod:`fieldtune.cli`; the design configuration in :mod:`fieldtune.config`.
"""

__version__ = "0.1.0"

