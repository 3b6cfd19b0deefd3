"""``fieldtune bench engines``: its arguments are checked before anything is built (the
measurement itself is a command, docs/benchmarks.md "Simulation engines", not a timed test)."""

import pytest

from fieldtune.cli import main


@pytest.mark.parametrize("argv,message", [
    (["--engines", "cxxrtl,spice"], "error: engine must be one of verilator, cxxrtl, amaranth, "
                                    "icarus, not 'spice'"),
    (["--records", "0"], "error: --records must be an integer from 1 to 256 (cache.capacity), "
                         "not 0"),
    (["--check-records", "257"], "error: --check-records must be an integer from 1 to 256 "
                                 "(cache.capacity), not 257"),
    (["--repeats", "0"], "error: --repeats must be a positive integer, not 0"),
])
def test_bench_engines_rejects_bad_arguments(argv, message, capsys):
    assert main(["bench", "engines", *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
