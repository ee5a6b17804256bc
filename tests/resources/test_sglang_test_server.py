"""The SGLang test double over HTTP: routes, SGLang's shapes and errors, capacity, cache, faults."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from resources.sglang_test_server import (
    DEFAULT_ANSWER,
    FaultPlan,
    GenerationRequest,
    SGLangTestServer,
    SGLangTestServerConfig,
    default_responder,
)

KEY = "sk-double-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def upper_responder(request: GenerationRequest) -> str:
    """A module-level responder, so a subprocess server can import it."""
    return request.prompt.upper()


@pytest.fixture
def double() -> Iterator[SGLangTestServer]:
    with SGLangTestServer(model="m", api_key=KEY, max_running_requests=4) as server:
        yield server


def generate(server: SGLangTestServer, body: dict, timeout: float = 10) -> httpx.Response:
    return httpx.post(server.url + "/generate", json=body, headers=AUTH, timeout=timeout)


def test_native_generate_has_sglang_response_shape(double: SGLangTestServer) -> None:
    response = generate(double, {"text": "hello", "sampling_params": {"max_new_tokens": 50}})
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == DEFAULT_ANSWER
    meta = body["meta_info"]
    assert meta["finish_reason"] == {"type": "stop", "matched": None}
    assert meta["prompt_tokens"] == 1 and meta["completion_tokens"] > 0
    assert {"cached_tokens", "e2e_latency", "id"} <= set(meta)


def test_a_text_list_is_a_batch_answered_as_a_list(double: SGLangTestServer) -> None:
    body = {
        "text": ["a", "b", "c"],
        "sampling_params": {"max_new_tokens": 4},
        "rid": ["1", "2", "3"],
    }
    answers = generate(double, body).json()
    assert isinstance(answers, list) and len(answers) == 3
    assert [a["meta_info"]["id"] for a in answers] == ["1", "2", "3"]
    assert double.stats().answered_rids == ["1", "2", "3"]


def test_openai_chat_completions_shape(double: SGLangTestServer) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "pick"}],
        "max_tokens": 10,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "a", "schema": {"type": "boolean"}}},
    }  # fmt: skip
    response = httpx.post(double.url + "/v1/chat/completions", json=body, headers=AUTH)
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "m"
    choice = data["choices"][0]
    assert json.loads(choice["message"]["content"]) in (True, False)
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_info_routes_and_their_old_names(double: SGLangTestServer) -> None:
    for path in ("/model_info", "/get_model_info"):
        assert httpx.get(double.url + path, headers=AUTH).json()["model_path"] == "m"
    for path in ("/server_info", "/get_server_info"):
        assert httpx.get(double.url + path, headers=AUTH).json()["max_running_requests"] == 4
    assert httpx.get(double.url + "/v1/models", headers=AUTH).json()["data"][0]["id"] == "m"


def test_api_key_is_required_except_for_health_and_metrics(double: SGLangTestServer) -> None:
    refused = httpx.post(double.url + "/generate", json={"text": "x"})
    assert refused.status_code == 401 and refused.json() == {"error": "Unauthorized"}
    assert httpx.get(double.url + "/model_info").status_code == 401
    assert httpx.get(double.url + "/health").status_code == 200
    assert httpx.get(double.url + "/metrics").status_code == 200


def test_health_can_be_made_unhealthy(double: SGLangTestServer) -> None:
    double.set_healthy(False)
    assert httpx.get(double.url + "/health").status_code == 503


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 4, "top_z": 1}, "unexpected keyword argument 'top_z'"),
        ({"json_schema": {"type": "string"}}, "must be a JSON string"),
        ({"json_schema": "{not json"}, "not valid JSON"),
        ({"regex": "a", "ebnf": "root ::= x"}, "Only one of regex, json_schema, or ebnf"),
        ({"max_new_tokens": -1}, "non-negative"),
    ],
)
def test_bad_requests_get_400_with_sglang_error_shape(
    double: SGLangTestServer, params: dict, message: str
) -> None:
    response = generate(double, {"text": "x", "sampling_params": params})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_openai_route_errors_use_the_openai_shape(double: SGLangTestServer) -> None:
    response = httpx.post(double.url + "/v1/chat/completions", json={"messages": "no"},
                          headers=AUTH)  # fmt: skip
    body = response.json()
    assert response.status_code == 400
    assert body["object"] == "error" and body["code"] == 400 and body["message"]


def test_a_full_queue_answers_503() -> None:
    with SGLangTestServer(max_running_requests=1, max_queued_requests=0,
                          request_latency_s=0.3) as server:  # fmt: skip
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(generate, server, {"text": f"p{i}"}) for i in range(2)]
            statuses = sorted(f.result().status_code for f in futures)
    assert statuses == [200, 503]


def test_latency_and_concurrency_follow_the_capacity_model() -> None:
    with SGLangTestServer(max_running_requests=2, request_latency_s=0.1) as server:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda i: generate(server, {"text": f"p{i}"}), range(6)))
        stats = server.stats()
    assert stats.max_running_observed == 2 and stats.responses_ok == 6
    assert 2 < stats.max_in_flight_observed <= 6  # the others waited in the queue


def test_cached_tokens_count_the_longest_prefix_already_seen(double: SGLangTestServer) -> None:
    first = generate(double, {"text": "Classify this: the first contract"}).json()
    second = generate(double, {"text": "Classify this: the second contract"}).json()
    assert first["meta_info"]["cached_tokens"] == 0
    # "Classify", "this", ":", "the" are shared approximate tokens
    assert second["meta_info"]["cached_tokens"] == 4


def test_metrics_use_sglang_names(double: SGLangTestServer) -> None:
    generate(double, {"text": "x y z"})
    text = httpx.get(double.url + "/metrics").text
    assert "test double" in text
    assert 'sglang:prompt_tokens_total{model_name="m"} 3.0' in text
    for name in ("sglang:generation_tokens_total", "sglang:num_running_reqs",
                 "sglang:num_queue_reqs", "sglang:cache_hit_rate"):  # fmt: skip
        assert name in text


def test_faults_follow_the_scripted_sequence(double: SGLangTestServer) -> None:
    double.set_faults(FaultPlan(sequence=["http_500", None, "http_429", "truncate"]))
    statuses = [generate(double, {"text": "x", "sampling_params": {"max_new_tokens": 40}})
                for _ in range(4)]  # fmt: skip
    assert [r.status_code for r in statuses] == [500, 200, 429, 200]
    assert statuses[3].json()["meta_info"]["finish_reason"]["type"] == "length"
    assert double.stats().faults == {"http_500": 1, "http_429": 1, "truncate": 1}


def test_fault_rates_are_deterministic_for_a_seed(double: SGLangTestServer) -> None:
    def run() -> list[int]:
        double.set_faults(FaultPlan(rates={"http_503": 0.3, "http_500": 0.2}, seed=3))
        return [generate(double, {"text": "x"}).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and {200, 500, 503} <= set(first)


def test_a_dropped_connection_is_a_protocol_error(double: SGLangTestServer) -> None:
    double.set_faults(FaultPlan(sequence=["drop"]))
    with pytest.raises(httpx.RemoteProtocolError):
        generate(double, {"text": "x"})


def test_a_hang_holds_the_request_then_drops_it(double: SGLangTestServer) -> None:
    double.set_faults(FaultPlan(sequence=["hang"], hang_s=5))
    with pytest.raises(httpx.ReadTimeout):
        generate(double, {"text": "x"}, timeout=0.3)


def test_invalid_json_fault(double: SGLangTestServer) -> None:
    double.set_faults(FaultPlan(sequence=["invalid_json"]))
    schema = json.dumps({"type": "object"})
    text = generate(double, {"text": "x", "sampling_params": {"json_schema": schema}}).json()
    with pytest.raises(ValueError):
        json.loads(text["text"])


def test_unknown_fault_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="valid kinds"):
        FaultPlan(sequence=["meteor"])


def test_default_responder_makes_schema_valid_json_and_picks_choices() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5}},
              "required": ["n"]}  # fmt: skip
    answer = default_responder(GenerationRequest("p", 50, "native", json_schema=schema))
    jsonschema.validate(json.loads(answer), schema)
    choice = default_responder(GenerationRequest("p", 5, "native", regex="(low|high)"))
    assert choice in ("low", "high")
    assert default_responder(GenerationRequest("p", 5, "native")) == DEFAULT_ANSWER


@pytest.mark.slow
def test_subprocess_server_with_an_importable_responder() -> None:
    config = SGLangTestServerConfig(model="m", responder=upper_responder)
    with SGLangTestServer(config, in_subprocess=True) as server:
        answer = httpx.post(server.url + "/generate", json={"text": "shout"}).json()
        assert answer["text"] == "SHOUT"
        assert server.stats().requests_received == 1
        with pytest.raises(RuntimeError, match="in-thread"):
            server.set_healthy(False)


@pytest.mark.slow
def test_a_subprocess_server_refuses_a_lambda_responder() -> None:
    config = SGLangTestServerConfig(responder=lambda request: "x")
    with pytest.raises(ValueError, match="module-level responder"):
        SGLangTestServer(config, in_subprocess=True).start()
