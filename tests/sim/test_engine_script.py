"""The stimulus format every engine runs: :meth:`Script.checked` validates a script against a
design's ports before anything runs, and passes raw commands on without copying them."""

import pytest

from fieldtune.sim.engines.script import Port, Sample, Script, Set, Step, Wait


PORTS = {"a": Port("a", 8, "input", signed=True), "wide": Port("wide", 100, "input"),
         "done": Port("done", 1, "output")}


def test_raw_commands_pass_as_they_are():
    script = (Script().set("a", 5).set("wide", (1 << 100) - 1).step(3)
              .wait_any({"done": 1, "a": 255}, 10).sample("done"))
    checked = script.checked(PORTS)
    assert all(c is s for c, s in zip(checked, script.commands, strict=True))


def test_values_become_raw_bits():
    checked = Script().set("a", -1).wait_any({"a": -128, "done": 0}, 7).checked(PORTS)
    assert checked == [Set("a", 255), Wait((("a", 128), ("done", 0)), 7)]
    assert Script().step().sample("a").checked(PORTS) == [Step(1), Sample("a")]


@pytest.mark.parametrize("script,message", [
    (Script().set("a", 256), r"^value for port a must fit in 8 bits, not 256$"),
    (Script().set("a", -129), r"^value for port a must fit in 8 bits, not -129$"),
    (Script().set("a", True), r"^value for port a must be an integer, not True$"),
    (Script().set("done", 1), r"^port done is an output and cannot be set$"),
    (Script().set("nope", 1), r"^port must be one of a, done, wide, not 'nope'$"),
    (Script().wait("done", 2, 5), r"^value for port done must fit in 1 bits, not 2$"),
    (Script().wait("nope", 0, 5), r"^port must be one of a, done, wide, not 'nope'$"),
    (Script().sample("nope"), r"^port must be one of a, done, wide, not 'nope'$"),
])
def test_bad_commands_are_rejected_before_anything_runs(script, message):
    with pytest.raises(ValueError, match=message):
        script.checked(PORTS)
