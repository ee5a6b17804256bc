"""`assert.condition`: stop a flow when an aggregate condition over its rows is false."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind
from grammar_ops.expressions import ExpressionError, check_aggregate_expression, parse_expression
from grammar_ops.findings import PrimitiveError
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.rows import require_fields, rows_of

AggregateExpression = Annotated[str, AfterValidator(check_aggregate_expression)]

ROW_KINDS = frozenset({Kind.TABLE, Kind.RECORDS, Kind.DOCUMENTS, Kind.JSON})


def evaluate_aggregate(text: str, value: Any, what: str) -> Any:
    """The value of aggregate expression `text` over the rows of `value`.

    Raises:
        PrimitiveError: unknown fields or a failing operation.
    """
    expression = parse_expression(text, aggregate=True)
    rows = rows_of(value)
    require_fields(sorted(expression.fields), value, f"{what} `{text}`")
    try:
        return expression.evaluate_rows(rows)
    except ExpressionError as error:
        raise PrimitiveError(f"{what}: {error}") from None


class ConditionConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"condition": "count() > 0 and count(not _valid) == 0"}]},
):
    condition: AggregateExpression = Field(
        description="Aggregate expression that must be true, e.g. `count(amount < 0) == 0`."
    )
    message: str | None = Field(None, description="What to say when the condition is false.")


class Condition(Primitive):
    name = "assert.condition"
    summary = "Fail the step when an aggregate condition is false; pass the input through."
    description = (
        "Evaluates an aggregate expression (count/sum/min/max/avg/any/all over rows) and raises "
        "a clear error when it is false; otherwise returns its input unchanged."
    )
    accepts = ROW_KINDS
    produces = None
    Config = ConditionConfig

    def run(self, value: Any, config: ConditionConfig, ctx: PrimitiveContext) -> Any:
        if not evaluate_aggregate(config.condition, value, "assert.condition"):
            because = f": {config.message}" if config.message else ""
            raise PrimitiveError(
                f"assert.condition failed in step '{ctx.step}': `{config.condition}` is false "
                f"over {len(rows_of(value))} rows{because}"
            )
        return value
