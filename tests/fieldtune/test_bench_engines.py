"""``fieldtune bench engines``: its arguments are checked before anything is built (the
measurement itself is a command, docs/benchmarks.md "Simulation engines", not a timed test)."""

import pytest

from fieldtune.bench.engines import demo_estimates
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


def test_first_run_is_the_wall_time_a_user_waits_on_two_cores():
    # the build's wall time, then FO and the ZO run's two parts (60 % and 40 %) side by side
    # on two cores: the longest part decides (here ZO's first: 10.8 s); the CPU seconds add
    # both modes
    row = {"cycles_per_cpu_s": 1_000_000, "cold_s": 20.0, "cold_cpu_s": 34.0, "warm_s": 0.5,
           "warm_cpu_s": 0.4}
    got = demo_estimates(row, {"fo": 3_000_000, "zo": 18_000_000})
    assert got == pytest.approx({"first_run_s": 30.8, "later_run_s": 11.3,
                                 "first_run_cpu_s": 55.0, "later_run_cpu_s": 21.4})
    # no cold build measured (--no-cold): the warm one stands for it; parts of 1, 1.2 and
    # 0.8 s keep two cores busy for half of all, 1.5 s
    del row["cold_s"], row["cold_cpu_s"]
    assert demo_estimates(row, {"fo": 1_000_000, "zo": 2_000_000})["first_run_s"] == \
        pytest.approx(2.0)
