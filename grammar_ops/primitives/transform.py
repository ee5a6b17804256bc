"""`transform.*`: declarative reshaping of tables and records (select, rename, filter, derive,
join) and conversions between kinds.

Row logic is written in the expression language of `grammar_ops.expressions`, never as code.
Tables stay pyarrow tables (column types are kept) and records stay records.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, Field, model_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Document, Kind
from grammar_ops.expressions import (
    ExpressionError,
    JMESPathSelect,
    check_row_expression,
    parse_expression,
    search_jmespath,
)
from grammar_ops.findings import PrimitiveError
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.primitives.acquire import ReadTable, ReadTableConfig
from grammar_ops.rows import require_fields, rows_of, table_from_rows

RowExpression = Annotated[str, AfterValidator(check_row_expression)]

TABULAR = frozenset({Kind.TABLE, Kind.RECORDS})


def evaluate_per_row(text: str, value: pa.Table | list[dict[str, Any]], what: str) -> list[Any]:
    """The value of row expression `text` for every row of a table or records.

    Raises:
        PrimitiveError: an unknown field, or the expression failing on a row (with its index).
    """
    expression = parse_expression(text)
    require_fields(sorted(expression.fields), value, f"{what} `{text}`")
    if isinstance(value, pa.Table):
        present = [f for f in sorted(expression.fields) if f in value.column_names]
        rows = value.select(present).to_pylist()
    else:
        rows = value
    results = []
    for index, row in enumerate(rows):
        try:
            results.append(expression.evaluate_row(row))
        except ExpressionError as error:
            raise PrimitiveError(f"{what}: row {index}: {error}") from None
    return results


class SelectConfig(PrimitiveConfig, json_schema_extra={"examples": [{"fields": ["id", "amount"]}]}):
    fields: list[str] = Field(min_length=1, description="Fields to keep, in this order.")


class Select(Primitive):
    name = "transform.select"
    summary = "Keep only the named fields, in the given order."
    description = "Projects a table or records onto the listed fields; unknown fields fail."
    accepts = TABULAR
    produces = None
    Config = SelectConfig

    def run(self, value: Any, config: SelectConfig, ctx: PrimitiveContext) -> Any:
        require_fields(config.fields, value, "transform.select")
        if isinstance(value, pa.Table):
            return value.select(config.fields)
        return [{f: row.get(f) for f in config.fields} for row in value]


class RenameConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"fields": {"amt": "amount"}}]}
):
    fields: dict[str, str] = Field(min_length=1, description="Mapping of old name to new name.")


class Rename(Primitive):
    name = "transform.rename"
    summary = "Rename fields (old name to new name)."
    description = "Renames fields of a table or records; other fields are kept as they are."
    accepts = TABULAR
    produces = None
    Config = RenameConfig

    def run(self, value: Any, config: RenameConfig, ctx: PrimitiveContext) -> Any:
        require_fields(config.fields, value, "transform.rename")
        mapping = config.fields
        if isinstance(value, pa.Table):
            return value.rename_columns([mapping.get(c, c) for c in value.column_names])
        return [{mapping.get(k, k): v for k, v in row.items()} for row in value]


class FilterConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"where": "amount > 1000 and region == 'EU'"}]}
):
    where: RowExpression = Field(
        description="Row expression; rows where it is true are kept (e.g. `amount > 1000`)."
    )


class Filter(Primitive):
    name = "transform.filter"
    summary = "Keep the rows for which a row expression is true."
    description = (
        "Evaluates a declarative row expression (fields, constants, comparisons, and/or/not, "
        "arithmetic, `in`, row functions) per row and keeps rows where it is true."
    )
    accepts = TABULAR
    produces = None
    Config = FilterConfig

    def run(self, value: Any, config: FilterConfig, ctx: PrimitiveContext) -> Any:
        keep = [bool(v) for v in evaluate_per_row(config.where, value, "transform.filter")]
        if isinstance(value, pa.Table):
            return value.filter(pa.array(keep, type=pa.bool_()))
        return [row for row, kept in zip(value, keep, strict=True) if kept]


class DeriveConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [{"fields": {"total": "amount * quantity", "eu": "region == 'EU'"}}]
    },
):
    fields: dict[str, RowExpression] = Field(
        min_length=1,
        description="New (or replaced) field name to row expression, computed in order; later "
        "expressions may read earlier ones.",
    )


class Derive(Primitive):
    name = "transform.derive"
    summary = "Add or replace fields computed by row expressions."
    description = (
        "Computes each named row expression per row and stores it as a field; a later "
        "expression may use fields derived before it."
    )
    accepts = TABULAR
    produces = None
    Config = DeriveConfig

    def run(self, value: Any, config: DeriveConfig, ctx: PrimitiveContext) -> Any:
        for name, text in config.fields.items():
            values = evaluate_per_row(text, value, f"transform.derive field `{name}`")
            if isinstance(value, pa.Table):
                try:
                    column = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                    raise PrimitiveError(
                        f"transform.derive field `{name}` mixes value types ({error}); make the "
                        "expression return one type per row"
                    ) from None
                if name in value.column_names:
                    value = value.set_column(value.column_names.index(name), name, column)
                else:
                    value = value.append_column(name, column)
            else:
                value = [{**row, name: v} for row, v in zip(value, values, strict=True)]
        return value


class JoinConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"reference": "load_counterparties", "on": ["party_id"]}]},
):
    reference: str | None = Field(
        None, description="Name of an upstream step whose table or records to join with."
    )
    input: str | None = Field(
        None, description="Name of a template input (a Parquet/CSV path) to join with."
    )
    on: list[str] = Field(min_length=1, description="Key fields present on both sides.")
    how: Literal["left", "inner", "anti", "semi"] = Field(
        "left",
        description="left keeps every row; inner only matches; anti non-matches; semi "
        "matches without adding fields.",
    )
    columns: list[str] | None = Field(
        None, description="Reference fields to add (besides the keys); all when omitted."
    )
    suffix: str = Field("_ref", description="Suffix for reference fields whose names collide.")

    @model_validator(mode="after")
    def _one_reference(self) -> JoinConfig:
        if (self.reference is None) == (self.input is None):
            raise ValueError("set exactly one of `reference` (an upstream step) or `input`")
        return self


_JOIN_TYPES = {"left": "left outer", "inner": "inner", "anti": "left anti", "semi": "left semi"}


class Join(Primitive):
    name = "transform.join"
    summary = "Join rows with a reference table from an upstream step or a template input."
    description = (
        "Joins the input (table or records) with a reference on key fields (left, inner, anti "
        "or semi join), keeping the input's row order; the reference is another step's result "
        "named by `reference` or a Parquet/CSV template input."
    )
    accepts = TABULAR
    produces = None
    Config = JoinConfig

    def reads_upstream(self, config: Any) -> tuple[str, ...]:
        return (config.reference,) if config.reference else ()

    def reads_inputs(self, config: Any) -> tuple[str, ...]:
        return (config.input,) if config.input else ()

    def run(self, value: Any, config: JoinConfig, ctx: PrimitiveContext) -> Any:
        reference = self._reference(config, ctx)
        require_fields(config.on, value, "transform.join `on`")
        require_fields([*config.on, *(config.columns or ())], reference, "transform.join reference")
        if config.columns is not None:
            reference = reference.select([*config.on, *config.columns])
        keys = reference.select(config.on).to_pylist()
        if len({tuple(k.values()) for k in keys}) != len(keys):
            raise PrimitiveError(
                f"transform.join reference has duplicate keys on {config.on}; a reference must "
                "have one row per key"
            )
        table = value if isinstance(value, pa.Table) else table_from_rows(value)
        order = "__marigold_row"
        table = table.append_column(order, pa.array(range(table.num_rows), type=pa.int64()))
        try:
            joined = table.join(
                reference,
                keys=config.on,
                join_type=_JOIN_TYPES[config.how],
                right_suffix=config.suffix,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise PrimitiveError(f"transform.join failed: {error}") from None
        # Arrow's hash join does not keep row order; restore the input's.
        joined = joined.sort_by(order).drop_columns([order])
        return joined if isinstance(value, pa.Table) else joined.to_pylist()

    def _reference(self, config: JoinConfig, ctx: PrimitiveContext) -> pa.Table:
        if config.reference is not None:
            if config.reference not in ctx.upstream:
                known = ", ".join(sorted(ctx.upstream)) or "none"
                raise PrimitiveError(
                    f"transform.join reference `{config.reference}` is not an upstream result "
                    f"of step '{ctx.step}'; upstream results: {known}"
                )
            ref = ctx.upstream[config.reference]
            return ref if isinstance(ref, pa.Table) else table_from_rows(rows_of(ref))
        return ReadTable().run(None, ReadTableConfig.model_validate({"input": config.input}), ctx)


class ToRecordsConfig(PrimitiveConfig):
    select: JMESPathSelect = Field(
        None,
        description="For JSON input: a JMESPath expression picking the list of objects "
        "(e.g. `data.items`).",
    )


class ToRecords(Primitive):
    name = "transform.to_records"
    summary = "Convert a table, documents or a JSON list of objects to records."
    description = (
        "Tables become one dict per row; documents become {...metadata, id, text}; JSON must be "
        "a list of objects (or an object, one record), optionally picked with JMESPath."
    )
    accepts = frozenset({Kind.TABLE, Kind.DOCUMENTS, Kind.JSON})
    produces = Kind.RECORDS
    Config = ToRecordsConfig

    def run(self, value: Any, config: ToRecordsConfig, ctx: PrimitiveContext) -> Any:
        if config.select is not None:
            if isinstance(value, pa.Table) or _is_documents(value):
                raise PrimitiveError(
                    "transform.to_records `select` applies to JSON input only; drop it for a "
                    "table or documents"
                )
            try:
                value = search_jmespath(config.select, value)
            except ExpressionError as error:
                raise PrimitiveError(f"transform.to_records `select`: {error}") from None
        return [dict(row) for row in rows_of(value)]


def _is_documents(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], Document)


class ToTable(Primitive):
    name = "transform.to_table"
    summary = "Convert records, documents or a JSON list of objects to a table."
    description = (
        "Builds a pyarrow table from rows; every value of a field must have one type (or be null)."
    )
    accepts = frozenset({Kind.RECORDS, Kind.DOCUMENTS, Kind.JSON})
    produces = Kind.TABLE

    def run(self, value: Any, config: Any, ctx: PrimitiveContext) -> pa.Table:
        return table_from_rows(rows_of(value))
