"""grammar_ops stays pure: no Dagster import, no code evaluation, no unpickling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import grammar_ops

PACKAGE = Path(grammar_ops.__file__).parent
FILES = sorted(PACKAGE.rglob("*.py"))
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
    assert len(FILES) > 20


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_dagster_or_pickle_import(path):
    tree = ast.parse(path.read_text())
    assert not imported_modules(tree) & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_eval_exec_or_compile(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in {"loads"} or not (
                isinstance(node.value, ast.Name) and node.value.id in FORBIDDEN_MODULES
            )
