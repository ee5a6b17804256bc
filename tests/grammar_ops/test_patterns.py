"""Common patterns, by name and as their inline compositions, on real data."""

from __future__ import annotations

import pyarrow as pa
import pytest

from grammar_ops import CompositionError, Decision, Kind, PrimitiveError, standard_catalog

CATALOG = standard_catalog()


def test_classify_records_by_name_and_inline(make_ctx, sales_table):
    config = {"field": "text", "labels": ["low", "medium", "high"]}
    named = CATALOG.resolve("classify_records", config, input_kind=Kind.TABLE)
    assert named.source == "classify_records" and named.model_roles == {"worker"}
    out = named.run(sales_table, make_ctx()).value
    assert out["label"].to_pylist()[:3] == ["low", "medium", "high"]
    inline = CATALOG.compose(named.spec(), input_kind=Kind.TABLE)
    assert inline.run(sales_table, make_ctx()).value.equals(out)


def test_classify_records_config_errors():
    with pytest.raises(CompositionError) as caught:
        CATALOG.resolve("classify_records", {"labels": ["a", "b"], "colour": 1})
    assert {f.path for f in caught.value.findings} == {("with", "field"), ("with", "colour")}


SCHEMA = {
    "type": "object",
    "required": ["party", "amount"],
    "properties": {"party": {"type": "string"}, "amount": {"type": "number"}},
}


def test_extract_fields_validates_extractions(make_ctx):
    rows = [{"text": f"party: P{i} owes {i}"} for i in range(1, 1001)]
    rows.append({"text": "nothing useful"})
    out = (
        CATALOG.resolve("extract_fields", {"field": "text", "schema": SCHEMA})
        .run(rows, make_ctx())
        .value
    )
    assert out[4]["party"] == "P5" and out[4]["amount"] == 5.0 and out[4]["_valid"]
    assert out[-1]["_valid"] is False
    errors = out[-1]["_errors"]
    assert len(errors) == 2 and all(error.startswith("(row): ") for error in errors)
    assert "'party'" in errors[0] and "'amount'" in errors[1]
    dropped = CATALOG.resolve(
        "extract_fields", {"field": "text", "schema": SCHEMA, "on_invalid": "drop"}
    ).run(rows, make_ctx())
    assert len(dropped.value) == 1000


def test_validate_and_route(make_ctx, sales_table):
    schema = {"type": "object", "properties": {"amount": {"maximum": 1990}}}
    config = {"schema": schema, "valid_branch": "publish", "invalid_branch": "repair"}
    composition = CATALOG.resolve("validate_and_route", config)
    assert composition.output_kind(Kind.TABLE) is Kind.DECISION
    decision = composition.run(sales_table, make_ctx()).value
    assert isinstance(decision, Decision) and decision.branches == ["repair"]
    assert "too_many_invalid" in decision.reason
    lenient = CATALOG.resolve("validate_and_route", {**config, "max_invalid": 1000})
    assert lenient.run(sales_table, make_ctx()).value.branches == ["publish"]


def test_enrich_from_reference(make_ctx, sales_table):
    table = sales_table.append_column("party", pa.array([f"P{i % 7}" for i in range(3000)]))
    reference = [{"party": f"P{i}", "country": f"C{i}", "tier": i} for i in range(5)]
    config = {
        "reference": "parties",
        "on": ["party"],
        "columns": ["country"],
        "defaults": {"country": "unknown"},
    }
    composition = CATALOG.resolve("enrich_from_reference", config)
    assert composition.upstream_refs == {"parties"}
    out = composition.run(table, make_ctx(upstream={"parties": reference})).value
    countries = out["country"].to_pylist()
    assert countries[:7] == ["C0", "C1", "C2", "C3", "C4", "unknown", "unknown"]
    assert "tier" not in out.column_names and out.num_rows == 3000
    with pytest.raises(CompositionError, match="exactly one of"):
        CATALOG.resolve("enrich_from_reference", {"on": ["x"]})
    with pytest.raises(PrimitiveError, match="not an upstream result"):
        composition.run(table, make_ctx())


def test_summarise_documents(make_ctx, fake_model, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    for i in range(30):
        (folder / f"r{i:02d}.md").write_text(f"Report {i}: " + "findings " * 50)
    composition = CATALOG.resolve("summarise_documents", {"input": "reports"})
    assert composition.template_inputs == {"reports"}
    assert composition.output_kind(Kind.NOTHING) is Kind.JSON
    out = composition.run(None, make_ctx(template_inputs={"reports": str(folder)})).value
    assert out["items"] == 30 and out["summary"].startswith("summarise:")
    assert fake_model.calls[0].purpose == "summarise"
    plain = CATALOG.resolve("summarise_documents", {})
    with pytest.raises(CompositionError, match="expects Documents or Records or Table"):
        CATALOG.resolve("summarise_documents", {}, input_kind=Kind.DECISION)
    assert plain.output_kind(Kind.DOCUMENTS) is Kind.JSON
