"""The host driver against the real gateware: the SoC behind its host link
(:class:`~fieldtune.rtl.host.top.HostSystem`) on CXXRTL, its UART driven at bit level.

- a tiny design: sessions over the link equal the same session on the SoC's bus (the demo's
  path) bit for bit, cycles included, on a clean line and on a noisy one;
- R1 (a slice: full R1 is ``fieldtune bench link`` and the benchmark runs in
  docs/benchmarks.md): ``fieldtune run --sim`` and ``fieldtune run --port`` on the
  pseudo-terminal of ``fieldtune serve --sim`` give exactly the demo's device run: accuracy,
  cycles, curve and weights.

Outside CI a missing compiler skips with the reason; in CI (CI=true) it fails."""

import hashlib
import json
import os
import pty
import subprocess
import sys

import pytest

from fieldtune.bench.link import measure
from fieldtune.cli import main
from fieldtune.config import DesignConfig
from fieldtune.host.driver import HostDriver
from fieldtune.host.session import Session, finetune, run_finetune
from fieldtune.host.transport import SimTransport, FaultyLine
from fieldtune.rtl.host.protocol import Command
from fieldtune.sim.golden.host import encode_request
from fieldtune.sim.golden.schedule import RUNS, DEFAULT_RUN
from fieldtune.sim.scenario import r1_features
from fieldtune.simulate import slice_r1
from fieldtune.toolchain import tool_env


WHY = "the simulated SoC is compiled by CXXRTL (apt-get install g++)"


@pytest.fixture(scope="module")
def bus_runs(require_programs, tiny_design):
    """The demo's path: the session on the SoC's bus (EngineDevice) on CXXRTL."""
    require_programs("g++", why=WHY)
    cfg, data = tiny_design
    return {m: run_finetune(cfg, data, mode=m, engine="cxxrtl", env=tool_env("YOSYS"))
            for m in ("fo", "zo")}


@pytest.fixture(scope="module")
def link(tiny_design, require_programs):
    require_programs("g++", why=WHY)
    cfg, _ = tiny_design
    transport = SimTransport(cfg, env=tool_env("YOSYS"))
    yield transport
    transport.close()


def test_session_over_the_uart_equals_the_session_on_the_bus(bus_runs, link, tiny_design,
                                                               same_run):
    cfg, data = tiny_design
    driver = HostDriver(link, cfg)
    for mode in ("fo", "zo"):
        result = finetune(Session(driver, cfg), data, mode=mode)
        same_run(result, bus_runs[mode])
        assert result.chunk_cycles == bus_runs[mode].chunk_cycles
    assert driver.stats.resends == 0 and link.uart.framing_errors == 0


def test_noisy_line_and_a_host_that_vanishes_mid_frame(bus_runs, link, tiny_design, same_run):
    cfg, data = tiny_design
    # half a frame, then silence: the device must still answer the next good frame
    link.send(encode_request(200, Command.WRITE, 0x0B, 4, payload=b"\x07\x00\x00\x00")[:6])
    link.idle(1e-3)
    noisy = FaultyLine(link, loss=0.001, flip=0.001, seed=3)
    driver = HostDriver(noisy, cfg)
    result = finetune(Session(driver, cfg), data, mode="fo")
    same_run(result, bus_runs["fo"])
    assert sum(noisy.injected.values()) > 0 and driver.stats.resends > 0


def test_link_bench_rows(link, tiny_design):
    """``fieldtune bench link``'s measurement on the tiny design's link (the R1 figures are in
    docs/benchmarks.md): every operation, simulated seconds, goodput below the line rate."""
    cfg, _ = tiny_design
    rows = measure(cfg, HostDriver(link, cfg), cfg.host.baud)
    assert [r["operation"] for r in rows] == [
        "register_read", "register_write", "echo", "burst_write", "weights_load", "burst_read",
        "weights_dump", "records_load"]
    for r in rows:
        assert r["baud"] == 3_000_000 and r["resends"] == 0 and r["seconds"] > 0
        line = r["line_bytes"] * 10 / 3e6
        assert line <= r["seconds"] < line + 100e-6 * r["frames"]      # the device is prompt
        assert 0 < r["goodput_ratio"] < 1
    by = {r["operation"]: r for r in rows}
    assert by["records_load"]["frames"] == 8 and by["records_load"]["payload_bytes"] == 8 * 21 * 2
    assert by["register_read"]["payload_bytes"] == 4 and by["register_read"]["line_bytes"] == 27


# -- R1 through the command line --------------------------------------------------------------

SLICE = ["--samples", "32", "--test-samples", "24", "--epochs", "2", "--steps", "6",
         "--mode", "both"]


@pytest.fixture(scope="module")
def r1_demo_runs(require_programs):
    """The demo's device runs (the session on the SoC's bus, CXXRTL) on the same slice, first
    order under the default schedule."""
    require_programs("g++", why=WHY)
    cfg = DesignConfig().replace(train={"epochs": 2, "steps": 6})
    data = slice_r1(r1_features(30), 32, 24)
    return {m: run_finetune(cfg, data, mode=m, engine="cxxrtl", env=tool_env("YOSYS"),
                            schedule=RUNS[DEFAULT_RUN].schedule)
            for m in ("fo", "zo")}


def _check_equal_to_demo(doc, runs):
    for m in ("fo", "zo"):
        r = runs[m]
        assert doc["accuracy"][f"device_{m}"] == r.accuracy
        assert doc["cycles"][m] == r.cycles and doc["eval_cycles"][m] == r.eval_cycles
        assert doc["weights_sha256"][m] == hashlib.sha256(
            r.weights.astype("<i8").tobytes()).hexdigest()
    assert [tuple(p) for p in doc["curves"]["device_fo"]] == runs["fo"].curve


@pytest.mark.slow
def test_run_sim_gives_the_demo_device_run(tmp_path, r1_demo_runs, capsys):
    out = tmp_path / "run.json"
    assert main(["run", "--sim", *SLICE, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    _check_equal_to_demo(doc, r1_demo_runs)
    assert doc["simulated"] is True and doc["baud"] == 3_000_000
    assert [p for p, _ in doc["curves"]["device_zo"]] == list(range(7))
    assert doc["scenario"]["fo_run"]["name"] == DEFAULT_RUN
    assert "FO over simulated SoC (3,000,000 baud, 24 MHz): test accuracy" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_run_over_the_pty_of_serve_gives_the_demo_device_run(tmp_path, r1_demo_runs):
    server = subprocess.Popen([sys.executable, "-m", "fieldtune.cli", "serve", "--sim",
                               "--exit-after", "30"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        path = server.stdout.readline().strip()
        assert path.startswith("/dev/"), server.stderr.read()
        out = tmp_path / "pty.json"
        assert main(["run", "--port", path, "--timeout", "30", *SLICE, "--json", str(out)]) == 0
        doc = json.loads(out.read_text())
    finally:
        server.terminate()
        server.wait(timeout=30)
    _check_equal_to_demo(doc, r1_demo_runs)
    assert doc["simulated"] is False and doc["link"] == f"{path} (3,000,000 baud)"


def test_run_errors_are_one_line(capsys, tmp_path):
    assert main(["run", "--port", str(tmp_path / "no-such-port")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open serial port ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "one of the arguments --sim --port is required" in capsys.readouterr().err
    # a pseudo-terminal with nothing behind it: no answer
    master, slave = pty.openpty()
    try:
        assert main(["run", "--port", os.ttyname(slave), "--timeout", "0.05"]) == 2
        err = capsys.readouterr().err
        assert "error: no fieldtune SoC answers on" in err and "INFO" in err
    finally:
        os.close(master)
        os.close(slave)

