import pytest

from fieldtune.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "bench"):
        assert command in out


@pytest.mark.parametrize("command", [["generate"], ["bench"], ["pretrain"]])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: fieldtune" in capsys.readouterr().out


def test_bad_config_is_reported_not_raised(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[perturb]\nlanes = 0\n")
    assert main(["generate", "perturb", "--config", str(bad), "-f", "rtlil",
                 "-o", str(tmp_path / "x.il")]) == 2
    assert "perturb.lanes must be an integer from 1 to 256, not 0" in capsys.readouterr().err
