"""Schema-valid instances for the test double and the offline model."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resources.json_schema_instances import (
    SchemaInstanceError,
    conform_instance,
    generate_instance,
)

SCHEMAS = [
    {"type": "string", "minLength": 3, "maxLength": 5},
    {"type": "string", "format": "email"},
    {"type": "integer", "minimum": 7, "maximum": 9},
    {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["a", "b"]},
    {"const": {"fixed": 1}},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
    {"type": ["null", "string"]},
    {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "string"}]},
    {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0.5, "maximum": 0.7}]},
    {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
    {
        "$defs": {"node": {"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["name"]}},
        "$ref": "#/$defs/node",
    },
    {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id", "extra"],
     "additionalProperties": True},
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_generated_instances_validate(schema: dict) -> None:
    jsonschema.validate(generate_instance(schema), schema)


def test_contradictions_are_reported() -> None:
    with pytest.raises(SchemaInstanceError):
        generate_instance({"enum": []})


def test_conform_keeps_valid_parts_and_fills_the_rest() -> None:
    strings = {"type": "array", "items": {"type": "string"}, "minItems": 2}
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": strings},
        "required": ["a", "b", "c"],
        "additionalProperties": False,
    }
    value = conform_instance(schema, {"a": "kept", "b": "not a number", "c": ["x"], "z": 1})
    jsonschema.validate(value, schema)
    assert value["a"] == "kept" and value["c"][0] == "x" and "z" not in value


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh", min_size=1, max_size=4),
        st.sampled_from(
            [{"type": t} for t in ("string", "integer", "number", "boolean", "null")]
            + [{"enum": ["x", "y"]}, {"type": "array", "items": {"type": "string"}}]
        ),
        max_size=5,
    )
)
def test_any_flat_object_schema_gets_a_valid_instance(properties: dict) -> None:
    schema = {"type": "object", "properties": properties, "required": sorted(properties)}
    jsonschema.validate(generate_instance(schema), schema)
