"""``fieldtune demo``, ``fieldtune simulate`` and ``fieldtune bench finetune``: the command
paths end to end on the golden engine with a reduced budget (the SoC engines are tested in
tests/sim/test_soc_run.py), help texts and argument errors."""

import importlib.util
import json
import re

import pytest
from rich.console import Console

from fieldtune.cli import main
from fieldtune import demo, fmax
from fieldtune.boards.table import BOARDS
from fieldtune.config import DesignConfig, DEFAULT_LANES
from fieldtune.sim import reference
from fieldtune.sim.engines import registry
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_run import soc_component
from fieldtune.sim.soc_data import estimate_cycles


NOT_INSTALLED = "not run: PyTorch not installed"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """rich wraps table cells and messages at 80 columns; the tests read them whole."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def no_torch(monkeypatch):
    """Behave as on CI, where PyTorch is not installed."""
    monkeypatch.setattr(reference, "torch_status", lambda: (None, NOT_INSTALLED))


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """No cached or shipped builds: Fmax is 'not measured' under --no-build."""
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fmax, "SHIPPED_DIR", tmp_path / "shipped")


@pytest.mark.parametrize("command", [["demo"], ["simulate"], ["bench", "finetune"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fieldtune" in out
    for option in {"demo": ("--drift", "--seed", "--mode", "--engine", "--json", "--plot",
                            "--no-build", "--preset", "--config"),
                   "simulate": ("--vcd", "--mode", "--engine", "--samples"),
                   "bench": ("--presets", "--engine", "--json", "--no-build")}[command[0]]:
        assert option in out


def test_demo_end_to_end_golden(tmp_path, capsys, no_torch, empty_cache):
    out = tmp_path / "demo.json"
    # the plain first-order run: the float skip adapters train the same way (cache order)
    assert main(["demo", "--engine", "golden", "--no-build", "--epochs", "2", "--steps", "64",
                 "--seed", "3", "--schedule", "plain", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    acc = doc["accuracy"]
    assert acc["before_drift"] > 0.95 and 0.3 < acc["after_drift"] < 0.7
    # Two epochs of first order already adapt; 64 zeroth-order steps move a little.
    assert acc["device_fo"] > acc["after_drift"] + 0.1
    assert 0.3 < acc["device_zo"] <= 1
    assert abs(acc["device_fo"] - acc["float"]["skip_adapters"]) < 0.1
    assert 0.3 < acc["float"]["mezo_gaussian"] <= 1
    for method in ("lora_all", "ft_all", "ft_last", "lora_last"):
        assert acc["float"][method] is None and doc["float_not_run"][method] == NOT_INSTALLED
    assert doc["engine"] == "golden" and "not a device simulation" in doc["device_figures_from"]
    assert isinstance(doc["cycles"]["fo"], int) and isinstance(doc["cycles"]["zo"], int)
    assert 0 < doc["cycles"]["fo"] < doc["cycles"]["zo"]
    assert doc["cycles_source"] == {"fo": "estimate", "zo": "estimate"}
    assert list(doc["projected_time_s"]) == ["icebreaker", "ulx3s-85f"]
    for name, device in (("icebreaker", "up5k"), ("ulx3s-85f", "ecp5-85f")):
        board = doc["projected_time_s"][name]
        assert {k: board[k] for k in ("device", "fmax_mhz", "fmax_source", "fo", "zo")} == {
            "device": device, "fmax_mhz": None, "fmax_source": "not measured (--no-build)",
            "fo": None, "zo": None}
    assert doc["projected_time_s"]["icebreaker"]["cycles"] == doc["cycles"]
    sc = doc["scenario"]
    assert (sc["drift_deg"], sc["seed"], sc["epochs"], sc["steps"], sc["batch"]) == \
        (30, 3, 2, 64, 16)
    assert sc["fo_run"] == {"name": "plain", "epochs": 2, "order": "cache", "order_seed": 1,
                            "lr_steps": [],
                            "description": "cache order, the design's epochs and learning rate"}
    assert (sc["lr"], sc["eps"], sc["codebook"], sc["lanes"], sc["engine"]) == \
        (2 ** -4, 2 ** -6, "unf4", DEFAULT_LANES, "golden")
    assert [x for x, _ in doc["curves"]["device_fo"]] == [0, 1, 2]
    assert doc["curves"]["device_fo"][-1][1] == acc["device_fo"]
    text = capsys.readouterr().err
    assert "device first order, plain (golden model)" in text and NOT_INSTALLED in text
    assert "(estimate)" in text


def test_demo_single_mode_codebook_and_plot(tmp_path, no_torch, empty_cache):
    out, png = tmp_path / "demo.json", tmp_path / "curve.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    assert main(["demo", "--engine", "golden", "--no-build", "--mode", "fo", "--epochs", "1",
                 "--codebook", "pass16", "--json", str(out), *plot]) == 0
    doc = json.loads(out.read_text())
    # the device's first order is the default schedule (issue 16), here cut to --epochs
    assert doc["scenario"]["fo_run"] == {
        "name": "shuffle20", "epochs": 1, "order": "shuffle", "order_seed": 1,
        "lr_steps": [8, 14], "description": "reshuffled, 20 epochs, eta halves at epochs 8 "
                                            "and 14"}
    assert doc["accuracy"]["device_zo"] is None and doc["cycles"]["zo"] is None
    assert doc["accuracy"]["float"]["mezo_gaussian"] is None
    assert doc["scenario"]["codebook"] == "pass16"
    if plot:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_projects_every_device_from_builds(tmp_path, capsys, no_torch, empty_cache):
    """The design's board from the user's cached build with the run's cycles; the ECP5-85F
    preset from a build shipped in the package with its estimated cycles."""
    own, ecp5 = DesignConfig(), DesignConfig.preset("ecp5-85f")
    for config, mhz, folder in ((own, 25.0, tmp_path / "cache" / "fmax"),
                                (ecp5, 50.0, fmax.SHIPPED_DIR)):
        device = BOARDS[config.board].device
        key = fmax.design_hash(soc_component(config), device, fmax.soc_options(config, device))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key}.json").write_text(json.dumps({
            "design_hash": key, "device": device, "date": "2026-01-02T03:04", "tools": {},
            "implementation": {"device": device, "fits": True, "fmax_mhz": mhz}}))
    out = tmp_path / "demo.json"
    assert main(["demo", "--engine", "golden", "--no-build", "--mode", "fo", "--epochs", "1",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    cycles = doc["cycles"]["fo"]
    n = doc["scenario"]["n_finetune"]
    estimate = estimate_cycles(ecp5, "fo", n, epochs=1, batch=16)
    assert cycles == estimate_cycles(own, "fo", n, epochs=1, batch=16) > 3 * estimate
    assert doc["projected_time_s"] == {
        "icebreaker": {"device": "up5k", "design": f"this design ({DEFAULT_LANES} lanes)",
                       "fmax_mhz": 25.0,
                       "fmax_source": "cached build 2026-01-02T03:04", "fo": cycles / 25e6,
                       "zo": None, "cycles": {"fo": cycles, "zo": None},
                       "cycles_source": {"fo": "estimate", "zo": None}},
        "ulx3s-85f": {"device": "ecp5-85f", "design": "preset ecp5-85f (32 lanes)",
                      "fmax_mhz": 50.0, "fmax_source": "shipped build 2026-01-02T03:04",
                      "fo": estimate / 50e6, "zo": None, "cycles": {"fo": estimate, "zo": None},
                      "cycles_source": {"fo": "estimate", "zo": None}}}
    text = capsys.readouterr().err
    assert re.search(r"ulx3s-85f \(ecp5-85f\) +│ preset ecp5-85f \(32 lanes\) +│ +50\.0 MHz "
                     r"│ shipped build 2026-01-02T03:04 +│ +≈\d+\.\d\d ms", text)


def test_demo_plot_without_matplotlib_fails_early(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main(["demo", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot needs matplotlib, which is not installed; install it with: pip install " \
           "'fieldtune[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["demo", "--epochs", "0"], "train.epochs must be an integer from 1 to 1000, not 0"),
    (["demo", "--seed", "0"], "train.seed must be an integer from 1 to 4294967295, not 0"),
    (["simulate", "--vcd", "x.vcd", "--samples", "8"],
     "--samples must be at least the batch (16), not 8"),
    (["simulate", "--vcd", "x.vcd", "--samples", "300"],
     "--samples must be an integer from 1 to 256, not 300"),
    (["bench", "finetune", "--presets", "up5k,zx81"],
     "--presets must name presets among up5k, ecp5-85f, orangecrab, ecp5-12f, ecp5-25f, "
     "ecp5-45f, orangecrab-25f, up5k-fo, tiny, not 'zx81'"),
    (["bench", "finetune", "--torch-threads", "0"],
     "--torch-threads must list positive integers or 'default', not '0'"),
])
def test_argument_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_finetune_golden(tmp_path, no_torch, empty_cache):
    out = tmp_path / "bench.json"
    assert main(["bench", "finetune", "--engine", "golden", "--no-build", "--repeats", "1",
                 "--presets", "up5k", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert rows["skip adapters FO"]["where"] == "cpu" and rows["skip adapters FO"]["seconds"] > 0
    assert rows["LoRA-All"]["seconds"] is None and rows["LoRA-All"]["note"] == NOT_INSTALLED
    device = rows["device FO"]
    assert device["where"] == "up5k" and device["cycles"] > 0 and device["fmax_mhz"] is None
    assert device["ratio_vs_lora_all"] is None and doc["target"]["met"] is None
    for row in doc["rows"]:
        assert {"method", "where", "seconds", "accuracy", "ratio_vs_lora_all"} <= set(row)


@pytest.mark.slow
def test_simulate_writes_a_waveform(tmp_path, capsys):
    # The default design on CXXRTL: tests/sim/test_soc_run.py compiles the same model, so the
    # build cache serves whichever runs second.
    vcd = tmp_path / "run.vcd"
    assert main(["simulate", "--vcd", str(vcd), "--samples", "16", "--test-samples", "2"]) == 0
    with open(vcd) as f:
        header = "".join(f.readline() for _ in range(20000))
    assert header.startswith("$timescale")
    assert "$enddefinitions $end" in header
    assert re.search(r"^\$var wire 1 \S+ clk \$end$", header, re.M)
    assert re.search(r"^#\d+$", header, re.M)          # value changes follow
    text = capsys.readouterr().err
    assert re.search(r"FO on cxxrtl: 1 epoch\(s\) on 16 samples, batch 16: [\d,]+ training "
                     r"cycles", text)
    assert f"gtkwave {vcd}" in text


def test_demo_warns_before_hours_on_a_slow_engine(capsys):
    console, data = Console(stderr=True), r1_features(30)
    demo._warn_if_slow(DesignConfig(), data, ("fo", "zo"), "amaranth", console)
    err = capsys.readouterr().err
    assert "cycles of training on amaranth" in err and "takes hours" in err
    demo._warn_if_slow(DesignConfig(), data, ("fo", "zo"), "cxxrtl", console)
    assert capsys.readouterr().err == ""


def test_demo_says_which_engine_simulates_and_why():
    default = registry.default_engine()
    assert demo._engine_line(default, chosen=False) == \
        f"engine: {registry.get(default).label} (default: the fastest engine that runs here)"
    assert demo._engine_line("icarus", chosen=True) == "engine: Icarus Verilog (--engine)"
    assert demo._engine_line("golden", chosen=True) == \
        "engine: golden numpy model (--engine golden)"
