"""aggregate.count and aggregate.group over thousands of rows."""

from __future__ import annotations

from collections import Counter

import pytest

from grammar_ops import CompositionError, Document, Kind, PrimitiveError, standard_catalog


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


def test_count_total_and_filtered(make_ctx, sales_table):
    assert run("aggregate.count", {}, sales_table, make_ctx()).to_pylist() == [{"count": 3000}]
    expected = sum(1 for r in sales_table.to_pylist() if r["amount"] > 1000)
    out = run(
        "aggregate.count",
        {"where": "amount > 1000", "output_field": "n"},
        sales_table.to_pylist(),
        make_ctx(),
    )
    assert out.to_pylist() == [{"n": expected}]


def test_count_by_fields(make_ctx, sales_table):
    out = run("aggregate.count", {"by": ["region", "label"]}, sales_table, make_ctx())
    expected = Counter((r["region"], r["label"]) for r in sales_table.to_pylist())
    assert {(r["region"], r["label"]): r["count"] for r in out.to_pylist()} == expected
    assert out.column_names == ["region", "label", "count"]
    assert out["region"].to_pylist() == sorted(out["region"].to_pylist())


def test_count_documents(make_ctx):
    docs = [Document(id=str(i), text="x", metadata={"kind": i % 2}) for i in range(101)]
    out = run("aggregate.count", {"by": ["kind"]}, docs, make_ctx())
    assert out.to_pylist() == [{"kind": 0, "count": 51}, {"kind": 1, "count": 50}]


def test_group_metrics(make_ctx, sales_table):
    metrics = [
        {"name": "total", "fn": "sum", "field": "amount"},
        {"name": "mean", "fn": "avg", "field": "amount"},
        {"name": "low", "fn": "min", "field": "amount"},
        {"name": "high", "fn": "max", "field": "amount"},
        {"name": "n", "fn": "count", "field": "id"},
        {"name": "ids", "fn": "collect", "field": "id"},
    ]
    out = run("aggregate.group", {"by": ["region"], "metrics": metrics}, sales_table, make_ctx())
    rows = {r["region"]: r for r in out.to_pylist()}
    eu = [r for r in sales_table.to_pylist() if r["region"] == "EU"]
    assert rows["EU"]["total"] == sum(r["amount"] for r in eu)
    assert rows["EU"]["mean"] == pytest.approx(rows["EU"]["total"] / len(eu))
    assert rows["EU"]["low"] == min(r["amount"] for r in eu)
    assert rows["EU"]["n"] == len(eu) == 1000
    assert sorted(rows["EU"]["ids"]) == [r["id"] for r in eu]
    assert out.column_names == ["region", "total", "mean", "low", "high", "n", "ids"]


def test_group_errors(make_ctx, sales_table):
    with pytest.raises(PrimitiveError, match="sum and avg need numeric fields"):
        run(
            "aggregate.group",
            {"by": ["region"], "metrics": [{"name": "s", "fn": "sum", "field": "label"}]},
            sales_table,
            make_ctx(),
        )
    with pytest.raises(PrimitiveError, match="unknown field"):
        run(
            "aggregate.group",
            {"by": ["nope"], "metrics": [{"name": "s", "fn": "sum", "field": "amount"}]},
            sales_table,
            make_ctx(),
        )
    with pytest.raises(CompositionError, match="must all differ"):
        standard_catalog().resolve(
            "aggregate.group", {"by": ["a"], "metrics": [{"name": "a", "fn": "sum", "field": "b"}]}
        )
    with pytest.raises(CompositionError, match="'count', 'sum'"):
        standard_catalog().resolve(
            "aggregate.group",
            {"by": ["a"], "metrics": [{"name": "x", "fn": "median", "field": "b"}]},
        )


def test_count_produces_a_table_that_webhook_rejects():
    with pytest.raises(CompositionError) as caught:
        standard_catalog().compose(
            [{"use": "aggregate.count"}, {"use": "emit.webhook", "with": {"url": "http://h"}}],
            input_kind=Kind.TABLE,
        )
    assert str(caught.value.findings[0].message) == (
        "primitive 2 `emit.webhook` expects Decision or Json or Records, got Table from "
        "`aggregate.count`"
    )
