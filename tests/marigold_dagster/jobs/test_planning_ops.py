"""Planning steps end to end: a planner scripted through the SGLang test server, over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    ReexecutionOptions,
    build_reconstructable_job,
    execute_job,
)

from harness.scripted_planner import TEMPLATE, fragment, step
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import (
    ScriptedAnswer,
)
from tests.support.template_run import TemplateRun

VALID = fragment(
    step("mark_all", "t.mark"), step("count", "aggregate.count", ["mark_all"], by=["trail"])
)


@pytest.fixture
def run_planned(
    planner_server, catalog, write_template, instance: DagsterInstance
) -> Callable[..., TemplateRun]:
    server, script = planner_server
    script.prompts.clear()

    def run(
        answers: list[Any],
        *,
        rows: int = 4,
        max_depth: int = 2,
        max_phases: int = 1,
        max_steps: int = 30,
        max_tokens: int = 200_000,
    ) -> TemplateRun:
        script.answers[:] = answers
        text = TEMPLATE.format(
            rows=rows,
            max_depth=max_depth,
            max_phases=max_phases,
            max_steps=max_steps,
            max_tokens=max_tokens,
        )
        frame = load_template(write_template("planned", text), catalog)
        model = SGLangResource(
            base_url=server.url,
            model="planner-double",
            retry_max_attempts=2,
            retry_backoff_base_s=0.01,
        )
        job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not script.answers, f"scripted answers left unused: {script.answers}"
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    return run


def outputs(run: TemplateRun, key: str) -> dict[str, Any]:
    for event in run.result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == key:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"{key} produced no output")


def failure_description(run: TemplateRun, key: str) -> str:
    for event in run.result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key == key:
            return event.step_failure_data.user_failure_data.description
    raise AssertionError(f"{key} did not fail")


def test_a_valid_plan_runs_every_planned_step_as_a_dagster_step(
    run_planned, planner_server, instance
):
    run = run_planned([VALID])
    assert run.result.success
    assert run.started == [
        "load",
        "review__plan",
        "review__L1[mark_all]",
        "review__L2_fanout",
        "review__L2[count]",
        "review__collect",
        "review",
        "finish",
    ]
    assert run.rows("review") == [{"trail": "load>mark_all", "count": 4, "planned_step": "count"}]
    provenance = outputs(run, "review__L2[count]")
    assert provenance["marigold/created_by"] == "planning_step"
    assert provenance["marigold/planning_step"] == "review"
    assert provenance["marigold/planning_phase"] == 1
    assert provenance["marigold/fragment_id"].startswith("review-p1-")
    assert provenance["marigold/planning_reasoning"] == "mark, then count"
    assert provenance["marigold/handler_type"] == "grammar"
    assert provenance["marigold/composition_source"] == "aggregate.count"
    assert provenance["marigold/composition_spec"] == [
        {
            "use": "aggregate.count",
            "with": {"by": ["trail"], "where": None, "output_field": "count"},
        }
    ]
    assert outputs(run, "review__L1[mark_all]")["marigold/handler_type"] == "application"
    plan = outputs(run, "review__plan")
    assert plan["marigold/fragment"] == VALID
    assert plan["marigold/attempts"] == 1 and plan["marigold/rejected_attempts"] == 0
    assert plan["marigold/capability_tier"] == 3
    assert len(plan["marigold/prompt_sha256"]) == 64
    assert plan["llm.prompt_tokens"] > 0 and plan["llm.models"] == "planner-double"
    result = outputs(run, "review")
    assert result["marigold/budget"].startswith("4 of 30 steps, 1 of 3 phases, ")
    assert run.summary.step("review").status == "succeeded"
    started = {
        entry.step_key: entry.timestamp
        for entry in instance.all_logs(run.result.run_id, of_type=DagsterEventType.STEP_START)
    }
    # the planning step's time covers its whole region, from planning to its result
    assert run.summary.step("review").started_at == started["review__plan"]
    materialized = {
        (
            tuple(e.event_specific_data.materialization.asset_key.path),
            e.event_specific_data.materialization.partition,
        )
        for e in run.result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert {
        (("planned", "review", "plan"), None),
        (("planned", "review", "planned"), "count"),
        (("planned", "review"), None),
    } <= materialized
    partitions = instance.get_dynamic_partitions("planned__review__planned")
    assert set(partitions) == {planned["id"] for planned in VALID["steps"]}


REJECTIONS = {
    "unknown capability": (
        fragment(step("wipe", "t.delete_everything")),
        "handler 't.delete_everything' not found; allowed: aggregate.count, llm.generate",
    ),
    "cycle": (
        fragment(step("a", "t.mark", ["b"]), step("b", "t.mark", ["a"])),
        "steps: steps depend on each other in a cycle: a -> b -> a",
    ),
    "too deep": (
        fragment(step("a", "t.mark"), step("b", "t.mark", ["a"]), step("c", "t.mark", ["b"])),
        "steps[2].depends_on: 'c' sits at depth 3",
    ),
    "too many steps": (
        fragment(*[step(f"s{i}", "t.mark") for i in range(5)]),
        "steps: 5 steps, but this planning step allows at most 4",
    ),
    "over budget": (
        fragment(step("essay", "llm.generate", prompt="Write at length", max_tokens=8000)),
        "steps: the plan would take the task past max_tokens",
    ),
    "missing result": (
        fragment(step("a", "t.mark", ["contracts_cleaned"])),
        "steps[0].depends_on[0]: 'contracts_cleaned' is not a step or result",
    ),
    "touching the frame": (
        fragment(step("finish", "t.mark")),
        "steps[0].id: 'finish' is a template step",
    ),
    "adding a convergence": (
        {**fragment(step("a", "t.mark")), "converge": ["a"]},
        "converge: `converge` belongs to the template's frame",
    ),
    "unpinning a preset": (
        fragment(step("some", "transform.filter", where="true")),
        "steps[0].with: the template pins ['where'] for 'transform.filter'",
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS), ids=list(REJECTIONS))
def test_a_rejected_plan_is_replanned_with_its_diagnostic(run_planned, planner_server, case):
    bad, diagnostic = REJECTIONS[case]
    _, script = planner_server
    run = run_planned([bad, VALID], max_tokens=9_000)
    assert run.result.success, run.summary.render()
    first, second = script.prompts
    assert "previous answer was rejected" not in first
    assert diagnostic in second, second[-1500:]
    plan = outputs(run, "review__plan")
    assert plan["marigold/attempts"] == 2 and plan["marigold/rejected_attempts"] == 1
    rejected, accepted = plan["marigold/validation"]
    assert not rejected["accepted"] and any(diagnostic in f for f in rejected["findings"])
    assert rejected["answer"] == bad, "rejected fragments are recorded as answered"
    assert accepted["accepted"] and accepted["answer"] == VALID
    assert "review__L1[mark_all]" in run.started
    assert not [
        key for key in run.started if key.startswith("review__L1[") and "mark_all" not in key
    ]


def test_exhausting_max_attempts_fails_the_step_with_the_whole_history(run_planned):
    cycle = REJECTIONS["cycle"][0]
    run = run_planned([REJECTIONS["unknown capability"][0], cycle, cycle])
    assert not run.result.success
    description = failure_description(run, "review__plan")
    assert description.startswith("planning step 'review' got no valid plan in 3 attempt(s):")
    assert "attempt 1:" in description and "t.delete_everything" in description
    assert description.count("[CYCLE]") == 2
    assert not [key for key in run.started if key.startswith("review__L")]
    assert run.summary.step("review").status == "failed"
    assert run.summary.step("review").detail.startswith("planning step 'review' got no valid")


def test_a_second_phase_sees_the_first_phase_results_and_builds_on_them(
    run_planned, planner_server
):
    _, script = planner_server
    phase_two = fragment(
        step("count", "aggregate.count", ["mark_all"], by=["trail"]),
        reasoning="now count what phase 1 marked",
    )
    done = fragment(done=True, reasoning="nothing left to do")
    run = run_planned(
        [fragment(step("mark_all", "t.mark")), phase_two, done], max_phases=3, max_depth=1
    )
    assert run.result.success, run.summary.render()
    assert "## Phase 2" in script.prompts[1]
    assert "### mark_all" in script.prompts[1] and "load>mark_all" in script.prompts[1]
    assert "review__p2_L1[count]" in run.started
    assert outputs(run, "review__p2_L1[count]")["marigold/planning_phase"] == 2
    assert outputs(run, "review__p3_plan")["marigold/done"] is True
    assert {r["planned_step"] for r in run.rows("review")} == {"count"}, "terminal steps only"
    assert outputs(run, "review")["marigold/phases_planned"] == 3


def test_a_done_answer_plans_nothing_and_the_template_carries_on(run_planned, planner_server):
    _, script = planner_server
    run = run_planned([fragment(done=True, reasoning="the rows need nothing")], max_phases=2)
    assert run.result.success
    assert len(script.prompts) == 1, "phase 2 is not planned after done"
    assert not [key for key in run.started if key.startswith("review__p2_")], "nothing starts"
    assert not [key for key in run.started if key.startswith("review__L")]
    assert run.rows("review") == []
    assert "finish" in run.started


def test_a_truncated_planner_answer_is_an_error_and_is_asked_again(run_planned):
    cut = ScriptedAnswer(text='{"reasoning": "mark, then cou', finish_reason="length")
    run = run_planned([cut, VALID])
    assert run.result.success
    first, _ = outputs(run, "review__plan")["marigold/validation"]
    assert first["findings"][0].endswith("[MODEL_ERROR]")
    assert "length" in first["findings"][0]


def test_a_budget_ceiling_reached_mid_run_stops_creating_work_and_says_which(run_planned):
    # The estimate sees one row reaching `ask` (one call); `many` makes it 60 calls. The planner
    # call takes about 1,750 tokens, the estimate adds 364, the 60 calls about 1,140 more.
    plan = fragment(
        step("many", "t.explode", copies=60),
        step("ask", "t.ask_each", ["many"]),
        step("count", "aggregate.count", ["ask"], by=["trail"]),
    )
    run = run_planned([plan], rows=1, max_depth=3, max_tokens=2_500)
    assert run.result.success, run.summary.render()
    assert outputs(run, "review__plan")["marigold/estimate"] == "3 steps, ~364 tokens"
    asked = outputs(run, "review__L2[ask]")
    assert asked["llm.requests"] == 60
    fanout = outputs(run, "review__L3_fanout")
    assert fanout["marigold/stopped"].startswith("budget ceiling reached: max_tokens (")
    assert "review__L3[count]" not in run.started
    result = outputs(run, "review")
    assert result["marigold/status"] == "stopped"
    assert "max_tokens" in result["marigold/stopped"]
    assert result["marigold/planned_steps_run"] == 2


def test_reexecution_from_failure_reuses_the_recorded_plan(
    planner_server, write_template, postgres_instance, tmp_path
):
    """A failed planned step is re-run from failure; the planner is not asked again."""
    server, script = planner_server
    script.prompts.clear()
    script.answers[:] = [
        fragment(
            step("mark_all", "t.mark"),
            step("wobble", "t.flaky", ["mark_all"], state_dir=str(tmp_path), failures=1),
        )
    ]
    text = TEMPLATE.format(rows=3, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    path = write_template(
        "planned", text.replace("        - t.mark\n", "        - t.mark\n        - t.flaky\n")
    )
    job = build_reconstructable_job(
        "tests.support.reexecution_job",
        "planned_job",
        reconstructable_args=(str(path), server.url),
    )
    in_process = {"execution": {"config": {"in_process": {}}}}
    with execute_job(job, postgres_instance, run_config=in_process) as first:
        assert not first.success
        failed = [e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failed == ["review__L2[wobble]"]
    assert len(script.prompts) == 1

    options = ReexecutionOptions.from_failure(first.run_id, postgres_instance)
    with execute_job(
        job, postgres_instance, run_config=in_process, reexecution_options=options
    ) as second:
        assert second.success
        started = [e.step_key for e in second.all_events if e.event_type_value == "STEP_START"]
        rows = second.output_for_node("review").load().to_pylist()
    assert len(script.prompts) == 1, "the recorded plan was reused, not asked for again"
    assert "review__plan" not in started and "review__L1[mark_all]" not in started
    assert "review__L2[wobble]" in started
    assert {row["planned_step"] for row in rows} == {"wobble"}


def plan_checks(run: TemplateRun) -> list:
    return [
        e.event_specific_data
        for e in run.result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def test_plan_validation_is_an_asset_check_on_the_plan(run_planned):
    run = run_planned([REJECTIONS["cycle"][0], VALID])
    [check] = plan_checks(run)
    assert check.asset_key.path == ["planned", "review", "plan"]
    assert (check.check_name, check.passed) == ("plan_validated", True)
    assert check.metadata["marigold/rejected_attempts"].value == 1


def test_a_plan_that_never_validates_fails_its_asset_check(run_planned):
    cycle = REJECTIONS["cycle"][0]
    run = run_planned([cycle, cycle, cycle])
    [check] = plan_checks(run)
    assert (check.check_name, check.passed) == ("plan_validated", False)
    assert check.metadata["marigold/attempts"].value == 3
