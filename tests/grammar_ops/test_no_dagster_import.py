"""The pure layers stay pure: no Dagster import, no code evaluation, no unpickling.

That is grammar_ops, and the template and planning packages of marigold_dagster.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import grammar_ops
import marigold_dagster.planning
import marigold_dagster.template

PACKAGE = Path(grammar_ops.__file__).parent
ROOT = PACKAGE.parent
PURE_PACKAGES = [grammar_ops, marigold_dagster.template, marigold_dagster.planning]
FILES = sorted(
    path for package in PURE_PACKAGES for path in Path(package.__file__).parent.rglob("*.py")
)
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"dagster", "pickle", "dill", "cloudpickle", "marshal", "shelve"}


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_files_found():
    assert len(FILES) > 30


@pytest.mark.slow
def test_importing_the_pure_packages_does_not_import_dagster():
    """Also through the modules they import and the packages above them (`__init__`)."""
    names = ", ".join(package.__name__ for package in PURE_PACKAGES)
    code = f"import sys, {names}; print(sorted(m for m in sys.modules if m == 'dagster'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_dagster_or_pickle_import(path):
    tree = ast.parse(path.read_text())
    assert not imported_modules(tree) & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_eval_exec_or_compile(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in {"loads"} or not (
                isinstance(node.value, ast.Name) and node.value.id in FORBIDDEN_MODULES
            )
