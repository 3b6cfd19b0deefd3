# amaranth: UnusedElaboratable=no
"""The run configuration is declared once (:data:`fieldtune.rtl.params.RUN_FIELDS`); the
sequencer's ``RUN_CONFIG`` layout, the SoC's run registers (``SocMap``) and the ranges
``TrainParams`` accepts are derived from it. These tests fail if any of them drifts from the
declaration (a width written by hand somewhere, a register or range edited on its own)."""

import pytest
from amaranth.hdl import Shape

from fieldtune.config import DesignConfig
from fieldtune.rtl.cache.params import INDEX_WIDTH
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.csr.registers import RegisterBank, store_words
from fieldtune.rtl.params import (TrainParams, RUN_FIELDS, run_fields, run_register_names,
                                  run_field_lsb)
from fieldtune.rtl.sequencer import RUN_CONFIG, STORED_COUNTERS, Mode, Sequencer
from fieldtune.rtl.soc import SoC


def built(early_stop=True):
    """The default design, with the early-stop registers (every run field) by default."""
    return DesignConfig().replace(soc={"early_stop": early_stop})


def width(name):
    return Shape.cast(RUN_CONFIG.members[name]).width


def test_sequencer_layout_is_the_declaration():
    assert [name for name, _ in RUN_CONFIG] == list(RUN_FIELDS)
    for name, f in RUN_FIELDS.items():
        assert width(name) == f.width == f.hi.bit_length(), name


@pytest.mark.parametrize("name", sorted(RUN_FIELDS))
def test_register_is_the_declaration(name):
    f = RUN_FIELDS[name]
    _, declared = SocMap(built()).field(f.register, f.field)
    assert (declared.width, declared.access) == (width(name), "rw")


@pytest.mark.parametrize("early_stop", [False, True])
def test_every_writable_register_field_is_a_run_field(early_stop):
    run = {(f.register, f.field) for f in run_fields(early_stop).values()}
    writable = {(r.name, f.name) for r in SocMap(built(early_stop)).registers
                for f in r.fields if f.access == "rw"}
    assert writable == run
    assert early_stop or {f.option for f in RUN_FIELDS.values()} - {""} == {"early_stop"}


def test_mode_and_index_widths():
    assert Shape.cast(Mode).width == width("mode")
    assert max(m.value for m in Mode) <= RUN_FIELDS["mode"].hi
    for name in ("cursor", "eval_first", "eval_count"):
        assert width(name) == INDEX_WIDTH, name


@pytest.mark.parametrize("name,largest", [
    ("epochs", 1000), ("batch", 256), ("lr_shift", 24), ("eps_shift", 24),
    ("zo_lr_shift", 24), ("steps", 1_000_000), ("queries", 16), ("seed", 2**32 - 1),
])
def test_train_params_fit_their_registers(name, largest):
    # The largest value TrainParams accepts (the documented range), and one more is
    # rejected; the register holds it.
    TrainParams(**{name: largest})
    with pytest.raises(ValueError, match=f"^train.{name} must be"):
        TrainParams(**{name: largest + 1})
    assert largest < 2 ** width(name)
    assert {f.name for f in RUN_FIELDS.values() if f.train} >= {name}


@pytest.mark.parametrize("early_stop", [False, True])
def test_the_sequencer_reads_the_run_registers_where_the_bank_stores_them(early_stop):
    # The run registers live only in the register bank's block RAM: the sequencer reads
    # each field at the word and bit the map gives it, and its start checks read every
    # run register but the zeroth-order start's own (zo_step).
    config = built(early_stop)
    soc_map = SocMap(config)
    stored = tuple(r.name for r in soc_map.registers if r.stored)
    # the run registers, then the counters the loss results add to (early_stop: last)
    assert tuple(n for n in stored if n not in STORED_COUNTERS) == run_register_names(early_stop)
    assert stored[len(run_register_names(False)):][:3] == STORED_COUNTERS
    for name, f in run_fields(early_stop).items():
        lsb, _ = soc_map.field(f.register, f.field)
        assert run_field_lsb(name) == lsb, name
    soc = SoC(config)
    seq = Sequencer(soc.mac, soc.loss, soc.cache, soc.perturb, soc.modes,
                    early_stop=early_stop, store_words=store_words(soc.registers))
    assert seq.stored == stored and seq.run_registers == run_register_names(early_stop)
    # each stored register's block-RAM word is its bus address, on both sides
    bank = RegisterBank(soc.registers, scratch=seq.scratch)
    assert seq.store_words == bank.store_words == {n: soc_map.address(n) for n in stored}
    assert seq.scratch_base == bank.scratch_base > max(bank.store_words.values())
    assert set(seq.check_order) == set(seq.run_registers) - {"zo_step"}
    assert seq.check_order[0] == "mode" and seq.check_order[-1] == "order"
