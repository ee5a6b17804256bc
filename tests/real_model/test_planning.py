"""A planning step with a real planner: plan, validate, re-plan on rejection, execute or stop.

SmolLM2-135M is a weak planner, which is the point: whatever it answers, every accepted
fragment must be valid against its schema, every rejected one must carry diagnostics and have
its tokens counted, and the run must end as the template says (planned steps run, or the
planning step fails with the whole attempt history), never with a crash.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest
from dagster import DagsterInstance

from grammar_ops import Kind
from marigold_dagster.artifacts import StepValue, store_value
from marigold_dagster.errors import PlanRejected
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import plan_fragment
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.llama_server import LlamaServer
from resources.sglang import SGLangResource
from tests.real_model.conftest import (
    run_real_template,
    step_failure,
    step_outputs,
    write_contracts,
)

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

PLANNED = """name: real_planning
version: 1
inputs: {contracts: {kind: table, default: contracts.csv}}
models: {planner: planner_model, worker: worker_model}
budget: {max_steps: 12, max_tokens: 60000, max_cost_usd: 1, max_fanout: 8, max_planning_phases: 1}
steps:
  - {name: load, uses: acquire.read_table, with: {input: contracts}}
  - name: review
    kind: planning
    depends_on: [load]
    planning:
      goal: Count the contracts per counterparty.
      allow:
        - aggregate.count
        - {uses: transform.filter, with: {where: "annual_value_usd > 100000"}}
      schema_tier: 1
      max_steps: 2
      max_depth: 2
      max_phases: 1
      max_attempts: 2
  - {name: finish, kind: converge, depends_on: [review]}
"""


def test_a_planning_run_executes_its_plan_or_stops_with_every_attempt_diagnosed(
    llama_server: LlamaServer, instance: DagsterInstance, tmp_path: Path
) -> None:
    write_contracts(tmp_path, 6)
    run = run_real_template(llama_server, tmp_path, "real_planning", PLANNED, instance)
    failure = step_failure(run, "review__plan")  # a crash fails here, naming the error
    if failure is None:
        assert run.result.success, run.summary.render()
        plan = step_outputs(run, "review__plan")
        attempts = plan["marigold/validation"]
        assert attempts[-1]["accepted"]
        planned = [key for key in run.started if key.startswith("review__L")]
        assert planned, "the accepted plan ran"
    else:
        description, metadata = failure
        assert description.startswith("planning step 'review' got no valid plan in 2 attempt(s)")
        attempts = metadata["marigold/validation"]
        assert not [key for key in run.started if key.startswith("review__L")]
        assert run.summary.step("review").status == "failed"  # its plan op failed
    for attempt in attempts:
        if not attempt["accepted"]:
            assert attempt["findings"], "a rejected answer says why"
    print(f"\nplanning run: {[a['accepted'] for a in attempts]}, {run.summary.render()}")


@pytest.fixture
def deep_review_request(tmp_path: Path):
    """The contract_review template's planning request, over 6 routed contracts, tier 1."""
    frame = load_template(Path(__file__).parents[2] / "templates" / "contract_review.yaml")
    step = frame.steps["deep_review"]
    table = pa.table(
        {
            "contract_id": [f"C{i:04d}" for i in range(6)],
            "counterparty": ["Fjord Shipping", "Cobalt Systems", "Elm Street Clinics"] * 2,
            "annual_value_usd": [80_000 * (i + 1) for i in range(6)],
            "risk": ["high", "low", "medium"] * 2,
            "text": [f"Contract {i}: liability is unlimited." for i in range(6)],
        }
    )
    stored = store_value("route", table, tmp_path)
    value = StepValue("route", Kind.TABLE, stored.payload)
    status = BudgetStatus(frame.template.budget, BudgetUse())
    request = plan_request(frame, step, PlanProgress({"route": value}, "route"), status, 1)
    from dataclasses import replace

    return replace(request, tier=1, max_attempts=2)


def test_accepted_fragments_are_schema_valid_and_rejected_ones_counted(
    real_model: SGLangResource, deep_review_request
) -> None:
    schema = deep_review_request.scope.json_schema()
    with real_model.usage.step("deep_review__plan") as meter:
        try:
            outcome = plan_fragment(real_model, deep_review_request)
        except PlanRejected as rejected:
            outcome = rejected.outcome
    assert outcome.attempts, "the planner was asked"
    for attempt in outcome.attempts:
        if attempt.accepted:
            jsonschema.validate(attempt.answer, schema)
        else:
            assert attempt.findings and all(str(f) for f in attempt.findings)
    # Every answer, accepted or rejected, cut off or invalid, was metered with its tokens.
    assert meter.requests == len(outcome.attempts)
    assert meter.prompt_tokens >= sum(a.prompt_tokens for a in outcome.attempts)
    assert meter.prompt_tokens >= 100 * len(outcome.attempts), "every attempt's prompt counted"
    assert meter.completion_tokens > 0
    verdicts = [(a.accepted, [f.code for f in a.findings]) for a in outcome.attempts]
    print(
        f"\nplanner attempts: {verdicts}; tokens {meter.prompt_tokens} prompt, "
        f"{meter.completion_tokens} completion"
    )
