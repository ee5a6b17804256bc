"""The action grammar: typed primitives, compositions, common patterns and the capability schema.

Pure Python with no Dagster import: `marigold_dagster` adapts it into ops.

    >>> from grammar_ops import Kind, standard_catalog
    >>> composition = standard_catalog().resolve(
    ...     "transform.filter", {"where": "amount > 1000"}, input_kind=Kind.RECORDS)
    >>> composition.run([{"amount": 5}, {"amount": 5000}], PrimitiveContext()).value
    [{'amount': 5000}]
"""

from grammar_ops.application import application_capability
from grammar_ops.capability_schema import CapabilityTier, config_json_schema, render_capability_tier
from grammar_ops.catalog import Catalog, Pattern
from grammar_ops.composition import Composition, CompositionResult, PrimitiveMetric
from grammar_ops.context import PrimitiveContext, StepTimeout
from grammar_ops.contracts import Decision, Document, Kind
from grammar_ops.expressions import ExpressionError, parse_expression
from grammar_ops.failures import ConfigurationError, TransientError, is_transient
from grammar_ops.findings import (
    CompositionError,
    Finding,
    GrammarError,
    HostNotAllowed,
    PrimitiveError,
)
from grammar_ops.model import ModelCall, ModelClient, ModelError, ModelReply, UsageMeter
from grammar_ops.primitive import Primitive, PrimitiveConfig
from grammar_ops.standard_catalog import standard_catalog
from grammar_ops.tokens import count_tokens

__all__ = [
    "CapabilityTier",
    "Catalog",
    "Composition",
    "CompositionError",
    "ConfigurationError",
    "CompositionResult",
    "Decision",
    "Document",
    "ExpressionError",
    "Finding",
    "GrammarError",
    "HostNotAllowed",
    "Kind",
    "ModelCall",
    "ModelClient",
    "ModelError",
    "ModelReply",
    "Pattern",
    "Primitive",
    "PrimitiveConfig",
    "PrimitiveContext",
    "PrimitiveError",
    "PrimitiveMetric",
    "StepTimeout",
    "TransientError",
    "UsageMeter",
    "application_capability",
    "config_json_schema",
    "count_tokens",
    "is_transient",
    "parse_expression",
    "render_capability_tier",
    "standard_catalog",
]
