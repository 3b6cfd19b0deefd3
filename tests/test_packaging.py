"""pyproject.toml maps rtl/, sim/, boards/ into fieldtune; a plain (non-editable) install
must import as well as the editable one the README uses."""

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"fieldtune": "fieldtune", "rtl": "fieldtune.rtl", "sim": "fieldtune.sim",
          "boards": "fieldtune.boards"}


def _package_folders():
    for top, dotted in MAPPED.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            yield ".".join([dotted, *rel.parts])


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    missing = sorted(set(_package_folders()) - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_plain_install_imports(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True,
                   capture_output=True)
    wheel, = (tmp_path / "dist").glob("fieldtune-*.whl")
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    names = {n for n in zipfile.ZipFile(wheel).namelist()}
    assert "fieldtune/rtl/params.py" in names and "fieldtune/sim/__init__.py" in names
    # Data the code reads at run time: the backbone, the CXXRTL harness, shipped builds.
    assert "fieldtune/sim/data/r1_backbone.npz" in names
    assert "fieldtune/sim/engines/cxxrtl_harness.cc" in names
    shipped = {f"fieldtune/data/fmax/{p.name}"
               for p in (ROOT / "fieldtune" / "data" / "fmax").glob("*.json")}
    assert shipped <= names, sorted(shipped - names)
    spaces = {f"fieldtune/explore/spaces/{p.name}"
              for p in (ROOT / "fieldtune" / "explore" / "spaces").glob("*.toml")}
    assert spaces and spaces <= names, sorted(spaces - names)
    # Import from an unrelated folder with only the unpacked wheel on the path for fieldtune.
    code = ("import fieldtune, fieldtune.rtl.params, fieldtune.sim, fieldtune.boards, "
            "fieldtune.config, fieldtune.cli; print(fieldtune.rtl.params.__file__)")
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().startswith(str(target))
