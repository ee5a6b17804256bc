"""The planning call over HTTP: digests of mid-sized results, then attempts that share them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dagster import build_resources

from grammar_ops import Kind
from marigold_dagster.artifacts import StepValue, store_value
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import PlanRequest, plan_fragment
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import FaultPlan, GenerationRequest, SGLangTestServer

ROOT = Path(__file__).parents[3]
DIGEST = "Three hundred contracts; a third are high risk, most about liability."


def fragment(*uses: str) -> dict[str, Any]:
    steps = [
        {"id": f"s{i}", "uses": name, "with": {}, "depends_on": [f"s{i - 1}"] if i else []}
        for i, name in enumerate(uses)
    ]
    for planned in steps:
        planned["reason"] = "test"
    return {"reasoning": "filter then extract", "steps": steps, "done": False}


class Model:
    """Answers digest calls with DIGEST and planner calls from a script; records both."""

    def __init__(self, plans: list[dict[str, Any]]) -> None:
        self.plans = plans
        self.digest_prompts: list[str] = []
        self.planner_prompts: list[str] = []

    def __call__(self, request: GenerationRequest) -> str:
        if "steps" in (request.json_schema or {}).get("properties", {}):
            self.planner_prompts.append(request.prompt)
            return json.dumps(self.plans.pop(0))
        self.digest_prompts.append(request.prompt)
        return DIGEST


def contracts(n: int) -> pa.Table:
    return pa.table(
        {
            "id": [f"c{i:04d}" for i in range(n)],
            "risk": [("high", "medium", "low")[i % 3] for i in range(n)],
            "text": [f"Contract {i}: liability capped at {i * 100} EUR." for i in range(n)],
        }
    )


@pytest.fixture
def request_for(tmp_path: Path):
    frame = load_template(ROOT / "templates" / "contract_review.yaml")
    step = frame.steps["deep_review"]
    status = BudgetStatus(frame.template.budget, BudgetUse())

    def make(rows: int) -> PlanRequest:
        stored = store_value("route", contracts(rows), tmp_path)
        value = StepValue("route", Kind.TABLE, stored.payload)
        return plan_request(frame, step, PlanProgress({"route": value}, "route"), status, 1)

    return make


def planner(server: SGLangTestServer, **config: Any) -> Iterator[Any]:
    resource = SGLangResource(base_url=server.url, model=server.config.model, **config)
    with build_resources({"planner": resource}) as built:
        yield built.planner


def test_a_mid_sized_result_is_digested_once_and_every_attempt_shows_the_digest(request_for):
    script = Model([fragment("no.such_capability"), fragment("transform.filter", "extract_fields")])
    with SGLangTestServer(model="planner-double", responder=script) as server:
        for model in planner(server):
            outcome = plan_fragment(model, request_for(300))
    assert outcome.fragment is not None
    assert [a.accepted for a in outcome.attempts] == [False, True]
    assert len(script.digest_prompts) == 1, "one digest call, before the first attempt"
    assert "Result `route` (table):" in script.digest_prompts[0]
    assert outcome.digests == {"route": DIGEST} and outcome.digest_failures == {}
    for prompt in script.planner_prompts:
        assert f"Summary by the model:\n{DIGEST}" in prompt
    assert outcome.usage.requests == 3, "the digest call counts towards the step's usage"


def test_a_small_result_needs_no_digest_call(request_for):
    script = Model([fragment("transform.filter")])
    with SGLangTestServer(model="planner-double", responder=script) as server:
        for model in planner(server):
            outcome = plan_fragment(model, request_for(5))
    assert script.digest_prompts == [] and outcome.digests == {}
    assert outcome.usage.requests == 1


def test_a_failed_digest_call_leaves_the_structured_summary_and_the_plan_goes_on(request_for):
    script = Model([fragment("transform.filter")])
    faults = FaultPlan(sequence=["http_500"])
    with SGLangTestServer(model="planner-double", responder=script, faults=faults) as server:
        for model in planner(server, retry_max_attempts=1):
            outcome = plan_fragment(model, request_for(300))
    assert outcome.fragment is not None
    assert set(outcome.digest_failures) == {"route"} and "500" in outcome.digest_failures["route"]
    (prompt,) = script.planner_prompts
    assert "Summary by the model" not in prompt and '"rows": 300' in prompt
    assert outcome.usage.failures == 1
