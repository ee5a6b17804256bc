"""validate.json_schema and validate.rules: per-row verdicts in annotate, drop and fail modes."""

from __future__ import annotations

import pyarrow as pa
import pytest

from grammar_ops import CompositionError, PrimitiveError, standard_catalog

SCHEMA = {
    "type": "object",
    "required": ["id", "amount"],
    "properties": {"amount": {"type": "number", "maximum": 1500}, "region": {"enum": ["EU", "US"]}},
}


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


@pytest.fixture(params=["table", "records"])
def sales(request, sales_table):
    return sales_table if request.param == "table" else sales_table.to_pylist()


def as_rows(value):
    return value.to_pylist() if isinstance(value, pa.Table) else value


def expected_valid(row):
    return row["amount"] <= 1500 and row["region"] in {"EU", "US"}


def test_json_schema_annotates_each_row(make_ctx, sales, sales_table):
    out = as_rows(run("validate.json_schema", {"schema": SCHEMA}, sales, make_ctx()))
    assert len(out) == 3000
    for row in out[:300]:
        assert row["_valid"] == expected_valid(row)
    bad = next(r for r in out if r["amount"] > 1500 and r["region"] == "APAC")
    assert bad["_errors"] == [
        f"amount: {bad['amount']} is greater than the maximum of 1500",
        "region: 'APAC' is not one of ['EU', 'US']",
    ]


def test_json_schema_drop_and_fail(make_ctx, sales):
    kept = as_rows(
        run("validate.json_schema", {"schema": SCHEMA, "mode": "drop"}, sales, make_ctx())
    )
    assert kept and all(expected_valid(r) for r in kept) and "_valid" not in kept[0]
    with pytest.raises(
        PrimitiveError, match=r"validate.json_schema: \d+ of 3000 rows are invalid: row 2"
    ):
        run("validate.json_schema", {"schema": SCHEMA, "mode": "fail"}, sales, make_ctx())
    passed = run(
        "validate.json_schema", {"schema": {"type": "object"}, "mode": "fail"}, sales, make_ctx()
    )
    assert passed is sales


def test_json_schema_fields_projection_leaves_nulls_out(make_ctx):
    rows = [{"text": "x", "party": None}, {"text": "y", "party": "ACME"}]
    schema = {
        "type": "object",
        "required": ["party"],
        "additionalProperties": False,
        "properties": {"party": {"type": "string"}},
    }
    out = run("validate.json_schema", {"schema": schema, "fields": ["party"]}, rows, make_ctx())
    assert [r["_valid"] for r in out] == [False, True]
    [error] = out[0]["_errors"]
    assert error.startswith("(row): ") and "'party'" in error


def test_invalid_schema_is_a_config_error():
    with pytest.raises(CompositionError, match="not a valid JSON Schema"):
        standard_catalog().resolve("validate.json_schema", {"schema": {"type": "banana"}})


def test_rules_annotate_merges_with_earlier_validation(make_ctx, sales):
    first = run("validate.json_schema", {"schema": SCHEMA}, sales, make_ctx())
    config = {
        "rules": [
            {"name": "even", "check": "id % 2 == 0"},
            {"name": "named", "check": "len(text) > 0"},
        ]
    }
    out = as_rows(run("validate.rules", config, first, make_ctx()))
    row = out[1]  # odd id, amount 37 EU -> schema fine, rule `even` fails
    assert row["_valid"] is False and row["_errors"][-1] == "rule even failed"
    assert out[0]["_valid"] is True


def test_rules_drop_and_fail(make_ctx, sales):
    config = {"rules": [{"name": "cheap", "check": "amount < 100"}]}
    kept = as_rows(run("validate.rules", {**config, "mode": "drop"}, sales, make_ctx()))
    assert kept and all(r["amount"] < 100 for r in kept)
    with pytest.raises(PrimitiveError, match="rows are invalid: row 3: rule cheap failed"):
        run("validate.rules", {**config, "mode": "fail"}, sales, make_ctx())


def test_rules_config_errors():
    catalog = standard_catalog()
    with pytest.raises(CompositionError, match="unique"):
        catalog.resolve(
            "validate.rules", {"rules": [{"name": "a", "check": "x"}, {"name": "a", "check": "y"}]}
        )
    with pytest.raises(CompositionError, match=r"at column 3: operator `\*\*` is not allowed"):
        catalog.resolve("validate.rules", {"rules": [{"name": "a", "check": "x ** 2"}]})
