"""``fieldtune bench cache``: resources, Fmax and capacity of the forward cache.

Every variant (a code book and a block size) is implemented out of context as a whole
:class:`~fieldtune.rtl.cache.cache.ForwardCache` (quantizer, memories, dequantizer) for each
device at that device's lane count, with DSPs left to the MAC array (``-nodsp``-style synthesis:
the cache's multipliers are LUTs). ``capacity_samples`` is how many R1 samples (224 features,
10 logits, a label) fit in the device's memory budget (:data:`BUDGETS`), from the layout's
exact memory geometry; the implemented design holds ``min(256, capacity_samples)`` samples
(256 when the budget holds none, to show what the variant costs anyway).

Targets (issue 3): R1's 256 fine-tuning samples fit on the UP5K with 4-bit codes; the read
stream sustains L values per cycle at >= 48 MHz on the UP5K (L = 8) and >= 120 MHz on the
ECP5-85F (L = 32). The dequantizer issues one beat per cycle by construction (tested), so the
sustained rate is L values x Fmax; the ``-soc`` variant's, built as the SoC builds it, one beat
per ``beat_cycles``.
"""

from ..rtl.params import R1_TAPS, R1_CLASSES
from ..rtl.cache.params import CacheParams
from .report import add_variant_arguments
from ..rtl.cache.layout import CacheLayout
from ..boards.devices import DEVICES as KNOWN
from ..toolchain import tool_env
from ..rtl.cache.cache import ForwardCache
from .report import implement_all, emit, select_variants


__all__ = ["VARIANTS", "DEVICES", "BUDGETS", "TARGET_MHZ", "R1_SAMPLES", "add_arguments",
           "run", "variant_params"]


#: Variant name -> (code book, block size; 0 = one block per tap[, "soc"]). ``"soc"``: the
#: dequantizer the SoC builds (``dequantizer_lanes`` for a MAC array taking a beat every
#: R1_CLASSES cycles: 1 lane at L = 8, 4 at L = 32); the others dequantize a beat per cycle.
VARIANTS = {
    "unf4-b32-soc": ("unf4", 32, "soc"),
    "unf4-b32": ("unf4", 32),
    "nf4-b32": ("nf4", 32),
    "int4-b32": ("int4", 32),
    "uint4-b32": ("uint4", 32),
    "unf4-b8": ("unf4", 8),
    "unf4-b16": ("unf4", 16),
    "unf4-b64": ("unf4", 64),
    "unf4-tap": ("unf4", 0),
    "pass8": ("pass8", 32),
    "pass16": ("pass16", 32),
}
#: Device -> (lanes, memory kind) of the cache on it.
DEVICES = {"up5k": (8, "spram"), "ecp5-85f": (32, "bram")}
#: Device -> primitives of the cache's memory kind it may use. UP5K: 3 of the 4 SPRAMs (one
#: SPRAM and all 30 block RAMs stay for adapter weights, the perturbation pool and the rest of
#: the SoC). ECP5-85F: half of the 208 DP16KD.
BUDGETS = {"up5k": 3, "ecp5-85f": 104}
#: Device -> Fmax target of the read stream.
TARGET_MHZ = {"up5k": 48.0, "ecp5-85f": 120.0}
#: R1's fine-tuning set.
R1_SAMPLES = 256

COLUMNS = [("variant", "variant"), ("lanes", "L"), ("device", "device"), ("luts", "LUTs"),
           ("ffs", "FFs"), ("brams", "BRAM"), ("sprams", "SPRAM"), ("dsps", "DSP"),
           ("fmax_mhz", "Fmax MHz"), ("fmax_met", "Fmax ok"),
           ("bytes_per_sample", "B/sample"), ("capacity_samples", "capacity"),
           ("r1_fits", "256 fit"), ("fits", "fits")]


def variant_params(name, device, capacity=R1_SAMPLES):
    """The :class:`~fieldtune.rtl.cache.params.CacheParams` of ``name`` on ``device``."""
    codebook, block_size, *soc = VARIANTS[name]
    lanes, memory = DEVICES[device]
    params = CacheParams(lanes=lanes, codebook=codebook, block_size=block_size, memory=memory,
                         taps=R1_TAPS, classes=R1_CLASSES, capacity=capacity)
    return params.for_consumer(R1_CLASSES) if soc else params


def add_arguments(parser):
    add_variant_arguments(parser, DEVICES, "up5k (L=8, SPRAM), ecp5-85f (L=32, DP16KD)",
                          "unf4-*")


def capacity(name, device):
    """``(layout, capacity_samples)`` of variant ``name`` within the budget of ``device``."""
    layout = CacheLayout(variant_params(name, device))
    kind = DEVICES[device][1]
    return layout, layout.capacity_for(KNOWN[device].family, kind, BUDGETS[device])


def run(args, console):

    if args.list:
        for name, (codebook, block_size, *soc) in VARIANTS.items():
            console.print(f"{name:12s} codebook={codebook} block_size={block_size or 'tap'}"
                          + (" dequantizer as in the SoC" if soc else ""))
        return []
    for device in args.devices:
        if device not in DEVICES:
            raise ValueError(f"--devices must name {', '.join(DEVICES)}, not {device!r}")
    jobs, meta = [], {}
    for name in select_variants(args.variants, list(VARIANTS)):
        for device in args.devices:
            layout, cap = capacity(name, device)
            built = min(R1_SAMPLES, cap) if cap else R1_SAMPLES
            params = variant_params(name, device, capacity=built)
            key = (name, device)
            workdir = f"{args.workdir}/{name}-{device}" if args.workdir else None
            spram = DEVICES[device][1] == "spram"
            jobs.append((key, (lambda p=params: ForwardCache(p)), device,
                         {"workdir": workdir, "dsp": False, "spram": spram}))
            meta[key] = (params, layout, cap)
    results = implement_all(jobs, tool_env(), console=console, workers=args.workers,
                            scheduler=args.scheduler,
                            description="forward cache variants")
    rows = []
    for (name, device), impl in results.items():
        params, layout, cap = meta[(name, device)]
        rows.append({
            "variant": name, "codebook": params.codebook,
            "block_size": params.block_size, "lanes": params.lanes, "device": device,
            "dequantizer_lanes": params.dq_lanes,
            "memory": params.memory, "luts": impl.luts, "ffs": impl.ffs, "brams": impl.brams,
            "sprams": impl.sprams, "dsps": impl.dsps, "fmax_mhz": impl.fmax_mhz,
            "target_mhz": TARGET_MHZ[device],
            "fmax_met": impl.fmax_mhz is not None and impl.fmax_mhz >= TARGET_MHZ[device],
            "bytes_per_sample": layout.bytes_per_sample(), "capacity_samples": cap,
            "memory_budget": f"{BUDGETS[device]} {params.memory}",
            "built_capacity": params.capacity, "r1_fits": cap >= R1_SAMPLES,
            "fits": impl.fits, "reason": impl.reason,
        })
    emit("cache", rows, COLUMNS, json_path=args.json, console=console,
         extra={"budgets": BUDGETS, "target_mhz": TARGET_MHZ})
    return rows
