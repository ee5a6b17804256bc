"""Fixtures for hostile-input tests: the test catalog, template writing and the fuzz budget.

`MARIGOLD_FUZZ_EXAMPLES` scales every Hypothesis test here: unset, each runs its CI share (a
few thousand cases in all); set (e.g. `MARIGOLD_FUZZ_EXAMPLES=50000`) it is the total number of
examples the loader fuzz tests share, and the other fuzz tests grow in proportion.
"""

from __future__ import annotations

import os

from tests.marigold_dagster.conftest import (  # noqa: F401  (fixtures, re-exported for pytest)
    TemplateRun,
    catalog,
    write_template,
)

CI_LOADER_EXAMPLES = 3_000


def fuzz_examples(ci_share: int, *, of: int = CI_LOADER_EXAMPLES) -> int:
    """This test's number of examples: `ci_share` in CI, scaled by MARIGOLD_FUZZ_EXAMPLES."""
    total = os.environ.get("MARIGOLD_FUZZ_EXAMPLES")
    if not total:
        return ci_share
    return max(ci_share, int(int(total) * ci_share / of))
