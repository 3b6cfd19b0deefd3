"""A design's RTLIL remembered by its fingerprint (:func:`fieldtune.sim.engines.hdl.
rtlil_identity`): a warm run opens a compiled model without converting the design, and the
fingerprint changes with the configuration and with every source of the design's
sub-package."""

import importlib
import json
import sys

import pytest

from fieldtune.config import DesignConfig
from fieldtune.sim.engines import hdl
from fieldtune.sim.engines.script import rtlil_ports
from fieldtune.sim.soc_run import soc_component


TINY = DesignConfig.preset("tiny")


def _silenced(design):
    design._MustUse__silence = True         # only fingerprinted here, not elaborated
    return design


def test_the_fingerprint_follows_the_configuration():
    a, b = _silenced(soc_component(TINY)), _silenced(soc_component(TINY))
    other = _silenced(soc_component(TINY.replace(train={"steps": TINY.train.steps + 1})))
    assert hdl.design_fingerprint(a) == hdl.design_fingerprint(b) is not None
    assert hdl.design_fingerprint(other) != hdl.design_fingerprint(a)
    assert hdl.design_fingerprint(a, name="other") != hdl.design_fingerprint(a)
    assert hdl.design_fingerprint(a, ports=[]) is None            # ports: not fingerprinted


def test_the_fingerprint_follows_every_source_of_the_sub_package(tmp_path, monkeypatch):
    package = tmp_path / "ftmemo" / "rtl"
    package.mkdir(parents=True)
    (tmp_path / "ftmemo" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("WIDTH = 8\n")
    (package / "design.py").write_text(
        "from dataclasses import dataclass\n\n"
        "@dataclass(frozen=True)\nclass Config:\n    width: int = 8\n\n"
        "class Design:\n    def __init__(self, config):\n        self.config = config\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("ftmemo.rtl.design")
    try:
        design = module.Design(module.Config())
        first = hdl.design_fingerprint(design)
        assert first is not None and hdl.design_fingerprint(design) == first
        (package / "helper.py").write_text("WIDTH = 9\n")
        assert hdl.design_fingerprint(design) != first
        assert hdl.design_fingerprint(module.Design(object())) is None    # no dataclass
    finally:
        for name in [n for n in sys.modules if n.startswith("ftmemo")]:
            del sys.modules[name]


def test_a_remembered_design_is_not_converted_again(tmp_path, monkeypatch):
    digest, ports, text = hdl.rtlil_identity(soc_component(TINY), kind="test",
                                             directory=tmp_path)
    il = text()
    assert "\nmodule \\top\n" in il
    assert (digest, ports) == (hdl.digest(il), rtlil_ports(il))
    [memo] = tmp_path.glob("*.rtlil.json")

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(hdl, "design_rtlil", no_conversion)
    again = hdl.rtlil_identity(soc_component(TINY), kind="test", directory=tmp_path)
    assert again[:2] == (digest, ports)
    monkeypatch.undo()
    assert again[2]() == il                 # converted (and checked) when a build needs it
    memo.write_text(json.dumps(dict(json.loads(memo.read_text()), digest="0" * 64)))
    stale = hdl.rtlil_identity(soc_component(TINY), kind="test", directory=tmp_path)
    with pytest.raises(hdl.ToolError, match=r"\.rtlil\.json does not match the design's "
                                            r"RTLIL: remove it$"):
        stale[2]()
