"""`validate.*`: per-row checks of tables and records against a JSON schema or expression rules.

Each row gets a verdict; `mode` decides what happens with it: `annotate` adds `_valid` (bool) and
`_errors` (list of strings) fields, merging with an earlier validation's; `drop` keeps only valid
rows; `fail` fails the step when any row is invalid, naming the first few.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, Field, field_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.expressions import check_row_expression
from grammar_ops.findings import PrimitiveError
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.primitives.transform import TABULAR, evaluate_per_row
from grammar_ops.rows import rows_of
from grammar_ops.schemas import build_validator, check_json_schema

Mode = Literal["annotate", "drop", "fail"]
_MODE = "annotate: add `_valid` and `_errors` fields; drop: keep valid rows; fail: fail the step."
SHOWN_ERRORS = 5


def apply_verdicts(
    value: Any, errors: list[list[str]], mode: Mode, what: str
) -> pa.Table | list[dict[str, Any]]:
    """Annotate, drop or fail rows of a table or records by their per-row error lists."""
    valid = [not e for e in errors]
    if mode == "fail":
        bad = [(i, e) for i, e in enumerate(errors) if e]
        if bad:
            shown = "; ".join(f"row {i}: {', '.join(e)}" for i, e in bad[:SHOWN_ERRORS])
            raise PrimitiveError(f"{what}: {len(bad)} of {len(errors)} rows are invalid: {shown}")
        return value
    if mode == "drop":
        if isinstance(value, pa.Table):
            return value.filter(pa.array(valid, type=pa.bool_()))
        return [row for row, ok in zip(value, valid, strict=True) if ok]
    if isinstance(value, pa.Table):
        if "_valid" in value.column_names and "_errors" in value.column_names:
            valid = [a and bool(b) for a, b in zip(valid, value["_valid"].to_pylist(), strict=True)]
            errors = [
                (old or []) + new
                for old, new in zip(value["_errors"].to_pylist(), errors, strict=True)
            ]
            value = value.drop_columns(["_valid", "_errors"])
        value = value.append_column("_valid", pa.array(valid, type=pa.bool_()))
        return value.append_column("_errors", pa.array(errors, type=pa.list_(pa.string())))
    return [
        {
            **row,
            "_valid": ok and row.get("_valid", True) is not False,
            "_errors": [*(row.get("_errors") or []), *e],
        }
        for row, ok, e in zip(value, valid, errors, strict=True)
    ]


class JsonSchemaConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "schema": {
                    "type": "object",
                    "required": ["amount"],
                    "properties": {"amount": {"type": "number", "minimum": 0}},
                },
                "mode": "annotate",
            }
        ]
    },
):
    json_schema: Annotated[dict[str, Any], AfterValidator(check_json_schema)] = Field(
        alias="schema", description="The JSON Schema each row (an object) must satisfy."
    )
    fields: list[str] | None = Field(
        None,
        description="Validate only these fields (null values left out, so `required` catches "
        "them); the whole row when omitted.",
    )
    mode: Mode = Field("annotate", description=_MODE)


class JsonSchema(Primitive):
    name = "validate.json_schema"
    summary = "Validate each row against a JSON Schema; annotate, drop or fail invalid rows."
    description = (
        "Checks every row (or the chosen fields of it) with a JSON Schema validator and reports "
        "per-row errors as `path: message`."
    )
    accepts = TABULAR
    produces = None
    Config = JsonSchemaConfig

    def run(self, value: Any, config: JsonSchemaConfig, ctx: PrimitiveContext) -> Any:
        validator = build_validator(config.json_schema)
        errors: list[list[str]] = []
        for row in rows_of(value):
            subject = row
            if config.fields is not None:
                subject = {f: row[f] for f in config.fields if row.get(f) is not None}
            found = sorted(
                validator.iter_errors(subject), key=lambda e: [str(p) for p in e.absolute_path]
            )
            errors.append(
                [
                    f"{'/'.join(str(p) for p in e.absolute_path) or '(row)'}: {e.message}"
                    for e in found
                ]
            )
        return apply_verdicts(value, errors, config.mode, "validate.json_schema")


class Rule(PrimitiveConfig):
    name: str = Field(description="Short rule name, reported in `_errors` when it fails.")
    check: Annotated[str, AfterValidator(check_row_expression)] = Field(
        description="Row expression that must be true for a valid row (e.g. `amount >= 0`)."
    )


class RulesConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [{"rules": [{"name": "positive", "check": "amount > 0"}], "mode": "drop"}]
    },
):
    rules: list[Rule] = Field(min_length=1, description="Rules every row must satisfy.")
    mode: Mode = Field("annotate", description=_MODE)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return rules


class Rules(Primitive):
    name = "validate.rules"
    summary = "Check each row against named row-expression rules; annotate, drop or fail."
    description = (
        "Evaluates every rule's row expression per row; a row is valid when all are true. "
        "Failed rule names go into `_errors`."
    )
    accepts = TABULAR
    produces = None
    Config = RulesConfig

    def run(self, value: Any, config: RulesConfig, ctx: PrimitiveContext) -> Any:
        results = [
            (rule.name, evaluate_per_row(rule.check, value, f"validate.rules rule `{rule.name}`"))
            for rule in config.rules
        ]
        count = value.num_rows if isinstance(value, pa.Table) else len(value)
        errors = [[f"rule {n} failed" for n, r in results if not r[i]] for i in range(count)]
        return apply_verdicts(value, errors, config.mode, "validate.rules")
