"""The package's architecture holds: imports point one way between layers and never in a cycle
inside a package (import-linter, contracts in pyproject.toml), every package says what it owns,
and the library never prints (only the front ends in singleshot.app do)."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import singleshot

ROOT = Path(singleshot.__file__).parent
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_import_contracts_hold():
    res = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                          "lint_imports_command()", "--config", str(PYPROJECT)],
                         capture_output=True, text=True, timeout=300, cwd=PYPROJECT.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout


def test_every_package_has_a_docstring_and_every_module_imports():
    """Each subpackage's __init__ says what it owns in its docstring; every module imports on
    its own in a fresh interpreter (no order dependence, no hidden cycle at import time)."""
    modules = [m.name for m in pkgutil.walk_packages([str(ROOT)], "singleshot.")]
    for name in modules:
        path = ROOT.joinpath(*name.split(".")[1:])
        if path.is_dir():
            doc = ast.get_docstring(ast.parse((path / "__init__.py").read_text()))
            assert doc and len(doc.splitlines()[0]) > 20, name
    from concurrent.futures import ThreadPoolExecutor

    def fresh_import(name):
        return name, subprocess.run([sys.executable, "-c", f"import {name}"],
                                    capture_output=True, text=True, timeout=300)

    # one fresh interpreter per module, a few at a time (each waits on its imports' disk reads)
    with ThreadPoolExecutor(4) as pool:
        for name, res in pool.map(fresh_import, [m for m in modules
                                                 if not m.endswith("__main__")]):
            assert res.returncode == 0, (name, res.stderr[-2000:])
    assert importlib.import_module("singleshot").Detector is not None


def test_the_library_never_prints():
    """No print() and no writes to sys.stdout / sys.stderr outside singleshot.app."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).parts[0] == "app":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} print")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} sys.{node.attr}")
    assert offenders == []
