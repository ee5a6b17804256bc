"""SGLangResource with server='openai' against a plain OpenAI-compatible test double over HTTP.

The test double's `openai` flavour has only the routes vLLM or llama.cpp's llama-server have
(/health, /v1/models, /props, /v1/chat/completions) and answers SGLang's body extras (`rid`,
`regex`, `ebnf`) with HTTP 400, so every call here proves the resource sends none of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import dagster as dg
import jsonschema
import pytest
from pydantic import ValidationError

from grammar_ops.model import ModelCall, ModelReply
from marigold_dagster.jobs.model_binding import model_resources
from resources.model_errors import ModelAnswerError, ModelServerCheckError, ModelServerError
from resources.sglang import SGLangResource
from resources.sglang_test_server import (
    FaultPlan,
    GenerationRequest,
    ScriptedAnswer,
    SGLangTestServer,
)

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
SCHEMA = {
    "type": "object",
    "properties": {"party": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["party", "amount"],
}


class Recorder:
    """Answers with the default responder (or a scripted text) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []
        self.answers: list[str | ScriptedAnswer] = []

    def __call__(self, request: GenerationRequest) -> str | ScriptedAnswer:
        from resources.sglang_test_server import default_responder

        self.requests.append(request)
        return self.answers.pop(0) if self.answers else default_responder(request)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[SGLangTestServer]:
    with SGLangTestServer(
        model=MODEL, flavour="openai", max_running_requests=2, responder=recorder
    ) as running:
        yield running


OpenModel = Callable[..., AbstractContextManager[SGLangResource]]


@pytest.fixture
def open_model(server: SGLangTestServer) -> OpenModel:
    @contextmanager
    def _open(**overrides: Any) -> Iterator[SGLangResource]:
        config: dict[str, Any] = {
            "base_url": server.url,
            "server": "openai",
            "retry_backoff_base_s": 0.01,
            "retry_backoff_max_s": 0.05,
            "request_timeout_s": 5.0,
            **overrides,
        }
        resource = SGLangResource(**config)
        with resource.yield_for_execution(dg.build_init_resource_context()) as model:
            yield model

    return _open


def classify(prompt: str = "Is this risky?") -> ModelCall:
    return ModelCall(
        purpose="classify", prompt=prompt, max_new_tokens=8, choices=("low", "medium", "high")
    )


# ----------------------------------------------------------------------------- server check


def test_setup_reads_the_model_from_v1_models_and_capacity_from_props(open_model) -> None:
    with open_model() as model:
        assert model.model_name == MODEL
        assert model.in_flight_limit == 3  # total_slots 2, plus a quarter waiting (one request)
        assert model.server_label == "OpenAI-compatible server"


def test_setup_names_the_served_models_when_another_is_expected(open_model) -> None:
    with pytest.raises(ModelServerCheckError, match="OpenAI-compatible server at .* serves"):
        with open_model(model="other/model"):
            pass


def test_a_server_without_a_health_route_is_checked_by_v1_models() -> None:
    with SGLangTestServer(model=MODEL, flavour="openai", missing_routes=("/health",)) as ollama:
        resource = SGLangResource(base_url=ollama.url, server="openai", model=MODEL)
        with resource.yield_for_execution(dg.build_init_resource_context()) as model:
            assert model.complete(classify()).value in ("low", "medium", "high")


def test_an_unhealthy_server_fails_setup(server: SGLangTestServer, open_model) -> None:
    server.set_healthy(False)
    with pytest.raises(ModelServerCheckError, match="not healthy: GET /health answered HTTP 503"):
        with open_model():
            pass


def test_an_sglang_server_kind_against_a_plain_openai_server_says_what_is_missing(
    open_model,
) -> None:
    with pytest.raises(ModelServerCheckError, match="is base_url an SGLang server"):
        with open_model(server="sglang"):
            pass


# ----------------------------------------------------------------------------- calls


def test_json_schema_goes_as_response_format_with_no_sglang_extras(
    recorder: Recorder, open_model
) -> None:
    with open_model() as model:
        reply = model.complete(
            ModelCall(
                purpose="extract", prompt="ACME owes 5", max_new_tokens=64, json_schema=SCHEMA
            )
        )
    jsonschema.validate(reply.value, SCHEMA)
    (request,) = recorder.requests
    assert request.json_schema == SCHEMA and request.rid is None and request.regex is None


def test_choices_go_as_a_string_enum_and_come_back_decoded(recorder: Recorder, open_model) -> None:
    with open_model() as model:
        replies = model.complete_many([classify(f"clause {i}") for i in range(6)])
    assert all(isinstance(r, ModelReply) for r in replies)
    assert {r.value for r in replies} <= {"low", "medium", "high"}  # type: ignore[union-attr]
    assert all(r.text == r.value for r in replies)  # type: ignore[union-attr]
    assert recorder.requests[0].json_schema == {
        "type": "string",
        "enum": ["low", "medium", "high"],
    }


def test_an_answer_that_is_not_a_json_string_is_a_clear_error(
    recorder: Recorder, open_model
) -> None:
    recorder.answers = ["high"]  # a server that ignored response_format
    with open_model() as model:
        with pytest.raises(ModelAnswerError, match="not a JSON string"):
            model.complete(classify())


def test_regex_goes_as_an_anchored_string_pattern_and_is_checked(
    recorder: Recorder, open_model
) -> None:
    recorder.answers = [json.dumps("EUR 125"), json.dumps("about 125 euros")]
    call = ModelCall(purpose="extract", prompt="amount?", max_new_tokens=12, regex=r"EUR \d+")
    with open_model() as model:
        assert model.complete(call).value == "EUR 125"
        with pytest.raises(ModelAnswerError, match="does not match the call's regex"):
            model.complete(call)
    assert recorder.requests[0].json_schema == {"type": "string", "pattern": r"^(?:EUR \d+)$"}


def test_an_ebnf_call_is_refused_before_anything_is_sent(
    server: SGLangTestServer, open_model
) -> None:
    call = ModelCall(purpose="generate", prompt="x", max_new_tokens=8, ebnf='root ::= "a"')
    with open_model() as model:
        with pytest.raises(ModelServerError, match="ebnf constraint needs server='sglang'"):
            model.complete(call)
        assert model.usage.run.failures == 1
    assert server.stats().requests_received == 0


def test_usage_reads_cached_tokens_from_prompt_tokens_details(open_model) -> None:
    prefix = "Classify this contract clause into a risk level. " * 5
    with open_model() as model:
        with model.usage.step("triage") as meter:
            model.complete_many([classify(prefix + f"clause {i}") for i in range(4)])
    assert meter.requests == 4 and meter.prompt_tokens > 0 and meter.cached_tokens > 0
    assert model.usage.run.cached_tokens == meter.cached_tokens


def test_a_rejected_answer_keeps_its_tokens_in_usage(recorder: Recorder, open_model) -> None:
    recorder.answers = [ScriptedAnswer(json.dumps({"party": "AC"})[:8], finish_reason="length")]
    call = ModelCall(purpose="extract", prompt="ACME owes 5", max_new_tokens=3, json_schema=SCHEMA)
    with open_model(price_per_1m_prompt_tokens=1.0) as model:
        with pytest.raises(ModelAnswerError, match="cut off") as caught:
            model.complete(call)
        run = model.usage.run
    assert caught.value.prompt_tokens > 0 and caught.value.completion_tokens > 0
    assert (run.failures, run.prompt_tokens) == (1, caught.value.prompt_tokens)
    assert run.completion_tokens == caught.value.completion_tokens and run.cost_usd > 0


def test_transient_statuses_are_retried_and_a_400_is_not(server: SGLangTestServer, open_model):
    server.set_faults(FaultPlan(sequence=["http_503", "http_429", "http_500"]))
    with open_model() as model:
        assert model.complete(classify()).retries == 3
        refused = ModelCall(purpose="generate", prompt="x", max_new_tokens=8, temperature=-1.0)
        with pytest.raises(ModelServerError, match="refused the request with HTTP 400") as caught:
            model.complete(refused)
    assert caught.value.status == 400 and caught.value.retries == 0


def test_batch_size_above_one_is_refused_for_chat_servers(open_model) -> None:
    with pytest.raises(ValidationError, match="needs api='native' on server='sglang'"):
        with open_model(batch_size=4):  # refused when the resource is built
            pass


# ----------------------------------------------------------------------------- binding


def test_the_environment_picks_the_server_kind() -> None:
    environ = {
        "MARIGOLD_SGLANG_URL": "http://127.0.0.1:8080",
        "MARIGOLD_MODEL_SERVER_KIND": "openai",
    }
    (resource,) = model_resources(["planner_model"], environ).values()
    assert isinstance(resource, SGLangResource) and resource.server == "openai"
    (default,) = model_resources(["planner_model"], {"MARIGOLD_SGLANG_URL": "http://x:1"}).values()
    assert isinstance(default, SGLangResource) and default.server == "sglang"


def test_max_new_tokens_limit_caps_what_a_call_asks_for(recorder: Recorder, open_model) -> None:
    call = ModelCall(purpose="generate", prompt="Write at length", max_new_tokens=2048)
    with open_model(max_new_tokens_limit=16) as model:
        model.complete(call)
        model.complete(ModelCall(purpose="generate", prompt="Short", max_new_tokens=4))
    assert [r.max_new_tokens for r in recorder.requests] == [16, 4]
