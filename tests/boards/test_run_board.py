"""``fieldtune run --board NAME --port DEVICE``: the board's configuration (default preset, its
SoC clock) driven through a serial port; here the port is a pseudo-terminal whose other side is
the host link's golden model on the SoC's golden model for that same configuration."""

import json
import os
import pty
import select
import threading
import tty
from types import SimpleNamespace

import pytest

from fieldtune.boards.build import on_board
from fieldtune.boards.table import BOARDS
from fieldtune.cli import main
from fieldtune.config import DesignConfig
from fieldtune.host.run import link_config
from fieldtune.host.transport import GoldenTransport


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f", "orangecrab-25f"])
def test_board_names_its_configuration_and_clock(board):
    args = SimpleNamespace(board=board, preset=None, config=None, sim=False, baud=None,
                           seed=None, epochs=None, steps=None)
    config = link_config(args)
    assert config == on_board(DesignConfig.preset(BOARDS[board].preset))
    assert config.host.clock_hz == round(BOARDS[board].soc_mhz * 1e6)


class GoldenPort:
    """A pseudo-terminal relayed to a :class:`GoldenTransport` by a thread."""

    def __init__(self, config):
        self.transport = GoldenTransport(config)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.relay, daemon=True)
        self.thread.start()

    def relay(self):
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if ready:
                self.transport.send(os.read(self.master, 65536))
            while out := self.transport.receive(0):
                os.write(self.master, out)

    def close(self):
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)


def test_run_on_the_board_port(tmp_path, capsys):
    port = GoldenPort(on_board(DesignConfig.preset("up5k")))
    try:
        out = tmp_path / "run.json"
        code = main(["run", "--board", "icebreaker", "--port", port.path, "--mode", "fo",
                     "--epochs", "1", "--samples", "16", "--test-samples", "32",
                     "--json", str(out)])
    finally:
        port.close()
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["link"].startswith(port.path) and not doc["simulated"]
    assert doc["accuracy"]["device_fo"] is not None and doc["cycles"]["fo"] > 0
    assert doc["link_stats"]["fo"]["resends"] == 0
