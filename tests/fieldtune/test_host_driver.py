"""The host driver against the host link's golden model (byte-exact with the gateware, no
timing): a training session over it equals the golden session bit for bit, on a clean line and
on a line that loses, flips and inserts bytes; a dead line, a refused command and a lost window
read end in the driver's own exceptions."""

import numpy as np
import pytest

from fieldtune.cli import main
from fieldtune.host.driver import HostDriver, LinkError, CommandError, StreamLost
from fieldtune.host.session import Session, finetune, run_finetune
from fieldtune.host.transport import GoldenTransport, FaultyLine
from fieldtune.rtl.host.protocol import Command, Status
from fieldtune.sim.golden.host import decode_response, split_frames


@pytest.fixture(scope="module")
def golden(tiny_design):
    cfg, data = tiny_design
    return {m: run_finetune(cfg, data, mode=m, engine="golden") for m in ("fo", "zo")}


@pytest.mark.parametrize("mode", ["fo", "zo"])
def test_session_over_the_link_equals_the_golden_session(mode, golden, tiny_design, same_run):
    cfg, data = tiny_design
    with HostDriver(GoldenTransport(cfg), cfg) as dev:
        assert dev.max_payload == cfg.host.max_payload
        assert dev.echo(b"\x00\x01fieldtune\x00") == b"\x00\x01fieldtune\x00"
        result = finetune(Session(dev, cfg), data, mode=mode)
        assert dev.stats.resends == dev.stats.timeouts == 0
    same_run(result, golden[mode])
    assert result.engine == "host link"


@pytest.mark.parametrize("seed", range(6))
def test_retries_survive_a_bad_line(seed, golden, tiny_design, same_run):
    """One byte in 500 lost, one in 500 corrupted, one in 2000 inserted, both ways: every run
    still computes exactly the clean run; the link resent and said why."""
    cfg, data = tiny_design
    line = FaultyLine(GoldenTransport(cfg), loss=0.002, flip=0.002, garbage=0.0005, seed=seed)
    with HostDriver(line, cfg) as dev:
        result = finetune(Session(dev, cfg), data, mode="zo")
        stats = dev.stats
    same_run(result, golden["zo"])
    assert sum(line.injected.values()) > 10
    assert stats.resends > 3 and stats.timeouts + stats.bad_answers + sum(
        stats.refused.values()) >= stats.resends


class DeadLine(GoldenTransport):
    """Answers INFO and the id read that open the link, then nothing."""

    def __init__(self, config, answers):
        super().__init__(config)
        self.answers = answers

    def send(self, data):
        if self.answers > 0:
            self.answers -= 1
            super().send(data)
        else:
            self._line(len(data))


def test_a_dead_line_ends_in_link_error_after_every_retry(tiny_design):
    cfg, _ = tiny_design
    dev = HostDriver(DeadLine(cfg, answers=2), cfg, retries=3)
    with pytest.raises(LinkError, match=r"^READ at 0xb: no intact answer after 4 attempts "
                                        r"\(4 timeouts so far on this link\)$"):
        dev.read("seed")
    assert dev.stats.resends == 3
    with pytest.raises(LinkError, match="no intact answer"):
        HostDriver(DeadLine(cfg, answers=0), cfg, retries=1)


def test_refused_commands_raise_command_error_and_write_nothing(tiny_design):
    cfg, _ = tiny_design
    dev = HostDriver(GoldenTransport(cfg), cfg)
    with pytest.raises(CommandError, match=r"^READ at 0x3f: the device answered "
                                           r"BAD_ADDRESS$") as info:
        dev.request(Command.READ, 0x3F, 4, answer_bytes=4)
    assert info.value.status == Status.BAD_ADDRESS
    # the weight window outside a LOAD run: a bus error, after 0 elements
    with pytest.raises(CommandError, match="BUS_ERROR"):
        dev.write_window("weights", [1, 2, 3])
    # a start the SoC refuses (FO with an empty cache) is the SoC's error flag, not the link's
    dev.start()
    assert dev.map.unpack("errors", dev.read("errors").value)["batch_count"] == 1


class LoseAnswer(GoldenTransport):
    """Drops the answers to the first ``lose`` window READs (the device executed them)."""

    def __init__(self, config, lose):
        super().__init__(config)
        self.lose = lose

    def send(self, data):
        before = len(self._pending)
        super().send(data)
        frames, _ = split_frames(bytes(self._pending[before:]))
        if self.lose and frames:
            r = decode_response(frames[-1])
            if r.cmd == Command.READ and r.address == self.device.map.address("weights") \
                    and r.status == Status.OK:
                self.lose -= 1
                del self._pending[before:]


def test_a_lost_window_read_restarts_the_dump(tiny_design):
    cfg, _ = tiny_design
    with HostDriver(LoseAnswer(cfg, lose=2), cfg) as dev:
        with pytest.raises(StreamLost, match="the answer was lost and the window's stream has "
                                             "moved on"):
            dev.write("mode", mode=4)
            dev.start()
            dev.read_window("weights", 4)
        session = Session(dev, cfg)
        dev.write("control", abort=1)
        dev.write("errors", aborted=1)
        # one more loss inside the session's dump: aborted and read again
        expected = dev.transport.device.model.weights.copy()
        assert np.array_equal(session.read_weights().value, expected)
        assert dev.transport.lose == 0


@pytest.mark.parametrize("command,options", [
    (["run"], ("--sim", "--port", "--baud", "--mode", "--json", "--timeout", "--samples")),
    (["serve"], ("--sim", "--baud", "--exit-after")),
    (["bench", "link"], ("--bauds", "--noise", "--json", "--preset")),
])
def test_help(command, options, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in options)
