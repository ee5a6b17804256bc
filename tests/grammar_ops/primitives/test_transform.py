"""transform.* on tables and records of thousands of rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grammar_ops import CompositionError, Document, Kind, PrimitiveError, standard_catalog


def run(uses, config, value, ctx):
    composition = standard_catalog().resolve(uses, config)
    return composition.run(value, ctx).value


@pytest.fixture(params=["table", "records"])
def sales(request, sales_table):
    return sales_table if request.param == "table" else sales_table.to_pylist()


def rows(value):
    return value.to_pylist() if isinstance(value, pa.Table) else value


def test_select_keeps_kind_and_order(make_ctx, sales):
    out = run("transform.select", {"fields": ["label", "id"]}, sales, make_ctx())
    assert type(out) is type(sales)
    assert rows(out)[5] == {"label": "high", "id": 5}


def test_select_unknown_field(make_ctx, sales):
    with pytest.raises(PrimitiveError, match="unknown field.*`nope`; available fields: id"):
        run("transform.select", {"fields": ["nope"]}, sales, make_ctx())


def test_rename(make_ctx, sales):
    out = run("transform.rename", {"fields": {"amount": "total"}}, sales, make_ctx())
    assert "total" in rows(out)[0] and "amount" not in rows(out)[0]


def test_filter_row_expression(make_ctx, sales, sales_table):
    where = "amount > 1000 and region == 'EU'"
    out = run("transform.filter", {"where": where}, sales, make_ctx())
    expected = [r for r in sales_table.to_pylist() if r["amount"] > 1000 and r["region"] == "EU"]
    assert rows(out) == expected and 0 < len(expected) < 3000
    if isinstance(out, pa.Table):
        assert out.schema == sales_table.schema


def test_filter_with_functions_and_in(make_ctx, sales):
    where = "lower(region) in ['eu', 'us'] and contains(text, 'medium') and not id % 2 == 0"
    out = rows(run("transform.filter", {"where": where}, sales, make_ctx()))
    assert out and all(r["region"] in {"EU", "US"} and r["id"] % 2 for r in out)


def test_filter_errors(make_ctx, sales):
    with pytest.raises(PrimitiveError, match="unknown field.*`amout`"):
        run("transform.filter", {"where": "amout > 1"}, sales, make_ctx())
    with pytest.raises(PrimitiveError, match="row 0: .*failed"):
        run("transform.filter", {"where": "region > 1"}, sales, make_ctx())


def test_filter_expression_errors_at_validation():
    with pytest.raises(CompositionError) as caught:
        standard_catalog().resolve("transform.filter", {"where": "amount > 1 and __import__('os')"})
    (finding,) = caught.value.findings
    assert finding.code == "INVALID_CONFIG" and finding.path == ("with", "where")
    assert "column 16" in finding.message and "Allowed:" in finding.message
    with pytest.raises(CompositionError, match="aggregate function `count\\(\\)`"):
        standard_catalog().resolve("transform.filter", {"where": "count() > 1"})


def test_derive_chained_fields(make_ctx, sales):
    config = {"fields": {"double": "amount * 2", "big": "double > 2000", "id": "id + 1"}}
    out = rows(run("transform.derive", config, sales, make_ctx()))
    assert out[700]["double"] == out[700]["amount"] * 2
    assert out[700]["big"] == (out[700]["double"] > 2000)
    assert out[0]["id"] == 1


def test_derive_mixed_types_on_a_table(make_ctx, sales_table):
    with pytest.raises(PrimitiveError, match="mixes value types"):
        run(
            "transform.derive",
            {"fields": {"x": "id if id > 5 else 'small'"}},
            sales_table,
            make_ctx(),
        )


@pytest.fixture
def parties():
    return pa.table(
        {"party": [f"P{i}" for i in range(10)], "country": [f"C{i}" for i in range(10)]}
    )


def test_join_with_upstream_reference_keeps_order(make_ctx, sales_table, parties):
    table = sales_table.append_column(
        "party", pa.array([f"P{i % 11}" for i in range(sales_table.num_rows)])
    )
    ctx = make_ctx(upstream={"load_parties": parties})
    config = {"reference": "load_parties", "on": ["party"]}
    joined = run("transform.join", config, table, ctx)
    assert joined.num_rows == 3000
    assert joined["id"].to_pylist() == list(range(3000))
    first = joined.to_pylist()[:11]
    assert first[3]["country"] == "C3" and first[10]["country"] is None
    inner = run("transform.join", {**config, "how": "inner"}, table.to_pylist(), ctx)
    assert isinstance(inner, list) and all(r["country"] for r in inner)
    anti = run("transform.join", {**config, "how": "anti"}, table, ctx)
    assert set(anti["party"].to_pylist()) == {"P10"}


def test_join_declares_upstream_and_input():
    catalog = standard_catalog()
    assert catalog.resolve("transform.join", {"reference": "a", "on": ["k"]}).upstream_refs == {"a"}
    composition = catalog.resolve("transform.join", {"input": "ref", "on": ["k"]})
    assert composition.template_inputs == {"ref"}


def test_join_with_template_input(make_ctx, tmp_path, parties):
    path = tmp_path / "parties.parquet"
    pq.write_table(parties, path)
    ctx = make_ctx(template_inputs={"parties": str(path)})
    out = run(
        "transform.join", {"input": "parties", "on": ["party"]}, [{"party": "P2", "n": 1}], ctx
    )
    assert out == [{"party": "P2", "n": 1, "country": "C2"}]


def test_join_errors(make_ctx, parties):
    ctx = make_ctx(upstream={"load_parties": parties})
    with pytest.raises(PrimitiveError, match="not an upstream result.*upstream results: load_"):
        run("transform.join", {"reference": "other", "on": ["party"]}, [{"party": "P1"}], ctx)
    with pytest.raises(PrimitiveError, match="unknown field"):
        run("transform.join", {"reference": "load_parties", "on": ["id"]}, [{"id": 1}], ctx)
    dup = make_ctx(upstream={"ref": [{"party": "P1"}, {"party": "P1"}]})
    with pytest.raises(PrimitiveError, match="duplicate keys"):
        run("transform.join", {"reference": "ref", "on": ["party"]}, [{"party": "P1"}], dup)


def test_to_records_and_to_table(make_ctx, sales_table):
    records = run("transform.to_records", {}, sales_table, make_ctx())
    assert records == sales_table.to_pylist()
    table = run("transform.to_table", {}, records, make_ctx())
    assert table.equals(sales_table)
    docs = [Document(id=f"d{i}", text=f"text {i}", metadata={"n": i}) for i in range(50)]
    assert run("transform.to_records", {}, docs, make_ctx())[3] == {
        "n": 3,
        "id": "d3",
        "text": "text 3",
    }
    assert run("transform.to_table", {}, docs, make_ctx()).num_rows == 50
    payload = {"data": {"items": [{"a": 1}, {"a": 2}]}}
    assert run("transform.to_records", {"select": "data.items"}, payload, make_ctx()) == [
        {"a": 1},
        {"a": 2},
    ]


def test_conversion_errors(make_ctx, sales_table):
    with pytest.raises(PrimitiveError, match="not an object"):
        run("transform.to_records", {"select": "a"}, {"a": [1, 2]}, make_ctx())
    with pytest.raises(PrimitiveError, match="one type"):
        run("transform.to_table", {}, [{"a": 1}, {"a": "x"}], make_ctx())
    with pytest.raises(PrimitiveError, match="applies to JSON input only"):
        run("transform.to_records", {"select": "a"}, sales_table, make_ctx())


def test_kinds():
    catalog = standard_catalog()
    assert catalog.resolve("transform.to_table", {}).output_kind(Kind.RECORDS) is Kind.TABLE
    with pytest.raises(CompositionError, match="expects Records or Table, got Documents"):
        catalog.resolve("transform.filter", {"where": "a"}, input_kind=Kind.DOCUMENTS)
