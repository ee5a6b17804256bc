"""The frame executes as declared: step kind x upstream kind x upstream outcome, from one table.

Every case is one template, generated: a `top` decision chooses the branch the upstream `up`
lives on (or, for `skipped`, another branch, `elsewhere`); `up` is built as the upstream kind
says, running a capability that passes rows on, fails permanently, or fails transiently once;
the step under test, `out`, depends on it (a converge on `up` and `elsewhere`, so it closes the
decision). What must happen is computed from the case by `expected`, not written per case.

The fast lane runs the task and batch upstreams that ran or had zero rows; the rest is `slow`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import DagsterInstance
from pydantic import BaseModel

from grammar_ops import Catalog, Kind, PrimitiveError, TransientError, application_capability
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from resources.offline_model import OfflineModel
from tests.support.capabilities import TEST_CAPABILITIES
from tests.support.template_run import TemplateRun

ROWS = {Kind.TABLE, Kind.RECORDS}
COLUMNS = ["id", "text", "risk"]
N_ROWS = 3


class NoConfig(BaseModel):
    pass


class FlakyConfig(BaseModel):
    state_dir: str


def _table(value: Any) -> pa.Table:
    return value if isinstance(value, pa.Table) else pa.Table.from_pylist(value)


@application_capability(
    "m.pass", accepts=ROWS, produces=Kind.TABLE, summary="pass the rows on unchanged"
)
def pass_rows(value: Any, config: NoConfig, ctx: Any) -> pa.Table:
    return _table(value)


@application_capability(
    "m.fail", accepts=ROWS, produces=Kind.TABLE, summary="fail the rows permanently"
)
def fail_rows(value: Any, config: NoConfig, ctx: Any) -> pa.Table:
    raise PrimitiveError("m.fail refuses these rows (a permanent failure)")


@application_capability(
    "m.flaky",
    accepts=ROWS,
    produces=Kind.TABLE,
    summary="flaky pass of the rows: the first try fails transiently",
    config=FlakyConfig,
)
def flaky_rows(value: Any, config: FlakyConfig, ctx: Any) -> pa.Table:
    table = _table(value)
    first = table.column("id")[0].as_py() if table.num_rows else "empty"
    marker = Path(config.state_dir) / f"{ctx.step}-{first}"
    if not marker.exists():
        marker.write_text("tried")
        raise TransientError(f"m.flaky: {ctx.step} is briefly unavailable")
    return table


CONSUMERS = ("converge", "decision", "batch", "planning", "gate")
UPSTREAMS = ("task", "batch", "planning", "decision_branch", "converge")
OUTCOMES = ("ran", "skipped", "failed", "retried_then_ok", "zero_rows")
RETRY = "retry: {max_attempts: 2, backoff: none, delay_s: 0}"


@dataclass(frozen=True)
class Case:
    consumer: str
    upstream: str
    outcome: str

    @property
    def id(self) -> str:
        return f"{self.consumer}-after-{self.upstream}-{self.outcome}"

    @property
    def fast(self) -> bool:
        return self.upstream in ("task", "batch") and self.outcome in ("ran", "zero_rows")


CASES = [Case(*combo) for combo in itertools.product(CONSUMERS, UPSTREAMS, OUTCOMES)]


def _capability(case: Case, state_dir: Path) -> str:
    if case.outcome == "failed":
        return "m.fail"
    if case.outcome == "retried_then_ok":
        return f"{{uses: m.flaky, with: {{state_dir: '{state_dir}'}}}}"
    return "m.pass"


def _upstream(case: Case, state_dir: Path) -> tuple[str, list[str]]:
    """The steps of `up` (rooted at the step `top` chooses) and that root's name."""
    cap = _capability(case, state_dir)
    retry = RETRY if case.outcome == "retried_then_ok" else ""
    flaky = f"uses: m.flaky\n    with: {{state_dir: '{state_dir}'}}"
    body = f"uses: {cap}" if cap.startswith("m.") else flaky
    if case.upstream == "task":
        return f"  - name: up\n    depends_on: [top]\n    {body}\n    {retry}\n", ["up"]
    if case.upstream == "batch":
        return (
            "  - name: up\n    kind: batch\n    depends_on: [top]\n"
            f"    batch: {{size: 2, failure_strategy: fail_fast}}\n    {body}\n    {retry}\n",
            ["up"],
        )
    if case.upstream == "planning":
        allow = f"[{cap}]"
        return (
            "  - name: up\n    kind: planning\n    depends_on: [top]\n    planning:\n"
            f"      goal: {_goal(cap)}\n      allow: {allow}\n"
            "      max_steps: 1\n      max_depth: 1\n      max_phases: 1\n      max_attempts: 1\n"
            f"    {retry}\n",
            ["up"],
        )
    if case.upstream == "decision_branch":
        return (
            "  - name: pick\n    kind: decision\n    depends_on: [top]\n"
            "    uses: t.route\n    with: {choose: [up]}\n    branches: [up, aside]\n"
            f"  - name: up\n    depends_on: [pick]\n    {body}\n    {retry}\n"
            "  - {name: aside, depends_on: [pick], uses: m.pass}\n",
            ["pick"],
        )
    assert case.upstream == "converge"
    return (
        f"  - name: mid\n    depends_on: [top]\n    {body}\n    {retry}\n"
        "  - {name: up, kind: converge, depends_on: [mid]}\n",
        ["mid"],
    )


def _goal(capability: str) -> str:
    return {
        "m.pass": "pass the rows on unchanged.",
        "m.fail": "fail the rows permanently.",
    }.get(capability, "flaky pass of the rows.")


def _consumer(case: Case) -> str:
    if case.consumer == "converge":
        return "  - {name: out, kind: converge, depends_on: [up, elsewhere]}\n"
    if case.consumer == "decision":
        return (
            "  - name: out\n    kind: decision\n    depends_on: [up]\n    uses: decide.rules\n"
            "    with: {rules: [{if: 'count(id >= 0) > 0', then: ['yes']}], else: ['no']}\n"
            "    branches: ['yes', 'no']\n"
            "  - {name: 'yes', depends_on: [out], uses: m.pass}\n"
            "  - {name: 'no', depends_on: [out], uses: m.pass}\n"
        )
    if case.consumer == "batch":
        return (
            "  - name: out\n    kind: batch\n    depends_on: [up]\n"
            "    batch: {size: 2, failure_strategy: fail_fast}\n    uses: m.pass\n"
        )
    if case.consumer == "planning":
        return (
            "  - name: out\n    kind: planning\n    depends_on: [up]\n    planning:\n"
            "      goal: pass the rows on unchanged.\n      allow: [m.pass]\n"
            "      max_steps: 1\n      max_depth: 1\n      max_phases: 1\n      max_attempts: 1\n"
        )
    assert case.consumer == "gate"
    return (
        "  - name: out\n    kind: gate\n    depends_on: [up]\n"
        "    gate: {prompt: Release the rows?, approvers: [alice]}\n"
        "  - {name: after, depends_on: [out], uses: m.pass}\n"
    )


def template_text(case: Case, state_dir: Path) -> str:
    up, roots = _upstream(case, state_dir)
    chosen = "elsewhere" if case.outcome == "skipped" else roots[0]
    return f"""name: matrix
version: 1
inputs:
  rows: {{kind: table, default: rows.csv}}
models: {{planner: planner_model, worker: worker_model}}
budget:
  {{max_steps: 60, max_tokens: 100000, max_cost_usd: 1, max_fanout: 16, max_planning_phases: 4}}
steps:
  - {{name: load, uses: acquire.read_table, with: {{input: rows}}}}
  - name: top
    kind: decision
    depends_on: [load]
    uses: t.route
    with: {{choose: [{chosen}]}}
    branches: [{roots[0]}, elsewhere]
  - {{name: elsewhere, depends_on: [top], uses: m.pass}}
{up}{_consumer(case)}"""


@dataclass(frozen=True)
class Expected:
    success: bool | None  # None: not asserted (a gate pauses its run)
    consumer_runs: bool
    rows: int | None  # rows the consumer's result holds (None: not a table)
    sources: set[str] | None = None  # a converge's `source_step` values
    branch: str | None = None  # the branch a decision consumer takes
    retried: bool = False


def expected(case: Case) -> Expected:
    """What the frame promises for `case`."""
    rows = 0 if case.outcome == "zero_rows" else N_ROWS
    success = None if case.consumer == "gate" else True
    if case.outcome == "failed":
        return Expected(success=False, consumer_runs=False, rows=None)
    if case.outcome == "skipped":
        if case.consumer == "converge":  # it closes the decision: runs with what did run
            return Expected(True, True, N_ROWS, sources={"elsewhere"})
        return Expected(True, consumer_runs=False, rows=None)
    retried = case.outcome == "retried_then_ok"
    if case.consumer == "converge":
        return Expected(success, True, rows, sources={"up"} if rows else set(), retried=retried)
    if case.consumer == "decision":
        branch = "yes" if rows else "no"
        return Expected(success, True, None, branch=branch, retried=retried)
    if case.consumer == "gate":
        return Expected(None, True, None, retried=retried)
    return Expected(success, True, rows, retried=retried)


CONSUMER_KEY = {
    "converge": ("out", "out"),
    "decision": ("out", None),
    "batch": ("out__split", "out__merge"),
    "planning": ("out__plan", "out"),
    "gate": ("out", None),
}


@pytest.fixture(scope="module")
def matrix_catalog(catalog: Catalog) -> Catalog:
    return catalog.extended([pass_rows, fail_rows, flaky_rows])


@pytest.fixture
def run_case(
    matrix_catalog: Catalog, tmp_path: Path, instance: DagsterInstance
) -> Callable[[Case], TemplateRun]:
    def run(case: Case) -> TemplateRun:
        folder = tmp_path / "templates"
        folder.mkdir()
        state = tmp_path / "state"
        state.mkdir()
        lines = [",".join(COLUMNS)]
        if case.outcome != "zero_rows":
            lines += [f"{i},contract {i},{'high' if i else 'low'}" for i in range(N_ROWS)]
        (folder / "rows.csv").write_text("\n".join(lines) + "\n")
        path = folder / "matrix.yaml"
        path.write_text(template_text(case, state))
        frame = load_template(path, matrix_catalog)
        model = OfflineModel()
        job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    return run


def _table_of(run: TemplateRun, key: str) -> pa.Table:
    loaded = run.result.output_for_node(key).load()
    return loaded if isinstance(loaded, pa.Table) else pa.Table.from_pylist(loaded)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=() if c.fast else pytest.mark.slow) for c in CASES],
)
def test_conformance(case: Case, run_case: Callable[[Case], TemplateRun]) -> None:
    want = expected(case)
    run = run_case(case)
    events = run.result.all_events
    started = set(run.started)
    start_key, result_key = CONSUMER_KEY[case.consumer]
    failures = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    retries = [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]

    if want.success is not None:
        assert run.result.success is want.success, [
            (e.step_key, str(e.step_failure_data.error)) for e in failures
        ]
    assert (start_key in started) is want.consumer_runs, sorted(started)
    assert bool(retries) is want.retried, [e.step_key for e in retries]
    if case.outcome == "failed":
        kinds = {
            e.step_failure_data.user_failure_data.metadata["marigold/failure"].value
            for e in failures
        }
        assert kinds == {"permanent"}, "a permanent failure fails at once"
    if not want.consumer_runs:
        return
    if want.branch is not None:
        assert want.branch in started and ({"yes", "no"} - {want.branch}).isdisjoint(started)
    if case.consumer == "gate":
        assert "after" not in started, "a gate without a decision holds what follows it"
    if result_key is None or want.rows is None:
        return
    table = _table_of(run, result_key)
    assert table.num_rows == want.rows
    assert "id" in table.column_names, f"columns kept: {table.column_names}"
    if want.rows:  # a header-only CSV says nothing of types: its columns are null-typed
        assert pa.types.is_integer(table.schema.field("id").type), "integers stay integers"
    if want.sources is not None:
        assert set(table.column("source_step").to_pylist()) == want.sources


def test_the_matrix_covers_every_combination() -> None:
    assert len(CASES) == len(CONSUMERS) * len(UPSTREAMS) * len(OUTCOMES) == 125
    assert len({case.id for case in CASES}) == len(CASES)
    assert TEST_CAPABILITIES, "the shared test capabilities are in the catalog too"
