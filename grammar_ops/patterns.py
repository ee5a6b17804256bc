"""Common patterns: named compositions of primitives with their own small configs.

A template uses one by name (`uses: classify_records`, `with: {field: text, labels: [...]}`); the
catalog expands it into primitives and validates the result like any composition.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from grammar_ops.catalog import Pattern
from grammar_ops.expressions import literal
from grammar_ops.primitive import PrimitiveConfig
from grammar_ops.schemas import check_json_schema

_MODEL = "Model role to call (a key of the template's `models:`)."


def _step(use: str, **config: Any) -> dict[str, Any]:
    return {"use": use, "with": {k: v for k, v in config.items() if v is not None}}


class ClassifyRecordsConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"field": "text", "labels": ["low", "medium", "high"]}]},
):
    field: str = Field(description="Field holding the text to classify.")
    labels: list[str] | dict[str, str] = Field(
        description="Labels: a list, or a mapping of label to description."
    )
    output_field: str = Field("label", description="Field to write the label to.")
    instructions: str | None = Field(None, description="Extra instructions for the model.")
    model: str = Field("worker", description=_MODEL)


def _classify_records(config: ClassifyRecordsConfig) -> list[dict[str, Any]]:
    return [_step("llm.classify", **config.model_dump(by_alias=True))]


class ExtractFieldsConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "field": "text",
                "schema": {
                    "type": "object",
                    "properties": {"party": {"type": "string"}},
                    "required": ["party"],
                },
            }
        ]
    },
):
    field: str = Field(description="Field holding the text to extract from.")
    json_schema: Annotated[dict[str, Any], AfterValidator(check_json_schema)] = Field(
        alias="schema", description="Object JSON Schema of the fields to extract."
    )
    on_invalid: Literal["annotate", "drop", "fail"] = Field(
        "annotate", description="What to do with rows whose extracted fields break the schema."
    )
    model: str = Field("worker", description=_MODEL)


def _extract_fields(config: ExtractFieldsConfig) -> list[dict[str, Any]]:
    fields = list(config.json_schema.get("properties", {}))
    return [
        _step("llm.extract", field=config.field, schema=config.json_schema, model=config.model),
        _step(
            "validate.json_schema", schema=config.json_schema, fields=fields, mode=config.on_invalid
        ),
    ]


class ValidateAndRouteConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "schema": {"type": "object", "required": ["amount"]},
                "valid_branch": "publish",
                "invalid_branch": "repair",
            }
        ]
    },
):
    json_schema: Annotated[dict[str, Any], AfterValidator(check_json_schema)] = Field(
        alias="schema", description="JSON Schema for each row."
    )
    valid_branch: str = Field(description="Branch chosen when few enough rows are invalid.")
    invalid_branch: str = Field(description="Branch chosen when too many rows are invalid.")
    max_invalid: int = Field(0, ge=0, description="Invalid rows tolerated before routing away.")


def _validate_and_route(config: ValidateAndRouteConfig) -> list[dict[str, Any]]:
    return [
        _step("validate.json_schema", schema=config.json_schema, mode="annotate"),
        _step(
            "decide.rules",
            rules=[
                {
                    "name": "too_many_invalid",
                    "if": f"count(not _valid) > {config.max_invalid}",
                    "then": [config.invalid_branch],
                }
            ],
            **{"else": [config.valid_branch]},
        ),
    ]


class EnrichFromReferenceConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [{"reference": "load_parties", "on": ["party_id"], "columns": ["country"]}]
    },
):
    reference: str | None = Field(None, description="Upstream step whose result is the reference.")
    input: str | None = Field(None, description="Template input (Parquet/CSV) used as reference.")
    on: list[str] = Field(min_length=1, description="Key fields present on both sides.")
    columns: list[str] | None = Field(None, description="Reference fields to add; all if omitted.")
    how: Literal["left", "inner"] = Field("left", description="left keeps unmatched rows.")
    defaults: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values for added fields where no reference row matched."
    )

    @model_validator(mode="after")
    def _one_reference(self) -> EnrichFromReferenceConfig:
        if (self.reference is None) == (self.input is None):
            raise ValueError("set exactly one of `reference` (an upstream step) or `input`")
        return self


def _enrich_from_reference(config: EnrichFromReferenceConfig) -> list[dict[str, Any]]:
    steps = [
        _step(
            "transform.join",
            reference=config.reference,
            input=config.input,
            on=config.on,
            columns=config.columns,
            how=config.how,
        )
    ]
    if config.defaults:
        derived = {
            name: f"coalesce(field({literal(name)}), {literal(default)})"
            for name, default in config.defaults.items()
        }
        steps.append(_step("transform.derive", fields=derived))
    return steps


class SummariseDocumentsConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"input": "reports", "max_tokens": 400}]}
):
    input: str | None = Field(None, description="Template input naming a folder to load first.")
    path: str | None = Field(None, description="A folder to load first.")
    patterns: list[str] = Field(
        default_factory=lambda: ["*.txt", "*.md"], description="Files to load from the folder."
    )
    instructions: str | None = Field(None, description="Extra instructions for the model.")
    max_tokens: int = Field(300, gt=0, le=4096, description="Token bound for the summary.")
    model: str = Field("worker", description=_MODEL)

    @model_validator(mode="after")
    def _at_most_one_source(self) -> SummariseDocumentsConfig:
        if self.input is not None and self.path is not None:
            raise ValueError("set at most one of `input` or `path` (or neither to use the input)")
        return self


def _summarise_documents(config: SummariseDocumentsConfig) -> list[dict[str, Any]]:
    steps = []
    if config.input is not None or config.path is not None:
        steps.append(
            _step(
                "acquire.load_documents",
                input=config.input,
                path=config.path,
                patterns=config.patterns,
            )
        )
    steps.append(
        _step(
            "llm.summarise",
            instructions=config.instructions,
            max_tokens=config.max_tokens,
            model=config.model,
        )
    )
    return steps


def standard_patterns() -> list[Pattern]:
    """The built-in patterns."""
    return [
        Pattern(
            name="classify_records",
            summary="Label each record's text with one of the given labels, by model.",
            description="llm.classify with a shorter config: field, labels, output_field.",
            Config=ClassifyRecordsConfig,
            expand=_classify_records,
        ),
        Pattern(
            name="extract_fields",
            summary="Extract schema fields from each record's text and validate them.",
            description="llm.extract to the schema, then validate.json_schema on the extracted "
            "fields (annotate, drop or fail invalid rows).",
            Config=ExtractFieldsConfig,
            expand=_extract_fields,
        ),
        Pattern(
            name="validate_and_route",
            summary="Validate rows against a JSON Schema and choose a branch by the result.",
            description="validate.json_schema (annotate), then decide.rules: invalid_branch when "
            "more than max_invalid rows are invalid, else valid_branch.",
            Config=ValidateAndRouteConfig,
            expand=_validate_and_route,
        ),
        Pattern(
            name="enrich_from_reference",
            summary="Add fields from a reference table joined on key fields.",
            description="transform.join with an upstream step or a template input, then "
            "defaults for unmatched rows via transform.derive.",
            Config=EnrichFromReferenceConfig,
            expand=_enrich_from_reference,
        ),
        Pattern(
            name="summarise_documents",
            summary="Load a folder of documents (optional) and summarise them, by model.",
            description="acquire.load_documents when a folder is named, then llm.summarise.",
            Config=SummariseDocumentsConfig,
            expand=_summarise_documents,
        ),
    ]
