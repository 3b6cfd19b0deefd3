"""The run configuration's widths agree wherever they are written.

The sequencer's ``RUN_CONFIG`` layout, the SoC's run registers (``SocMap``) and the ranges
``TrainParams`` accepts describe the same fields. Until they are derived from one declaration
(issue 11 leaves that to the owners of rtl/params.py, rtl/sequencer.py and rtl/csr/), this test
keeps them in step: a field narrowed in one place and not the others fails here.
"""

import pytest
from amaranth.hdl import Shape

from fieldtune.config import DesignConfig
from fieldtune.rtl.csr.map import SocMap
from fieldtune.rtl.params import TrainParams
from fieldtune.rtl.sequencer import RUN_CONFIG

#: RUN_CONFIG field -> (register, field) the SoC wires it from (rtl/soc.py).
REGISTER_OF = {
    "mode": ("mode", "mode"), "epochs": ("epochs", "epochs"), "batch": ("batch", "batch"),
    "lr_shift": ("shifts", "lr_shift"), "eps_shift": ("shifts", "eps_shift"),
    "zo_lr_shift": ("shifts", "zo_lr_shift"), "seed": ("seed", "seed"),
    "steps": ("steps", "steps"), "queries": ("queries", "queries"),
    "step": ("zo_step", "step"), "cursor": ("zo_cursor", "cursor"),
    "eval_first": ("eval_range", "first"), "eval_count": ("eval_range", "count"),
    "watchdog": ("watchdog", "budget"),
}


def width(name):
    return Shape.cast(RUN_CONFIG.members[name]).width


def test_every_run_field_has_a_register():
    assert set(REGISTER_OF) == {name for name, _ in RUN_CONFIG}


@pytest.mark.parametrize("name", sorted(REGISTER_OF))
def test_register_width_is_the_sequencer_width(name):
    register, field = REGISTER_OF[name]
    _, declared = SocMap(DesignConfig()).field(register, field)
    assert declared.width == width(name)


@pytest.mark.parametrize("name,largest", [
    ("epochs", 1000), ("batch", 256), ("lr_shift", 24), ("eps_shift", 24),
    ("zo_lr_shift", 24), ("steps", 1_000_000), ("queries", 16), ("seed", 2**32 - 1),
])
def test_train_params_fit_their_registers(name, largest):
    # The largest value TrainParams accepts, and one more is rejected.
    TrainParams(**{name: largest})
    with pytest.raises(ValueError, match=f"^train.{name} must be"):
        TrainParams(**{name: largest + 1})
    assert largest < 2 ** width(name)
