"""SGLangResource against the SGLang test double over real HTTP: every feature and fault."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections import Counter

import dagster as dg
import httpx
import jsonschema
import pytest
from pydantic import ValidationError

from grammar_ops import retrying
from grammar_ops.model import ModelCall, ModelClient, ModelError, ModelReply
from resources.model_errors import ModelAnswerError, ModelServerCheckError, ModelServerError
from resources.sglang import SGLangResource, display_url
from resources.sglang_test_server import (
    FaultPlan,
    GenerationRequest,
    ScriptedAnswer,
    SGLangTestServer,
)

MODEL = "test-double/model"  # as in conftest.py
API_KEY = "sk-test-9f3a7c2e1b"  # as in conftest.py: made up; must never reach logs

SCHEMA = {
    "type": "object",
    "properties": {
        "party": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "risk": {"enum": ["low", "high"]},
    },
    "required": ["party", "amount", "risk"],
}


def classify(prompt: str = "Is this risky?", **extra: object) -> ModelCall:
    return ModelCall(
        purpose="classify",
        prompt=prompt,
        max_new_tokens=8,
        choices=("low", "medium", "high"),
        **extra,  # type: ignore[arg-type]
    )


def echo(request: GenerationRequest) -> str:
    """Answer with the prompt itself: lets a test tell which call got which answer."""
    return request.prompt


# ----------------------------------------------------------------------------- setup checks


def test_resource_implements_the_model_client_protocol(open_model) -> None:
    with open_model() as model:
        assert isinstance(model, ModelClient)
        assert model.model_name == MODEL


def test_setup_reads_max_running_requests_for_the_in_flight_limit(open_model) -> None:
    with open_model() as model:
        assert model.in_flight_limit == 10  # 8 running + 25% headroom waiting at the server
    with open_model(queue_headroom=0) as model:
        assert model.in_flight_limit == 8
    with open_model(queue_headroom=0.1) as model:
        assert model.in_flight_limit == 9  # headroom is at least one request
    with open_model(batch_size=4) as model:
        assert model.in_flight_limit == 12  # 2 running requests of 4 prompts + 1 waiting
    with open_model(max_in_flight=3) as model:
        assert model.in_flight_limit == 3  # an explicit limit is used exactly


def test_setup_fails_clearly_when_the_server_is_down() -> None:
    with SGLangTestServer(model=MODEL) as server:
        url = server.url
    resource = SGLangResource(base_url=url, model=MODEL, setup_timeout_s=1.0)
    with pytest.raises(ModelServerCheckError, match="not reachable") as caught:
        with resource.yield_for_execution(dg.build_init_resource_context()):
            pass
    assert url in str(caught.value)


def test_setup_fails_while_the_server_is_unhealthy(server: SGLangTestServer, open_model) -> None:
    server.set_healthy(False)
    with pytest.raises(ModelServerCheckError, match=r"not healthy.*HTTP 503"):
        with open_model():
            pass


def test_setup_fails_without_the_api_key(server: SGLangTestServer, open_model) -> None:
    with pytest.raises(ModelServerCheckError, match="requires an API key") as caught:
        with open_model(api_key=None):
            pass
    assert "401" in str(caught.value) and server.url in str(caught.value)


def test_setup_fails_with_a_wrong_api_key_and_never_echoes_it(open_model) -> None:
    with pytest.raises(ModelServerCheckError, match="api_key was rejected") as caught:
        with open_model(api_key="sk-wrong-123456"):
            pass
    assert "sk-wrong-123456" not in str(caught.value)


def test_setup_fails_when_the_server_serves_another_model(open_model) -> None:
    with pytest.raises(ModelServerCheckError, match="expects model 'other/model'") as caught:
        with open_model(model="other/model"):
            pass
    assert MODEL in str(caught.value)


def test_model_none_takes_the_served_model(open_model) -> None:
    with open_model(model=None) as model:
        assert model.model_name == MODEL
        assert model.complete(classify()).model == MODEL


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("connect_timeout_s", 0, "greater than 0"),
        ("request_timeout_s", -1.0, "greater than 0"),
        ("setup_timeout_s", 0, "greater than 0"),
        ("batch_size", 0, "greater than or equal to 1"),
        ("max_in_flight", 0, "greater than or equal to 1"),
        ("max_new_tokens_limit", 0, "greater than or equal to 1"),
        ("queue_headroom", -0.1, "greater than or equal to 0"),
        ("queue_headroom", 25, "less than or equal to 4"),  # a percentage for a fraction
        ("retry_max_attempts", 0, "greater than or equal to 1"),
        ("retry_backoff_base_s", -1, "greater than or equal to 0"),
        ("retry_backoff_max_s", -1, "greater than or equal to 0"),
        ("retry_jitter", 1.5, "less than or equal to 1"),
        ("retry_jitter", -0.5, "greater than or equal to 0"),
        ("price_per_1m_prompt_tokens", -1, "greater than or equal to 0"),
        ("price_per_1m_completion_tokens", -1, "greater than or equal to 0"),
        ("price_per_1m_cached_tokens", -1, "greater than or equal to 0"),
    ],
)
def test_a_value_out_of_range_fails_when_the_resource_is_built(
    field: str, value: float, valid: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SGLangResource(base_url="http://127.0.0.1:1", **{field: value})
    message = str(caught.value)
    assert f"\n{field}\n" in message and valid in message


def test_bad_config_is_reported_before_any_request(open_model) -> None:
    with pytest.raises(ValidationError, match="batch_size > 1 needs api='native'"):
        SGLangResource(base_url="http://127.0.0.1:1", api="openai", batch_size=4)
    with pytest.raises(ModelServerCheckError, match="not an http"):
        with open_model(base_url="ftp://example"):
            pass


def test_an_unset_resource_says_how_to_set_it_up() -> None:
    with pytest.raises(ModelServerError, match="not set up"):
        SGLangResource(base_url="http://127.0.0.1:1", model=MODEL).complete(classify())


def test_display_url_hides_credentials() -> None:
    assert display_url("http://user:secret@host:30000/x") == "http://host:30000/x"


# ----------------------------------------------------------------------------- constraints


def test_choices_are_sent_as_a_regex_alternation_and_validated(
    server: SGLangTestServer, open_model
) -> None:
    seen: list[GenerationRequest] = []

    def pick_high(request: GenerationRequest) -> str:
        seen.append(request)
        return "high"

    server.set_responder(pick_high)
    with open_model() as model:
        reply = model.complete(classify())
    assert reply.value == "high" and reply.text == "high"
    assert seen[0].regex == "(low|medium|high)"


def test_an_answer_outside_the_choices_is_an_error(server: SGLangTestServer, open_model) -> None:
    server.set_responder(lambda request: "catastrophic")
    with open_model() as model, pytest.raises(ModelAnswerError, match="not one of the choices"):
        model.complete(classify())


def test_regex_is_passed_through_and_checked(server: SGLangTestServer, open_model) -> None:
    seen: list[str | None] = []

    def digits(request: GenerationRequest) -> str:
        seen.append(request.regex)
        return "2024"

    server.set_responder(digits)
    with open_model() as model:
        reply = model.complete(ModelCall(purpose="extract", prompt="year?", max_new_tokens=4,
                                         regex=r"\d{4}"))  # fmt: skip
        assert reply.value == "2024" and seen == [r"\d{4}"]
        server.set_responder(lambda request: "twenty")
        with pytest.raises(ModelAnswerError, match="does not match the call's regex"):
            model.complete(ModelCall(purpose="extract", prompt="y", max_new_tokens=4,
                                     regex=r"\d{4}"))  # fmt: skip


def test_json_schema_is_sent_as_a_string_and_the_answer_validated(
    server: SGLangTestServer, open_model
) -> None:
    with open_model() as model:
        reply = model.complete(
            ModelCall(purpose="extract", prompt="extract", max_new_tokens=200, json_schema=SCHEMA)
        )
    jsonschema.validate(reply.value, SCHEMA)
    assert json.loads(reply.text) == reply.value


def test_a_schema_violating_answer_is_an_error(server: SGLangTestServer, open_model) -> None:
    server.set_responder(lambda request: json.dumps({"party": "A", "amount": -5, "risk": "low"}))
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=200, json_schema=SCHEMA)
    with open_model() as model, pytest.raises(ModelAnswerError, match="at amount"):
        model.complete(call)


def test_ebnf_is_passed_through_untouched(server: SGLangTestServer, open_model) -> None:
    grammar = 'root ::= "yes" | "no"'
    seen: list[str | None] = []

    def answer(request: GenerationRequest) -> str:
        seen.append(request.ebnf)
        return "yes"

    server.set_responder(answer)
    with open_model() as model:
        reply = model.complete(ModelCall(purpose="decide", prompt="ok?", max_new_tokens=2,
                                         ebnf=grammar))  # fmt: skip
    assert reply.value == "yes" and seen == [grammar]


def test_unconstrained_text_cut_at_max_tokens_is_returned_with_its_reason(
    server: SGLangTestServer, open_model
) -> None:
    server.set_responder(lambda request: "one two three four five six")
    with open_model() as model:
        reply = model.complete(ModelCall(purpose="generate", prompt="go", max_new_tokens=3))
    assert reply.text == "one two three" and reply.finish_reason == "length"


# ----------------------------------------------------------------------------- APIs and batches


def test_batches_go_as_one_native_generate_with_a_text_list(
    server: SGLangTestServer, open_model
) -> None:
    server.set_responder(echo)
    calls = [ModelCall(purpose="generate", prompt=f"row {i}", max_new_tokens=8) for i in range(10)]
    with open_model(batch_size=4) as model:
        results = model.complete_many(calls)
    assert [r.text for r in results if isinstance(r, ModelReply)] == [c.prompt for c in calls]
    stats = server.stats()
    assert (stats.requests_received, stats.prompts_received) == (3, 10)


def test_openai_chat_completions_api(server: SGLangTestServer, open_model) -> None:
    with open_model(api="openai") as model:
        structured = model.complete(
            ModelCall(purpose="extract", prompt="extract", max_new_tokens=200, json_schema=SCHEMA)
        )
        chosen = model.complete(classify())
        model.complete(classify())
        cached = model.complete(classify())
    jsonschema.validate(structured.value, SCHEMA)
    assert chosen.value in ("low", "medium", "high")
    assert cached.cached_tokens > 0  # usage.prompt_tokens_details.cached_tokens was read


def test_round_robin_across_two_servers(open_model) -> None:
    with (
        SGLangTestServer(model=MODEL, api_key=API_KEY) as first,
        SGLangTestServer(model=MODEL, api_key=API_KEY) as second,
    ):
        urls = f"{first.url}, {second.url}"
        with open_model(base_url=urls) as model:
            assert model.in_flight_limit == 40  # (16 + 4 headroom) from each /server_info
            results = model.complete_many([classify(f"p{i}") for i in range(20)])
        assert all(isinstance(r, ModelReply) for r in results)
        assert first.stats().prompts_received == 10
        assert second.stats().prompts_received == 10


def test_setup_checks_every_server_and_names_the_failing_one(open_model) -> None:
    with (
        SGLangTestServer(model=MODEL, api_key=API_KEY) as good,
        SGLangTestServer(model="another", api_key=API_KEY) as wrong,
    ):
        with pytest.raises(ModelServerCheckError) as caught:
            with open_model(base_url=f"{good.url},{wrong.url}"):
                pass
        assert wrong.url in str(caught.value) and "another" in str(caught.value)


def test_max_in_flight_is_respected_as_the_server_observes_it() -> None:
    with SGLangTestServer(model=MODEL, max_running_requests=64, request_latency_s=0.02) as server:
        resource = SGLangResource(base_url=server.url, model=MODEL, max_in_flight=5)
        with resource.yield_for_execution(dg.build_init_resource_context()) as model:
            results = model.complete_many([classify(f"p{i}") for i in range(60)])
        assert all(isinstance(r, ModelReply) for r in results)
        assert server.stats().max_running_observed == 5


@pytest.mark.parametrize("batch_size", [1, 3])
def test_default_in_flight_fills_the_server_and_keeps_a_bounded_queue(batch_size: int) -> None:
    with SGLangTestServer(model=MODEL, max_running_requests=6, request_latency_s=0.02) as busy:
        resource = SGLangResource(base_url=busy.url, model=MODEL, batch_size=batch_size)
        with resource.yield_for_execution(dg.build_init_resource_context()) as model:
            results = model.complete_many([classify(f"p{i}") for i in range(48)])
            limit = model.in_flight_limit
        stats = busy.stats()
    assert all(isinstance(r, ModelReply) for r in results)
    assert limit == (8 if batch_size == 1 else 9)  # 6 running + one request's headroom
    assert stats.max_running_observed == 6  # the server's capacity: full, never exceeded
    assert 6 < stats.max_in_flight_observed <= limit  # a queue is kept, within the limit
    assert stats.status_counts == {200: 48 // batch_size}


def test_a_full_server_queue_answers_503_and_is_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SGLangTestServer(
        model=MODEL, max_running_requests=4, max_queued_requests=0, request_latency_s=0.02
    ) as full:
        resource = SGLangResource(
            base_url=full.url,
            model=MODEL,
            retry_max_attempts=50,
            retry_backoff_base_s=0.01,
            retry_backoff_max_s=0.05,
        )
        with (
            caplog.at_level(logging.INFO, logger="resources.sglang"),
            resource.yield_for_execution(dg.build_init_resource_context()) as model,
        ):
            assert model.in_flight_limit == 5  # one more than the server can hold
            results = model.complete_many([classify(f"p{i}") for i in range(24)])
        stats = full.stats()
    assert all(isinstance(r, ModelReply) for r in results)
    assert stats.status_counts[200] == 24 and stats.status_counts[503] > 0
    assert stats.max_running_observed == 4
    assert "The request queue is full." in caplog.text and "retry 1 of 49 in" in caplog.text


def test_complete_many_works_from_threads_and_inside_a_running_event_loop(open_model) -> None:
    with open_model() as model:
        outcomes: list[int] = []

        def in_thread() -> None:
            outcomes.append(len(model.complete_many([classify(f"t{i}") for i in range(5)])))

        threads = [threading.Thread(target=in_thread) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        async def inside_loop() -> int:
            return len(model.complete_many([classify("loop")]))

        outcomes.append(asyncio.run(inside_loop()))
    assert outcomes == [5, 5, 5, 1]


def test_one_event_loop_serves_the_run_and_teardown_ends_it(open_model) -> None:
    def portal_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"sglang-{MODEL}"]

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    with open_model() as model:
        assert len(portal_threads()) == 1
        model.complete_many([classify("first")])
        portal = model._portal  # noqa: SLF001
        assert portal is not None
        loop = portal.call(running_loop)
        model.complete_many([classify("second")])
        assert portal.call(running_loop) is loop  # the async clients stay on one loop
    assert portal_threads() == []  # torn down: the portal stopped and its thread joined
    assert model._portal is None  # noqa: SLF001
    with pytest.raises(ModelServerError, match="not set up"):
        model.complete(classify())


# ----------------------------------------------------------------------------- errors and retries


def test_a_400_is_not_retried_and_reports_the_server_message(
    server: SGLangTestServer, open_model
) -> None:
    bad = ModelCall(purpose="generate", prompt="x", max_new_tokens=4, temperature=-1.0)
    with open_model() as model, pytest.raises(ModelServerError) as caught:
        model.complete(bad)
    assert caught.value.status == 400 and caught.value.retries == 0
    assert "temperature must be non-negative" in str(caught.value)
    assert server.stats().requests_received == 1


@pytest.mark.parametrize("fault", ["http_503", "http_500", "http_429", "drop"])
def test_transient_faults_are_retried_until_success(
    server: SGLangTestServer, open_model, fault: str
) -> None:
    server.set_faults(FaultPlan(sequence=[fault, fault]))
    with open_model() as model:
        reply = model.complete(classify())
    assert reply.retries == 2
    stats = server.stats()
    assert stats.faults == {fault: 2} and stats.responses_ok == 1


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between tries, recorded instead of slept."""
    recorded: list[float] = []

    async def record(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(retrying, "async_sleep", record)
    return recorded


def test_retries_back_off_exponentially_to_the_ceiling(
    server: SGLangTestServer, open_model, waits: list[float]
) -> None:
    server.set_faults(FaultPlan(sequence=["http_503"] * 4))
    backoff = {"retry_backoff_base_s": 0.1, "retry_backoff_max_s": 0.25}
    with open_model(**backoff, retry_jitter=0.0) as model:
        assert model.complete(classify()).retries == 4
    assert waits == pytest.approx([0.1, 0.2, 0.25, 0.25])


def test_retry_jitter_shortens_each_wait_by_up_to_its_fraction(
    server: SGLangTestServer, open_model, waits: list[float]
) -> None:
    server.set_faults(FaultPlan(sequence=["http_503"] * 12))
    backoff = {"retry_backoff_base_s": 0.1, "retry_backoff_max_s": 0.1}
    with open_model(**backoff, retry_jitter=0.5, retry_max_attempts=13) as model:
        model.complete(classify())
    assert len(waits) == 12
    assert all(0.05 <= wait <= 0.1 for wait in waits)
    assert len(set(waits)) > 1 and min(waits) < 0.09  # drawn, not the full backoff every time


def test_a_retry_after_header_is_honoured_up_to_the_ceiling(
    server: SGLangTestServer, open_model, waits: list[float]
) -> None:
    server.set_faults(FaultPlan(sequence=["http_429", "http_429"], retry_after_s=2))
    with open_model(retry_backoff_base_s=0.01, retry_backoff_max_s=5.0) as model:
        model.complete(classify())
    assert waits == [2.0, 2.0]
    waits.clear()
    server.set_faults(FaultPlan(sequence=["http_503"], retry_after_s=30))
    with open_model(retry_backoff_base_s=0.01, retry_backoff_max_s=0.5) as model:
        model.complete(classify())
    assert waits == [0.5]  # a server asking for longer than retry_backoff_max_s is capped


def test_a_hung_request_times_out_and_is_retried(server: SGLangTestServer, open_model) -> None:
    server.set_faults(FaultPlan(sequence=["hang"], hang_s=3.0))
    with open_model(request_timeout_s=0.3) as model:
        reply = model.complete(classify())
    assert reply.retries == 1
    assert server.stats().faults == {"hang": 1}


def test_retries_give_up_with_the_last_reason(server: SGLangTestServer, open_model) -> None:
    server.set_faults(FaultPlan(sequence=["http_503"] * 3))
    with open_model(retry_max_attempts=3) as model, pytest.raises(ModelServerError) as caught:
        model.complete(classify())
    message = str(caught.value)
    assert "after 3 attempt(s)" in message and "HTTP 503" in message
    assert caught.value.retryable and caught.value.retries == 2


def test_truncated_constrained_output_is_an_error_not_retried(
    server: SGLangTestServer, open_model
) -> None:
    server.set_faults(FaultPlan(sequence=["truncate"]))
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=200, json_schema=SCHEMA)
    with open_model() as model, pytest.raises(ModelAnswerError, match="finish_reason 'length'"):
        model.complete(call)
    assert server.stats().requests_received == 1


def test_too_small_max_new_tokens_truncates_json_into_an_error(open_model) -> None:
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=3, json_schema=SCHEMA)
    with open_model() as model, pytest.raises(ModelAnswerError, match="max_new_tokens=3"):
        model.complete(call)


def test_invalid_json_is_an_error_with_the_text_kept(server: SGLangTestServer, open_model) -> None:
    server.set_faults(FaultPlan(sequence=["invalid_json"]))
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=200, json_schema=SCHEMA)
    with open_model() as model, pytest.raises(ModelAnswerError, match="not valid JSON") as caught:
        model.complete(call)
    assert caught.value.last_response and caught.value.last_response.startswith("{'answer'")


def test_a_scripted_length_finish_reason_on_choices_is_an_error(
    server: SGLangTestServer, open_model
) -> None:
    server.set_responder(lambda request: ScriptedAnswer("hi", finish_reason="length"))
    with open_model() as model, pytest.raises(ModelAnswerError, match="cut off"):
        model.complete(classify())


def test_after_many_faults_nothing_is_lost_and_nothing_duplicated(
    server: SGLangTestServer, open_model
) -> None:
    answered: list[tuple[str, str]] = []

    def record(request: GenerationRequest) -> str:
        answered.append((request.rid or "", request.prompt))
        return "low"

    server.set_responder(record)
    server.set_faults(
        FaultPlan(
            rates={
                "http_503": 0.15,
                "http_500": 0.05,
                "drop": 0.05,
                "hang": 0.02,
                "truncate": 0.04,
                "invalid_json": 0.03,
            },
            seed=7,
            hang_s=2.0,
        )  # fmt: skip
    )
    calls = [classify(f"call {i}") for i in range(150)]
    with open_model(request_timeout_s=0.4, retry_max_attempts=4) as model:
        results = model.complete_many(calls)

    assert len(results) == len(calls)
    answers_by_prompt = Counter(prompt for _, prompt in answered)
    call_ids = Counter(rid.rsplit(".", 1)[0] for rid, _ in answered)
    assert max(call_ids.values()) == 1, "a call was answered twice"
    for call, result in zip(calls, results, strict=True):
        if isinstance(result, ModelReply):
            assert result.value == "low"
            assert answers_by_prompt[call.prompt] == 1
        else:
            assert isinstance(result, ModelError) and str(result)
            assert answers_by_prompt[call.prompt] <= 1
    failures = [r for r in results if isinstance(r, ModelError)]
    stats = server.stats()
    assert 0 < len(failures) < len(calls)
    assert sum(stats.faults.values()) > 20
    assert model.usage.run.requests == len(calls)
    assert model.usage.run.failures == len(failures)


# ----------------------------------------------------------------------------- usage and cost


def test_usage_and_cost_are_counted_per_run_and_per_step(
    server: SGLangTestServer, open_model
) -> None:
    server.set_faults(FaultPlan(sequence=[None, "http_503"]))
    prices = {
        "price_per_1m_prompt_tokens": 1.0,
        "price_per_1m_completion_tokens": 4.0,
        "price_per_1m_cached_tokens": 0.5,
    }
    with open_model(**prices) as model:
        first = model.complete(classify("the same long instruction, then row one"))
        with model.usage.step("triage") as meter:
            second = model.complete(classify("the same long instruction, then row two"))
        run = model.usage.run
    # "the same long instruction , then row" (7 approximate tokens) was seen before
    assert second.cached_tokens == 7 and second.retries == 1
    expected = ((second.prompt_tokens - 7) * 1.0 + 7 * 0.5 + second.completion_tokens * 4.0) / 1e6
    assert second.cost_usd == pytest.approx(expected)
    assert run.requests == 2 and run.retries == 1
    assert run.prompt_tokens == first.prompt_tokens + second.prompt_tokens
    assert run.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)
    assert meter.requests == 1 and meter.cached_tokens == 7
    assert meter.as_metadata()["llm.cached_tokens"] == 7


def test_server_metrics_are_read_from_prometheus_text(open_model) -> None:
    with open_model() as model:
        model.complete_many([classify(f"m{i}") for i in range(3)])
        metrics = model.server_metrics()
    (values,) = metrics.values()
    assert values["sglang:num_requests_total"] == 3
    assert values["sglang:prompt_tokens_total"] > 0


# ----------------------------------------------------------------------------- secrets in logs


def test_api_key_and_prompts_never_reach_logs_by_default(
    server: SGLangTestServer, open_model, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_prompt = "patient 4711 has diagnosis Z"
    server.set_faults(FaultPlan(sequence=["http_503"]))
    with open_model() as model:
        model.complete_many([classify(secret_prompt), classify("second")])
        with pytest.raises(ModelServerError) as caught:
            model.complete(
                ModelCall(purpose="generate", prompt=secret_prompt, max_new_tokens=2,
                          temperature=-1)
            )  # fmt: skip
        description = repr(model)
    text = caplog.text + str(caught.value) + description
    assert "retry 1 of" in caplog.text  # the retry itself was logged
    assert API_KEY not in text
    assert secret_prompt not in text


def test_log_prompts_switch_logs_prompts_but_still_not_the_key(
    open_model, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with open_model(log_prompts=True) as model:
        model.complete(classify("visible prompt"))
    assert "visible prompt" in caplog.text
    assert API_KEY not in caplog.text


def test_api_key_from_envvar_in_a_dagster_run(
    server: SGLangTestServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SGLANG_API_KEY", API_KEY)

    @dg.op
    def ask(model: SGLangResource) -> str:
        return model.complete(classify()).value

    @dg.job
    def ask_job() -> None:
        ask()

    resource = SGLangResource(base_url=server.url, model=MODEL,
                              api_key=dg.EnvVar("SGLANG_API_KEY"))  # fmt: skip
    result = ask_job.execute_in_process(resources={"model": resource})
    assert result.success
    events = " ".join(str(e) for e in result.all_events)
    assert API_KEY not in caplog.text and API_KEY not in events


# ----------------------------------------------------------------------------- inside Dagster


def test_resource_in_an_asset_materialization(server: SGLangTestServer) -> None:
    @dg.asset
    def triaged(context, model: SGLangResource) -> list[str]:  # type: ignore[no-untyped-def]
        with model.usage.step(str(context.op_execution_context.op_handle)) as meter:
            results = model.complete_many([classify(f"contract {i}") for i in range(12)])
        context.add_output_metadata(meter.as_metadata())
        return [r.value for r in results if isinstance(r, ModelReply)]

    resource = SGLangResource(base_url=server.url, model=MODEL, api_key=API_KEY)
    result = dg.materialize([triaged], resources={"model": resource})
    assert result.success
    assert len(result.output_for_node("triaged")) == 12
    (materialization,) = result.asset_materializations_for_node("triaged")
    assert materialization.metadata["llm.requests"].value == 12
    assert materialization.metadata["llm.models"].value == MODEL


def test_resource_in_a_job_fails_the_run_when_the_server_check_fails() -> None:
    with SGLangTestServer(model=MODEL) as server:

        @dg.op
        def ask(model: SGLangResource) -> None:
            model.complete(classify())

        @dg.job
        def ask_job() -> None:
            ask()

        resource = SGLangResource(base_url=server.url, model="not/served")
        result = ask_job.execute_in_process(resources={"model": resource}, raise_on_error=False)
    assert not result.success
    events = " ".join(str(event) for event in result.all_events)
    assert "expects model 'not/served'" in events


# ----------------------------------------------------------------------------- a real server


@pytest.mark.integration
def test_against_a_real_sglang_server() -> None:
    url = os.environ.get("MARIGOLD_SGLANG_URL")
    if not url:
        pytest.skip("MARIGOLD_SGLANG_URL is not set: no real SGLang server to test against")
    api_key = os.environ.get("MARIGOLD_SGLANG_API_KEY") or None
    resource = SGLangResource(
        base_url=url, model=os.environ.get("MARIGOLD_SGLANG_MODEL") or None, api_key=api_key
    )
    with resource.yield_for_execution(dg.build_init_resource_context()) as model:
        chosen = model.complete(classify("The clause caps liability at 10 EUR. Risk?"))
        structured = model.complete(
            ModelCall(purpose="extract", prompt="Party: ACME, amount 5 EUR, low risk. JSON:",
                      max_new_tokens=128, json_schema=SCHEMA)
        )  # fmt: skip
        many = model.complete_many([classify(f"Clause {i}: standard terms.") for i in range(8)])
    assert chosen.value in ("low", "medium", "high") and chosen.prompt_tokens > 0
    jsonschema.validate(structured.value, SCHEMA)
    assert all(isinstance(r, ModelReply) for r in many)
    httpx.get(url.split(",")[0].strip() + "/health", timeout=10).raise_for_status()
