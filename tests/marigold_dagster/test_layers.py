"""Imports point downward only: no module imports from a layer above its own.

The layers, bottom up, are the order below; a module may import from its own layer and any
layer under it. Read from the source (module-level and function-level imports alike).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import marigold_dagster

PACKAGE = Path(marigold_dagster.__file__).parent
LAYERS = [
    "errors",
    "artifacts",
    "graphs",
    "template",
    "planning",
    "keys",
    "records",
    "runtime",
    "jobs",
    "runs",
    "mcp",
    "cli",
]
FILES = sorted(
    path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE or path.stem in LAYERS
)


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "marigold_dagster":
                names.update(f"marigold_dagster.{alias.name}" for alias in node.names)
            elif node.module.startswith("marigold_dagster."):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("marigold_dagster."))
    return names


def test_every_module_has_a_layer():
    for path in FILES:
        assert path.relative_to(PACKAGE).parts[0].removesuffix(".py") in LAYERS, path


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path):
    own = layer_of("marigold_dagster." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    upward = sorted(name for name in imported(ast.parse(path.read_text())) if layer_of(name) > own)
    assert not upward, f"{path.name} imports from a layer above: {upward}"
