"""Fuzzing the planner path: whatever the planner model answers, planning never crashes and
nothing it answered runs unless validation accepted it.

Random JSON, fragment-shaped JSON with random fields, non-JSON text and pathological JSON go
through the real client (`SGLangResource` over HTTP to the SGLang test server), `plan_fragment`
and `validate_fragment`; a few whole runs check that a rejected plan starts no planned step.
The fragment validator's own rules are fuzzed in tests/marigold_dagster/planning/test_validation.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scripted_planner import TEMPLATE
from marigold_dagster.artifacts import StepValue
from marigold_dagster.errors import PlanRejected
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import plan_fragment
from marigold_dagster.planning.validation import validate_fragment
from marigold_dagster.runtime.planned import PlanProgress, plan_request
from marigold_dagster.template.loader import load_template
from resources.sglang import SGLangResource
from resources.sglang_test_server import GenerationRequest, SGLangTestServer, default_responder
from tests.fuzz_budget import fuzz_examples

ALLOWED = ["t.mark", "t.explode", "t.ask_each", "llm.generate", "aggregate.count"]
FUZZ = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


class QueuedPlanner:
    """Answers planner calls with queued raw texts; other calls get the default answer."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.prompts: list[str] = []

    def __call__(self, request: GenerationRequest) -> str:
        if "steps" not in (request.json_schema or {}).get("properties", {}):
            return default_responder(request)
        self.prompts.append(request.prompt)
        return self.texts.pop(0) if self.texts else "{}"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SGLangTestServer, QueuedPlanner]]:
    planner = QueuedPlanner()
    with SGLangTestServer(model="planner-double", responder=planner) as running:
        yield running, planner


def resource(url: str) -> SGLangResource:
    return SGLangResource(
        base_url=url, model="planner-double", retry_max_attempts=1, retry_backoff_base_s=0.01
    )


@pytest.fixture(scope="module")
def planning(server, catalog, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The planned template's frame, a plan request for its planning step, and a live client."""
    running, planner = server
    folder = tmp_path_factory.mktemp("planner_fuzz")
    path = folder / "planned.yaml"
    path.write_text(
        TEMPLATE.format(rows=4, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    )
    frame = load_template(path, catalog)
    step = frame.steps["review"]
    rows = [{"id": i, "trail": "load"} for i in range(4)]
    progress = PlanProgress({"load": StepValue("load", kind_of_rows(), rows)}, "load")
    status = BudgetStatus(frame.template.budget, BudgetUse())
    request = plan_request(frame, step, progress, status, 1)
    with resource(running.url).yield_for_execution(dg.build_init_resource_context()) as model:
        yield frame, request, model, planner


def kind_of_rows() -> Any:
    from grammar_ops import Kind

    return Kind.RECORDS


# ------------------------------------------------------------------ strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
names = st.one_of(
    st.sampled_from(["a", "b", "load", "review", "finish", "mark_all", "review__L1", ""]),
    st.text(max_size=10),
)
capabilities = st.one_of(
    st.sampled_from([*ALLOWED, "transform.filter", "emit.webhook", "acquire.http_json"]),
    st.text(max_size=16),
)
planned_steps = st.fixed_dictionaries(
    {},
    optional={
        "id": names,
        "uses": capabilities,
        "compose": st.lists(
            st.fixed_dictionaries({"use": capabilities}, optional={"with": json_values}),
            max_size=3,
        ),
        "with": st.one_of(
            st.dictionaries(
                st.sampled_from(["copies", "by", "prompt", "max_tokens", "where", "url", "path"]),
                json_values,
                max_size=3,
            ),
            json_values,
        ),
        "depends_on": st.one_of(st.lists(names, max_size=3), json_values),
        "reason": st.text(max_size=20),
        "extra": json_values,
    },
)
fragments = st.fixed_dictionaries(
    {},
    optional={
        "reasoning": st.one_of(st.text(max_size=40), json_values),
        "steps": st.one_of(st.lists(planned_steps, max_size=6), json_values),
        "done": st.one_of(st.booleans(), json_values),
        "converge": json_values,
        "budget": json_values,
    },
)
answers = st.one_of(
    json_values.map(json.dumps),
    fragments.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            '{"steps": ',
            "NaN",
            '{"steps": [], "done": true, "reasoning": "x", "reasoning": 1}',
            '{"reasoning": "\\ud800", "steps": [], "done": false}',
        ]
    ),
)


# ------------------------------------------------------------------ plan_fragment, fuzzed


def check_outcome(request: Any, texts: list[str], model: Any, planner: QueuedPlanner) -> None:
    planner.texts[:] = texts
    try:
        outcome = plan_fragment(model, request)
    except PlanRejected as rejected:
        attempts = rejected.outcome.attempts
        assert len(attempts) == request.max_attempts
        for attempt in attempts:
            assert not attempt.accepted and attempt.findings
            assert all(finding.code for finding in attempt.findings)
        assert "got no valid plan in 3 attempt(s)" in str(rejected)
        return
    accepted = outcome.attempts[-1]
    assert accepted.accepted and outcome.fragment is not None
    # An accepted answer is one validation accepts on its own, using allowed capabilities only.
    assert validate_fragment(accepted.answer, request.scope).accepted
    for planned in outcome.fragment.steps:
        assert planned.uses is None or planned.uses in request.scope.presets


@settings(max_examples=fuzz_examples(300), **FUZZ)
@given(texts=st.lists(answers, min_size=3, max_size=3))
def test_random_planner_answers_never_crash_planning(planning: Any, texts: list[str]) -> None:
    _, request, model, planner = planning
    check_outcome(request, texts, model, planner)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 10_000 + "]" * 10_000, id="deep-array"),
        pytest.param("[" * 1_500 + "]" * 1_500, id="deep-array-within-max-tokens"),
        pytest.param('{"steps": ' + "[" * 10_000 + "]" * 10_000 + "}", id="deep-steps"),
        pytest.param(
            '{"reasoning": "' + "x" * 2_000_000 + '", "steps": [], "done": true}', id="huge-string"
        ),
        pytest.param(
            json.dumps({"reasoning": "r", "steps": [{"id": f"s{i}"} for i in range(5_000)]}),
            id="many-steps",
        ),
    ],
)
def test_pathological_planner_answers_are_rejected_not_crashes(planning: Any, text: str) -> None:
    _, request, model, planner = planning
    check_outcome(request, [text, text, text], model, planner)


# ------------------------------------------------------------------ whole runs


def invalid_answers() -> Any:
    """Answers no validation can accept: junk, or a fragment using an unknown capability."""
    unknown = st.text(alphabet="abcxyz", min_size=1, max_size=8).map(lambda s: f"x.{s}")
    bad_fragment = st.tuples(fragments, unknown).map(
        lambda pair: json.dumps(
            {**pair[0], "steps": [{"id": "bad", "uses": pair[1], "with": {}, "depends_on": []}]}
        )
    )
    junk = st.one_of(st.text(max_size=50), json_values.filter(lambda v: not isinstance(v, dict)))
    return st.one_of(bad_fragment, junk.map(lambda v: v if isinstance(v, str) else json.dumps(v)))


@settings(max_examples=fuzz_examples(4), **FUZZ)
@given(texts=st.lists(invalid_answers(), min_size=3, max_size=3))
def test_a_rejected_plan_runs_nothing(server, catalog, tmp_path_factory, texts) -> None:  # type: ignore[no-untyped-def]
    running, planner = server
    folder = tmp_path_factory.mktemp("planner_runs")
    path = folder / "planned.yaml"
    path.write_text(
        TEMPLATE.format(rows=2, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    )
    frame = load_template(path, catalog)
    model = resource(running.url)
    job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
    planner.texts[:] = texts
    with dg.DagsterInstance.ephemeral(tempdir=str(folder / "dagster")) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert not [key for key in started if key.startswith("review__L")], started
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["review__plan"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert description.startswith("planning step 'review' got no valid plan in 3 attempt(s):")
    assert all(f"attempt {n}:" in description for n in (1, 2, 3))


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_deeply_nested_config_in_a_rejected_plan_is_recorded_not_crashed(
    server, catalog, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The rejected answers are recorded in metadata; deep JSON must not break that."""
    running, planner = server
    path = tmp_path / "planned.yaml"
    path.write_text(
        TEMPLATE.format(rows=2, max_depth=2, max_phases=1, max_steps=30, max_tokens=200_000)
    )
    frame = load_template(path, catalog)
    model = resource(running.url)
    job = compile_frame(frame, resource_defs={"planner_model": model, "worker_model": model})
    deep = {
        "reasoning": "r",
        "steps": [{"id": "a", "uses": "t.mark", "with": nested(400), "depends_on": []}],
        "done": False,
    }
    planner.texts[:] = [json.dumps(deep)] * 3
    with dg.DagsterInstance.ephemeral(tempdir=str(tmp_path / "dagster")) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["review__plan"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert "got no valid plan in 3 attempt(s)" in description, description[:2000]
    started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
    assert not [key for key in started if key.startswith("review__L")]
