"""Every built-in capability is documented, typed and configurable the same way."""

from __future__ import annotations

import pytest

from grammar_ops import Kind, standard_catalog
from grammar_ops.capability_schema import example_config

CATALOG = standard_catalog()
FAMILIES = {
    "acquire",
    "transform",
    "validate",
    "assert",
    "decide",
    "llm",
    "aggregate",
    "emit",
    "gate",
}


def test_catalog_is_cached_and_complete():
    assert standard_catalog() is CATALOG
    assert {name.split(".")[0] for name in CATALOG.primitives} == FAMILIES
    assert set(CATALOG.patterns) == {
        "classify_records",
        "extract_fields",
        "validate_and_route",
        "enrich_from_reference",
        "summarise_documents",
    }


@pytest.mark.parametrize("name", sorted(CATALOG.primitives))
def test_primitive_is_fully_described(name):
    primitive = CATALOG.primitives[name]
    assert primitive.summary.endswith(".") and "\n" not in primitive.summary
    assert len(primitive.description) > len(primitive.summary) / 2
    assert primitive.accepts and all(isinstance(k, Kind) for k in primitive.accepts)
    assert primitive.produces is None or isinstance(primitive.produces, Kind)
    assert primitive.Config.model_config.get("extra") == "forbid"
    for field_name, field in primitive.Config.model_fields.items():
        assert field.description, f"{name}.{field_name} has no description"
    assert primitive.side_effect == name.startswith("emit.")
    config = primitive.Config.model_validate(example_config(primitive.Config))
    roles = {primitive.model_role(config)}
    assert roles == ({"worker"} if name.startswith("llm.") or name == "decide.model" else {None})


@pytest.mark.parametrize("name", sorted(CATALOG.patterns))
def test_pattern_is_fully_described(name):
    pattern = CATALOG.patterns[name]
    assert pattern.summary.endswith(".") and pattern.description
    assert pattern.Config.model_config.get("extra") == "forbid"
    for field_name, field in pattern.Config.model_fields.items():
        assert field.description, f"{name}.{field_name} has no description"
    assert CATALOG.resolve(name, example_config(pattern.Config)).source == name


def test_acquire_primitives_start_flows():
    for name, primitive in CATALOG.primitives.items():
        assert primitive.ignores_input == name.startswith("acquire.")
        if primitive.ignores_input:
            assert primitive.accepts == set(Kind)
