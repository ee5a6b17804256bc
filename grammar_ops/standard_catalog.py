"""The standard catalog: every built-in primitive and common pattern."""

from __future__ import annotations

from functools import cache

from grammar_ops.catalog import Catalog
from grammar_ops.patterns import standard_patterns
from grammar_ops.primitive import Primitive
from grammar_ops.primitives import (
    acquire,
    aggregate,
    assertion,
    decide,
    emit,
    gate,
    llm,
    transform,
    validate,
)


def standard_primitives() -> list[Primitive]:
    """One instance of every built-in primitive."""
    return [
        acquire.ReadTable(),
        acquire.LoadDocuments(),
        acquire.HttpJson(),
        transform.Select(),
        transform.Rename(),
        transform.Filter(),
        transform.Derive(),
        transform.Join(),
        transform.ToRecords(),
        transform.ToTable(),
        validate.JsonSchema(),
        validate.Rules(),
        assertion.Condition(),
        decide.Rules(),
        decide.ModelDecision(),
        llm.Classify(),
        llm.Extract(),
        llm.Generate(),
        llm.Summarise(),
        aggregate.Count(),
        aggregate.Group(),
        emit.WriteTable(),
        emit.Webhook(),
        gate.Approval(),
    ]


@cache
def standard_catalog() -> Catalog:
    """The built-in primitives and patterns (cached: the catalog is immutable)."""
    return Catalog(standard_primitives(), standard_patterns())
