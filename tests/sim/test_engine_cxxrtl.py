"""CXXRTL engine: bit-exact with Amaranth's simulator and the golden model, native-speed loops,
ports of any width, memories by name, waveforms, power-on reset and the model cache."""

import os

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.hdl._ir import PortDirection

from fieldtune.sim.engines import cxxrtl, hdl, verilator
from fieldtune.sim.engines.script import EngineUnavailable, Script, run_amaranth
from fieldtune.sim.engines.selfcheck import (MixPipeline, MixPipelineModel, SelfCheck,
                                             pack_lanes, table_init, unpack_lanes)
from fieldtune.toolchain import tool_env


#: Why the tests need the C++ compiler, for the skip (or, in CI, failure) message.
COMPILER = "CXXRTL models are compiled with the system compiler (apt-get install g++)"


def _require_compiler(require_programs):
    require_programs(os.environ.get("CXX") or "g++", why=COMPILER)


@pytest.fixture(scope="module")
def model(require_programs):
    _require_compiler(require_programs)
    return cxxrtl.build(MixPipeline(), env=tool_env("YOSYS"))


@pytest.fixture
def sim(model):
    with model.simulate() as s:
        yield s


def test_scripted_run_matches_amaranth_and_golden_model(sim):
    check = SelfCheck()
    fast = sim.run(check.script)
    slow = run_amaranth(MixPipeline(), check.script)
    assert fast.records == slow.records
    assert fast.cycles == slow.cycles
    assert check.mismatches(fast) == []


def _start(sim, seed, count, lanes):
    sim.set("seed", seed)
    sim.set("count", count)
    sim.set("i__payload", pack_lanes(lanes, 16))
    sim.set("i__valid", 1)
    sim.set("o__ready", 1)
    sim.set("start", 1)
    sim.step()
    sim.set("start", 0)


def test_long_run_waits_in_native_loop(sim):
    items, lanes = 50_000, [-3, 1, 4, -1, 5, -9, 2, -6]
    _start(sim, 0xC0FFEE, items, lanes)
    assert sim.wait("done", 1, max_cycles=10 * items) == items + 2
    _, checksum, total = MixPipelineModel().run(0xC0FFEE, [lanes] * items)
    assert sim.get("checksum") == checksum
    assert sim.get("total") == total & (1 << 80) - 1
    assert sim.cycles == items + 3


def test_wait_timeout_raises_after_max_cycles(sim):
    with pytest.raises(TimeoutError, match=r"^done did not become 1 within 25 cycles$"):
        sim.wait("done", 1, max_cycles=25)
    assert sim.cycles == 25


def test_memory_by_name_loads_and_reads_back(sim):
    table = sim.memory("table")
    assert (table.width, table.depth, table.chunks, len(table)) == (128, 64, 4, 64)
    assert table.read() == [pack_lanes(e, 16) for e in table_init(64, 8, 16)]
    model = MixPipelineModel()
    entries = {a: [(a * 1000 + k * 77) % 65536 - 32768 for k in range(8)] for a in range(64)}
    table.write(0, [pack_lanes(entries[a], 16) for a in range(64)])
    for a, e in entries.items():
        model.load(a, e)
    assert table.read(5, 2) == [pack_lanes(entries[5], 16), pack_lanes(entries[6], 16)]
    words = table.read_words(7, 1)
    assert words.shape == (1, 4)
    assert unpack_lanes(sum(int(w) << (32 * i) for i, w in enumerate(words[0])), 16, 8) == \
        entries[7]

    lanes = [100, -100, 7, 0, -1, 1, 32767, -32768]
    _start(sim, 99, 300, lanes)
    sim.wait("done", 1, max_cycles=1000)
    _, checksum, total = model.run(99, [lanes] * 300)
    assert (sim.get("checksum"), sim.get("total")) == (checksum, total & (1 << 80) - 1)

    with pytest.raises(IndexError, match=r"^memory table has 64 elements; \[63, 65\) is "
                                         r"outside it$"):
        table.read(63, 2)
    with pytest.raises(ValueError, match=r"^memory table elements are 128 bits wide, not wide "
                                         r"enough for 340282366920938463463374607431768211456$"):
        table.write(0, [1 << 128])


def test_ports_of_any_width_by_name(sim):
    wide = (1 << 127) | 0x0123_4567_89AB_CDEF_0011_2233
    sim.set("i__payload", wide)
    assert sim.get("i__payload") == wide
    sim.set("i__payload", -1)
    assert sim.get("i__payload") == (1 << 128) - 1
    with pytest.raises(ValueError, match=r"^value for port i__payload must fit in 128 bits, "
                                         r"not 340282366920938463463374607431768211456$"):
        sim.set("i__payload", 1 << 128)
    with pytest.raises(ValueError, match=r"^'checksum' is not an input port of the design"):
        sim.set("checksum", 1)
    with pytest.raises(KeyError, match=r"the design has no simulation object named 'nope'"):
        sim.get("nope")
    # Internal registers are visible by name too (the xorshift state starts at 0).
    assert sim.get("state") == 0
    objects = sim.objects()
    assert objects["table"] == ("memory", 128, 64)
    assert objects["o__payload"] == ("output", 144, 1)
    assert objects["total"] == ("output", 80, 1)


def test_power_on_reset_restores_registers_and_memories(sim):
    _start(sim, 5, 10, [1] * 8)
    sim.memory("table").write(3, [12345])
    sim.wait("done", 1, max_cycles=100)
    assert sim.get("checksum") != 0
    sim.reset()
    assert sim.cycles == 0
    assert (sim.get("checksum"), sim.get("done"), sim.get("total")) == (0, 0, 0)
    assert sim.memory("table").read(3, 1) == [pack_lanes(table_init(64, 8, 16)[3], 16)]


def test_vcd_written_only_while_asked(sim, tmp_path):
    path = tmp_path / "run.vcd"
    _start(sim, 5, 10, [1] * 8)
    with sim.vcd(path):
        sim.step(4)
    sim.step(100)
    text = path.read_text()
    assert "$var" in text and " checksum " in text and " clk " in text
    stamps = [int(line[1:]) for line in text.splitlines() if line.startswith("#")]
    assert stamps == [10, 15, 20, 25, 30, 35, 40, 45, 50]


class _Counter(Elaboratable):
    """A counter with an enable; not a Component, so it names its ports for the engines."""

    def __init__(self):
        self.enable = Signal()
        self.count = Signal(16)
        self.ports = {"enable": (self.enable, PortDirection.Input),
                      "count": (self.count, PortDirection.Output)}

    def elaborate(self, platform):
        m = Module()
        with m.If(self.enable):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class _FallingCounter(Elaboratable):
    """A counter clocked on the falling edge; not a Component, so it names its ports."""

    def __init__(self):
        self.domain = ClockDomain("sync", clk_edge="neg")
        self.count = Signal(16)
        self.ports = {"clk": (self.domain.clk, PortDirection.Input),
                      "rst": (self.domain.rst, PortDirection.Input),
                      "count": (self.count, PortDirection.Output)}

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.d.sync += self.count.eq(self.count + 1)
        return m


class _Watch(Elaboratable):
    """Registers ``reached`` one cycle after ``count`` is 999."""

    def __init__(self):
        self.count = Signal(16)
        self.reached = Signal()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.reached.eq(self.count == 999)
        return m


class _Alarm(Elaboratable):
    """An output that is a plain copy of a submodule's register, as the SoC's ``done``."""

    def __init__(self):
        self.enable = Signal()
        self.count = Signal(16)
        self.alarm = Signal()
        self.ports = {"enable": (self.enable, PortDirection.Input),
                      "count": (self.count, PortDirection.Output),
                      "alarm": (self.alarm, PortDirection.Output)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.watch = watch = _Watch()
        with m.If(self.enable):
            m.d.sync += self.count.eq(self.count + 1)
        m.d.comb += [watch.count.eq(self.count), self.alarm.eq(watch.reached)]
        return m


def test_wait_on_an_output_copying_a_register_watches_the_register(tmp_path, require_programs):
    _require_compiler(require_programs)
    design = _Alarm()
    model = cxxrtl.build(design, ports=design.ports, env=tool_env("YOSYS"), cxxflags=("-O0",),
                         cache=tmp_path)
    script = (Script().set("enable", 1).wait("alarm", 1, 5000).sample("count", "alarm")
              .wait("alarm", 0, 5).sample("count").set("enable", 0).wait("alarm", 1, 10))
    with model.simulate() as sim:
        assert sim.register_copies == 1
        fast = sim.run(script)
        assert sim.wait("alarm", 1, 10, raise_timeout=False) is None
    reference = _Alarm()
    assert fast == run_amaranth(reference, script, ports=reference.ports)
    assert fast.records == [1000, 1000, 1, 1, 1001, None]


def test_mangled_names_as_write_cxxrtl_writes_them():
    assert cxxrtl.mangle("clk") == "p_clk"
    assert cxxrtl.mangle("seq.done") == "p_seq_2e_done"
    assert cxxrtl.mangle("bus__ack") == "p_bus____ack"


_SOURCE = """#include "design.h"

namespace cxxrtl_design {

bool p_top::eval(performer *performer) {
	p_done = p_seq_2e_done.curr;
	p_busy = p_seq_2e_busy.curr;
	if (posedge_p_clk) {
		p_seq_2e_done.next = p_go;
	}
	return converged;
}

void p_top::debug_eval() {
	p_x = p_y;
}

CXXRTL_EXTREMELY_COLD
void p_top::debug_info(debug_items *items, debug_scopes *scopes, std::string path) {
	if (items) {
		items->add(path, "done", "", p_done, 0, debug_item::OUTPUT);
	}
}

} // namespace cxxrtl_design
"""

_HEADER = """struct p_top : public module {
	wire<1> p_seq_2e_done;
	wire<2> p_seq_2e_busy;
	/*output*/ value<1> p_done;
	/*output*/ value<1> p_busy;
	/*input*/ value<1> p_clk;
	value<1> prev_p_clk;
};
"""


def test_debug_information_is_split_into_its_own_translation_unit():
    design, debug = cxxrtl.split_debug_info(_SOURCE)
    assert "debug_" not in design and "CXXRTL_EXTREMELY_COLD" not in design
    assert "bool p_top::eval(" in design and design.endswith("} // namespace cxxrtl_design\n")
    assert debug.startswith('#include "design.h"\n\nnamespace cxxrtl_design {\n')
    assert "CXXRTL_EXTREMELY_COLD\nvoid p_top::debug_info(" in debug
    assert "void p_top::debug_eval() {\n\tp_x = p_y;\n}\n" in debug
    assert debug.endswith("} // namespace cxxrtl_design\n")
    # A layout it does not know stays in one unit.
    assert cxxrtl.split_debug_info("int x;\n") == ("int x;\n", "")


def test_design_glue_names_class_edge_detector_and_register_copies():
    glue = cxxrtl.design_glue(_HEADER, _SOURCE, "top", "clk").splitlines()
    # p_busy is not a copy: the widths differ.
    assert glue[1:] == ['#include "design.h"', "#define FT_TOP cxxrtl_design::p_top",
                        "#define FT_PREV_CLOCK prev_p_clk",
                        "#define FT_ALIASES(top) {top.p_done.data, top.p_seq_2e_done.curr.data}"]
    # Another top module name or clock: nothing but the include, or no edge detector.
    assert cxxrtl.design_glue(_HEADER, _SOURCE, "soc", "clk").splitlines()[1:] == \
        ['#include "design.h"']
    assert "FT_PREV_CLOCK" not in cxxrtl.design_glue(_HEADER, _SOURCE, "top", "clk2")


def test_cache_hit_and_cache_folder_from_environment(tmp_path, monkeypatch, require_programs):
    _require_compiler(require_programs)
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path))
    messages = []

    def build():
        design = _Counter()
        return cxxrtl.build(design, ports=design.ports, env=tool_env("YOSYS"),
                            cxxflags=("-O0",), log=messages.append)

    first = build()
    assert messages == ["compiling the CXXRTL model of _Counter (cache miss)"]
    assert first.path.parent == tmp_path / "cxxrtl" and first.path.suffix == ".so"
    again = build()
    assert again.path == first.path and len(messages) == 1
    assert sorted(p.name for p in (tmp_path / "cxxrtl").iterdir() if p.suffix == ".so") == \
        [first.path.name]
    # A design with explicit ports runs the same script alike on both engines.
    script = (Script().step(3).set("enable", 1).step(1000).sample("count")
              .set("enable", 0).step(5).sample("count").set("rst", 1).step().sample("count"))
    with first.simulate() as sim:
        fast = sim.run(script)
    design = _Counter()
    assert fast == run_amaranth(design, script, ports=design.ports)
    assert fast.records == [1000, 1000, 0]


def test_falling_edge_design_is_evaluated_on_falling_edges(tmp_path, require_programs):
    _require_compiler(require_programs)
    design = _FallingCounter()
    model = cxxrtl.build(design, ports=design.ports, env=tool_env("YOSYS"), cxxflags=("-O0",),
                         cache=tmp_path)
    assert model.full_edges
    with model.simulate() as sim:
        sim.step(10)
        # The clock starts low: cycle 1 has no falling edge, cycles 2..10 do. Committing
        # falling edges without evaluating them would leave the count at 0.
        assert sim.get("count") == 9


def test_missing_compiler_is_a_clear_error():
    design = _Counter()
    with pytest.raises(EngineUnavailable, match=r"^g\+\+-fieldtune-absent was not found on "
                                                r"PATH; CXXRTL models are compiled with the "
                                                r"system C\+\+ compiler"):
        cxxrtl.build(design, ports=design.ports, env=tool_env("YOSYS"),
                     compiler="g++-fieldtune-absent")


def test_clock_must_be_an_input():
    design = _Counter()
    with pytest.raises(ValueError, match=r"^clock must be an input port of the design, "
                                         r"not 'count'$"):
        cxxrtl.build(design, ports=design.ports, env=tool_env("YOSYS"), clock="count")


def test_script_rejects_unknown_ports_and_outputs(sim):
    with pytest.raises(ValueError, match=r"^port must be one of .*, not 'nope'$"):
        sim.run(Script().sample("nope"))
    with pytest.raises(ValueError, match=r"^port busy is an output and cannot be set$"):
        sim.run(Script().set("busy", 1))


def test_compiler_is_clang_when_installed_else_gxx(monkeypatch):
    # clang++ built the SoC's models (CXXRTL and Verilator) in less CPU time than g++ and ran
    # them faster (docs/benchmarks.md); without it, g++. Both engines choose alike.
    monkeypatch.delenv("CXX", raising=False)
    found = {"clang++": "/usr/bin/clang++", "g++": "/usr/bin/g++"}
    monkeypatch.setattr(hdl.shutil, "which", lambda name: found.get(name))
    assert cxxrtl.COMPILERS == hdl.COMPILERS == ("clang++", "g++")
    assert cxxrtl.compiler_program() == verilator.compiler_program() == "/usr/bin/clang++"
    del found["clang++"]
    assert cxxrtl.compiler_program() == verilator.compiler_program() == "/usr/bin/g++"
    monkeypatch.setenv("CXX", "g++")
    found["clang++"] = "/usr/bin/clang++"
    assert cxxrtl.compiler_program() == verilator.compiler_program() == "/usr/bin/g++"
    del found["g++"], found["clang++"]
    with pytest.raises(EngineUnavailable, match=r"^g\+\+ was not found on PATH; Verilator "
                                                r"models are compiled with the system C\+\+ "
                                                r"compiler; install it with e.g.: apt-get "
                                                r"install clang \(or g\+\+\)$"):
        verilator.compiler_program()
