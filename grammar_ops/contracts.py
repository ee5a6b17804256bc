"""Data contracts: the kinds of value that flow into and out of primitives.

A primitive declares which kinds it accepts and which it produces; a composition is well typed
when each primitive accepts what the one before it produces.

| kind        | Python value inside a composition        |
|-------------|------------------------------------------|
| `table`     | `pyarrow.Table`                          |
| `records`   | `list[dict[str, Any]]`                   |
| `documents` | `list[Document]`                         |
| `json`      | any JSON-compatible value                |
| `decision`  | `Decision` (the branches a decide chose) |
| `nothing`   | `None` (a composition that starts from nothing, e.g. `acquire.*`) |
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field


class Kind(StrEnum):
    TABLE = "table"
    RECORDS = "records"
    DOCUMENTS = "documents"
    JSON = "json"
    DECISION = "decision"
    NOTHING = "nothing"

    @property
    def title(self) -> str:  # type: ignore[override]
        return self.value.capitalize()


class Document(BaseModel):
    """A text document with an id and free-form metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    """What a `decide.*` primitive chose: a subset of the declared branches, and why."""

    branches: list[str]
    reason: str = ""


def kind_of(value: Any) -> Kind:
    """The kind of a runtime value (for checking what a capability actually returned)."""
    if value is None:
        return Kind.NOTHING
    if isinstance(value, pa.Table):
        return Kind.TABLE
    if isinstance(value, Decision):
        return Kind.DECISION
    if isinstance(value, list) and value and all(isinstance(v, Document) for v in value):
        return Kind.DOCUMENTS
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return Kind.RECORDS
    return Kind.JSON


def row_count(value: Any) -> int | None:
    """Rows (or items) in a value, for audit metadata; None when the notion does not apply."""
    if isinstance(value, pa.Table):
        return value.num_rows
    if isinstance(value, list):
        return len(value)
    return None
