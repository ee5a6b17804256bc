"""JMESPath selects: the doubling attack and ordinary selects, unbounded vs `search_jmespath`.

Prints seconds for `jmespath.search` (unbounded) and `search_jmespath` (bounded) on a select
that doubles its input per level (`{a:@,b:@}.{a:@,b:@}... | *.*...`, about 12*L characters)
and on ordinary selects over 200,000 records, with the bounded/unbounded ratio for the latter.

    python bench/bench_select_bounds.py --levels 12 16 20
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import jmespath

from grammar_ops.expressions import ExpressionError, search_jmespath


def doubling(levels: int) -> str:
    return ".".join(["{a:@,b:@}"] * levels) + " | " + ".".join(["*"] * levels)


def timed(fn: Any, *args: Any) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        fn(*args)
        outcome = "ok"
    except ExpressionError as error:
        outcome = str(error).rsplit("(", 1)[-1].split(")")[0]  # the limit's name
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[12, 16, 20])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    attack = []
    for levels in args.levels:
        select = doubling(levels)
        plain, _ = timed(jmespath.search, select, {"x": 1})
        bounded, outcome = timed(search_jmespath, select, {"x": 1})
        attack.append(
            {
                "levels": levels,
                "chars": len(select),
                "unbounded_s": round(plain, 4),
                "bounded_s": round(bounded, 4),
                "bounded_outcome": outcome,
            }
        )
    data = {"items": [{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(args.records)]}
    ordinary = []
    for select in ["items[*].id", "items[?id > `5`].{i: id, n: name}", "items[*].tags[]"]:
        plain, _ = timed(jmespath.search, select, data)
        bounded, outcome = timed(search_jmespath, select, data)
        ordinary.append(
            {
                "select": select,
                "unbounded_s": round(plain, 3),
                "bounded_s": round(bounded, 3),
                "ratio": round(bounded / plain, 2),
                "bounded_outcome": outcome,
            }
        )
    print(json.dumps({"attack": attack, "ordinary": ordinary}, indent=1))


if __name__ == "__main__":
    main()
