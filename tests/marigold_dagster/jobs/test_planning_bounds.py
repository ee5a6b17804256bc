"""Planning within bounds: every token counted, cost priced by the deployment, graceful stops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dagster import DagsterInstance

from harness.scripted_planner import TEMPLATE, fragment, step
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.model_binding import model_resources
from marigold_dagster.records.budget_use import budget_use
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from resources.pricing import (
    PRICE_CACHED_ENV,
    PRICE_COMPLETION_ENV,
    PRICE_PROMPT_ENV,
    price_book,
    restore_price_book,
)
from resources.sglang_test_server import ScriptedAnswer
from resources.token_count import count_tokens
from tests.support.template_run import TemplateRun

MODELS = ["planner_model", "worker_model"]


@pytest.fixture
def run_planned(
    planner_server, catalog, write_template, instance: DagsterInstance
) -> Iterator[Callable[..., TemplateRun]]:
    """Run the planned template against the test server, bound as the deployment binds it."""
    server, script = planner_server
    script.prompts.clear()
    saved = price_book()

    def run(
        answers: list[Any],
        *,
        prices: dict[str, str] | None = None,
        rows: int = 4,
        max_depth: int = 2,
        max_phases: int = 1,
        max_steps: int = 30,
        max_tokens: int = 200_000,
        edit: Callable[[str], str] = lambda text: text,
    ) -> TemplateRun:
        script.answers[:] = answers
        text = TEMPLATE.format(
            rows=rows,
            max_depth=max_depth,
            max_phases=max_phases,
            max_steps=max_steps,
            max_tokens=max_tokens,
        )
        frame = load_template(write_template("planned", edit(text)), catalog)
        environ = {"MARIGOLD_SGLANG_URL": server.url, **(prices or {})}
        job = compile_frame(frame, resource_defs=dict(model_resources(MODELS, environ)))
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not script.answers, f"scripted answers left unused: {script.answers}"
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    yield run
    restore_price_book(saved)


def step_metadata(run: TemplateRun, key: str, event_type: str = "STEP_OUTPUT") -> dict[str, Any]:
    for event in run.result.all_events:
        if event.event_type_value != event_type or event.step_key != key:
            continue
        if event_type == "STEP_OUTPUT":
            data = event.step_output_data.metadata
        else:
            data = event.step_failure_data.user_failure_data.metadata
        return {k: v.value for k, v in data.items()}
    raise AssertionError(f"{key} has no {event_type}")


def test_a_planner_that_answers_badly_three_times_is_charged_for_all_three(
    run_planned, planner_server, instance
):
    _, script = planner_server
    truncated = ScriptedAnswer(text='{"reasoning": "mark, then cou', finish_reason="length")
    not_json = "I would mark every row and then count them."
    off_schema = '{"reasoning": "x", "steps": [{"id": "a", "colour": "red"}], "done": false}'
    run = run_planned([truncated, not_json, off_schema])
    assert not run.result.success
    failed = step_metadata(run, "review__plan", "STEP_FAILURE")
    prompts = sum(count_tokens(prompt) for prompt in script.prompts)
    answers = sum(count_tokens(a) for a in [truncated.text, not_json, off_schema])
    assert len(script.prompts) == 3
    assert failed["llm.requests"] == 3 and failed["llm.failures"] == 3
    assert failed["llm.prompt_tokens"] == prompts
    assert failed["llm.completion_tokens"] == answers
    attempts = failed["marigold/validation"]
    assert [a["accepted"] for a in attempts] == [False, False, False]
    assert all(a["prompt_tokens"] > 0 and a["completion_tokens"] > 0 for a in attempts)
    assert sum(a["prompt_tokens"] + a["completion_tokens"] for a in attempts) == (prompts + answers)
    assert budget_use(instance, run.result.run_id).tokens == prompts + answers


PRICED = {PRICE_PROMPT_ENV: "2000", PRICE_CACHED_ENV: "2000", PRICE_COMPLETION_ENV: "2000"}


def test_a_run_with_priced_models_stops_at_max_cost_usd_and_names_it(run_planned, instance):
    # At $2,000 per million tokens the planner call (~1,750 tokens) costs about $3.50 and the
    # plan's estimate fits the $5.00 left; the 60 `ask` calls take the run past $5.00, so the
    # depth-3 step never starts.
    plan = fragment(
        step("many", "t.explode", copies=60),
        step("ask", "t.ask_each", ["many"]),
        step("count", "aggregate.count", ["ask"], by=["trail"]),
    )
    run = run_planned([plan], prices=PRICED, rows=1, max_depth=3)
    assert run.result.success, run.summary.render()
    planned = step_metadata(run, "review__plan")
    assert planned["llm.cost_usd"] > 3
    asked = step_metadata(run, "review__L2[ask]")
    assert asked["llm.requests"] == 60 and asked["llm.cost_usd"] > 0
    fanout = step_metadata(run, "review__L3_fanout")
    assert fanout["marigold/stopped"].startswith("budget ceiling reached: max_cost_usd ($")
    assert "review__L3[count]" not in run.started
    result = step_metadata(run, "review")
    assert result["marigold/status"] == "stopped"
    assert "max_cost_usd" in result["marigold/stopped"]
    print("marigold/budget:", result["marigold/budget"])
    assert result["marigold/budget"].endswith("of $5.00")
    assert budget_use(instance, run.result.run_id).cost_usd > 5


def test_a_plan_whose_cost_would_pass_max_cost_usd_is_rejected_and_planning_stops(run_planned):
    # $4,000 per million: the planner call alone is about $7, past the $5.00 ceiling.
    plan = fragment(step("ask", "t.ask_each"))
    prices = {PRICE_PROMPT_ENV: "4000", PRICE_CACHED_ENV: "4000", PRICE_COMPLETION_ENV: "4000"}
    run = run_planned([plan, plan, plan], prices=prices, rows=1, max_depth=1)
    assert run.result.success, run.summary.render()
    plan = step_metadata(run, "review__plan")
    assert plan["marigold/stopped"].startswith(
        "budget ceiling reached: the plan of phase 1 would not fit: max_cost_usd ($"
    )
    assert all("[OVER_BUDGET]" in a["findings"][0] for a in plan["marigold/validation"])
    assert plan["llm.requests"] == 3 and plan["llm.cost_usd"] > 5
    assert "review__L1[ask]" not in run.started


def test_the_offline_model_is_bound_at_no_cost():
    from resources.pricing import bound_prices

    saved = price_book()
    try:
        model_resources(["planner_model"], {PRICE_PROMPT_ENV: "5"})
        assert bound_prices("planner_model").free
        assert bound_prices("planner_model").describe() == "$0.00 (unpriced)"
    finally:
        restore_price_book(saved)


PHASE_ONE = fragment(
    step("mark_all", "t.mark"), step("count", "aggregate.count", ["mark_all"], by=["trail"])
)
TOO_BIG = fragment(
    step("m2", "t.mark", ["mark_all"]),
    step("m3", "t.mark", ["mark_all"]),
    step("c2", "aggregate.count", ["m2"], by=["trail"]),
    reasoning="mark again and count",
)


def test_a_last_phase_that_cannot_fit_the_budget_stops_with_the_earlier_results(run_planned):
    # load and phase 1 use 3 of 5 steps; phase 2 would add 3 more, every time it is asked.
    run = run_planned([PHASE_ONE, TOO_BIG, TOO_BIG, TOO_BIG], max_phases=2, max_steps=5)
    assert run.result.success, run.summary.render()
    stopped = step_metadata(run, "review__p2_plan")["marigold/stopped"]
    assert stopped == (
        "budget ceiling reached: the plan of phase 2 would not fit: max_steps (6 of 5 steps)"
    )
    assert not [key for key in run.started if key.startswith("review__p2_L")]
    result = step_metadata(run, "review")
    assert result["marigold/status"] == "stopped"
    assert result["marigold/stopped"] == stopped
    assert run.rows("review") == [{"trail": "load>mark_all", "count": 4, "planned_step": "count"}]
    assert "finish" in run.started and run.rows("finish")


def test_on_budget_fail_fails_the_step_instead(run_planned):
    def fail(text: str) -> str:
        return text.replace("max_attempts: 3", "max_attempts: 3\n      on_budget: fail")

    run = run_planned([PHASE_ONE, TOO_BIG, TOO_BIG, TOO_BIG], max_phases=2, max_steps=5, edit=fail)
    assert not run.result.success
    assert "review" not in run.started


def test_max_phases_without_done_is_recorded_as_the_bound_that_stopped_planning(run_planned):
    phase_two = fragment(step("c2", "aggregate.count", ["mark_all"], by=["trail"]))
    run = run_planned([PHASE_ONE, phase_two], max_phases=2)
    assert run.result.success, run.summary.render()
    result = step_metadata(run, "review")
    assert result["marigold/stopped"].startswith("planning bound reached: max_phases (2 of 2")


def test_later_phases_and_fan_outs_with_nothing_to_release_start_no_ops(run_planned):
    phase_two = fragment(step("c2", "aggregate.count", ["mark_all"], by=["trail"]))
    done = fragment(done=True, reasoning="counted")
    run = run_planned(
        [fragment(step("mark_all", "t.mark")), phase_two, done], max_phases=3, max_depth=3
    )
    assert run.result.success, run.summary.render()
    assert [key for key in run.started if key.startswith("review")] == [
        "review__plan",
        "review__L1[mark_all]",
        "review__L2_fanout",  # nothing of depth 2: it closes phase 1
        "review__p2_plan",
        "review__p2_L1[c2]",
        "review__p2_L2_fanout",
        "review__p3_plan",  # done: nothing of phase 3 runs
        "review",
    ]
    assert run.rows("review") == [{"trail": "load>mark_all", "count": 4, "planned_step": "c2"}]


def test_a_plan_that_ends_without_what_the_next_step_reads_is_rejected_and_replanned(
    run_planned, planner_server
):
    _, script = planner_server

    def count_after(text: str) -> str:
        return text.replace(
            "{name: finish, kind: converge, depends_on: [review]}",
            "{name: finish, depends_on: [review], uses: aggregate.count, with: {by: [trail]}}",
        )

    per_id = fragment(step("per_id", "aggregate.count", by=["id"]))
    run = run_planned([per_id, PHASE_ONE], edit=count_after)
    assert run.result.success, run.summary.render()
    rejected, accepted = step_metadata(run, "review__plan")["marigold/validation"]
    assert rejected["findings"] == [
        "steps[0]: 'per_id' ends the plan, but its rows would lack ['trail'] (it produces "
        "['count', 'id']); the planning step's result must have ['trail']: end the plan with "
        "steps that produce them [OUTPUT_CONTRACT]"
    ]
    assert "OUTPUT_CONTRACT" in script.prompts[1]
    assert accepted["accepted"]
    assert run.rows("finish") == [{"trail": "load>mark_all", "count": 1}]
