"""assert.condition: passes input through or fails with the condition in the message."""

from __future__ import annotations

import pytest

from grammar_ops import CompositionError, Document, PrimitiveError, standard_catalog


def run(config, value, ctx):
    return standard_catalog().resolve("assert.condition", config).run(value, ctx).value


def test_condition_true_passes_through(make_ctx, sales_table):
    out = run({"condition": "count() == 3000 and max(amount) < 2000"}, sales_table, make_ctx())
    assert out is sales_table


def test_condition_false_fails_clearly(make_ctx, sales_table):
    with pytest.raises(PrimitiveError) as caught:
        run(
            {"condition": "count(amount > 1990) == 0", "message": "no huge deals"},
            sales_table,
            make_ctx(),
        )
    message = str(caught.value)
    assert "`count(amount > 1990) == 0` is false over 3000 rows: no huge deals" in message
    assert "step 'test_step'" in message


def test_condition_on_documents_and_json(make_ctx):
    docs = [Document(id=str(i), text="x" * i) for i in range(10)]
    assert run({"condition": "max(len(text)) == 9"}, docs, make_ctx()) is docs
    assert run({"condition": "sum(n) == 3"}, [{"n": 1}, {"n": 2}], make_ctx())


def test_condition_errors(make_ctx, sales_table):
    with pytest.raises(CompositionError, match="outside an aggregate function"):
        standard_catalog().resolve("assert.condition", {"condition": "amount > 1"})
    with pytest.raises(PrimitiveError, match="unknown field"):
        run({"condition": "count(nope) > 0"}, sales_table, make_ctx())
