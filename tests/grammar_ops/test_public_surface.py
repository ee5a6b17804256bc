"""The package's public surface is short and deliberate."""

from __future__ import annotations

import grammar_ops

EXPECTED = [
    "CapabilityTier",
    "Catalog",
    "Composition",
    "CompositionError",
    "CompositionResult",
    "ConfigurationError",
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


def test_all_is_exactly_the_public_surface():
    assert sorted(grammar_ops.__all__) == EXPECTED


def test_every_exported_name_exists_and_is_defined_in_the_package():
    for name in grammar_ops.__all__:
        member = getattr(grammar_ops, name)
        assert member.__module__.startswith("grammar_ops."), name


def test_no_other_public_names_leak():
    public = {n for n in vars(grammar_ops) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(grammar_ops, n)).__name__ == "module"}
    assert public - modules == set(EXPECTED)
