"""Compositions: ordered lists of primitives, validated when assembled and run as one unit.

A composition is well formed when every primitive is known, every config validates, each
primitive accepts what the previous one produces, and at most one primitive has a side effect,
at the end. `assemble_composition` collects every violation as a `Finding` and raises
`CompositionError` with all of them; nothing runs until a composition has assembled.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from grammar_ops.context import PrimitiveContext
from grammar_ops.contracts import Kind, kind_of, row_count
from grammar_ops.findings import CompositionError, Finding, FindingPath, PrimitiveError
from grammar_ops.primitive import HandlerType, Primitive


@dataclass(frozen=True)
class ComposedStep:
    """One primitive with its validated config."""

    primitive: Primitive
    config: BaseModel

    def spec(self) -> dict[str, Any]:
        return {"use": self.primitive.name, "with": self.config.model_dump(mode="json")}


@dataclass(frozen=True)
class PrimitiveMetric:
    """How one primitive of a composition run went."""

    primitive: str
    duration_s: float
    rows_in: int | None
    rows_out: int | None


@dataclass(frozen=True)
class CompositionResult:
    value: Any
    metrics: tuple[PrimitiveMetric, ...]


@dataclass(frozen=True)
class Composition:
    """A validated, runnable chain of primitives.

    `source` names where it came from: a primitive name, a pattern name, or `inline`.
    """

    source: str
    steps: tuple[ComposedStep, ...]

    @property
    def input_kinds(self) -> frozenset[Kind]:
        return self.steps[0].primitive.accepts

    def output_kind(self, input_kind: Kind) -> Kind:
        kind = input_kind
        for step in self.steps:
            kind = step.primitive.output_kind(kind)
        return kind

    @property
    def side_effect(self) -> bool:
        return any(step.primitive.side_effect for step in self.steps)

    @property
    def handler_type(self) -> HandlerType:
        if any(step.primitive.handler_type == "application" for step in self.steps):
            return "application"
        return "grammar"

    @property
    def model_roles(self) -> frozenset[str]:
        roles = (step.primitive.model_role(step.config) for step in self.steps)
        return frozenset(role for role in roles if role is not None)

    @property
    def template_inputs(self) -> frozenset[str]:
        return frozenset(n for s in self.steps for n in s.primitive.reads_inputs(s.config))

    @property
    def upstream_refs(self) -> frozenset[str]:
        return frozenset(n for s in self.steps for n in s.primitive.reads_upstream(s.config))

    def spec(self) -> list[dict[str, Any]]:
        """The composition as JSON-able data (for provenance metadata)."""
        return [step.spec() for step in self.steps]

    def run(self, value: Any, ctx: PrimitiveContext) -> CompositionResult:
        """Run each primitive on the previous one's output; time and count each."""
        metrics: list[PrimitiveMetric] = []
        for index, step in enumerate(self.steps):
            ctx.check_deadline()
            started = time.perf_counter()
            rows_in = row_count(value)
            result = step.primitive.run(value, step.config, ctx)
            expected = step.primitive.output_kind(kind_of(value))
            actual = kind_of(result)
            if not _satisfies(actual, expected):
                raise PrimitiveError(
                    f"primitive {index + 1} `{step.primitive.name}` of step '{ctx.step}' "
                    f"returned {actual.title} but declares {expected.title}"
                )
            metrics.append(
                PrimitiveMetric(
                    primitive=step.primitive.name,
                    duration_s=time.perf_counter() - started,
                    rows_in=rows_in,
                    rows_out=row_count(result),
                )
            )
            value = result
        return CompositionResult(value=value, metrics=tuple(metrics))


def _satisfies(actual: Kind, expected: Kind) -> bool:
    """Whether a value of kind `actual` may stand where `expected` is declared.

    `kind_of` cannot tell an empty document list from empty records, and a JSON list of objects
    looks like records, so records satisfy documents and JSON too.
    """
    return actual == expected or (
        actual is Kind.RECORDS and expected in {Kind.DOCUMENTS, Kind.JSON}
    )


def _suggest(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=cutoff)
    return f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""


def config_findings(
    error: ValidationError, location: FindingPath, model: type[BaseModel] | None = None
) -> list[Finding]:
    """One `INVALID_CONFIG` finding per pydantic error, located at the offending field.

    With `model` (the config class that raised), an unknown key names the valid keys at its
    level and the nearest one.
    """
    findings = []
    for item in error.errors():
        message = item["msg"]
        if item["type"] == "extra_forbidden" and model is not None and item["loc"]:
            key = str(item["loc"][-1])
            valid = config_keys_at(model, tuple(item["loc"][:-1]))
            if valid:
                message = f"unknown key `{key}`.{_suggest(key, valid, 0.5)} Valid keys here: " + (
                    ", ".join(valid)
                )
        findings.append(Finding("INVALID_CONFIG", (*location, *item["loc"]), message))
    return findings


def config_keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys (aliases where set) of the config model found at `loc` inside `model`."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        current = model_in(field.annotation) if field is not None else None
    if current is None:
        return []
    return [field.alias or name for name, field in current.model_fields.items()]


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (itself, or inside `X | None`, `list[X]`, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def assemble_composition(
    entries: Sequence[Mapping[str, Any]],
    primitives: Mapping[str, Primitive],
    *,
    source: str = "inline",
    input_kind: Kind | None = None,
    location: FindingPath = ("compose",),
) -> Composition:
    """Validate `entries` (`[{use: name, with: {...}}, ...]`) into a `Composition`.

    `input_kind` is the kind the composition will be given, when the caller knows it; without it
    the first primitive may receive any kind it accepts.

    Raises:
        CompositionError: with every finding, when anything is wrong.
    """
    findings: list[Finding] = []
    steps: list[ComposedStep] = []
    if not entries:
        raise CompositionError(
            [Finding("EMPTY_COMPOSITION", location, "needs at least one primitive")]
        )

    for index, entry in enumerate(entries):
        where = (*location, index)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("use"), str):
            findings.append(
                Finding(
                    "MALFORMED_ENTRY",
                    where,
                    "each entry is a mapping {use: <primitive>, with: {...}}",
                )
            )
            continue
        unknown_keys = set(entry) - {"use", "with"}
        if unknown_keys:
            findings.append(
                Finding(
                    "MALFORMED_ENTRY",
                    where,
                    f"unknown keys {sorted(unknown_keys)}; allowed: use, with",
                )
            )
        name = entry["use"]
        primitive = primitives.get(name)
        if primitive is None:
            findings.append(
                Finding(
                    "UNKNOWN_PRIMITIVE",
                    (*where, "use"),
                    f"primitive `{name}` not found.{_suggest(name, primitives)} "
                    f"Known primitives: {', '.join(sorted(primitives))}",
                )
            )
            continue
        raw_config = entry.get("with") or {}
        if not isinstance(raw_config, Mapping):
            findings.append(Finding("INVALID_CONFIG", (*where, "with"), "must be a mapping"))
            continue
        try:
            config = primitive.Config.model_validate(dict(raw_config))
        except ValidationError as error:
            findings.extend(config_findings(error, (*where, "with"), primitive.Config))
            continue
        steps.append(ComposedStep(primitive, config))

    if findings:
        raise CompositionError(findings)

    findings.extend(_contract_findings(steps, input_kind, location))
    findings.extend(_side_effect_findings(steps, location))
    if findings:
        raise CompositionError(findings)
    return Composition(source=source, steps=tuple(steps))


def _contract_findings(
    steps: Sequence[ComposedStep], input_kind: Kind | None, location: FindingPath
) -> list[Finding]:
    possible: set[Kind] = set(Kind) if input_kind is None else {input_kind}
    previous = "the step's input"
    findings = []
    for index, step in enumerate(steps):
        accepted = possible & step.primitive.accepts
        if not accepted:
            expects = " or ".join(sorted(k.title for k in step.primitive.accepts))
            got = " or ".join(sorted(k.title for k in possible))
            findings.append(
                Finding(
                    "KIND_MISMATCH",
                    (*location, index),
                    f"primitive {index + 1} `{step.primitive.name}` expects {expects}, "
                    f"got {got} from {previous}",
                )
            )
            return findings
        possible = {step.primitive.output_kind(kind) for kind in accepted}
        previous = f"`{step.primitive.name}`"
    return findings


def _side_effect_findings(steps: Sequence[ComposedStep], location: FindingPath) -> list[Finding]:
    effects = [i for i, step in enumerate(steps) if step.primitive.side_effect]
    findings = []
    if len(effects) > 1:
        names = ", ".join(f"`{steps[i].primitive.name}`" for i in effects)
        findings.append(
            Finding(
                "TOO_MANY_SIDE_EFFECTS",
                location,
                f"at most one side-effecting primitive per composition, found "
                f"{len(effects)}: {names}",
            )
        )
    elif effects and effects[0] != len(steps) - 1:
        i = effects[0]
        findings.append(
            Finding(
                "SIDE_EFFECT_NOT_LAST",
                (*location, i),
                f"side-effecting primitive `{steps[i].primitive.name}` must come last "
                f"(it is {i + 1} of {len(steps)})",
            )
        )
    return findings
