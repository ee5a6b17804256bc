"""Rows: one view of every row-bearing kind."""

from __future__ import annotations

import pyarrow as pa
import pytest

from grammar_ops import Decision, Document, PrimitiveError
from grammar_ops.rows import field_names, preview_text, require_fields, rows_of, table_from_rows


def test_rows_of_every_kind():
    assert rows_of(None) == []
    assert rows_of(pa.table({"a": [1, 2]})) == [{"a": 1}, {"a": 2}]
    assert rows_of([Document(id="d", text="t", metadata={"k": 1})]) == [
        {"k": 1, "id": "d", "text": "t"}
    ]
    assert rows_of({"a": 1}) == [{"a": 1}]
    assert rows_of(Decision(branches=["x"])) == [{"branches": ["x"], "reason": ""}]
    with pytest.raises(PrimitiveError, match="item 1 is a int"):
        rows_of([{"a": 1}, 2])
    with pytest.raises(PrimitiveError, match="has no rows"):
        rows_of("text")


def test_table_from_rows_and_fields():
    schema = pa.schema([("a", pa.int64())])
    assert table_from_rows([], schema).schema == schema
    with pytest.raises(PrimitiveError, match="one type"):
        table_from_rows([{"a": 1}, {"a": "x"}])
    assert field_names([{"a": 1}, {"b": 2, "a": 3}]) == ["a", "b"]
    require_fields(["x"], [], "nothing to check")
    with pytest.raises(PrimitiveError, match="available fields: a"):
        require_fields(["x"], [{"a": 1}], "thing")


def test_preview_text_is_deterministic_and_bounded():
    rows = [{"b": i, "a": "x" * 10} for i in range(100)]
    text = preview_text(rows, 50)
    assert text.startswith('[{"a": "xxxxxxxxxx", "b": 0}') and "more characters not shown" in text
    assert preview_text(rows, 50) == text
    assert preview_text(pa.Table.from_pylist(rows), 10**6) == preview_text(rows, 10**6)
