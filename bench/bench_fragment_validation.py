"""Fragment validation time against fragment size: prints the ratio per doubling.

Linear validation prints ratios near 2 for each doubling of the steps; a quadratic step (a scan
per step, a finding listing every id) shows as ratios near 4.

    .venv/bin/python bench/bench_fragment_validation.py --steps 1000 2000 4000 8000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for harness

from grammar_ops import Kind, standard_catalog  # noqa: E402
from harness.scripted_planner import dangling_chain  # noqa: E402
from marigold_dagster.planning.validation import PlanningScope, validate_fragment  # noqa: E402

UNBOUNDED = 10**6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    args = parser.parse_args()
    scope = PlanningScope(
        step="review",
        template_steps=frozenset({"load", "review"}),
        results={"load": (Kind.RECORDS, 10)},
        primary="load",
        presets={"aggregate.count": {}},
        catalog=standard_catalog(),
        max_steps=UNBOUNDED,
        max_depth=UNBOUNDED,
        max_fanout=UNBOUNDED,
    )
    results = []
    for steps in args.steps:
        answer = dangling_chain(steps, "aggregate.count")
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
