"""Schema-valid JSON instances built from a JSON schema, with no model involved.

`generate_instance` makes a plain instance of any schema the platform sends (objects, arrays,
strings with common formats, enums, consts, numbers with bounds, booleans, nulls, `anyOf`,
`oneOf`, `allOf`, `required`, `minItems`/`maxItems`, `$ref` into `$defs`/`definitions`).
`conform_instance` keeps as much of a preferred value as the schema allows and fills in the rest.
The SGLang test double answers `json_schema` requests with them; the offline model shapes its
rule-based answers with them. Every result is checked with `jsonschema` before it is returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from grammar_ops.schemas import SchemaNotAllowed, build_validator

_MAX_DEPTH = 12
_FORMAT_EXAMPLES = {
    "email": "someone@example.com",
    "date": "2024-01-31",
    "date-time": "2024-01-31T12:00:00Z",
    "time": "12:00:00",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
}


class SchemaInstanceError(ValueError):
    """No valid instance could be built for a schema (for example, contradictory bounds)."""


class _Builder:
    """Walks one root schema; holds the validator so `$ref`s resolve against that root."""

    def __init__(self, root: Mapping[str, Any]):
        self.root = root
        try:
            self.validator = build_validator(root)
        except SchemaNotAllowed as error:
            raise SchemaInstanceError(str(error)) from None

    def is_valid(self, schema: Any, value: Any) -> bool:
        return bool(self.validator.evolve(schema=schema).is_valid(value))

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, Mapping) and "$ref" in schema and seen < _MAX_DEPTH:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaInstanceError(f"only local $ref ('#/...') is supported, got {ref!r}")
            target: Any = self.root
            for part in [p for p in ref[1:].split("/") if p]:
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    raise SchemaInstanceError(f"$ref {ref!r} does not resolve in the schema")
                target = target[part]
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra and isinstance(target, Mapping) else target
            seen += 1
        return schema

    def generate(self, schema: Any, depth: int = 0, index: int = 0) -> Any:
        schema = self.resolve(schema)
        if schema is True or schema is None or schema == {}:
            return None
        if schema is False:
            raise SchemaInstanceError("schema `false` admits no value")
        if depth > _MAX_DEPTH:
            raise SchemaInstanceError("schema nests too deeply to build an instance")
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            values = list(schema["enum"])
            if not values:
                raise SchemaInstanceError("empty enum admits no value")
            return values[index % len(values)]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._pick_branch(schema, key, depth, index)
        if "allOf" in schema:
            return self.generate(self._merge_all_of(schema), depth + 1, index)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
        if kind is None:
            kind = _infer_type(schema)
        if kind == "object":
            return self._object(schema, depth, index)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return _string(schema, index)
        if kind in ("number", "integer"):
            return _number(schema, kind == "integer", index)
        if kind == "boolean":
            return index % 2 == 1
        return None

    def _pick_branch(self, schema: Mapping[str, Any], key: str, depth: int, index: int) -> Any:
        rest = {k: v for k, v in schema.items() if k != key}
        for branch in schema[key]:
            merged = {**rest, **self.resolve(branch)} if rest else branch
            try:
                value = self.generate(merged, depth + 1, index)
            except SchemaInstanceError:
                continue
            if self.is_valid(schema, value):
                return value
        raise SchemaInstanceError(f"no branch of {key} admits a value this builder can make")

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in schema["allOf"]:
            branch = self.resolve(branch)
            for k, v in branch.items():
                if k == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **v}
                elif k == "required":
                    merged["required"] = sorted({*merged.get("required", []), *v})
                else:
                    merged.setdefault(k, v)
        return merged

    def _object(self, schema: Mapping[str, Any], depth: int, index: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = list(schema.get("required", []))
        names = list(properties) if depth < 4 else [n for n in properties if n in required]
        names += [n for n in required if n not in names]
        out: dict[str, Any] = {}
        for name in names:
            out[name] = self.generate(properties.get(name, {}), depth + 1, index)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", {})
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        count = max(low, len(prefix), 1)
        if high is not None:
            count = min(count, int(high))
        out = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            out.append(self.generate(sub, depth + 1, i))
        return out


def _infer_type(schema: Mapping[str, Any]) -> str | None:
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
        return "number"
    return None


def _string(schema: Mapping[str, Any], index: int) -> str:
    text = _FORMAT_EXAMPLES.get(
        str(schema.get("format", "")), "text" if index == 0 else f"text {index}"
    )
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None and len(text) > int(high):
        text = text[: int(high)]
    return text


def _number(schema: Mapping[str, Any], integer: bool, index: int) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    ex_low = schema.get("exclusiveMinimum")
    ex_high = schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")
    value: float = float(index)
    if low is not None:
        value = max(value, float(low))
    if ex_low is not None and value <= float(ex_low):
        value = float(ex_low) + (1 if integer or step else 0.5)
    if step:
        value = math.ceil(value / float(step)) * float(step)
    if integer:
        value = math.ceil(value)
    if high is not None and value > float(high):
        value = float(high) if not integer else math.floor(float(high))
    if ex_high is not None and value >= float(ex_high):
        value = float(ex_high) - (1 if integer else 0.5)
    return int(value) if integer else value


def generate_instance(schema: Mapping[str, Any]) -> Any:
    """Build a value that validates against `schema`.

    Example:
        >>> generate_instance({"type": "object", "properties": {"n": {"type": "integer",
        ...     "minimum": 3}}, "required": ["n"]})
        {'n': 3}

    Raises:
        SchemaInstanceError: the schema admits no value this builder can make.
    """
    builder = _Builder(schema)
    value = builder.generate(schema)
    if not builder.is_valid(schema, value):
        raise SchemaInstanceError("could not build a value that validates against the schema")
    return value


def conform_instance(schema: Mapping[str, Any], preferred: Any) -> Any:
    """Keep what `schema` allows of `preferred` and fill in what it lacks.

    Object properties that validate are kept, missing required ones are generated, unknown
    ones are dropped; arrays keep valid items and are padded or cut to `minItems`/`maxItems`;
    scalars that do not validate are replaced by a generated value.

    Example:
        >>> conform_instance({"type": "object", "properties": {"a": {"type": "string"},
        ...     "b": {"type": "integer"}}, "required": ["a", "b"]}, {"a": "kept", "b": "x"})
        {'a': 'kept', 'b': 0}
    """
    builder = _Builder(schema)
    value = _conform(builder, schema, preferred, 0)
    if builder.is_valid(schema, value):
        return value
    return generate_instance(schema)


def _conform(builder: _Builder, schema: Any, preferred: Any, depth: int) -> Any:
    if builder.is_valid(schema, preferred):
        return preferred
    resolved = builder.resolve(schema)
    if depth > _MAX_DEPTH or not isinstance(resolved, Mapping):
        return builder.generate(schema)
    for key in ("anyOf", "oneOf"):
        for branch in resolved.get(key, []):
            try:
                candidate = _conform(builder, branch, preferred, depth + 1)
            except SchemaInstanceError:
                continue
            if builder.is_valid(schema, candidate):
                return candidate
    if isinstance(preferred, Mapping) and ("properties" in resolved or "required" in resolved):
        properties: Mapping[str, Any] = resolved.get("properties", {})
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in preferred:
                out[name] = _conform(builder, sub, preferred[name], depth + 1)
        for name in resolved.get("required", []):
            if name not in out:
                out[name] = builder.generate(properties.get(name, {}), depth + 1)
        return out
    if isinstance(preferred, list) and ("items" in resolved or "minItems" in resolved):
        items = resolved.get("items", {})
        kept = [_conform(builder, items, v, depth + 1) for v in preferred]
        low = int(resolved.get("minItems", 0))
        while len(kept) < low:
            kept.append(builder.generate(items, depth + 1, len(kept)))
        high = resolved.get("maxItems")
        return kept[: int(high)] if high is not None else kept
    return builder.generate(schema)
