"""JSON Schemas from templates, plans and model calls: checked self-contained, validated offline.

Every JSON Schema the platform builds a validator for comes through here. A schema may refer only
to itself: `$ref`, `$dynamicRef` and `$recursiveRef` must be local (`#/$defs/...`, `#anchor`) and
resolve inside the schema, `$id` (`id` in drafts 3 and 4) may only be a fragment, and `$schema`
must name a dialect jsonschema knows. Validators are built with a `referencing.Registry` whose
retrieve function refuses, so nothing is ever fetched (jsonschema's default would fetch a remote
`$ref` with urllib, ignoring the template's `allowed_hosts`).

    >>> "is not local" in check_local_schema({"$ref": "https://example.com/s.json"})[0]
    True
    >>> build_validator({"type": "integer"}).is_valid(3)
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema
import jsonschema.protocols
import referencing
import referencing.exceptions
from jsonschema.validators import validator_for
from referencing.jsonschema import DRAFT202012

from grammar_ops.findings import GrammarError

_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose values are data, not subschemas: a `$ref` inside them is not a reference.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
ALLOWED = (
    "only local references (`#/$defs/name`, `#/properties/x`, `#anchor`) that resolve inside the "
    "schema; put shared parts under `$defs` instead of referring to other documents"
)


class SchemaNotAllowed(GrammarError, ValueError):
    """A JSON Schema refers outside itself, or is not a valid JSON Schema."""


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    raise referencing.exceptions.NoSuchResource(
        ref=f"{uri} (schemas are never fetched: {ALLOWED})"  # type: ignore[call-arg]
    )


_OFFLINE = referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


def _pointer(path: tuple[str | int, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _walk(node: Any, path: tuple[str | int, ...]) -> Any:
    """Every (dict, path) at a schema position of `node`, skipping data keywords."""
    if isinstance(node, Mapping):
        yield node, path
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*path, index))


def check_local_schema(schema: Any) -> list[str]:
    """Every reason `schema` may not be used: non-local references, absolute ids, bad dialect.

    An empty list means the schema is a valid JSON Schema that refers only to itself.
    """
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, Mapping):
        return [f"a JSON Schema is an object (or true/false), not a {type(schema).__name__}"]
    try:
        # The JSON text is the cache key, and what is checked: a schema is JSON.
        return list(_check_cached(json.dumps(schema, default=str)))
    except RecursionError:
        return ["the schema nests too deeply to check"]
    except (TypeError, ValueError) as error:
        return [f"the schema is not JSON ({error})"]


@lru_cache(maxsize=256)
def _check_cached(text: str) -> tuple[str, ...]:
    schema = json.loads(text)
    problems: list[str] = []
    dialect = schema.get("$schema")
    if dialect is not None and (
        not isinstance(dialect, str) or validator_for(schema, default=None) is None  # type: ignore[arg-type]
    ):
        problems.append(
            f"at /$schema: unknown dialect {str(dialect)[:200]!r}; omit `$schema` or use a "
            "JSON Schema draft URI such as https://json-schema.org/draft/2020-12/schema"
        )
        return tuple(problems)
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(p) for p in error.path) or "(root)"
        return (f"not a valid JSON Schema at {where}: {error.message}",)
    local_refs: list[tuple[str, str]] = []
    for node, path in _walk(schema, ()):
        for keyword in _REFERENCES:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue  # a property named `$ref`, not the keyword
            where = _pointer((*path, keyword))
            if not ref.startswith("#"):
                problems.append(
                    f"at {where}: `{keyword}` {ref[:200]!r} is not local; use {ALLOWED}"
                )
            else:
                local_refs.append((where, ref))
        ident = cls.ID_OF(node)
        if isinstance(ident, str) and ident and not ident.startswith("#"):
            keyword = "$id" if "$id" in node else "id"
            problems.append(
                f"at {_pointer((*path, keyword))}: `{keyword}` {ident[:200]!r} sets a base URI; "
                f"remove it (only a fragment like '#name' is allowed) and use {ALLOWED}"
            )
    if problems:
        return tuple(problems)
    resource = referencing.Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = _OFFLINE.resolver_with_root(resource)
    for where, ref in local_refs:
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            problems.append(f"at {where}: {ref[:200]!r} does not resolve inside the schema")
    return tuple(problems)


def check_json_schema(schema: Any) -> Any:
    """A pydantic validator: `schema` if it is a self-contained JSON Schema (ValueError otherwise).

    Raises:
        SchemaNotAllowed: naming every offending `$ref`/`$id`/`$schema` and what is allowed.
    """
    problems = check_local_schema(schema)
    if problems:
        raise SchemaNotAllowed("; ".join(problems))
    return schema


def build_validator(schema: Any) -> jsonschema.protocols.Validator:
    """A jsonschema validator for a self-contained `schema` that never retrieves anything.

    Raises:
        SchemaNotAllowed: the schema fails `check_local_schema`.
    """
    check_json_schema(schema)
    cls = validator_for(schema)
    return cls(schema, registry=_OFFLINE)  # type: ignore[no-any-return]
