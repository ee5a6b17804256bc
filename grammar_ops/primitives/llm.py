"""`llm.*`: model calls per row (classify, extract) or over a whole input (generate, summarise).

Prompts put the instructions first and the row's text last, so every per-row prompt of a step
shares a byte-identical prefix and SGLang's prefix cache serves it once. Per-row calls go through
`complete_many` (the client bounds the concurrency); every reply and failure is recorded on
`ctx.usage`. When any row fails the primitive fails, saying how many and why: the batch layer
above isolates rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import pyarrow as pa
from pydantic import AfterValidator, Field, field_validator

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind
from grammar_ops.failures import TransientError
from grammar_ops.findings import PrimitiveError
from grammar_ops.model import ModelCall, ModelError, ModelReply
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.primitives.transform import TABULAR
from grammar_ops.rows import preview_text, require_fields, rows_of
from grammar_ops.schemas import check_json_schema

SHOWN_FAILURES = 3
_MODEL = "Model role to call (a key of the template's `models:`)."
_FIELD = "Field holding the text to send to the model."
_INSTRUCTIONS = "Extra instructions placed before the text (kept identical for every row)."


def call_models(
    calls: Sequence[ModelCall], role: str, ctx: PrimitiveContext, what: str
) -> list[ModelReply]:
    """Send `calls` to the model bound to `role`, record usage, and fail if any call failed.

    Raises:
        TransientError: when every failed call failed in a way retrying may fix (server
            unreachable, 429/5xx, timed out after the client's own attempts).
        PrimitiveError: otherwise, naming how many calls failed and the first few reasons.
    """
    if not calls:
        return []
    client = ctx.model(role)
    ctx.check_deadline()
    results = client.complete_many(list(calls))
    failures: list[tuple[int, ModelError]] = []
    replies: list[ModelReply] = []
    for index, result in enumerate(results):
        if isinstance(result, ModelError):
            ctx.usage.record_failure(result)
            failures.append((index, result))
        else:
            ctx.usage.record(result)
            replies.append(result)
    if failures:
        shown = "; ".join(f"row {i}: {error}" for i, error in failures[:SHOWN_FAILURES])
        transient = all(error.retryable for _, error in failures)
        raise (TransientError if transient else PrimitiveError)(
            f"{what}: {len(failures)} of {len(calls)} model calls failed (first reasons: {shown})"
        )
    return replies


def _text(row: Mapping[str, Any], field: str) -> str:
    value = row.get(field)
    return "" if value is None else str(value)


def _with_field(value: Any, name: str, values: list[Any]) -> Any:
    """A table or records with field `name` set to `values`, row by row."""
    if isinstance(value, pa.Table):
        column = pa.array(values)
        if name in value.column_names:
            return value.set_column(value.column_names.index(name), name, column)
        return value.append_column(name, column)
    return [{**row, name: v} for row, v in zip(value, values, strict=True)]


class ClassifyConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {"field": "text", "labels": ["low", "medium", "high"]},
            {"field": "text", "labels": {"high": "risky clauses", "low": "routine"}},
        ]
    },
):
    field: str = Field(description=_FIELD)
    labels: list[str] | dict[str, str] = Field(
        description="The labels to choose from: a list, or a mapping of label to description."
    )
    output_field: str = Field("label", description="Field to write the chosen label to.")
    instructions: str | None = Field(None, description=_INSTRUCTIONS)
    model: str = Field("worker", description=_MODEL)
    max_tokens: int = Field(16, gt=0, le=256, description="Token bound for the answer.")

    @field_validator("labels")
    @classmethod
    def _enough_labels(cls, labels: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        names = list(labels)
        if len(names) < 2 or len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise ValueError("labels must be at least two distinct, non-empty labels")
        return labels


class Classify(Primitive):
    name = "llm.classify"
    summary = "Label each row's text with one of the given labels, by model."
    description = (
        "Asks the model, once per row, to pick exactly one label (decoding is constrained to the "
        "labels) for the text in `field`, and writes it to `output_field`."
    )
    accepts = TABULAR
    produces = None
    Config = ClassifyConfig

    def model_role(self, config: Any) -> str | None:
        return str(config.model)

    def run(self, value: Any, config: ClassifyConfig, ctx: PrimitiveContext) -> Any:
        require_fields([config.field], value, "llm.classify `field`")
        labels = list(config.labels)
        described = config.labels if isinstance(config.labels, dict) else {}
        lines = [
            f"- {label}: {described[label]}" if described.get(label) else f"- {label}"
            for label in labels
        ]
        prefix = (
            "Classify the text below into exactly one of these labels.\n"
            + "\n".join(lines)
            + (f"\n{config.instructions}" if config.instructions else "")
            + "\nAnswer with the label only.\n\nText:\n"
        )
        texts = [_text(row, config.field) for row in rows_of(value)]
        calls = [
            ModelCall(
                purpose="classify",
                prompt=prefix + text,
                max_new_tokens=config.max_tokens,
                choices=tuple(labels),
                subject=text,
                choice_descriptions={label: described.get(label, label) for label in labels},
            )
            for text in texts
        ]
        replies = call_models(calls, config.model, ctx, "llm.classify")
        chosen = [str(reply.value) for reply in replies]
        unexpected = sorted({c for c in chosen if c not in labels})
        if unexpected:
            raise PrimitiveError(
                f"llm.classify: the model answered {unexpected}, not among the labels {labels}"
            )
        return _with_field(value, config.output_field, chosen)


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    check_json_schema(schema)
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ValueError("schema must be an object schema with `properties` (the fields to write)")
    return schema


class ExtractConfig(
    PrimitiveConfig,
    json_schema_extra={
        "examples": [
            {
                "field": "text",
                "schema": {
                    "type": "object",
                    "properties": {"party": {"type": "string"}, "amount": {"type": "number"}},
                    "required": ["party"],
                },
            }
        ]
    },
):
    field: str = Field(description=_FIELD)
    json_schema: Annotated[dict[str, Any], AfterValidator(_object_schema)] = Field(
        alias="schema",
        description="JSON Schema (an object with `properties`) the answer must satisfy; each "
        "property becomes a field of the row.",
    )
    prefix: str = Field("", description="Prefix for the written field names (e.g. `x_`).")
    instructions: str | None = Field(None, description=_INSTRUCTIONS)
    model: str = Field("worker", description=_MODEL)
    max_tokens: int = Field(256, gt=0, le=4096, description="Token bound for each answer.")


class Extract(Primitive):
    name = "llm.extract"
    summary = "Extract structured fields from each row's text to a JSON schema, by model."
    description = (
        "Asks the model, once per row, for a JSON object matching `schema` (decoding is "
        "constrained by it) and writes each schema property as a field of the row."
    )
    accepts = TABULAR
    produces = None
    Config = ExtractConfig

    def model_role(self, config: Any) -> str | None:
        return str(config.model)

    def run(self, value: Any, config: ExtractConfig, ctx: PrimitiveContext) -> Any:
        require_fields([config.field], value, "llm.extract `field`")
        properties = list(config.json_schema["properties"])
        prefix = (
            "Extract these fields from the text below as one JSON object: "
            + ", ".join(properties)
            + "."
            + (f"\n{config.instructions}" if config.instructions else "")
            + "\nAnswer with JSON only.\n\nText:\n"
        )
        texts = [_text(row, config.field) for row in rows_of(value)]
        calls = [
            ModelCall(
                purpose="extract",
                prompt=prefix + text,
                max_new_tokens=config.max_tokens,
                json_schema=config.json_schema,
                subject=text,
            )
            for text in texts
        ]
        replies = call_models(calls, config.model, ctx, "llm.extract")
        for index, reply in enumerate(replies):
            if not isinstance(reply.value, dict):
                raise PrimitiveError(
                    f"llm.extract: row {index}: the model answered {type(reply.value).__name__}, "
                    "not a JSON object"
                )
        for name in properties:
            value = _with_field(
                value, config.prefix + name, [reply.value.get(name) for reply in replies]
            )
        return value


class GenerateConfig(
    PrimitiveConfig,
    json_schema_extra={"examples": [{"prompt": "Summarise the triage results", "max_tokens": 300}]},
):
    prompt: str = Field(min_length=1, description="What to write.")
    max_tokens: int = Field(gt=0, le=8192, description="Token bound for the answer (required).")
    include_input: bool = Field(True, description="Append the step's input (as JSON) as context.")
    max_input_chars: int = Field(
        8000, gt=0, description="Cut the input context after this many characters."
    )
    model: str = Field("worker", description=_MODEL)


class Generate(Primitive):
    name = "llm.generate"
    model_calls = "per_run"
    summary = "Write text from a prompt (and the input as context), bounded by max_tokens."
    description = (
        "One model call with the prompt first and, when include_input, the input rendered as "
        "JSON after it. Produces JSON {text, finish_reason}."
    )
    accepts = frozenset(Kind)
    produces = Kind.JSON
    Config = GenerateConfig

    def model_role(self, config: Any) -> str | None:
        return str(config.model)

    def run(self, value: Any, config: GenerateConfig, ctx: PrimitiveContext) -> dict[str, Any]:
        context = ""
        if config.include_input and value is not None:
            context = preview_text(value, config.max_input_chars)
        prompt = config.prompt + (f"\n\nInput:\n{context}" if context else "")
        call = ModelCall(
            purpose="generate",
            prompt=prompt,
            max_new_tokens=config.max_tokens,
            subject=context or config.prompt,
        )
        (reply,) = call_models([call], config.model, ctx, "llm.generate")
        return {"text": reply.text, "finish_reason": reply.finish_reason}


class SummariseConfig(
    PrimitiveConfig, json_schema_extra={"examples": [{"max_tokens": 300, "field": "text"}]}
):
    field: str = Field("text", description="For records and tables: the field with the text.")
    instructions: str | None = Field(None, description=_INSTRUCTIONS)
    max_tokens: int = Field(300, gt=0, le=4096, description="Token bound for each summary.")
    max_chunk_chars: int = Field(
        12_000,
        gt=100,
        description="Input longer than this is summarised chunk by chunk, then the summaries "
        "are summarised.",
    )
    model: str = Field("worker", description=_MODEL)


class Summarise(Primitive):
    name = "llm.summarise"
    model_calls = "per_run"
    summary = "Summarise documents or the text field of records into one summary."
    description = (
        "Joins the texts (document ids as headings) and asks the model for a summary; input "
        "longer than max_chunk_chars is summarised per chunk, then the chunk summaries are "
        "summarised. Produces JSON {summary, items, chunks}."
    )
    accepts = frozenset({Kind.DOCUMENTS, Kind.RECORDS, Kind.TABLE})
    produces = Kind.JSON
    Config = SummariseConfig

    def model_role(self, config: Any) -> str | None:
        return str(config.model)

    def run(self, value: Any, config: SummariseConfig, ctx: PrimitiveContext) -> dict[str, Any]:
        rows = rows_of(value)
        if not rows:
            return {"summary": "", "items": 0, "chunks": 0}
        require_fields([config.field], rows, "llm.summarise `field`")
        pieces = [
            f"## {row['id']}\n{_text(row, config.field)}"
            if "id" in row
            else _text(row, config.field)
            for row in rows
        ]
        chunks = _chunks(pieces, config.max_chunk_chars)
        prefix = (
            "Summarise the following texts concisely and faithfully."
            + (f"\n{config.instructions}" if config.instructions else "")
            + "\n\nTexts:\n"
        )
        calls = [self._call(prefix, chunk, config) for chunk in chunks]
        summaries = [r.text for r in call_models(calls, config.model, ctx, "llm.summarise")]
        if len(summaries) > 1:
            final = self._call(prefix, "\n\n".join(summaries), config)
            summaries = [call_models([final], config.model, ctx, "llm.summarise")[0].text]
        return {"summary": summaries[0], "items": len(rows), "chunks": len(chunks)}

    def _call(self, prefix: str, text: str, config: SummariseConfig) -> ModelCall:
        return ModelCall(
            purpose="summarise",
            prompt=prefix + text,
            max_new_tokens=config.max_tokens,
            subject=text,
        )


def _chunks(pieces: list[str], limit: int) -> list[str]:
    """Pieces joined into chunks of at most `limit` characters (a longer piece is cut)."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        for start in range(0, max(len(piece), 1), limit):
            part = piece[start : start + limit]
            if current and len(current) + 2 + len(part) > limit:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        chunks.append(current)
    return chunks
