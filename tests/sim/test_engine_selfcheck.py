# amaranth: UnusedElaboratable=no
"""The engines' self-check design agrees with its golden model at other geometries, and
rejects bad parameters with the exact message."""

import pytest

from fieldtune.sim.engines.script import run_amaranth
from fieldtune.sim.engines.selfcheck import MixPipeline, MixPipelineModel, SelfCheck, xorshift32


@pytest.mark.parametrize("lanes, width, depth_log2", [(1, 2, 1), (3, 5, 2), (16, 32, 3)])
def test_golden_model_matches_gateware_at_other_geometries(lanes, width, depth_log2):
    check = SelfCheck(items=10, cycles=60, bulk_items=30, lanes=lanes, width=width,
                      depth_log2=depth_log2)
    result = run_amaranth(MixPipeline(lanes, width, depth_log2), check.script)
    assert check.mismatches(result) == []


def test_xorshift32_known_values():
    # Marsaglia's generator from state 1: 270369, 67634689, 2647435461.
    state, seen = 1, []
    for _ in range(3):
        state = xorshift32(state)
        seen.append(state)
    assert seen == [270369, 67634689, 2647435461]


@pytest.mark.parametrize("kwargs, message", [
    ({"lanes": 0}, "lanes must be an integer from 1 to 16, not 0"),
    ({"width": 33}, "width must be an integer from 2 to 32, not 33"),
    ({"depth_log2": True}, "depth_log2 must be an integer from 1 to 12, not True"),
])
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        MixPipelineModel(**kwargs)
    with pytest.raises(ValueError, match=f"^{message}$"):
        MixPipeline(**kwargs)
