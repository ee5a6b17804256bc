"""Fragment validation time against fragment size: prints the ratio per doubling.

Linear validation prints ratios near 2 for each doubling of the steps; a quadratic step (a scan
per step, a finding listing every id) shows as ratios near 4.

    .venv/bin/python bench/bench_fragment_validation.py --steps 1000 2000 4000 8000
"""

from __future__ import annotations

import argparse
import json
import time

from marigold_dagster.planning.validation import validate_fragment
from tests.marigold_dagster.planning.test_validation import make_scope
from tests.marigold_dagster.planning.test_validation_scaling import huge_fragment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    args = parser.parse_args()
    scope = make_scope(max_steps=10**6, max_depth=10**6, max_fanout=10**6)
    results = []
    for steps in args.steps:
        answer = huge_fragment(steps)
        started = time.perf_counter()
        verdict = validate_fragment(answer, scope)
        results.append(
            {
                "steps": steps,
                "seconds": round(time.perf_counter() - started, 3),
                "findings": len(verdict.findings),
            }
        )
    for before, after in zip(results, results[1:], strict=False):
        after["ratio_to_previous"] = round(after["seconds"] / max(before["seconds"], 1e-9), 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
