"""The canonical workflow shapes, compiled from templates and run through Dagster."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterInstance

from marigold_dagster.jobs.compiler import compile_frame

HEADER = """
version: 1
budget: {max_steps: 50, max_tokens: 1000, max_cost_usd: 1, max_fanout: 16}
steps:
"""


def template(name: str, steps: str) -> str:
    return f"name: {name}{HEADER}{steps}"


def before(order: list[str], first: str, second: str) -> bool:
    return order.index(first) < order.index(second)


def test_linear_four_steps_run_in_order_and_pass_data_along(run_template, instance):
    run = run_template(
        "linear",
        template(
            "linear",
            """
  - {name: a, uses: t.mark}
  - {name: b, uses: t.mark, depends_on: [a]}
  - {name: c, uses: t.mark, depends_on: [b]}
  - {name: d, uses: t.mark, depends_on: [c]}
""",
        ),
        instance,
    )
    assert run.result.success
    assert run.started == ["a", "b", "c", "d"]
    assert run.rows("d") == [{"id": 0, "trail": "a>b>c>d"}]
    assert run.summary.names("succeeded") == ["a", "b", "c", "d"]


def test_diamond_joins_after_both_sides(run_template, instance):
    run = run_template(
        "diamond",
        template(
            "diamond",
            """
  - {name: top, uses: t.mark}
  - {name: left, uses: t.mark, depends_on: [top]}
  - {name: right, uses: t.mark, depends_on: [top]}
  - {name: bottom, kind: converge, depends_on: [left, right]}
""",
        ),
        instance,
    )
    assert run.result.success
    order = run.started
    assert order[0] == "top" and order[-1] == "bottom"
    assert set(order[1:3]) == {"left", "right"}
    rows = run.rows("bottom")
    assert sorted((r["source_step"], r["trail"]) for r in rows) == [
        ("left", "top>left"),
        ("right", "top>right"),
    ]


def test_tree_fans_out_to_four_children(run_template, instance):
    children = "".join(
        f"  - {{name: leaf{i}, uses: t.mark, depends_on: [root]}}\n" for i in range(4)
    )
    run = run_template(
        "tree",
        template("tree", "  - {name: root, uses: t.rows, with: {n: 3}}\n" + children),
        instance,
    )
    assert run.result.success
    assert run.started[0] == "root"
    assert sorted(run.started[1:]) == [f"leaf{i}" for i in range(4)]
    for i in range(4):
        assert [r["trail"] for r in run.rows(f"leaf{i}")] == [f"root>leaf{i}"] * 3


def test_mixed_seven_step_dag_respects_every_dependency(run_template, instance):
    steps = """
  - {name: load, uses: t.rows, with: {n: 4}}
  - {name: clean, uses: t.mark, depends_on: [load]}
  - {name: enrich, uses: t.mark, depends_on: [load]}
  - {name: check, uses: t.mark, depends_on: [clean]}
  - {name: audit, uses: t.mark, depends_on: [load, enrich]}
  - {name: combine, kind: converge, depends_on: [check, audit]}
  - {name: report, uses: t.mark, depends_on: [combine]}
"""
    run = run_template("mixed", template("mixed", steps), instance)
    assert run.result.success
    order = run.started
    assert len(order) == 7
    for upstream, downstream in [
        ("load", "clean"),
        ("load", "enrich"),
        ("clean", "check"),
        ("enrich", "audit"),
        ("load", "audit"),
        ("check", "combine"),
        ("audit", "combine"),
        ("combine", "report"),
    ]:
        assert before(order, upstream, downstream), f"{upstream} should start before {downstream}"
    # A task's input is its first dependency's result: audit reads load, after enrich ran.
    trails = sorted(r["trail"] for r in run.rows("report"))
    assert trails == ["load>audit>report"] * 4 + ["load>clean>check>report"] * 4


ROUTING = """
  - {{name: intake, uses: t.rows, with: {{n: 2}}}}
  - name: route
    kind: decision
    depends_on: [intake]
    uses: t.route
    with: {{choose: {choose}}}
    branches: [approve, review, reject]
  - {{name: approve, uses: t.mark, depends_on: [route]}}
  - {{name: review, uses: t.mark, depends_on: [route]}}
  - {{name: reject, uses: t.mark, depends_on: [route]}}
  - {{name: notify, kind: converge, depends_on: [approve, review, reject]}}
"""


@pytest.mark.parametrize(
    "chosen",
    [["approve"], ["review", "reject"], ["approve", "review", "reject"], []],
    ids=["one", "two", "all", "none"],
)
def test_conditional_routing_converges_whatever_the_decision_chose(run_template, instance, chosen):
    run = run_template("routing", template("routing", ROUTING.format(choose=chosen)), instance)
    assert run.result.success
    branches = ["approve", "review", "reject"]
    ran = [b for b in branches if b in run.started]
    assert ran == chosen
    assert "notify" in run.started, "a converge runs even when no branch ran"
    assert sorted({r["source_step"] for r in run.rows("notify")}) == sorted(chosen)
    assert len(run.rows("notify")) == 2 * len(chosen)
    for branch in set(branches) - set(chosen):
        skipped = run.summary.step(branch)
        assert skipped.status == "skipped"
        assert f"branch '{branch}' not chosen by decision 'route'" in skipped.detail
    assert run.summary.step("route").detail == f"chose: {', '.join(chosen) or '(none)'}"


def test_converge_inside_an_unchosen_branch_is_skipped_with_it(run_template, instance):
    steps = """
  - name: outer
    kind: decision
    uses: t.route
    with: {choose: [left]}
    branches: [left, right]
  - {name: left, uses: t.mark, depends_on: [outer]}
  - {name: right, uses: t.mark, depends_on: [outer]}
  - name: inner
    kind: decision
    depends_on: [right]
    uses: t.route
    with: {choose: [x]}
    branches: [x, y]
  - {name: x, uses: t.mark, depends_on: [inner]}
  - {name: y, uses: t.mark, depends_on: [inner]}
  - {name: inner_join, kind: converge, depends_on: [x, y]}
  - {name: outer_join, kind: converge, depends_on: [left, inner_join]}
"""
    run = run_template("nested", template("nested", steps), instance)
    assert run.result.success
    assert "inner_join" not in run.started
    assert run.summary.step("inner_join").status == "skipped"
    assert [r["trail"] for r in run.rows("outer_join")] == ["left"]


def test_decision_choosing_an_undeclared_branch_fails_with_a_clear_error(run_template, instance):
    steps = """
  - name: route
    kind: decision
    uses: t.route
    with: {choose: [approve, escalate]}
    branches: [approve]
  - {name: approve, uses: t.mark, depends_on: [route]}
"""
    run = run_template("undeclared", template("undeclared", steps), instance)
    assert not run.result.success
    step = run.summary.step("route")
    assert step.status == "failed"
    assert "undeclared branch(es) ['escalate']" in step.detail
    assert "declared branches ['approve']" in step.detail
    assert run.summary.step("approve").status == "not_run"
    assert run.summary.step("approve").detail == "upstream 'route' failed"


def test_step_timeout_fails_the_step_and_says_so(run_template, instance):
    steps = "  - {name: slow, uses: t.sleep, with: {seconds: 5}, timeout_s: 0.3}\n"
    run = run_template("slow", template("slow", steps), instance)
    assert not run.result.success
    assert "ran past its timeout of 0.3 s" in run.summary.step("slow").detail


def test_retry_succeeds_on_the_second_attempt(run_template, instance, tmp_path):
    steps = f"""
  - name: fetch
    uses: t.flaky
    compose: null
    with: {{state_dir: "{tmp_path}", failures: 1}}
    retry: {{max_attempts: 3, backoff: none, delay_s: 0}}
"""
    steps = steps.replace("    compose: null\n", "")
    steps = "  - {name: src, uses: t.rows, with: {n: 2}}\n" + steps.replace(
        "    uses: t.flaky", "    depends_on: [src]\n    uses: t.flaky"
    )
    run = run_template("retry", template("retry", steps), instance)
    assert run.result.success
    assert run.started.count("fetch") == 1, "a retry restarts the step; Dagster starts it once"
    assert run.summary.step("fetch").attempts == 2
    metadata = run.result.output_for_node("fetch")
    assert metadata.rows == 2


def test_ops_carry_description_tags_pool_and_retry_policy(catalog, write_template):
    from marigold_dagster.template.loader import load_template

    path = write_template(
        "dressed",
        template(
            "dressed",
            """
  - name: a
    uses: t.mark
    description: Mark the rows.
    pool: model_calls
    tags: {team: risk}
    retry: {max_attempts: 4, backoff: linear, delay_s: 2, jitter: plus_minus}
""",
        ),
    )
    job = compile_frame(load_template(path, catalog))
    op = job.graph.node_named("a").definition
    assert op.description == "Mark the rows."
    assert op.pool == "model_calls"
    assert op.tags["team"] == "risk" and op.tags["marigold/template"] == "dressed"
    policy = op.retry_policy
    assert (policy.max_retries, policy.delay) == (3, 2)
    assert policy.backoff.value == "LINEAR" and policy.jitter.value == "PLUS_MINUS"
    assert job.tags["marigold/template_version"] == "1"


def test_step_metadata_is_short_with_the_detail_one_click_away(run_template, instance):
    run = run_template(
        "audited", template("audited", "  - {name: a, uses: t.rows, with: {n: 7}}\n"), instance
    )
    [output] = [e for e in run.result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert sorted(metadata) == [
        "dagster/row_count",
        "marigold/attempt",
        "marigold/budget_step",
        "marigold/capability",
        "marigold/created_by",
        "marigold/detail",
        "marigold/duration_s",
        "marigold/status",
        "marigold/worker",
        "preview",
    ]
    assert metadata["marigold/status"] == "succeeded"
    assert metadata["marigold/worker"].endswith(f":{os.getpid()}")
    assert metadata["marigold/created_by"] == "template"
    assert metadata["marigold/attempt"] == 1
    assert metadata["marigold/duration_s"] >= 0
    assert metadata["dagster/row_count"] == 7
    preview = metadata["preview"]
    assert [column.name for column in preview.schema.columns] == ["id", "trail"]
    assert [column.type for column in preview.schema.columns] == ["int", "string"]
    assert len(preview.records) == 5 and preview.records[0].data["id"] == 0
    detail = metadata["marigold/detail"]
    assert detail["step_kind"] == "task"
    assert detail["started_at"] <= detail["ended_at"]
    assert detail["primitives"][0]["primitive"] == "t.rows"
    assert detail["primitives"][0]["rows_out"] == 7


STEPS_AB = """  - {name: a, uses: t.rows, with: {n: 2}}
  - {name: b, uses: t.mark, depends_on: [a]}
"""


def materialized(run) -> list[list[str]]:
    return [
        e.event_specific_data.materialization.asset_key.path
        for e in run.result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]


def test_results_materialize_their_assets_by_default(run_template, instance):
    run = run_template("results", template("results", STEPS_AB), instance)
    assert materialized(run) == [["results", "b"]], "only the step nothing consumes"
    [event] = [e for e in run.result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert event.event_specific_data.materialization.metadata["dagster/row_count"].value == 2


def test_every_step_materializes_when_the_template_asks(run_template, instance):
    text = template("every", STEPS_AB).replace("steps:\n", "materialize: every_step\nsteps:\n")
    run = run_template("every", text, instance)
    assert materialized(run) == [["every", "a"], ["every", "b"]]


def test_persistent_postgres_instance_runs_routing_and_keeps_the_record(
    run_template, postgres_instance: DagsterInstance
):
    run = run_template(
        "routing_pg", template("routing_pg", ROUTING.format(choose=["review"])), postgres_instance
    )
    assert run.result.success
    stored = postgres_instance.get_run_by_id(run.result.run_id)
    assert stored is not None and stored.tags["marigold/template"] == "routing_pg"
    assert run.summary.step("review").status == "succeeded"
    assert run.summary.step("approve").status == "skipped"
