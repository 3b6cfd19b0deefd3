# amaranth: UnusedElaboratable=no
"""The training SoC in Amaranth's simulator, driven over its bus exactly as a host would:
first- and zeroth-order steps and evaluations bit-exact against the golden model (weights,
counters, flags), illegal register values flagged without effect, the watchdog and the host's
abort always bring it back to idle. A tiny geometry (4 lanes, 2 taps of 8 features, 4 classes)
keeps each simulation to a few seconds."""

from pathlib import Path

import numpy as np
import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.mac.layout import Layout
from fieldtune.rtl.sequencer import Mode, coef_shift_constants, MAX_QUERIES
from fieldtune.rtl.soc import (SoC, check_soc, ERRORS, soc_registers, memory_map_markdown)
from fieldtune.rtl.csr.map import SocMap
from fieldtune.sim.engines.script import run_amaranth
from fieldtune.sim.golden.soc import SocModel, RunConfig, check_run
from fieldtune.sim.golden.train import fo_coef_shifts, zo_coef_shift
from fieldtune.sim.golden.mac import zshift_for, MacError
from fieldtune.sim.soc_run import BusProgram, decode_status, decode_weights
from fieldtune.sim.soc_data import records_of, synthetic_data, initial_weights


def tiny(adapter="dense"):
    """4 lanes, taps (8, 8), 4 classes, 16 records of capacity."""
    cfg = DesignConfig.preset("tiny").replace(
        perturb={"lanes": 4, "pool_size": 64, "dimension": 64},
        cache={"taps": [8, 8], "classes": 4, "capacity": 16, "block_size": 8},
        mac={"taps": [8, 8], "classes": 4, "max_batch": 4},
        loss={"classes": 4})
    if adapter == "lowrank":
        mac = cfg.mac.__class__(**{**cfg.mac.to_dict(), "adapter": "lowrank", "rank": 2})
        cfg = cfg.replace(mac={"adapter": "lowrank", "rank": 2},
                          perturb={"dimension": Layout(mac).dimension})
    return cfg


RUN_MAX = 200_000


class Session:
    """One bus program on a SoC and the golden model fed the same way; :meth:`run` queues a
    run with status and weight read-back, :meth:`check` compares every queued run."""

    def __init__(self, config, n_records=8, seed=1):
        self.config = config
        self.soc = SoC(config)
        self.prog = BusProgram(self.soc)
        self.model = SocModel(config)
        self.data = synthetic_data(config, n_records, 0, seed)
        f, z, y = records_of(self.data, "train")
        self.prog.load_records(f, z, y)
        for rec in zip(f, z, y):
            self.model.write_record(*rec)
        self.expected = []
        #: Registers read beside the status after every run (indices in ``extra``).
        self.reads, self.extra = (), []

    def load(self, words):
        self.prog.load_weights(words, RUN_MAX)
        self.model.load_weights(words)

    def run(self, cfg, *, dump=True):
        self.prog.configure(cfg)
        self.prog.run(RUN_MAX, f"run {cfg}")
        status = self.prog.read_status()
        self.extra.append({name: self.prog.read_reg(name) for name in self.reads})
        weights = self.prog.dump_weights(RUN_MAX) if dump else None
        errors = self.model.start(cfg)
        self.expected.append((cfg, status, weights, errors, dict(self.model.counters),
                              set(self.model.errors), self.model.weights.copy(),
                              (self.model.next_step, self.model.next_cursor)))

    def simulate(self):
        result = run_amaranth(self.soc, self.prog.script)
        recs = result.records
        timeouts = [what for idx, what in self.prog.waits if recs[idx] is None]
        assert timeouts == [], "the SoC hung"
        return recs

    def check(self):
        recs = self.simulate()
        seen = []
        for cfg, st, dump, errors, counters, flags, weights, cont in self.expected:
            got = decode_status(recs, st)
            assert got["busy"] == 0 and got["done"] == 1
            assert set(got["errors"]) == flags, cfg
            for k, v in counters.items():
                if k != "cycles":
                    assert got[k] == v, (k, cfg)
            if cfg.mode == Mode.ZO.value and not errors:
                assert (got["next_step"], got["next_cursor"]) == cont
            if dump is not None:
                np.testing.assert_array_equal(decode_weights(recs, dump, self.config.mac),
                                              weights, err_msg=str(cfg))
            seen.append(got)
        return recs, seen


def test_first_order_steps_and_evaluation_match_golden():
    s = Session(tiny())
    # two epochs of two mini-batches, then a short last batch (7 records, batch 4)
    s.run(RunConfig(mode=Mode.FO, epochs=2, batch=4, lr_shift=4))
    s.run(RunConfig(mode=Mode.EVAL, eval_first=1, eval_count=6))
    _, seen = s.check()
    assert seen[0]["steps"] == 4 and seen[0]["epochs"] == 2 and seen[0]["samples"] == 16
    assert seen[1]["samples"] == 6 and seen[1]["cycles"] > 0


def test_zeroth_order_steps_match_golden():
    s = Session(tiny(), n_records=7)
    # one query: the cursor wraps after a short last batch (7 records, batch 4)
    s.run(RunConfig(mode=Mode.ZO, steps=3, batch=4, eps_shift=3, zo_lr_shift=6, seed=7,
                    step=5))
    # four queries (each update's shift divides its sum by 4), continuing at cursor 6
    s.run(RunConfig(mode=Mode.ZO, steps=2, batch=2, eps_shift=3, zo_lr_shift=5, seed=9,
                    queries=4, step=40, cursor=6))
    _, seen = s.check()
    assert seen[0]["steps"] == 3 and seen[0]["epochs"] == 1 and seen[0]["samples"] == 2 * 11
    assert (seen[1]["next_step"], seen[1]["next_cursor"]) == (48, 2)


def test_reshuffled_first_order_with_learning_rate_steps_matches_golden():
    s = Session(tiny(), n_records=7)
    # 7 records in a walk of 16 (rejections), a short last batch; steps at epochs 1 and 2,
    # one of them held twice (counts twice), one beyond the run (never reached)
    s.run(RunConfig(mode=Mode.FO, epochs=3, batch=2, lr_shift=3, order=1, order_seed=0xBEEF,
                    lr_step0=2, lr_step1=1, lr_step2=2, lr_step3=40))
    s.run(RunConfig(mode=Mode.FO, epochs=1, batch=4, lr_shift=4, order=1, order_seed=0))
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=7))
    _, seen = s.check()
    assert seen[0]["epochs"] == 3 and seen[0]["steps"] == 12 and seen[0]["samples"] == 21
    # the order matters: cache order with the same steps trains other weights
    plain = SocModel(s.config)
    for rec in zip(*records_of(s.data, "train")):
        plain.write_record(*rec)
    plain.start(mode=Mode.FO, epochs=3, batch=2, lr_shift=3, lr_step0=2, lr_step1=1,
                lr_step2=2, lr_step3=40)
    ref = SocModel(s.config)
    for rec in zip(*records_of(s.data, "train")):
        ref.write_record(*rec)
    ref.start(mode=Mode.FO, epochs=3, batch=2, lr_shift=3, order=1, order_seed=0xBEEF,
              lr_step0=2, lr_step1=1, lr_step2=2, lr_step3=40)
    assert not np.array_equal(plain.weights, ref.weights)


@pytest.mark.parametrize("built", ["fo", "zo"])
def test_a_design_with_one_training_mode_runs_it_and_rejects_the_other(built):
    other = {"fo": "zo", "zo": "fo"}[built]
    cfg = tiny().replace(soc={"modes": [built]}, train={"mode": built})
    soc = SoC(cfg)
    assert soc.modes == (built,)
    s = Session(cfg, n_records=7)
    runs = {"fo": RunConfig(mode=Mode.FO, epochs=1, batch=4, lr_shift=4),
            "zo": RunConfig(mode=Mode.ZO, steps=2, batch=4, eps_shift=3, zo_lr_shift=6)}
    s.run(runs[other], dump=False)         # first: a dump run would reset the counters
    s.prog.write_reg("errors", bad_mode=1)
    s.model.errors.clear()
    s.run(runs[built])
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=7))
    _, seen = s.check()
    assert seen[0]["errors"] == ["bad_mode"] and seen[0]["samples"] == 0
    assert seen[1]["errors"] == [] and seen[1]["samples"] > 0
    assert seen[2]["samples"] == 7


def test_low_rank_adapters_match_golden():
    cfg = tiny("lowrank")
    s = Session(cfg)
    s.load(initial_weights(cfg, 3))
    s.run(RunConfig(mode=Mode.FO, epochs=1, batch=4, lr_shift=5))
    s.run(RunConfig(mode=Mode.ZO, steps=2, batch=4, eps_shift=3, zo_lr_shift=6, seed=3))
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=8))
    s.check()


def test_illegal_register_values_are_flagged_and_change_nothing():
    cfg = tiny()
    s = Session(cfg, n_records=6)
    bad = [
        RunConfig(mode=5),
        RunConfig(mode=7),
        RunConfig(mode=Mode.FO, epochs=0, batch=4),
        RunConfig(mode=Mode.FO, batch=3),                    # not a power of two
        RunConfig(mode=Mode.FO, batch=8),                    # above mac.max_batch (4)
        RunConfig(mode=Mode.ZO, batch=8),                    # more than the 6 records
        RunConfig(mode=Mode.ZO, batch=4, eps_shift=9),       # zshift below 0
        RunConfig(mode=Mode.ZO, batch=4, steps=0),
        RunConfig(mode=Mode.ZO, batch=4, queries=0),
        RunConfig(mode=Mode.ZO, batch=4, queries=MAX_QUERIES + 1),
        RunConfig(mode=Mode.ZO, batch=4, queries=3),
        RunConfig(mode=Mode.ZO, batch=4, cursor=6),
        RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=0),
        RunConfig(mode=Mode.EVAL, eval_first=4, eval_count=3),
        RunConfig(mode=Mode.FO, batch=2, watchdog=0),
    ]
    expected = []
    for c in bad:
        flags = check_run(cfg, c, 6)
        assert flags, c                                      # each is illegal
        expected.append(flags)
        s.prog.write_reg("errors", **{f: 1 for f in ERRORS})   # clear every flag
        s.run(c, dump=False)
        s.model.errors.clear()
    s.prog.write_reg("errors", **{f: 1 for f in ERRORS})
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=6))  # still works after all that
    recs, seen = s.check()
    for got, flags in zip(seen, expected):
        assert set(got["errors"]) == flags
        assert got["samples"] == 0 and got["steps"] == 0   # nothing ran
    assert seen[-1]["samples"] == 6 and seen[-1]["errors"] == []


def test_a_design_without_the_schedule_runs_the_plain_first_order_only():
    cfg = tiny().replace(soc={"schedule": False})
    s = Session(cfg, n_records=7)
    for bad in (RunConfig(mode=Mode.FO, epochs=1, batch=4, order=1),
                RunConfig(mode=Mode.FO, epochs=1, batch=4, lr_step3=1)):
        assert check_run(cfg, bad, 7) == {"bad_schedule"}
        s.run(bad, dump=False)
        s.prog.write_reg("errors", bad_schedule=1)
        s.model.errors.clear()
    s.run(RunConfig(mode=Mode.FO, epochs=2, batch=4, lr_shift=4))
    # ZO and EVAL ignore the schedule registers
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=7, order=1, lr_step0=1))
    _, seen = s.check()
    assert [g["errors"] for g in seen] == [["bad_schedule"], ["bad_schedule"], [], []]
    assert seen[2]["samples"] == 14 and seen[3]["samples"] == 7
    with pytest.raises(ValueError, match=r"^soc\.schedule must be true or false, not 'no'$"):
        tiny().replace(soc={"schedule": "no"})


def test_learning_rate_steps_past_the_shift_range_are_flagged():
    cfg = tiny().replace(mac={"max_batch": 16})
    s = Session(cfg, n_records=16)
    # cshift C_FO - lr_shift - log2(16) = 6 - 31 - 4 = -29: legal alone, but four steps (one
    # beyond the run, one held twice) would take it to -33, below the MAC array's -32
    bad = RunConfig(mode=Mode.FO, batch=16, lr_shift=31, lr_step0=999, lr_step1=1,
                    lr_step2=1, lr_step3=2, order=1)
    assert check_run(cfg, bad, 16) == {"bad_shift"}
    s.run(bad, dump=False)
    s.prog.write_reg("errors", bad_shift=1)
    s.model.errors.clear()
    s.run(RunConfig(mode=Mode.EVAL, eval_first=0, eval_count=16), dump=False)
    _, seen = s.check()
    assert seen[0]["errors"] == ["bad_shift"] and seen[0]["samples"] == 0
    assert seen[1]["errors"] == [] and seen[1]["samples"] == 16


def test_start_while_busy_and_bus_errors_are_flagged():
    cfg = tiny()
    s = Session(cfg)
    p = s.prog
    c = RunConfig(mode=Mode.FO, epochs=2, batch=2, lr_shift=4)
    p.configure(c)
    p.write_reg("control", start=1)
    p.write_reg("epochs", epochs=7)                          # locked while busy: ignored,
    locked_flags = p.read_reg("errors")                      # flagged
    p.write_reg("control", start=1)                          # while busy: ignored, flagged
    p.write_reg("control", clear_cache=1)                    # while busy: ignored, flagged
    p.wait({"done": 1}, RUN_MAX, "FO run")
    status = p.read_status()
    epochs_after = p.read_reg("epochs")
    dump = p.dump_weights(RUN_MAX)
    s.model.start(c)
    weights_err = p.access(s.soc.address("weights"), 5)      # no LOAD run: err
    e1 = p.errors[-1][0]
    p.access(s.soc.address("weights"))                       # no DUMP run: err
    e2 = p.errors[-1][0]
    p.access(0x30, 1)                                        # unmapped: err
    e3 = p.errors[-1][0]
    # a malformed record (last too early) is dropped and flagged
    p.write_stream(s.soc.address("records"), [7, 9 | 1 << 16], "short record")
    after = p.read_status()
    recs = s.simulate()
    got = decode_status(recs, status)
    assert set(got["errors"]) >= {"busy"}
    flags = s.soc.map.unpack("errors", recs[locked_flags])
    assert {n for n, v in flags.items() if v} == {"busy"}
    assert recs[epochs_after] == s.soc.map.pack("epochs", epochs=2)     # the run used 2
    assert got["samples"] == s.model.counters["samples"]
    assert got["records"] == 8
    np.testing.assert_array_equal(decode_weights(recs, dump, cfg.mac), s.model.weights)
    assert weights_err is None and (recs[e1], recs[e2], recs[e3]) == (1, 1, 1)
    tail = decode_status(recs, after)
    assert "cache_record_error" in tail["errors"] and tail["records"] == 8


def test_watchdog_and_abort_return_to_idle():
    cfg = tiny()
    s = Session(cfg)
    p = s.prog
    before = p.dump_weights(RUN_MAX)
    # a budget of 3 cycles without datapath progress: the perturbation engine's latency
    # alone exceeds it, so the run is aborted before any update
    p.configure(RunConfig(mode=Mode.ZO, steps=4, batch=4, eps_shift=3, watchdog=3))
    p.run(RUN_MAX, "ZO run under a tiny watchdog")
    dog = p.read_status()
    after = p.dump_weights(RUN_MAX)
    # a LOAD run waits on the host forever; the host aborts it
    p.write_reg("mode", mode=Mode.LOAD.value)
    p.write_reg("control", start=1)
    p.script.step(50)
    p.write_reg("control", abort=1)
    p.wait({"done": 1}, 1000, "aborted LOAD run")
    aborted = p.read_status()
    # the SoC works as before
    p.write_reg("errors", **{f: 1 for f in ERRORS})
    s.run(RunConfig(mode=Mode.FO, epochs=1, batch=4, lr_shift=4))
    recs, seen = s.check()
    got = decode_status(recs, dog)
    assert got["errors"] == ["watchdog"] and got["busy"] == 0 and got["done"] == 1
    np.testing.assert_array_equal(decode_weights(recs, after, cfg.mac),
                                  decode_weights(recs, before, cfg.mac))
    assert "aborted" in decode_status(recs, aborted)["errors"]
    assert seen[-1]["errors"] == []


# -- static checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ["dense", "lowrank"])
def test_sequencer_shifts_equal_golden_training(adapter):
    cfg = tiny(adapter)
    mac, loss = cfg.mac, cfg.loss
    c_fo, c_a, c_zo, k0 = coef_shift_constants(mac, loss)
    for batch in (1, 2, 4, 16, 256):
        lb = batch.bit_length() - 1
        for lr in range(0, 25):
            assert (c_fo - lr - lb, c_a - lr - lb) == fo_coef_shifts(mac, loss, lr, batch)
            for eps in range(0, 10):
                for queries in (1, 2, 16):
                    lq = queries.bit_length() - 1
                    assert c_zo - lr - lb - lq + eps == zo_coef_shift(mac, loss, lr, eps, batch,
                                                                      queries)
    for eps in range(0, 12):
        try:
            assert k0 - eps == zshift_for(mac, eps)
        except MacError:
            assert k0 - eps < 0


def test_register_map_is_data():
    cfg = DesignConfig()
    soc = SocMap(cfg)                            # plain data: nothing is built
    mm = soc.memory_map()
    names = [r["name"] for r in mm["registers"]]
    assert len(names) == len(set(names)) and len(names) <= 0x20
    assert [w["address"] for w in mm["windows"]] == [0x20, 0x22]
    errors = next(r for r in mm["registers"] if r["name"] == "errors")
    assert [f["name"] for f in errors["fields"]] == list(ERRORS)
    assert all(f["access"] == "w1c" for f in errors["fields"])
    assert soc.address("control") == names.index("control")
    assert [r["name"] for r in mm["registers"]] == \
        [r.name for r in soc_registers(cfg.mac, cfg.cache, cfg.perturb)]


@pytest.mark.parametrize("changes,message", [
    ({"perturb": {"frac_bits": 4}},
     r"perturb\.width/frac_bits must be 8/5 \(mac\.perturb_width/perturb_frac\), not 8/4"),
    ({"cache": {"out_frac": 7}},
     r"cache\.out_width/out_frac must be 16/8 \(the MAC array's feature format\), not 16/7"),
    ({"loss": {"logit_width": 18}},
     r"loss\.logit_width/logit_frac must be 16/8 \(the cache's frozen logits z0\), not 18/8"),
    ({"mac": {"coef_width": 12}},
     r"mac\.coef_width must be at least 16 \(dz is signed Q1\.prob_frac\), not 12"),
    ({"mac": {"adapter": "lowrank"}, "cache": {"dequantizer_lanes": 1},
      "perturb": {"dimension": 1056}},
     r"cache\.dequantizer_lanes must be 0 or at least 2 \(a beat every 4 cycles for the MAC "
     r"array\), not 1"),
])
def test_soc_configuration_errors(changes, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_soc(DesignConfig().with_lanes(8).replace(**changes))


def test_perturbation_dimension_must_cover_the_weights():
    lowrank = DesignConfig().replace(mac={"adapter": "lowrank"})
    dim = Layout(lowrank.mac).dimension
    with pytest.raises(ValueError, match=rf"^perturb\.dimension must be {dim} \(the adapter "
                                         r"weights, padding included\), not 2240$"):
        check_soc(lowrank)


def test_documented_memory_map_is_the_generated_one():
    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    assert memory_map_markdown(SocMap(DesignConfig())) in doc


@pytest.mark.parametrize("preset,width,changes,lanes", [
    ("up5k", None, {}, 1),                           # 4 lanes, a beat every 10 words
    ("up5k", 8, {}, 1),                              # 8 lanes, a beat every 10 words
    ("ecp5-85f", None, {}, 4),                       # 32 lanes, a beat every 10 words
    ("up5k", 8, {"mac": {"adapter": "lowrank"}, "perturb": {"dimension": 1056}}, 2),  # rank 4
    ("up5k", 8, {"cache": {"dequantizer_lanes": 8}}, 8),  # as configured
])
def test_dequantizer_as_narrow_as_the_mac_array_allows(preset, width, changes, lanes):
    config = DesignConfig.preset(preset)
    soc = SoC((config.with_lanes(width) if width else config).replace(**changes))
    assert soc.cache.dequantizer_lanes == lanes
    assert soc.cache.beat_cycles <= Layout(soc.mac).regions[0].rows
