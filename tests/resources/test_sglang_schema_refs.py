"""The model-answer validator of SGLangResource never fetches a schema `$ref`.

A call's schema is refused when the `ModelCall` is made; this checks the resource's own line
of defence behind it, against a real HTTP server on 127.0.0.1 that counts the requests it gets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from grammar_ops.model import ModelCall
from resources.json_schema_instances import SchemaInstanceError, generate_instance
from resources.model_errors import ModelAnswerError
from resources.sglang import SGLangResource

MODEL = "test-double/model"


@pytest.fixture
def schema_host() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def smuggled_call(schema: dict) -> ModelCall:
    """A call whose schema was swapped after ModelCall's own check (as a careless client might)."""
    call = ModelCall(
        purpose="extract", prompt="x", max_new_tokens=20, json_schema={"type": "object"}
    )
    object.__setattr__(call, "json_schema", schema)
    return call


@pytest.mark.parametrize(
    "make_schema",
    [
        lambda url: {"$ref": f"{url}/answer.json"},
        lambda url: {"type": "object", "properties": {"a": {"$ref": f"{url}/nested.json"}}},
        lambda url: {"$id": f"{url}/base/", "properties": {"a": {"$ref": "a.json"}}},
        lambda url: {"$dynamicRef": f"{url}/dyn.json#meta"},
    ],
    ids=["ref", "nested-ref", "id", "dynamicRef"],
)
def test_the_answer_validator_refuses_remote_schemas_without_fetching(make_schema, schema_host):
    url, hits = schema_host
    resource = SGLangResource(base_url="http://127.0.0.1:1", model=MODEL)
    call = smuggled_call(make_schema(url))
    with pytest.raises(ModelAnswerError, match="not local|sets a base URI"):
        resource._validate(call, '{"a": "x"}', "stop")
    assert hits == []


def test_local_refs_still_validate_answers():
    resource = SGLangResource(base_url="http://127.0.0.1:1", model=MODEL)
    schema = {"$defs": {"n": {"type": "number"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    call = ModelCall(purpose="extract", prompt="x", max_new_tokens=20, json_schema=schema)
    assert resource._validate(call, '{"a": 1}', "stop") == {"a": 1}
    with pytest.raises(ModelAnswerError, match="at a"):
        resource._validate(call, '{"a": "x"}', "stop")


def test_instances_are_not_built_for_remote_schemas(schema_host):
    url, hits = schema_host
    with pytest.raises(SchemaInstanceError):
        generate_instance({"type": "object", "properties": {"a": {"$ref": f"{url}/x.json"}}})
    assert hits == []
