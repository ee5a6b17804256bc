"""llm.* against a fake model client: prompts, constraints, usage and partial failures."""

from __future__ import annotations

import pyarrow as pa
import pytest

from grammar_ops import CompositionError, Document, PrimitiveError, standard_catalog


def run(uses, config, value, ctx):
    return standard_catalog().resolve(uses, config).run(value, ctx).value


@pytest.fixture(params=["table", "records"])
def sales(request, sales_table):
    return sales_table if request.param == "table" else sales_table.to_pylist()


def as_rows(value):
    return value.to_pylist() if isinstance(value, pa.Table) else value


def test_classify_every_row(make_ctx, fake_model, sales):
    ctx = make_ctx()
    out = as_rows(
        run(
            "llm.classify",
            {"field": "text", "labels": ["low", "medium", "high"], "output_field": "risk"},
            sales,
            ctx,
        )
    )
    assert [r["risk"] for r in out[:3]] == ["low", "medium", "high"]
    assert len(fake_model.calls) == 3000 and ctx.usage.requests == 3000
    assert ctx.usage.prompt_tokens > 0 and ctx.usage.models == {"fake-model"}
    call = fake_model.calls[1]
    assert call.purpose == "classify" and call.choices == ("low", "medium", "high")
    assert call.subject == "contract 1 risk medium party: P1"
    assert call.prompt.endswith("Text:\n" + call.subject)


def test_classify_prompts_share_a_byte_identical_prefix(make_ctx, fake_model):
    rows = [{"text": f"row {i}"} for i in range(50)]
    labels = {"high": "risky", "low": "routine"}
    run(
        "llm.classify",
        {"field": "text", "labels": labels, "instructions": "Be strict."},
        rows,
        make_ctx(),
    )
    prefixes = {c.prompt[: -len(c.subject)] for c in fake_model.calls}
    assert len(prefixes) == 1
    (prefix,) = prefixes
    assert "- high: risky" in prefix and "Be strict." in prefix
    assert fake_model.calls[0].choice_descriptions == labels


def test_classify_partial_failure_names_rows(make_ctx, sales_table):
    rows = sales_table.to_pylist()
    for i in (10, 20, 30, 40):
        rows[i]["text"] = "FAIL please"
    ctx = make_ctx()
    with pytest.raises(PrimitiveError) as caught:
        run("llm.classify", {"field": "text", "labels": ["a", "b"]}, rows, ctx)
    assert "4 of 3000 model calls failed" in str(caught.value)
    assert "row 10: fake failure" in str(caught.value) and "row 40" not in str(caught.value)
    assert ctx.usage.failures == 4 and ctx.usage.requests == 3000


def test_classify_errors(make_ctx):
    with pytest.raises(CompositionError, match="at least two distinct"):
        standard_catalog().resolve("llm.classify", {"field": "t", "labels": ["only"]})
    with pytest.raises(PrimitiveError, match="unknown field"):
        run("llm.classify", {"field": "body", "labels": ["a", "b"]}, [{"text": "x"}], make_ctx())
    assert standard_catalog().resolve(
        "llm.classify", {"field": "t", "labels": ["a", "b"], "model": "triage"}
    ).model_roles == {"triage"}


SCHEMA = {
    "type": "object",
    "properties": {"party": {"type": "string"}, "amount": {"type": "number"}},
}


def test_extract_writes_schema_fields(make_ctx, fake_model, sales):
    out = as_rows(
        run("llm.extract", {"field": "text", "schema": SCHEMA, "prefix": "x_"}, sales, make_ctx())
    )
    assert out[7]["x_party"] == "P7" and out[7]["x_amount"] == 7.0
    assert fake_model.calls[0].json_schema == SCHEMA and fake_model.calls[0].purpose == "extract"


def test_extract_errors(make_ctx):
    with pytest.raises(CompositionError, match="object schema with `properties`"):
        standard_catalog().resolve("llm.extract", {"field": "t", "schema": {"type": "string"}})
    with pytest.raises(PrimitiveError, match="1 of 2 model calls failed"):
        run(
            "llm.extract", {"field": "t", "schema": SCHEMA}, [{"t": "a"}, {"t": "FAIL"}], make_ctx()
        )


def test_generate(make_ctx, fake_model, sales_table):
    ctx = make_ctx()
    config = {"prompt": "Summarise the triage results", "max_tokens": 300, "max_input_chars": 500}
    out = run("llm.generate", config, sales_table, ctx)
    assert out["text"].startswith("generate:") and out["finish_reason"] == "stop"
    call = fake_model.calls[0]
    assert call.max_new_tokens == 300 and call.prompt.startswith("Summarise the triage results")
    assert "more characters not shown" in call.prompt
    assert run("llm.generate", {"prompt": "Hi", "max_tokens": 5}, None, ctx)["text"]


def test_generate_requires_bounded_max_tokens():
    with pytest.raises(CompositionError, match="max_tokens"):
        standard_catalog().resolve("llm.generate", {"prompt": "x"})
    with pytest.raises(CompositionError, match="less than or equal to 8192"):
        standard_catalog().resolve("llm.generate", {"prompt": "x", "max_tokens": 10**6})


def test_summarise_documents_map_reduce(make_ctx, fake_model):
    docs = [Document(id=f"doc{i}.md", text="word " * 200) for i in range(40)]
    out = run("llm.summarise", {"max_chunk_chars": 5000}, docs, make_ctx())
    assert out["items"] == 40 and out["chunks"] == 10
    assert len(fake_model.calls) == 11  # ten chunks, then one summary of summaries
    assert fake_model.calls[0].prompt.count("## doc") == 4


def test_summarise_records_and_empty(make_ctx, fake_model):
    out = run("llm.summarise", {"field": "text"}, [{"text": "a"}, {"text": "b"}], make_ctx())
    assert out["chunks"] == 1 and len(fake_model.calls) == 1
    assert run("llm.summarise", {}, [], make_ctx()) == {"summary": "", "items": 0, "chunks": 0}
    with pytest.raises(PrimitiveError, match="failed"):
        run("llm.summarise", {}, [{"text": "FAIL"}], make_ctx())
