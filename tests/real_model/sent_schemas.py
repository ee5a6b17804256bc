"""Every JSON Schema the platform may send a model server for constrained decoding.

- each planning step's fragment schema, for every template in `templates/` and
  `tests/fixtures/templates/valid/`, plus the widest fragment schema the catalog allows
  (every capability, dynamic composition over every primitive);
- each model-calling primitive's answer schema, wherever a template configures one (steps and
  planning presets): `llm.extract`'s schema, `llm.classify`'s labels and `decide.model`'s
  branches (as the string enum an OpenAI-compatible server gets), and the same for the
  examples each capability's config documents.

Shared by `tests/real_model/test_grammar_schemas.py` (llama.cpp's converter, through the
running server) and `scripts/check_schemas_xgrammar.py` (xgrammar, optional).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grammar_ops import Catalog, Composition, CompositionError, standard_catalog
from grammar_ops.capability_schema import example_config
from grammar_ops.model import ModelCall
from marigold_dagster.planning.fragment import fragment_json_schema
from marigold_dagster.runtime.planned import PlanProgress, planning_scope
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import load_template
from marigold_dagster.template.model import StepKind
from resources.sglang import SGLangResource

ROOT = Path(__file__).parents[2]
TEMPLATE_DIRS = (ROOT / "templates", ROOT / "tests" / "fixtures" / "templates" / "valid")

_OPENAI = SGLangResource(base_url="http://127.0.0.1:9", server="openai")


def _test_catalog() -> Catalog:
    from tests.support.capabilities import TEST_CAPABILITIES

    return standard_catalog().extended(TEST_CAPABILITIES)


def answer_schemas(composition: Composition) -> Iterator[tuple[str, dict[str, Any]]]:
    """The response_format schemas the model calls of `composition` send, by primitive."""
    for step in composition.steps:
        name, config = step.primitive.name, step.config
        call: ModelCall | None = None
        if name == "llm.extract":
            call = ModelCall(
                purpose="extract", prompt="", max_new_tokens=1, json_schema=config.json_schema
            )  # type: ignore[attr-defined]
        elif name == "llm.classify":
            call = ModelCall(
                purpose="classify", prompt="", max_new_tokens=1, choices=tuple(config.labels)
            )  # type: ignore[attr-defined]
        elif name == "decide.model":
            call = ModelCall(
                purpose="decide", prompt="", max_new_tokens=1, choices=tuple(config.branches)
            )  # type: ignore[attr-defined]
        schema = _OPENAI.response_schema(call) if call is not None else None
        if schema is not None:
            yield name, schema


def _resolved(catalog: Catalog, uses: str, config: dict[str, Any]) -> Composition | None:
    try:
        return catalog.resolve(uses, config)
    except CompositionError:
        return None  # a preset that pins only part of the config: the planner completes it


def template_schemas(frame: Frame) -> Iterator[tuple[str, dict[str, Any]]]:
    """Fragment and answer schemas of one template's steps."""
    for step in frame:
        where = f"{frame.name}.{step.name}"
        if step.composition is not None:
            for primitive, schema in answer_schemas(step.composition):
                yield f"{where} ({primitive} answer)", schema
        if step.kind is StepKind.PLANNING:
            scope = planning_scope(frame, step, PlanProgress({}, None), None)
            yield f"{where} (fragment)", scope.json_schema()
            for uses, preset in scope.presets.items():
                composition = _resolved(frame.catalog, uses, dict(preset))
                if composition is not None:
                    for primitive, schema in answer_schemas(composition):
                        yield f"{where} preset {uses} ({primitive} answer)", schema
                elif isinstance(preset.get("schema"), dict):
                    yield f"{where} preset {uses} (schema)", dict(preset["schema"])


def catalog_schemas(catalog: Catalog) -> Iterator[tuple[str, dict[str, Any]]]:
    """The widest fragment schema, and the answer schemas of every documented example."""
    yield (
        "catalog (widest fragment)",
        fragment_json_schema(
            catalog.names(),
            max_steps=8,
            allow_dynamic_composition=True,
            composable=sorted(catalog.primitives),
        ),
    )
    for name in catalog.names():
        entry = catalog.primitives.get(name) or catalog.patterns[name]
        extra = entry.Config.model_config.get("json_schema_extra")
        examples = extra.get("examples", []) if isinstance(extra, dict) else []
        configs = list(examples) or [example_config(entry.Config)]
        for index, config in enumerate(configs):
            composition = _resolved(catalog, name, dict(config))
            if composition is not None:
                for primitive, schema in answer_schemas(composition):
                    yield f"catalog {name} example {index} ({primitive} answer)", schema


def platform_schemas() -> list[tuple[str, dict[str, Any]]]:
    """Every (where, schema) pair, templates first, without duplicates."""
    catalog = _test_catalog()
    found: list[tuple[str, dict[str, Any]]] = []
    for folder in TEMPLATE_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            found += template_schemas(load_template(path, catalog))
    found += catalog_schemas(standard_catalog())
    seen: set[str] = set()
    unique = []
    for where, schema in found:
        key = repr(sorted(schema.items()))
        if key not in seen:
            seen.add(key)
            unique.append((where, schema))
    return unique
