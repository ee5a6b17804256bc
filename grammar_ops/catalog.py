"""The catalog: every capability a template or a planner may use, by name.

A capability is a primitive (`transform.filter`), a pattern (a named composition such as
`classify_records`) or an application capability a deployment registers. `resolve` turns a
template's `uses:` + `with:` (or `compose:`) into a validated `Composition`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from grammar_ops.composition import (
    Composition,
    _suggest,
    assemble_composition,
    config_findings,
)
from grammar_ops.contracts import Kind
from grammar_ops.findings import CompositionError, Finding, FindingPath
from grammar_ops.primitive import Primitive


@dataclass(frozen=True)
class Pattern:
    """A named composition with its own config; `expand` turns a config into composition entries."""

    name: str
    summary: str
    description: str
    Config: type[BaseModel]
    expand: Callable[[Any], list[dict[str, Any]]]


class Catalog:
    """Primitives and patterns by name; immutable once built (use `extended` to add)."""

    def __init__(self, primitives: Iterable[Primitive] = (), patterns: Iterable[Pattern] = ()):
        self._primitives: dict[str, Primitive] = {}
        self._patterns: dict[str, Pattern] = {}
        for primitive in primitives:
            self._add(primitive.name, self._primitives, primitive)
        for pattern in patterns:
            self._add(pattern.name, self._patterns, pattern)

    def _add(self, name: str, table: dict[str, Any], item: Any) -> None:
        if name in self._primitives or name in self._patterns:
            raise ValueError(f"capability `{name}` is registered twice")
        table[name] = item

    def extended(
        self, primitives: Iterable[Primitive] = (), patterns: Iterable[Pattern] = ()
    ) -> Catalog:
        """A new catalog with these capabilities added (e.g. a deployment's own)."""
        return Catalog(
            [*self._primitives.values(), *primitives], [*self._patterns.values(), *patterns]
        )

    @property
    def primitives(self) -> Mapping[str, Primitive]:
        return self._primitives

    @property
    def patterns(self) -> Mapping[str, Pattern]:
        return self._patterns

    def names(self) -> list[str]:
        return sorted([*self._primitives, *self._patterns])

    def __contains__(self, name: object) -> bool:
        return name in self._primitives or name in self._patterns

    def resolve(
        self,
        uses: str,
        config: Mapping[str, Any] | None = None,
        *,
        input_kind: Kind | None = None,
        location: FindingPath = ("uses",),
    ) -> Composition:
        """A composition for one capability by name with its config.

        Raises:
            CompositionError: unknown name (with near matches), invalid config, or a pattern
                whose expansion does not type-check.
        """
        config = dict(config or {})
        if uses in self._primitives:
            try:
                self._primitives[uses].Config.model_validate(config)
            except ValidationError as error:
                raise CompositionError(
                    config_findings(error, ("with",), self._primitives[uses].Config)
                ) from None
            return assemble_composition(
                [{"use": uses, "with": config}],
                self._primitives,
                source=uses,
                input_kind=input_kind,
                location=location,
            )
        pattern = self._patterns.get(uses)
        if pattern is None:
            raise CompositionError(
                [
                    Finding(
                        "UNKNOWN_CAPABILITY",
                        location,
                        f"capability `{uses}` not found.{_suggest(uses, self.names())} "
                        f"Known capabilities: {', '.join(self.names())}",
                    )
                ]
            )
        try:
            pattern_config = pattern.Config.model_validate(config)
        except ValidationError as error:
            raise CompositionError(config_findings(error, ("with",), pattern.Config)) from None
        return assemble_composition(
            pattern.expand(pattern_config),
            self._primitives,
            source=uses,
            input_kind=input_kind,
            location=(*location, f"({uses})"),
        )

    def compose(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        input_kind: Kind | None = None,
        location: FindingPath = ("compose",),
    ) -> Composition:
        """A composition from inline entries (`compose: [{use, with}, ...]`)."""
        return assemble_composition(
            entries, self._primitives, source="inline", input_kind=input_kind, location=location
        )
