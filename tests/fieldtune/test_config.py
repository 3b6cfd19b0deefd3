"""The design configuration rejects bad values with messages naming field, value and range."""

import pytest

from fieldtune.config import DesignConfig, PRESETS, DEFAULT_LANES
from fieldtune.rtl.perturb.params import PerturbParams
from fieldtune.rtl.cache.params import CacheParams
from fieldtune.rtl.mac.params import MacParams
from fieldtune.rtl.params import TrainParams


def test_defaults_and_presets_validate():
    default = DesignConfig()
    assert default.perturb.lanes == default.cache.lanes == default.mac.lanes == DEFAULT_LANES
    assert default.mac.acc_memory == "bram" and default.soc.modes == ("fo", "zo")
    assert DesignConfig.preset("up5k") == default
    for name in PRESETS:
        cfg = DesignConfig.preset(name)
        assert cfg.perturb.lanes == cfg.mac.lanes == cfg.cache.lanes
    assert DesignConfig.preset("ecp5-85f").board == "ulx3s-85f"


@pytest.mark.parametrize("section,changes,message", [
    ("perturb", {"lanes": 0}, "perturb.lanes must be an integer from 1 to 256, not 0"),
    ("perturb", {"lanes": 2.0}, "perturb.lanes must be an integer from 1 to 256, not 2.0"),
    ("perturb", {"width": 19}, "perturb.width must be an integer from 4 to 18, not 19"),
    ("perturb", {"frac_bits": 7},
     "perturb.frac_bits must be an integer from 0 to 6, not 7"),
    ("perturb", {"source": "mt19937"},
     "perturb.source must be one of 'xoshiro128pp', 'lfsr', not 'mt19937'"),
    ("perturb", {"pool_size": 1000},
     "perturb.pool_size must be a power of two from 64 to 4096, not 1000"),
    ("perturb", {"seed": 0}, "perturb.seed must be an integer from 1 to 4294967295, not 0"),
    ("perturb", {"shape": "clt4", "scaling": "adaptive"},
     "perturb.scaling must be 'none' when perturb.shape is 'clt4' (PeZO scaling applies to "
     "uniform numbers), not 'adaptive'"),
    ("cache", {"codebook": "fp4"},
     "cache.codebook must be one of 'nf4', 'unf4', 'int4', 'uint4', 'pass8', 'pass16', "
     "not 'fp4'"),
    ("cache", {"block_size": 12},
     "cache.block_size must be a power of two from 8 to 64, not 12"),
    ("train", {"epochs": 0}, "train.epochs must be an integer from 1 to 1000, not 0"),
    ("train", {"mode": "so"}, "train.mode must be one of 'fo', 'zo', not 'so'"),
])
def test_bad_values_are_named(section, changes, message):
    with pytest.raises(ValueError) as info:
        DesignConfig().replace(**{section: changes})
    assert str(info.value) == message


def test_accumulator_width_is_proven_wide_enough():
    # 224 features: 16 + 16 - 1 + ceil(log2 224) = 39 bits at least.
    with pytest.raises(ValueError, match=r"^mac.acc_width must be an integer from 39 to 64, "
                                         r"not 32$"):
        MacParams(acc_width=32)
    assert MacParams(acc_width=39).acc_width == 39


def test_cross_section_rules():
    with pytest.raises(ValueError, match=r"^cache.lanes must be 4 \(mac.lanes\), not 8$"):
        DesignConfig().replace(cache={"lanes": 8})
    with pytest.raises(ValueError, match=r"^mac.classes must be 10 \(loss.classes\), not 8$"):
        DesignConfig().replace(mac={"classes": 8}, cache={"classes": 10})
    assert DesignConfig().with_lanes(16).perturb.lanes == 16


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"^perturb.lane is not a known field; known fields"):
        DesignConfig().replace(perturb={"lane": 4})
    with pytest.raises(ValueError, match=r"^perturbs is not a known configuration key"):
        DesignConfig.from_dict({"perturbs": {}})
    with pytest.raises(ValueError, match=r"^preset must be one of"):
        DesignConfig.preset("xc7")
    with pytest.raises(ValueError, match=r"^board must be one of 'icebreaker', 'ulx3s-12f', "
                                         r"'ulx3s-25f', 'ulx3s-45f', 'ulx3s-85f', "
                                         r"'orangecrab-25f', 'orangecrab-85f', not 'arty'$"):
        DesignConfig(board="arty")


@pytest.mark.parametrize("board", ["ulx3s-85f", "orangecrab-85f"])
def test_spram_cache_only_on_a_board_with_spram(board):
    with pytest.raises(ValueError, match=rf"^cache.memory must be 'bram' on board '{board}' "
                                         r"\(its FPGA has no SPRAM\), not 'spram'$"):
        DesignConfig().replace(board=board)
    assert DesignConfig().replace(board=board, cache={"memory": "bram"}).board == board


def test_toml_round_trip_and_preset_base(tmp_path):
    cfg = DesignConfig.preset("ecp5-85f").replace(perturb={"reuse": "onthefly", "seed": 7})
    path = tmp_path / "design.toml"
    path.write_text(cfg.to_toml())
    assert DesignConfig.from_toml(path) == cfg
    path.write_text('preset = "tiny"\n[train]\nepochs = 3\n')
    loaded = DesignConfig.from_toml(path)
    assert loaded.mac.lanes == 4 and loaded.train.epochs == 3
    path.write_text('[perturb]\nlanes = 300\n')
    with pytest.raises(ValueError, match=r"^perturb.lanes must be an integer from 1 to 256, "
                                         r"not 300$"):
        DesignConfig.from_toml(path)


def test_sections_are_frozen():
    p = PerturbParams()
    with pytest.raises(Exception):
        p.lanes = 3
    assert CacheParams().features == 224
    assert TrainParams().mode == "fo"


def test_perturbation_shift_multipliers_only_where_the_device_has_them():
    # the UP5K's 8 SB_MAC16 hold 4 lanes' multipliers and their shift multipliers, not 8
    with pytest.raises(ValueError, match=r"^mac.perturb_shifter must be 'logic' on board "
                                         r"'icebreaker' at 8 lanes \(2 multipliers a lane, "
                                         r"its FPGA has 8\), not 'multipliers'$"):
        DesignConfig.from_dict({"perturb": {"lanes": 8}, "cache": {"lanes": 8},
                                "mac": {"lanes": 8, "perturb_shifter": "multipliers"}})
    assert DesignConfig().mac.perturb_shifter == "multipliers"        # the default, 4 lanes
    # with_lanes keeps multipliers where they fit and falls back to logic where they do not
    assert DesignConfig().with_lanes(2).mac.perturb_shifter == "multipliers"
    assert DesignConfig().with_lanes(8).mac.perturb_shifter == "logic"
    assert DesignConfig.preset("ecp5-85f").mac.perturb_shifter == "logic"
    with pytest.raises(ValueError, match=r"^mac.perturb_shifter must be one of 'logic', "
                                         r"'multipliers', not 'x'"):
        DesignConfig.from_dict({"mac": {"perturb_shifter": "x"}})
