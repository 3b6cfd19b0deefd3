"""Blocks a user can generate on their own (``fieldtune generate BLOCK``).

Each entry names a factory ``f(config: DesignConfig) -> Elaboratable`` by import path, so the
command line stays fast and a block's module is imported only when it is asked for.
"""

import importlib


__all__ = ["BLOCKS", "BLOCK_SECTIONS", "build_block"]


#: Block name -> (module, factory function, one-line description).
BLOCKS = {
    "perturb": ("fieldtune.rtl.perturb.engine", "from_config",
                "PeZO perturbation engine (config section [perturb])"),
    "mac": ("fieldtune.rtl.mac", "from_config",
            "adapter MAC array with its weight memory (config section [mac])"),
    "loss": ("fieldtune.rtl.loss", "from_config",
             "softmax cross-entropy loss unit (config section [loss])"),
    "quantizer": ("fieldtune.rtl.cache.quantizer", "from_config",
                  "forward-cache quantizer: features to 4-bit codes and block scales ([cache])"),
    "dequantizer": ("fieldtune.rtl.cache.dequantizer", "from_config",
                    "forward-cache dequantizer: packed beats to L features per cycle ([cache])"),
    "forward-cache": ("fieldtune.rtl.cache.cache", "from_config",
                      "InstantFT forward cache: quantizer, packed memory, dequantizer ([cache])"),
    "soc": ("fieldtune.rtl.soc", "from_config",
            "training SoC: cache, MAC array, loss unit, perturbation engine, sequencer, "
            "registers on a bus (all sections)"),
    "host-link": ("fieldtune.rtl.host.link", "from_config",
                  "host link: UART, COBS framing with CRC, command decoder onto the SoC bus "
                  "([host]; the map from [mac], [cache], [perturb])"),
}

#: Block name -> the configuration sections its factory reads (``None``: the whole design).
BLOCK_SECTIONS = {"perturb": ("perturb",), "mac": ("mac",), "loss": ("loss",),
                  "quantizer": ("cache",), "dequantizer": ("cache",),
                  "forward-cache": ("cache",),
                  "host-link": ("host", "mac", "cache", "perturb"), "soc": None}


def build_block(name, config):
    """Elaborate-ready component for block ``name`` under ``config``."""
    if name not in BLOCKS:
        allowed = ", ".join(sorted(BLOCKS))
        raise ValueError(f"block must be one of {allowed}, not {name!r}")
    module, factory, _ = BLOCKS[name]
    return getattr(importlib.import_module(module), factory)(config)
