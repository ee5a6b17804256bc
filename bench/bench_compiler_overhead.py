"""Per-step overhead of a compiled template versus a hand-written Dagster job of the same shape.

Builds a linear 20-step and a 7-step DAG template, compiles them, writes the same two shapes
by hand with `@op`/`@job`, and runs each alternately on one persistent instance (SQLite in a
temporary DAGSTER_HOME, or PostgreSQL with --postgres-url). Both do the same user work in each
step (append the step's name to every row). Prints JSON: median seconds per step for each and
the ratio compiled / hand-written.

    python bench/bench_compiler_overhead.py --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, In, JobDefinition, Out, graph, op
from pydantic import BaseModel

from grammar_ops import Kind, application_capability, standard_catalog
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.template.loader import load_template

ROWS = 10
DAG_EDGES = {
    "load": [],
    "clean": ["load"],
    "enrich": ["load"],
    "check": ["clean"],
    "audit": ["load", "enrich"],
    "combine": ["check", "audit"],
    "report": ["combine"],
}


class _NoConfig(BaseModel):
    pass


def _mark_rows(rows: list[dict[str, Any]] | None, step: str) -> list[dict[str, Any]]:
    rows = rows or [{"id": i, "trail": ""} for i in range(ROWS)]
    return [dict(row, trail=f"{row['trail']}>{step}") for row in rows]


@application_capability(
    "bench.mark", accepts=set(Kind), produces=Kind.RECORDS, summary="append the step name"
)
def bench_mark(value: Any, config: _NoConfig, ctx: Any) -> list[dict[str, Any]]:
    return _mark_rows(value if isinstance(value, list) else None, ctx.step)


def linear_names(count: int) -> list[str]:
    return [f"s{i:02d}" for i in range(count)]


def template_yaml(name: str, edges: dict[str, list[str]], materialize: str = "results") -> str:
    lines = [
        f"name: {name}",
        "version: 1",
        "budget: {max_steps: 50, max_tokens: 1, max_cost_usd: 1, max_fanout: 1}",
        f"materialize: {materialize}",
        "steps:",
    ]
    for step, deps in edges.items():
        lines.append(f"  - {{name: {step}, uses: bench.mark, depends_on: [{', '.join(deps)}]}}")
    return "\n".join(lines) + "\n"


def compiled_job(
    folder: Path, name: str, edges: dict[str, list[str]], materialize: str = "results"
) -> JobDefinition:
    path = folder / f"{name}.yaml"
    path.write_text(template_yaml(name, edges, materialize))
    return compile_frame(load_template(path, standard_catalog().extended([bench_mark])))


def handwritten_job(name: str, edges: dict[str, list[str]]) -> JobDefinition:
    """The same shape written directly against Dagster, one op per step."""

    def make_op(step: str, deps: list[str]) -> Any:
        @op(name=step, ins={dep: In() for dep in deps}, out=Out())
        def step_op(**inputs: Any) -> list[dict[str, Any]]:
            first = inputs[deps[0]] if deps else None
            return _mark_rows(first, step)

        return step_op

    ops = {step: make_op(step, deps) for step, deps in edges.items()}

    @graph(name=name)
    def shape() -> None:
        outputs: dict[str, Any] = {}
        for step, deps in edges.items():
            outputs[step] = ops[step](**{dep: outputs[dep] for dep in deps})

    return shape.to_job()


def time_runs(job: JobDefinition, instance: DagsterInstance, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance)
        times.append(time.perf_counter() - started)
        assert result.success
    return times


def compare(
    label: str,
    edges: dict[str, list[str]],
    folder: Path,
    instance: DagsterInstance,
    runs: int,
    materialize: str = "results",
) -> dict[str, Any]:
    compiled = compiled_job(folder, f"compiled_{label}", edges, materialize)
    hand = handwritten_job(f"hand_{label}", edges)
    time_runs(compiled, instance, 1)  # warm both (imports, schema, first-run caches)
    time_runs(hand, instance, 1)
    compiled_times: list[float] = []
    hand_times: list[float] = []
    for _ in range(runs):  # alternate so drift on the machine hits both alike
        compiled_times += time_runs(compiled, instance, 1)
        hand_times += time_runs(hand, instance, 1)
    steps = len(edges)
    compiled_step = statistics.median(compiled_times) / steps
    hand_step = statistics.median(hand_times) / steps
    return {
        "shape": label,
        "steps": steps,
        "runs": runs,
        "compiled_ms_per_step": round(compiled_step * 1000, 2),
        "handwritten_ms_per_step": round(hand_step * 1000, 2),
        "ratio_compiled_to_handwritten": round(compiled_step / hand_step, 3),
    }


def open_instance(home: Path, postgres_url: str | None) -> DagsterInstance:
    config = "telemetry:\n  enabled: false\n"
    if postgres_url:
        config += f"storage:\n  postgres:\n    postgres_url: {postgres_url}\n"
    (home / "dagster.yaml").write_text(config)
    return DagsterInstance.from_config(str(home))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each job per shape")
    parser.add_argument(
        "--postgres-url", default=None, help="run on PostgreSQL instead of SQLite storage"
    )
    parser.add_argument(
        "--materialize",
        choices=["results", "every_step"],
        default="results",
        help="the templates' `materialize:` (every_step: one asset event per step)",
    )
    args = parser.parse_args(argv)
    shapes: dict[str, Callable[[], dict[str, list[str]]]] = {
        "linear_20": lambda: {
            name: ([linear_names(20)[i - 1]] if i else [])
            for i, name in enumerate(linear_names(20))
        },
        "dag_7": lambda: DAG_EDGES,
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with open_instance(home, args.postgres_url) as instance:
            results = [
                compare(label, build(), home, instance, args.runs, args.materialize)
                for label, build in shapes.items()
            ]
    storage = "postgres" if args.postgres_url else "sqlite"
    print(
        json.dumps(
            {"storage": storage, "materialize": args.materialize, "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
