"""Rows: one view of tables, records, documents and JSON lists as rows of fields.

Primitives that work row by row (expressions, validation, model calls) read every accepted kind
through `rows_of` and turn rows back into a table with `table_from_rows`. `preview_text` renders a
bounded, deterministic text of any value for a prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from grammar_ops.contracts import Decision, Document
from grammar_ops.failures import ConfigurationError
from grammar_ops.findings import PrimitiveError


def rows_of(value: Any) -> list[dict[str, Any]]:
    """The rows of a table, records, documents or a JSON list of objects (a JSON object is one row).

    Raises:
        PrimitiveError: when the value has no notion of rows (a JSON scalar, a list of scalars).
    """
    if value is None:
        return []
    if isinstance(value, pa.Table):
        return value.to_pylist()
    if isinstance(value, Decision):
        return [value.model_dump()]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            if isinstance(item, Document):
                rows.append({**item.metadata, "id": item.id, "text": item.text})
            elif isinstance(item, dict):
                rows.append(item)
            else:
                raise PrimitiveError(
                    f"item {index} is a {type(item).__name__}, not an object; rows must be "
                    "objects (a table, records, documents or a JSON list of objects)"
                )
        return rows
    raise PrimitiveError(
        f"a {type(value).__name__} has no rows; expected a table, records, documents or a JSON "
        "list of objects"
    )


def table_from_rows(rows: Sequence[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """A pyarrow table from rows, with a clear error when a column mixes types.

    Raises:
        PrimitiveError: when the rows cannot form one table.
    """
    try:
        if not rows and schema is not None:
            return schema.empty_table()
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise PrimitiveError(
            f"rows cannot form a table ({error}); every value of a column must have one type "
            "(or be null)"
        ) from None


def field_names(value: Any) -> list[str]:
    """Field names of a value's rows, in first-seen order."""
    if isinstance(value, pa.Table):
        return list(value.column_names)
    names: dict[str, None] = {}
    for row in rows_of(value):
        names.update(dict.fromkeys(row))
    return list(names)


def require_fields(needed: Iterable[str], value: Any, what: str) -> None:
    """Raise a ConfigurationError naming the fields `what` needs that the value lacks.

    A table always has its fields, even with zero rows (or none at all); empty records have no
    fields to check and pass.
    """
    available = field_names(value)
    if not available and not isinstance(value, pa.Table):
        return
    missing = [name for name in needed if name not in available]
    if missing:
        raise ConfigurationError(
            f"{what} refers to unknown field(s) {', '.join(f'`{m}`' for m in missing)}; "
            f"available fields: {', '.join(available) or '(none)'}"
        )


def preview_text(value: Any, max_chars: int) -> str:
    """A deterministic JSON rendering of a value for a prompt, cut at `max_chars`."""
    if isinstance(value, pa.Table):
        value = value.to_pylist()
    if isinstance(value, list):
        value = [v.model_dump() if isinstance(v, Document) else v for v in value]
    elif isinstance(value, Decision):
        value = value.model_dump()
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… ({len(text) - max_chars} more characters not shown)"
