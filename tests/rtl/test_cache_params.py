"""CacheParams validation: every field's message, verbatim, and the derived properties."""

import re

import pytest

from fieldtune.rtl.cache.params import CacheParams


@pytest.mark.parametrize("fields,message", [
    ({"lanes": 0}, "cache.lanes must be an integer from 1 to 64, not 0"),
    ({"in_width": 12}, "cache.in_width must be one of 8, 16, not 12"),
    ({"in_frac": 16}, "cache.in_frac must be an integer from 0 to 15, not 16"),
    ({"out_width": 20}, "cache.out_width must be an integer from 8 to 18, not 20"),
    ({"block_size": 128}, "cache.block_size must be a power of two from 8 to 64, not 128"),
    ({"codebook": "fp4"}, "cache.codebook must be one of 'nf4', 'unf4', 'int4', 'uint4', "
                          "'pass8', 'pass16', not 'fp4'"),
    ({"capacity": 0}, "cache.capacity must be an integer from 1 to 65536, not 0"),
    ({"memory": "lutram"}, "cache.memory must be one of 'bram', 'spram', not 'lutram'"),
    ({"pass8_frac": 8}, "cache.pass8_frac must be an integer from 0 to 7, not 8"),
    ({"dequantizer_lanes": 9}, "cache.dequantizer_lanes must be an integer from 0 to 8, not 9"),
    ({"taps": ()}, "cache.taps must be a list of 1 to 8 tap sizes, not ()"),
])
def test_messages(fields, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CacheParams(**fields)


def test_derived():
    p = CacheParams()
    assert (p.features, p.code_bits, p.scaled, p.unsigned, p.label_bits) == \
        (224, 4, True, True, 4)
    assert CacheParams(codebook="pass16").code_bits == 16
    assert not CacheParams(codebook="nf4").unsigned
    assert (p.dq_lanes, p.beat_cycles) == (8, 1)
    assert (CacheParams(dequantizer_lanes=3).dq_lanes,
            CacheParams(dequantizer_lanes=3).beat_cycles) == (3, 3)
    # 0: the fewest lanes that keep up with a reader taking a beat every `rows` cycles
    assert CacheParams().for_consumer(10).dequantizer_lanes == 1
    assert CacheParams(lanes=32).for_consumer(10).beat_cycles == 8
    assert CacheParams().for_consumer(4).dequantizer_lanes == 2
    assert CacheParams(dequantizer_lanes=8).for_consumer(10).dequantizer_lanes == 8
