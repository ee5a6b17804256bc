"""How many cases each fuzz test tries: its CI share, or more in the longer job.

`MARIGOLD_FUZZ_EXAMPLES` scales every Hypothesis fuzz test: unset, each runs its CI share (a
few thousand cases in all); set (e.g. `MARIGOLD_FUZZ_EXAMPLES=50000`, as `.ci/fuzz-long` does)
it is the total number of examples the template-loader fuzz tests share, and the other fuzz
tests (planner answers, the fragment validator) grow in proportion.
"""

from __future__ import annotations

import os

CI_LOADER_EXAMPLES = 3_000


def fuzz_examples(ci_share: int, *, of: int = CI_LOADER_EXAMPLES) -> int:
    """This test's number of examples: `ci_share` in CI, scaled by MARIGOLD_FUZZ_EXAMPLES."""
    total = os.environ.get("MARIGOLD_FUZZ_EXAMPLES")
    if not total:
        return ci_share
    return max(ci_share, int(int(total) * ci_share / of))
