"""The capability schema is generated from the catalog's types, stable, and counted in tokens."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import Field

from grammar_ops import CompositionError, Kind, application_capability, standard_catalog
from grammar_ops.capability_schema import (
    config_json_schema,
    contract_of,
    render_capability_tier,
)
from grammar_ops.primitive import PrimitiveConfig
from grammar_ops.tokens import TOKENIZER, count_tokens

CATALOG = standard_catalog()


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_every_tier_covers_every_capability(tier):
    rendered = render_capability_tier(CATALOG, tier)
    assert rendered.names == tuple(CATALOG.names())
    for name in CATALOG.names():
        assert f"- {name}: " in rendered.text
    assert rendered.tokens == count_tokens(rendered.text) > 100
    assert rendered.tokenizer == TOKENIZER
    jsonschema.validators.validator_for(rendered.json_schema).check_schema(rendered.json_schema)


def test_tiers_grow_with_detail():
    sizes = [render_capability_tier(CATALOG, tier).tokens for tier in (1, 2, 3)]
    assert sizes[2] > sizes[0] and sizes[2] > sizes[1]


def test_tier_one_is_byte_stable_and_sorted():
    first = render_capability_tier(CATALOG, 1)
    again = render_capability_tier(standard_catalog(), 1)
    assert first.text.encode() == again.text.encode()
    listed = [
        line.split(":")[0][2:]
        for line in first.text.splitlines()
        if line.startswith("- ") and "." in line.split(":")[0]
    ]
    assert listed == sorted(listed)
    assert "At most one side-effecting primitive" in first.text
    assert "emit.webhook, emit.write_table" in first.text
    assert first.json_schema["oneOf"][0] == {
        "const": "acquire.http_json",
        "description": CATALOG.primitives["acquire.http_json"].summary,
    }


def test_tier_text_is_generated_from_the_types():
    summary = "Look up each record's counterparty in the CRM."

    class LookupConfig(PrimitiveConfig):
        system: str = Field("crm", description="Which CRM to ask.")

    @application_capability(
        "lookup_counterparty",
        accepts={Kind.RECORDS},
        produces=Kind.RECORDS,
        summary=summary,
        config=LookupConfig,
    )
    def lookup(records, config, ctx):
        return records

    catalog = CATALOG.extended([lookup])
    assert f"- lookup_counterparty: {summary}" in render_capability_tier(catalog, 1).text
    assert (
        "- lookup_counterparty: records -> same kind"
        in render_capability_tier(catalog, 2, ["lookup_counterparty"]).text
    )
    assert (
        '"description":"Which CRM to ask."'
        in render_capability_tier(catalog, 3, ["lookup_counterparty"]).text
    )


def test_tier_two_contracts():
    text = render_capability_tier(CATALOG, 2).text
    assert "- acquire.read_table: any (ignored) -> table" in text
    assert "- transform.filter: records|table -> same kind" in text
    assert "- emit.write_table: records|table -> json [side effect]" in text
    assert "- llm.classify: records|table -> same kind [calls a model]" in text
    assert "- validate_and_route: records|table -> decision" in text
    contract = contract_of(CATALOG, "decide.rules")
    assert contract.outputs == {
        k: Kind.DECISION for k in (Kind.TABLE, Kind.RECORDS, Kind.DOCUMENTS, Kind.JSON)
    }


def test_chosen_names_only():
    rendered = render_capability_tier(CATALOG, 3, ["transform.filter", "decide.rules"])
    assert rendered.names == ("decide.rules", "transform.filter")
    assert "llm.classify" not in rendered.text
    with pytest.raises(CompositionError, match="Did you mean `transform.filter`"):
        render_capability_tier(CATALOG, 2, ["transform.filtr"])
    with pytest.raises(ValueError, match="tier must be 1, 2 or 3"):
        render_capability_tier(CATALOG, 4)


def test_tier_three_schema_validates_real_uses():
    schema = render_capability_tier(CATALOG, 3).json_schema
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "uses": "decide.rules",
        "with": {"rules": [{"if": "count() > 0", "then": ["a"]}], "else": ["b"]},
    }
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({"uses": "decide.rules", "with": {"rules": [{"iff": 1}]}}))
    assert list(validator.iter_errors({"uses": "nope", "with": {}}))
    assert "title" not in json.dumps(schema["oneOf"][0]["properties"]["with"]["properties"])


def test_config_json_schema_for_constrained_decoding():
    schema = config_json_schema(CATALOG, "llm.classify")
    assert schema["required"] == ["field", "labels"]
    assert schema["additionalProperties"] is False
    jsonschema.Draft202012Validator(schema).validate({"field": "t", "labels": ["a", "b"]})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"field": "t"})
    pattern = config_json_schema(CATALOG, "validate_and_route")
    assert "schema" in pattern["properties"]
    with pytest.raises(CompositionError):
        config_json_schema(CATALOG, "nope")


def test_tokens_are_real_bpe_counts():
    assert count_tokens("hello world") == 2
    assert count_tokens("<|endoftext|>") > 1
