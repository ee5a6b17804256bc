"""The JSON nesting check on hostile bodies: time per size, and the growth ratio.

A quote followed by escaped quotes and no closing quote made the old backtracking scan
quadratic. This prints the seconds `json_depth` takes on such bodies of growing size and the
ratio of the largest to the smallest per byte (about 1 when the check is linear).

    python bench/bench_json_depth.py --sizes 80000 1000000
"""

from __future__ import annotations

import argparse
import json
import time

from grammar_ops.primitives.acquire import json_depth


def hostile(size: int) -> bytes:
    return b"[" * 101 + b'"' + b'\\"' * (size // 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[80_000, 1_000_000, 10_000_000])
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        body = hostile(size)
        started = time.perf_counter()
        depth = json_depth(body)
        results.append(
            {"bytes": len(body), "seconds": time.perf_counter() - started, "depth": depth}
        )
    per_byte = [r["seconds"] / r["bytes"] for r in results]
    print(json.dumps({"runs": results, "per_byte_ratio_last_to_first": per_byte[-1] / per_byte[0]}))


if __name__ == "__main__":
    main()
