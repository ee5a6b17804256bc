"""No JSON Schema the grammar accepts refers outside itself, and no validator ever fetches one.

Every attack points at a real HTTP server on 127.0.0.1 that counts the requests it gets: a
schema fetch would show up there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import referencing.exceptions

from grammar_ops import CompositionError, ModelCall, PrimitiveError, standard_catalog
from grammar_ops.schemas import SchemaNotAllowed, build_validator, check_local_schema


class SchemaHost:
    """A server that answers every GET with a JSON Schema and counts the GETs."""

    __test__ = False

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hits.append(self.path)
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/schema+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def schema_host() -> Iterator[SchemaHost]:
    host = SchemaHost()
    thread = threading.Thread(target=host.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.server.shutdown()
        host.server.server_close()


def hostile_schemas(url: str) -> list[tuple[str, dict]]:
    """(what the error must name, schema) pairs that would make jsonschema fetch `url`."""
    return [
        ("/$ref", {"type": "object", "$ref": f"{url}/top.json"}),
        (
            "/properties/amount/$ref",
            {"type": "object", "properties": {"amount": {"$ref": f"{url}/nested.json"}}},
        ),
        (
            "/$defs/a/items/$ref",
            {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/a"}},
                "$defs": {"a": {"type": "array", "items": {"$ref": f"{url}/deep.json"}}},
            },
        ),
        (
            "/$id",
            {"$id": f"{url}/base/", "type": "object", "properties": {"x": {"$ref": "x.json"}}},
        ),
        (
            "/properties/x/$id",
            {"type": "object", "properties": {"x": {"$id": f"{url}/sub/", "$ref": "other.json"}}},
        ),
        ("/$dynamicRef", {"type": "object", "$dynamicRef": f"{url}/dyn.json#meta"}),
        (
            "/$schema",
            {"$schema": f"{url}/meta.json", "type": "object", "properties": {"x": {}}},
        ),
    ]


def ids(url: str = "http://h") -> list[str]:
    return [where for where, _ in hostile_schemas(url)]


@pytest.mark.parametrize("index", range(len(ids())), ids=ids())
def test_validate_json_schema_refuses_non_local_references_at_config_time(index, schema_host):
    where, schema = hostile_schemas(schema_host.url)[index]
    with pytest.raises(CompositionError) as caught:
        standard_catalog().resolve("validate.json_schema", {"schema": schema})
    assert where in str(caught.value)
    assert schema_host.hits == []


@pytest.mark.parametrize("index", range(len(ids())), ids=ids())
def test_llm_extract_refuses_non_local_references_at_config_time(index, schema_host):
    where, schema = hostile_schemas(schema_host.url)[index]
    schema = {**schema, "type": "object", "properties": schema.get("properties", {"x": {}})}
    for use in ("llm.extract", "extract_fields"):
        with pytest.raises(CompositionError) as caught:
            standard_catalog().resolve(use, {"field": "text", "schema": schema})
        assert where in str(caught.value), use
    assert schema_host.hits == []


def test_model_calls_refuse_non_local_references(schema_host):
    for where, schema in hostile_schemas(schema_host.url):
        with pytest.raises(SchemaNotAllowed, match=where.replace("$", r"\$")):
            ModelCall(purpose="extract", prompt="x", max_new_tokens=10, json_schema=schema)
    assert schema_host.hits == []


def test_the_error_names_the_reference_and_what_is_allowed(schema_host):
    url = f"{schema_host.url}/top.json"
    (problem,) = check_local_schema({"$ref": url})
    assert url in problem and "is not local" in problem and "#/$defs/name" in problem


def test_local_references_still_work():
    schema = {
        "type": "object",
        "$defs": {"money": {"type": "number", "minimum": 0}},
        "properties": {"amount": {"$ref": "#/$defs/money"}, "tag": {"$anchor": "t"}},
        "items": {"$ref": "#t"},
    }
    assert check_local_schema(schema) == []
    validator = build_validator(schema)
    assert validator.is_valid({"amount": 1})
    assert not validator.is_valid({"amount": -1})


def test_a_local_reference_that_does_not_resolve_is_a_config_error():
    with pytest.raises(CompositionError, match=r"'#/\$defs/missing' does not resolve"):
        standard_catalog().resolve(
            "validate.json_schema", {"schema": {"properties": {"x": {"$ref": "#/$defs/missing"}}}}
        )


def test_a_property_named_ref_is_not_a_reference():
    assert check_local_schema({"properties": {"$ref": {"type": "string"}}}) == []


def test_validators_never_retrieve_even_for_a_schema_swapped_in_later(schema_host):
    validator = build_validator({"type": "object"})
    swapped = validator.evolve(schema={"$ref": f"{schema_host.url}/late.json"})
    with pytest.raises(referencing.exceptions.Unresolvable) as caught:
        swapped.is_valid("x")
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("never fetched" in text for text in chain)
    assert schema_host.hits == []


def test_validate_json_schema_runs_with_the_offline_validator(make_ctx):
    schema = {"$defs": {"n": {"type": "number"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    composition = standard_catalog().resolve("validate.json_schema", {"schema": schema})
    result = composition.run([{"a": 1}, {"a": "x"}], make_ctx())
    assert [row["_valid"] for row in result.value] == [True, False]
    with pytest.raises(PrimitiveError):
        standard_catalog().resolve("validate.json_schema", {"schema": schema, "mode": "fail"}).run(
            [{"a": "x"}], make_ctx()
        )


@pytest.mark.parametrize("schema", [{"$schema": []}, {"$schema": 3}, {"$id": "#ok", "type": "x"}])
def test_malformed_schemas_are_config_errors_not_crashes(schema):
    with pytest.raises(CompositionError):
        standard_catalog().resolve("validate.json_schema", {"schema": schema})


def test_a_deeply_nested_schema_is_a_config_error_not_a_crash():
    schema: dict = {"type": "object"}
    for _ in range(5000):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(CompositionError, match="nests too deeply"):
        standard_catalog().resolve("validate.json_schema", {"schema": schema})


def test_mixed_key_types_in_a_schema_value_are_checked_not_crashed():
    # YAML gives `{name: null, 0: null}` inside an enum: keys of two types.
    schema = {"type": "object", "properties": {"x": {"enum": [{"name": None, 0: None}, "a"]}}}
    assert check_local_schema(schema) == []
    standard_catalog().resolve("validate.json_schema", {"schema": schema})
