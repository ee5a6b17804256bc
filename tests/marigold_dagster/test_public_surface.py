"""Each package re-exports a short, deliberate list, and nothing else leaks.

Derived from the packages themselves (no second list to keep in step): `__all__` is sorted, every
name in it exists and is defined inside marigold_dagster, and a package's public names are
exactly its `__all__` plus its submodules.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import marigold_dagster

PACKAGES = [marigold_dagster] + [
    importlib.import_module(f"marigold_dagster.{info.name}")
    for info in pkgutil.iter_modules(marigold_dagster.__path__)
    if info.ispkg
]
IDS = [package.__name__ for package in PACKAGES]


def test_every_sub_package_is_covered():
    names = {package.__name__.rpartition(".")[2] for package in PACKAGES[1:]}
    assert names == {"cli", "jobs", "mcp", "planning", "records", "runs", "runtime", "template"}


@pytest.mark.parametrize("package", PACKAGES, ids=IDS)
def test_all_is_sorted_short_and_documented(package: ModuleType):
    assert package.__doc__ and package.__doc__.strip()
    assert package.__all__ == sorted(package.__all__)
    assert 0 < len(package.__all__) <= 12


@pytest.mark.parametrize("package", PACKAGES, ids=IDS)
def test_every_exported_name_exists_and_is_defined_in_marigold_dagster(package: ModuleType):
    for name in package.__all__:
        member = getattr(package, name)
        member = getattr(member, "callback", member)  # a click command: the function it wraps
        assert member.__module__.startswith("marigold_dagster."), name


@pytest.mark.parametrize("package", PACKAGES[1:], ids=IDS[1:])
def test_no_other_public_names_leak(package: ModuleType):
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {name for name in public if isinstance(getattr(package, name), ModuleType)}
    assert public - modules == set(package.__all__)
