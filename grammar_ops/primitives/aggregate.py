"""`aggregate.*`: counts and grouped summaries of tables and records, as tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, Field, model_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind
from grammar_ops.expressions import check_row_expression, expression_fields
from grammar_ops.findings import PrimitiveError
from grammar_ops.primitive import Columns, ConfigPath, Primitive, PrimitiveConfig
from grammar_ops.primitives.transform import evaluate_per_row
from grammar_ops.rows import require_fields, rows_of, table_from_rows

ROWS = frozenset({Kind.TABLE, Kind.RECORDS, Kind.DOCUMENTS})


def _as_table(value: Any) -> pa.Table:
    return value if isinstance(value, pa.Table) else table_from_rows(rows_of(value))


class CountConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"by": ["label"], "where": "amount > 0"}]}
):
    by: list[str] = Field(
        default_factory=list, description="Fields to count per distinct value; none: one total."
    )
    where: Annotated[str, AfterValidator(check_row_expression)] | None = Field(
        None, description="Row expression; only rows where it is true are counted."
    )
    output_field: str = Field("count", description="Name of the count field.")


class Count(Primitive):
    name = "aggregate.count"
    summary = "Count rows (optionally per distinct value of fields, optionally filtered)."
    description = (
        "Produces a table: one row {count} without `by`, otherwise one row per distinct "
        "combination of the `by` fields with its count, sorted by those fields."
    )
    accepts = ROWS
    produces = Kind.TABLE
    Config = CountConfig

    def fields_read(self, config: Any) -> tuple[tuple[ConfigPath, str], ...]:
        by = [(("by", i), f) for i, f in enumerate(config.by)]
        return (*by, *expression_fields(("where",), config.where))

    def output_columns(
        self, config: Any, columns: Columns, inputs: Mapping[str, frozenset[str]]
    ) -> Columns:
        return frozenset([*config.by, config.output_field])

    def run(self, value: Any, config: CountConfig, ctx: PrimitiveContext) -> pa.Table:
        table = _as_table(value)
        if config.where is not None:
            keep = evaluate_per_row(config.where, table, "aggregate.count `where`")
            table = table.filter(pa.array([bool(k) for k in keep], type=pa.bool_()))
        if not config.by:
            return pa.table({config.output_field: pa.array([table.num_rows], type=pa.int64())})
        require_fields(config.by, table, "aggregate.count `by`")
        counted = table.group_by(config.by, use_threads=False).aggregate([([], "count_all")])
        columns = {f: counted[f] for f in config.by}
        columns[config.output_field] = counted["count_all"]
        return pa.table(columns).sort_by([(f, "ascending") for f in config.by])


Function = Literal["count", "sum", "min", "max", "avg", "collect"]
_ARROW_FUNCTIONS = {
    "count": "count",
    "sum": "sum",
    "min": "min",
    "max": "max",
    "avg": "mean",
    "collect": "list",
}


class Metric(PrimitiveConfig):
    name: str = Field(description="Output field name.")
    fn: Function = Field(
        description="Aggregate function: count (non-null), sum, min, max, avg, "
        "collect (a list of the values)."
    )
    field: str = Field(description="Field to aggregate.")


class GroupConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "by": ["region"],
                "metrics": [
                    {"name": "total", "fn": "sum", "field": "amount"},
                    {"name": "n", "fn": "count", "field": "id"},
                ],
            }
        ]
    },
):
    by: list[str] = Field(min_length=1, description="Fields to group by.")
    metrics: list[Metric] = Field(min_length=1, description="Aggregates to compute per group.")

    @model_validator(mode="after")
    def _unique(self) -> GroupConfig:
        names = [*self.by, *(m.name for m in self.metrics)]
        if len(set(names)) != len(names):
            raise ValueError(f"group fields and metric names must all differ, got {names}")
        return self


class Group(Primitive):
    name = "aggregate.group"
    summary = "Group rows by fields and compute count/sum/min/max/avg/collect per group."
    description = (
        "Produces a table with one row per group (sorted by the group fields): the group fields "
        "then one field per metric."
    )
    accepts = ROWS
    produces = Kind.TABLE
    Config = GroupConfig

    def fields_read(self, config: Any) -> tuple[tuple[ConfigPath, str], ...]:
        by = [(("by", i), f) for i, f in enumerate(config.by)]
        metrics = [(("metrics", i, "field"), m.field) for i, m in enumerate(config.metrics)]
        return (*by, *metrics)

    def output_columns(
        self, config: Any, columns: Columns, inputs: Mapping[str, frozenset[str]]
    ) -> Columns:
        return frozenset([*config.by, *(m.name for m in config.metrics)])

    def run(self, value: Any, config: GroupConfig, ctx: PrimitiveContext) -> pa.Table:
        table = _as_table(value)
        require_fields([*config.by, *(m.field for m in config.metrics)], table, "aggregate.group")
        aggregations = list(
            dict.fromkeys((m.field, _ARROW_FUNCTIONS[m.fn]) for m in config.metrics)
        )
        try:
            grouped = table.group_by(config.by, use_threads=False).aggregate(aggregations)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise PrimitiveError(
                f"aggregate.group cannot aggregate these fields ({error}); sum and avg need "
                "numeric fields"
            ) from None
        # Arrow names each result `<field>_<function>`.
        columns = {f: grouped[f] for f in config.by}
        for metric in config.metrics:
            columns[metric.name] = grouped[f"{metric.field}_{_ARROW_FUNCTIONS[metric.fn]}"]
        return pa.table(columns).sort_by([(f, "ascending") for f in config.by])
