# amaranth: UnusedElaboratable=no
"""The sequencer's start checks (one run register a cycle, read from the register bank's block
RAM) flag exactly what the golden model's :func:`~fieldtune.sim.golden.soc.check_run` flags,
for random run registers (legal, at their bounds and beyond) and every design option: the
sequencer runs beside a real register bank, without the datapath (an accepted run is aborted
at once)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from fieldtune.config import DesignConfig
from fieldtune.rtl.params import RUN_FIELDS, run_fields
from fieldtune.rtl.soc import SoC
from fieldtune.rtl.sequencer import Sequencer, SEQUENCER_ERRORS
from fieldtune.rtl.csr.registers import RegisterBank, store_words
from fieldtune.sim.engines.pysim import simulate, bus_write
from fieldtune.sim.golden.soc import RunConfig, check_run
from fieldtune.sim.soc_run import run_registers_of


#: Values a random field takes: legal ones, its declared bounds and one past, and anything.
def _value(rng, name):
    f = RUN_FIELDS[name]
    top = (1 << f.width) - 1
    pick = rng.integers(6)
    if pick == 0:
        return int(rng.integers(top + 1))
    if pick == 1:
        return int(min(top, f.hi + rng.integers(2)))
    if pick == 2:
        return int(max(0, f.lo - rng.integers(2)))
    return int(rng.integers(f.lo, min(f.hi, f.lo + 40) + 1))


def random_configs(rng, config, n):
    """``n`` random :class:`RunConfig` (``mode`` mostly FO, ZO or EVAL; shifts, batch and
    queries mostly small, where the shift checks bite)."""
    names = list(run_fields(True))
    for _ in range(n):
        fields = {name: _value(rng, name) for name in names}
        fields["mode"] = int(rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 7]))
        fields["batch"] = int(rng.choice([1, 2, 4, 8, 16, 32, 3, 6, 256, 511]))
        fields["queries"] = int(rng.choice([0, 1, 2, 4, 16, 3, 17, 31]))
        for shift in ("lr_shift", "eps_shift", "zo_lr_shift"):
            fields[shift] = int(rng.integers(0, 32))
        for i in range(4):
            fields[f"lr_step{i}"] = int(rng.choice([0, 0, 1, 5, 999, 1023]))
        if rng.integers(3):
            fields["watchdog"] = int(rng.integers(1, 1 << 20))
        if rng.integers(2):
            fields["holdout"] = int(rng.integers(0, 8))
        if not config.soc.early_stop:
            fields.update(stop_every=0, holdout=0, patience=1)
        yield RunConfig(**fields)


def flags_of(config, configs, records):
    """The error strobes of a start of each config (the run aborted if accepted)."""
    soc = SoC(config)
    seq = Sequencer(soc.mac, soc.loss, soc.cache, soc.perturb, soc.modes,
                    config.soc.schedule, config.soc.early_stop,
                    store_words=store_words(soc.registers))
    bank = RegisterBank(soc.registers, scratch=seq.scratch)
    m = Module()
    m.submodules.seq, m.submodules.bank = seq, bank
    wiring.connect(m, seq.store, bank.store)
    seen = []

    async def tb(ctx):
        ctx.set(seq.records, records)
        ctx.set(seq.mac_idle, 1)
        ctx.set(seq.datapath_idle, 1)
        for cfg in configs:
            for register, fields in run_registers_of(config).items():
                word = soc.map.pack(register, **{f: getattr(cfg, k) for f, k in fields.items()})
                await bus_write(ctx, bank.bus, soc.address(register), word)
            ctx.set(seq.start, 1)
            await ctx.tick()
            ctx.set(seq.start, 0)
            flags = set()
            for _ in range(40):
                *_, errors, accepted, done = await ctx.tick().sample(
                    seq.errors, seq.accepted, seq.done)
                flags |= {name for name in SEQUENCER_ERRORS if getattr(errors, name)}
                if accepted:
                    ctx.set(seq.abort, 1)
                    await ctx.tick()
                    ctx.set(seq.abort, 0)
                if done:
                    break
            while ctx.get(seq.busy):
                await ctx.tick()
            seen.append(flags - {"aborted"})

    simulate(m, tb, name="sequencer_checks")
    return seen


@pytest.mark.parametrize("soc, capacity", [({}, None), ({"early_stop": True}, None),
                                           ({"modes": ["fo"], "schedule": False}, None),
                                           ({}, 32)])
def test_start_checks_equal_the_golden_model(soc, capacity):
    # (a cache of 32 records: the record comparisons are narrower than the batch field)
    config = DesignConfig().replace(soc=soc)
    if capacity is not None:
        config = config.replace(cache={"capacity": capacity})
    rng = np.random.default_rng(len(str(soc)) + (capacity or 0))
    records = 40 if capacity is None else 20
    configs = list(random_configs(rng, config, 120))
    got = flags_of(config, configs, records)
    want = [check_run(config, cfg, records) for cfg in configs]
    assert sum(1 for w in want if not w) >= 5 and sum(1 for w in want if len(w) > 1) >= 10
    for cfg, g, w in zip(configs, got, want):
        assert g == w, cfg
