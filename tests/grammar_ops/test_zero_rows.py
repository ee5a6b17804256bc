"""Every capability of the standard catalog, given zero rows with a known schema.

Each returns a valid empty result with the columns it would have produced (or, for a decision
or a text result, its documented answer over no rows), and a configuration naming a field the
input lacks fails with a ConfigurationError that names it, also over zero rows. One table of
cases; a test keeps it covering the whole catalog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from grammar_ops import ConfigurationError, Decision, Kind, PrimitiveContext, standard_catalog
from resources.offline_model import OfflineModel

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("text", pa.string()),
        ("amount", pa.float64()),
        ("risk", pa.string()),
        ("counterparty", pa.string()),
    ]
)
INPUT = list(SCHEMA.names)
EXTRACT = {"type": "object", "properties": {"party": {"type": "string"}}, "required": ["party"]}

# capability -> (config, what zero rows give: the columns of a table, or a check of the value)
CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "acquire.read_table": ({"input": "rows"}, INPUT),
    "aggregate.count": ({"by": ["risk"]}, ["risk", "count"]),
    "aggregate.group": (
        {"by": ["counterparty"], "metrics": [{"name": "total", "fn": "sum", "field": "amount"}]},
        ["counterparty", "total"],
    ),
    "assert.condition": ({"condition": "count() == 0"}, INPUT),
    "classify_records": (
        {"field": "text", "labels": ["low", "high"], "output_field": "lvl"},
        [
            *INPUT,
            "lvl",
        ],
    ),
    "decide.model": (
        {"question": "Review?", "branches": ["deep", "summary"]},
        lambda v: isinstance(v, Decision) and len(v.branches) >= 1,
    ),
    "decide.rules": (
        {"rules": [{"if": "count(risk == 'high') > 0", "then": ["deep"]}], "else": ["summary"]},
        lambda v: isinstance(v, Decision) and v.branches == ["summary"],
    ),
    "emit.write_table": ({"name": "empty_report"}, lambda v: v["rows"] == 0),
    "enrich_from_reference": ({"reference": "ref", "on": ["id"]}, [*INPUT, "note"]),
    "extract_fields": (
        {"field": "text", "schema": EXTRACT},
        [*INPUT, "party", "_valid", "_errors"],
    ),
    "llm.classify": (
        {"field": "text", "labels": ["low", "high"], "output_field": "lvl"},
        [
            *INPUT,
            "lvl",
        ],
    ),
    "llm.extract": ({"field": "text", "schema": EXTRACT}, [*INPUT, "party"]),
    "llm.generate": ({"prompt": "Summarise", "max_tokens": 20}, lambda v: "text" in v),
    "llm.summarise": ({}, lambda v: v["items"] == 0),
    "transform.derive": ({"fields": {"double": "amount * 2"}}, [*INPUT, "double"]),
    "transform.filter": ({"where": "amount > 1"}, INPUT),
    "transform.join": ({"reference": "ref", "on": ["id"]}, [*INPUT, "note"]),
    "transform.rename": (
        {"fields": {"amount": "amt"}},
        ["id", "text", "amt", "risk", "counterparty"],
    ),
    "transform.select": ({"fields": ["id", "amount"]}, ["id", "amount"]),
    "transform.to_records": ({}, lambda v: v == []),
    "validate.json_schema": (
        {"schema": {"type": "object", "properties": {"amount": {"type": "number"}}}},
        [*INPUT, "_valid", "_errors"],
    ),
    "validate.rules": (
        {"rules": [{"check": "amount > 0", "name": "positive"}]},
        [*INPUT, "_valid", "_errors"],
    ),
    "validate_and_route": (
        {"schema": {"type": "object"}, "valid_branch": "ok", "invalid_branch": "fix"},
        lambda v: isinstance(v, Decision) and v.branches == ["ok"],
    ),
}
# What does not take rows: its input is a folder, a URL, records or JSON, or it is a gate.
NOT_ROWS = {
    "acquire.http_json": "fetches a URL; its input is ignored",
    "acquire.load_documents": "reads a folder of documents",
    "emit.webhook": "posts records or JSON, not a table",
    "gate.approval": "runs as a `kind: gate` step, never inside a capability",
    "summarise_documents": "reads documents",
    "transform.to_table": "takes records, documents or JSON",
}


@pytest.fixture
def context(tmp_path: Path) -> PrimitiveContext:
    csv = tmp_path / "rows.csv"
    csv.write_text(",".join(INPUT) + "\n")
    reference = pa.table({"id": pa.array([], pa.int64()), "note": pa.array([], pa.string())})
    model = OfflineModel()
    return PrimitiveContext(
        step="zero",
        upstream={"ref": reference},
        template_inputs={"rows": str(csv)},
        models={"worker": model, "planner": model},
        artifacts_dir=tmp_path / "artifacts",
    )


def test_the_cases_cover_the_whole_catalog() -> None:
    assert set(CASES) | set(NOT_ROWS) == set(standard_catalog().names())
    assert not set(CASES) & set(NOT_ROWS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_rows_give_a_valid_empty_result(name: str, context: PrimitiveContext) -> None:
    config, want = CASES[name]
    composition = standard_catalog().resolve(name, config, input_kind=Kind.TABLE)
    value = composition.run(SCHEMA.empty_table(), context).value
    if callable(want):
        assert want(value), value
        return
    assert isinstance(value, pa.Table), type(value)
    assert value.num_rows == 0
    if name == "acquire.read_table":  # a header-only file names its columns, not their types
        assert value.column_names == want
        return
    assert value.column_names == want
    for field in SCHEMA:
        if field.name in value.column_names and field.name in want:
            assert value.schema.field(field.name).type == field.type, field.name


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("aggregate.count", {"by": ["region"]}),
        ("llm.classify", {"field": "body", "labels": ["a", "b"]}),
        ("transform.filter", {"where": "region == 'EU'"}),
        ("decide.rules", {"rules": [{"if": "count(region == 'EU') > 0", "then": ["x"]}]}),
        ("assert.condition", {"condition": "count(region == 'EU') == 0"}),
    ],
)
def test_a_missing_field_is_a_configuration_error_also_over_zero_rows(
    name: str, config: dict[str, Any], context: PrimitiveContext
) -> None:
    composition = standard_catalog().resolve(name, config, input_kind=Kind.TABLE)
    with pytest.raises(ConfigurationError) as raised:
        composition.run(SCHEMA.empty_table(), context)
    assert "available fields: id, text, amount, risk, counterparty" in str(raised.value)
