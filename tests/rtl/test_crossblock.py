"""The cross-block rules have one home and one wording: the configuration and the SoC report a
disagreement between blocks with the same message."""

from types import SimpleNamespace

import pytest

from fieldtune.config import DesignConfig
from fieldtune.rtl.crossblock import check_geometry, check_soc
from fieldtune.rtl.cache.params import CacheParams
from fieldtune.rtl.loss.params import LossParams
from fieldtune.rtl.mac.params import MacParams
from fieldtune.rtl.perturb.params import PerturbParams


def sections(**changes):
    """Sections that never went through DesignConfig (as a block-level caller may pass)."""
    values = {"perturb": PerturbParams(), "cache": CacheParams(), "mac": MacParams(),
              "loss": LossParams()}
    values.update(changes)
    return SimpleNamespace(**values)


@pytest.mark.parametrize("changes,bare,message", [
    ({"cache": {"lanes": 4}}, {"cache": CacheParams(lanes=4)},
     "cache.lanes must be 8 (mac.lanes), not 4"),
    ({"perturb": {"lanes": 16}}, {"perturb": PerturbParams(lanes=16)},
     "perturb.lanes must be 8 (mac.lanes), not 16"),
    ({"cache": {"taps": (64, 64)}}, {"cache": CacheParams(taps=(64, 64))},
     "cache.taps must be [128, 64, 32] (mac.taps), not [64, 64]"),
    ({"cache": {"classes": 8}}, {"cache": CacheParams(classes=8)},
     "cache.classes must be 10 (loss.classes), not 8"),
])
def test_one_wording_for_configuration_and_soc(changes, bare, message):
    with pytest.raises(ValueError) as from_config:     # the blocks' own default: 8 lanes
        DesignConfig().with_lanes(8).replace(**changes)
    with pytest.raises(ValueError) as from_soc:
        check_soc(sections(**bare))
    assert str(from_config.value) == str(from_soc.value) == message


def test_sections_must_have_their_types():
    with pytest.raises(ValueError, match=r"^mac must be a MacParams, not dict$"):
        check_geometry(sections(mac={}))
