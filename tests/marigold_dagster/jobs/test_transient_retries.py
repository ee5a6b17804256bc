"""A template's `retry:` over a flaky model server: Dagster step retries, visible in the events.

The SGLang-compatible test server injects HTTP 500s by scripted sequence (deterministic); the
client gives up after its own attempts, the failure is transient, and Dagster's RetryPolicy
tries the step again (`STEP_UP_FOR_RETRY`). A broken answer is permanent: one try, its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dagster import DagsterInstance

from harness.scripted_planner import ScriptedPlanner, fragment, step
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.records.run_summary import summarise_run
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import FaultPlan, SGLangTestServer
from tests.support.template_run import TemplateRun

HEADER = """version: 1
models: {planner: planner_model, worker: worker_model}
budget: {max_steps: 40, max_tokens: 200000, max_cost_usd: 5, max_fanout: 8}
"""
RETRY = "retry: {max_attempts: 3, backoff: exponential, delay_s: 0.01, jitter: full}"

TASK = f"""name: retried_task
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 2}}}}
  - name: say
    depends_on: [load]
    uses: llm.generate
    with: {{prompt: Describe the rows, max_tokens: 20}}
    {RETRY}
"""

BATCH = f"""name: retried_batch
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 2}}}}
  - name: label
    kind: batch
    depends_on: [load]
    batch: {{size: 1, failure_strategy: isolate}}
    uses: llm.classify
    with: {{field: trail, labels: [first, second]}}
    {RETRY}
"""

PLANNED = f"""name: retried_plan
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 2}}}}
  - name: review
    kind: planning
    depends_on: [load]
    planning:
      goal: Describe the rows.
      allow: [llm.generate]
      max_steps: 2
      max_depth: 1
      max_phases: 1
      max_attempts: 2
    {RETRY}
"""

LABEL = f"""name: permanent_task
{HEADER}steps:
  - {{name: load, uses: t.rows, with: {{n: 1}}}}
  - name: label
    depends_on: [load]
    uses: llm.classify
    with: {{field: trail, labels: [first, second]}}
    {RETRY}
"""

PLAN = fragment(step("say", "llm.generate", prompt="Describe the rows", max_tokens=20))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SGLangTestServer, ScriptedPlanner]]:
    script = ScriptedPlanner()
    with SGLangTestServer(model="flaky-double", responder=script) as double:
        yield double, script


@pytest.fixture
def run_flaky(server, catalog, write_template, instance: DagsterInstance) -> Callable[..., Any]:
    double, script = server

    def run(name: str, text: str, faults: list[str | None], plans: list[Any] = ()) -> TemplateRun:
        double.set_faults(FaultPlan(sequence=faults))
        script.answers[:] = list(plans)
        frame = load_template(write_template(name, text), catalog)
        model = SGLangResource(
            base_url=double.url,
            model="flaky-double",
            retry_max_attempts=5,
            retry_backoff_base_s=0.001,
        )
        job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        double.set_faults(FaultPlan())
        return TemplateRun(frame, result, summarise_run(instance, result.run_id, frame))

    return run


def events(run: TemplateRun, kind: str) -> list[str]:
    return [e.step_key for e in run.result.all_events if e.event_type_value == kind]


def attempt(run: TemplateRun, key: str) -> int:
    for event in run.result.all_events:
        if event.event_type_value == "STEP_OUTPUT" and event.step_key == key:
            return event.step_output_data.metadata["marigold/attempt"].value
    raise AssertionError(f"{key} produced no output")


def test_a_task_retries_a_model_server_answering_500_five_times_then_200(run_flaky):
    run = run_flaky("retried_task", TASK, ["http_500"] * 5)
    assert run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == ["say"]
    assert attempt(run, "say") == 2


def test_a_batch_chunk_retries_a_transient_model_failure(run_flaky):
    run = run_flaky("retried_batch", BATCH, ["http_500"] * 5)
    assert run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == ["label[rows_0_0]"]
    assert attempt(run, "label[rows_0_0]") == 2
    assert len(run.rows("label__merge")) == 2, "no row dead-lettered"


def test_a_planned_step_retries_a_transient_model_failure(run_flaky):
    # the planner's call passes; the planned step's first try meets five 500s
    run = run_flaky("retried_plan", PLANNED, [None, *["http_500"] * 5], [PLAN])
    assert run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == ["review__L1[say]"]
    assert attempt(run, "review__L1[say]") == 2


def test_a_failed_planner_call_is_retried_by_the_step_not_replanned(run_flaky):
    run = run_flaky("retried_plan", PLANNED, ["http_500"] * 5, [PLAN])
    assert run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == ["review__plan"]
    metadata = {
        k: v.value
        for e in run.result.all_events
        if e.event_type_value == "STEP_OUTPUT" and e.step_key == "review__plan"
        for k, v in e.step_output_data.metadata.items()
    }
    assert metadata["marigold/attempts"] == 1, "the failed call used no re-plan attempt"


def test_a_permanent_model_failure_fails_at_once_with_its_cause(run_flaky):
    run = run_flaky("permanent_task", LABEL, ["truncate"])
    assert not run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == []
    (failure,) = [e for e in run.result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data.user_failure_data
    assert data.metadata["marigold/failure"].value == "permanent"
    assert "label" in data.description and "max_new_tokens" in data.description


def test_a_step_timeout_is_transient_and_retried_under_the_policy(run_template, instance):
    run = run_template(
        "slow_task",
        """name: slow_task
version: 1
budget: {max_steps: 10, max_tokens: 1000, max_cost_usd: 1, max_fanout: 4}
steps:
  - name: wait
    uses: t.sleep
    with: {seconds: 0.5}
    timeout_s: 0.1
    retry: {max_attempts: 2, backoff: none, delay_s: 0}
""",
        instance,
    )
    assert not run.result.success
    assert events(run, "STEP_UP_FOR_RETRY") == ["wait"], "one retry, then out of attempts"
    (failure,) = [e for e in run.result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.step_failure_data.user_failure_data
    assert data.metadata["marigold/failure"].value == "transient"
    assert "ran past its timeout" in data.description
