"""First-order early stop on the device ([soc] early_stop, issue 16): the SoC in the Amaranth
simulator against its golden model and the scheduled training loop, bit for bit."""

import numpy as np
import pytest

from fieldtune.rtl.params import TrainParams
from fieldtune.rtl.sequencer import Mode
from fieldtune.rtl.sequencer.order import index_bits
from fieldtune.rtl.csr.map import SocMap
from fieldtune.sim.golden.soc import SocModel, RunConfig, check_run
from fieldtune.sim.golden.schedule import FoSchedule, train_fo_scheduled, run_registers
from fieldtune.sim.soc_data import records_of

from test_soc import Session, tiny


def stopping():
    return tiny().replace(soc={"early_stop": True})


class StopSession(Session):
    """:class:`Session` that also reads ``stop_status`` after every run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads, self.reports = ("stop_status",), []

    def run(self, cfg, *, dump=True):
        super().run(cfg, dump=dump)
        self.reports.append(dict(self.model.stop))

    def check(self):
        recs, seen = super().check()
        got = [self.soc.map.unpack("stop_status", recs[e["stop_status"]]) for e in self.extra]
        for g, s, want in zip(got, seen, self.reports):
            assert g["epochs_run"] == s["epochs"]
            assert (g["held_out_correct"], bool(g["stopped"])) == (want["correct"],
                                                                  want["stopped"])
        return seen, got


def scheduled(config, data, epochs, schedule, lr_shift, batch):
    """The scheduled training loop on the records as the golden SoC caches them."""
    model = SocModel(config)
    for rec in zip(*records_of(data, "train")):
        model.write_record(*rec)
    x, z0, y = model.samples(0, model.records)
    return train_fo_scheduled(config.mac, config.loss,
                              TrainParams(epochs=epochs, batch=batch, lr_shift=lr_shift),
                              schedule, {"x": x, "z0": z0, "labels": y},
                              bits=index_bits(config.cache.capacity))


def test_early_stop_ends_on_the_right_epoch_and_reports_it():
    cfg = stopping()
    s = StopSession(cfg, n_records=12, seed=1)
    # held-out counts 0, 0, 1, 1, 1: a strike, a new best (strikes cleared), two strikes
    stop = FoSchedule(order="shuffle", order_seed=7, stop_every=1, holdout=4, patience=2)
    s.run(RunConfig(mode=Mode.FO, epochs=8, batch=2, **run_registers(stop, 1)))
    first = s.model.weights.copy()
    # never stops: patience outlasts the run; an evaluation after epochs 2 and 4 only
    s.load(np.zeros_like(first))
    s.model.weights[:] = 0
    never = FoSchedule(order="shuffle", order_seed=7, stop_every=2, holdout=4, patience=16)
    s.run(RunConfig(mode=Mode.FO, epochs=5, batch=2, **run_registers(never, 1)))
    seen, got = s.check()
    ref = scheduled(cfg, s.data, 8, stop, 1, 2)
    counts = [h["holdout_correct"] for h in ref.history]
    assert counts == [0, 0, 1, 1, 1] and ref.flags["stopped_early"]
    assert got[0] == {"epochs_run": 5, "held_out_correct": 1, "stopped": 1}
    assert seen[0]["epochs"] == 5 and seen[0]["steps"] == 5 * 4
    assert seen[0]["samples"] == 5 * 8          # the held-out forwards count apart
    np.testing.assert_array_equal(first, ref.mem)
    ref = scheduled(cfg, s.data, 5, never, 1, 2)
    assert not ref.flags["stopped_early"] and len(ref.history) == 5
    assert got[1] == {"epochs_run": 5, "stopped": 0,
                      "held_out_correct": ref.history[3]["holdout_correct"]}


def test_illegal_early_stop_values_are_flagged():
    cfg = stopping()
    s = StopSession(cfg, n_records=7)
    bad = [(dict(stop_every=101, holdout=2, patience=2), {"bad_schedule"}),
           (dict(stop_every=1, holdout=2, patience=0), {"bad_schedule"}),
           (dict(stop_every=1, holdout=2, patience=17), {"bad_schedule"}),
           (dict(stop_every=1, holdout=0, patience=2), {"bad_schedule"}),
           (dict(stop_every=1, holdout=4097, patience=2), {"bad_schedule", "batch_count"}),
           # the training records (7 - 4) must hold a mini-batch (4)
           (dict(stop_every=1, holdout=4, patience=2), {"batch_count"})]
    for fields, flags in bad:
        c = RunConfig(mode=Mode.FO, epochs=2, batch=4, **fields)
        assert check_run(cfg, c, 7) == flags
        s.run(c, dump=False)
        s.prog.write_reg("errors", **{f: 1 for f in flags})
        s.model.errors.clear()
    # a held-out slice without evaluations trains on the others; EVAL ignores the registers
    s.run(RunConfig(mode=Mode.FO, epochs=1, batch=2, holdout=3))
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=7, stop_every=101))
    seen, got = s.check()
    # (the golden model's flags, the training warning mac_saturated among them, held already)
    assert [sorted(set(g["errors"]) - {"mac_saturated"}) for g in seen] == \
        [sorted(f) for _, f in bad] + [[], []]
    assert seen[-2]["samples"] == 4 and got[-2]["stopped"] == 0
    assert seen[-1]["samples"] == 7


def test_a_design_without_early_stop_has_no_early_stop_registers():
    plain = SocMap(tiny())
    names = [r.name for r in plain.registers]
    assert "early_stop" not in names and "stop_status" not in names
    built = [r.name for r in SocMap(stopping()).registers]
    assert built == names + ["early_stop", "stop_status"]     # the others keep their words
    # the golden model flags what a host cannot even write there
    c = RunConfig(mode=Mode.FO, epochs=1, batch=2, stop_every=1, holdout=2)
    assert check_run(tiny(), c, 8) == {"bad_schedule"}
    with pytest.raises(ValueError, match=r"^soc\.early_stop must be true or false, not 1$"):
        tiny().replace(soc={"early_stop": 1})
    with pytest.raises(ValueError, match=r"^soc\.early_stop = true needs soc\.schedule = true"):
        tiny().replace(soc={"early_stop": True, "schedule": False})
    with pytest.raises(ValueError, match=r"^soc\.early_stop = true needs 'fo' in soc\.modes"):
        tiny().replace(soc={"early_stop": True, "modes": ["zo"]})
    with pytest.raises(ValueError, match=r"^a run with early stop \(schedule\.stop_every 1, "
                                         r"holdout 2\) runs in one piece, not from epoch 3$"):
        run_registers(FoSchedule(stop_every=1, holdout=2), 4, 3)
