"""Fixtures for hostile-input tests: the test catalog and template writing.

The fuzz tests here size themselves with `tests.fuzz_budget.fuzz_examples`.
"""

from __future__ import annotations

from tests.marigold_dagster.conftest import (  # noqa: F401  (fixtures, re-exported for pytest)
    catalog,
    write_template,
)
