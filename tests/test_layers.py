"""The import rules of docs/architecture.md, checked on the source.

Every module of the four folders that pyproject.toml maps into ``fieldtune`` is parsed (``ast``,
nothing is imported); every import counts, relative ones resolved and those inside functions
included, because a function-level import is as real a dependency as a module-level one. So do
imports by path: a string that names a module exactly (the registries of commands, benchmarks
and blocks, ``importlib.import_module``).

- layers: ``rtl`` imports only ``rtl``; ``sim`` imports ``rtl`` and ``sim``; ``boards`` imports
  ``rtl`` and ``boards``; ``fieldtune`` (command line, configuration, benchmarks) may import all;
- no import cycle between modules;
- no ``_private`` name imported from another module (package code and tests);
- an import inside a function says why it is not at module level (a comment on its line or the
  line before, or a ``try`` that handles ``ImportError``: an optional dependency).

The rules are shown to bite once on a small synthetic package (``test_rules_catch_...``).
"""

import ast
import functools
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layer -> the layers it may import (docs/architecture.md, "Package layout and imports").
ALLOWED = {
    "rtl": {"rtl"},
    "sim": {"rtl", "sim"},
    "boards": {"rtl", "boards"},
    "fieldtune": {"rtl", "sim", "boards", "fieldtune"},
}


def package_roots(root=ROOT):
    """Dotted package -> folder, from ``[tool.setuptools.package-dir]``."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    return {name: root / folder
            for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items()}


def modules(roots):
    """Dotted module name -> source file, for every ``.py`` file under the roots."""
    found = {}
    for name, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def _resolve(target, known):
    """The known module ``target`` names: itself or its longest known prefix."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


@functools.cache
def _lines(path):
    return path.read_text().splitlines()


@functools.cache
def _tree(path):
    return ast.parse("\n".join(_lines(path)), str(path))


def imports(name, path, known, *, top):
    """``(imported module, imported names, line)`` for every import of ``top``'s modules in
    ``path`` (module ``name``), at any depth of the syntax tree, and every string naming one."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "." in node.value and node.value in known:    # not a bare "fieldtune"
                yield node.value, (), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == top:
                    yield _resolve(alias.name, known), (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            if source.split(".")[0] != top:
                continue
            for alias in node.names:
                # ``from pkg import mod`` imports the module ``pkg.mod``.
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    yield submodule, (), node.lineno
                else:
                    yield _resolve(source, known), (alias.name,), node.lineno


def layer(module, roots):
    """The layer of a module: its mapped sub-package (``rtl``, ``sim``, ``boards``), or
    ``fieldtune`` for the top package's own modules."""
    owner = max((r for r in roots if module == r or module.startswith(r + ".")), key=len)
    return owner.rpartition(".")[2] if "." in owner else "fieldtune"


def graph(roots):
    """Module -> {imported module: first line}, over every module of ``roots``."""
    known = modules(roots)
    top = next(iter(roots)).split(".")[0]
    edges = {}
    for name, path in known.items():
        out = edges.setdefault(name, {})
        for target, _, line in imports(name, path, known, top=top):
            if target is not None and target != name:
                out.setdefault(target, (path, line))
    return edges


def back_arrows(edges, roots):
    """Imports against :data:`ALLOWED`, as readable lines."""
    bad = []
    for source, targets in edges.items():
        for target, (path, line) in targets.items():
            if layer(target, roots) not in ALLOWED[layer(source, roots)]:
                bad.append(f"{path.name}:{line}: {source} ({layer(source, roots)}) imports "
                           f"{target} ({layer(target, roots)})")
    return sorted(bad)


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def private_imports(files, known, *, top):
    """``from module import _name`` across modules, as readable lines (dunders allowed)."""
    bad = []
    for name, path in files.items():
        for target, names, line in imports(name, path, known, top=top):
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__"):
                    bad.append(f"{path.name}:{line}: {name} imports {target}.{imported}")
    return sorted(bad)


@functools.cache
def _parents(tree):
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _handles_import_error(node, parents):
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                                "ModuleNotFoundError")
                for h in node.handlers):
            return True
    return False


def unexplained_imports(files):
    """Imports inside functions without a reason, as readable lines."""
    bad = []
    for name, path in files.items():
        tree = _tree(path)
        lines = _lines(path)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                around = lines[max(node.lineno - 2, 0):node.end_lineno]
                if any("#" in line for line in around) or _handles_import_error(node,
                                                                                  _parents(tree)):
                    continue
                bad.append(f"{path.name}:{node.lineno}: {name}: {lines[node.lineno - 1].strip()}")
    return sorted(set(bad))


# -- the project ----------------------------------------------------------------------------

ROOTS = package_roots()
EDGES = graph(ROOTS)


def test_every_package_is_scanned():
    assert {layer(m, ROOTS) for m in EDGES} == set(ALLOWED)
    assert len(EDGES) > 50


def test_layers():
    assert back_arrows(EDGES, ROOTS) == []


def test_no_import_cycles():
    assert cycles(EDGES) == []


TESTS = {f"tests.{'.'.join(p.relative_to(ROOT / 'tests').with_suffix('').parts)}": p
         for p in sorted((ROOT / "tests").rglob("*.py"))}


def test_no_private_names_across_modules():
    known = modules(ROOTS)
    assert private_imports({**known, **TESTS}, known, top="fieldtune") == []


def test_imports_inside_functions_say_why():
    files = {**modules(ROOTS), **TESTS}
    assert unexplained_imports(files) == []


# -- the rules bite -------------------------------------------------------------------------

def _write(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def bad_tree(tmp_path):
    """A package shaped like ours, with one back-arrow, one cycle, one private import and two
    imports inside functions without a reason."""
    _write(tmp_path, {
        "pyproject.toml": '[tool.setuptools.package-dir]\n"pkg" = "pkg"\n'
                          '"pkg.rtl" = "rtl"\n"pkg.sim" = "sim"\n"pkg.boards" = "boards"\n',
        "pkg/__init__.py": "",
        "pkg/cli.py": "from . import demo\n",
        # The cycle: demo imports cli back, inside a function.
        "pkg/demo.py": "def run():\n    from .cli import main\n",
        # Imports inside functions that say why.
        "pkg/plot.py": "def plot():\n    try:\n        import matplotlib\n    except ImportError:\n"
                       "        return\n\n\ndef slow():\n    import json  # start-up cost\n",
        "rtl/__init__.py": "",
        "rtl/block.py": "import pkg.rtl.params\n",
        # A back-arrow by path (a registry entry).
        "rtl/blocks.py": 'BLOCKS = {"demo": ("pkg.demo", "run")}\n',
        "rtl/params.py": "_WIDTH = 8\n",
        # The back-arrow: rtl imports sim, relative, inside a method.
        "rtl/soc.py": "class Soc:\n    def f(self):\n        from ..sim import model\n",
        "sim/__init__.py": "",
        "sim/model.py": "from ..rtl.params import _WIDTH\n",
        "boards/__init__.py": "",
        "boards/top.py": "from pkg.rtl import block\n",
    })
    return tmp_path


def test_rules_catch_back_arrow_cycle_private_and_unexplained_imports(bad_tree):
    roots = package_roots(bad_tree)
    edges = graph(roots)
    assert back_arrows(edges, roots) == [
        "blocks.py:1: pkg.rtl.blocks (rtl) imports pkg.demo (fieldtune)",
        "soc.py:3: pkg.rtl.soc (rtl) imports pkg.sim.model (sim)"]
    assert cycles(edges) == [["pkg.cli", "pkg.demo"]]
    known = modules(roots)
    assert private_imports(known, known, top="pkg") == [
        "model.py:1: pkg.sim.model imports pkg.rtl.params._WIDTH"]
    assert unexplained_imports(known) == [
        "demo.py:2: pkg.demo: from .cli import main",
        "soc.py:3: pkg.rtl.soc: from ..sim import model"]
    # Allowed arrows are not reported: boards -> rtl, rtl -> rtl (absolute), sim -> rtl.
    assert "pkg.rtl.block" in edges["pkg.boards.top"]
    assert "pkg.rtl.params" in edges["pkg.rtl.block"]
