"""Plan fragments: what a planner model answers, and the JSON schema its decoding is held to.

A fragment is `{reasoning, steps: [{id, uses | compose, with, depends_on, reason}], done}`.
The schema sent to SGLang for constrained decoding is generated from the capabilities the
planning step allows (their names as an enum), so structurally invalid output cannot be
decoded; everything else is checked by `marigold_dagster.planning.validation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PLANNED_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,47}$"
MAX_REASON_CHARS = 600
MAX_REASONING_CHARS = 2000


class PlannedStepSpec(BaseModel):
    """One step as the planner wrote it (not yet validated against the catalog)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    id: str
    uses: str | None = None
    compose: list[dict[str, Any]] | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    depends_on: list[str] = Field(default_factory=list)
    reason: str = ""


class Fragment(BaseModel):
    """A whole planner answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reasoning: str = ""
    steps: list[PlannedStepSpec] = Field(default_factory=list)
    done: bool = False


def fragment_json_schema(
    allowed: Iterable[str],
    *,
    max_steps: int,
    allow_dynamic_composition: bool = False,
    composable: Iterable[str] = (),
) -> dict[str, Any]:
    """The JSON schema of a fragment that may only name `allowed` capabilities.

    With `allow_dynamic_composition`, a step may instead give `compose: [{use, with}, ...]`
    over the `composable` primitives.
    """
    names = sorted(set(allowed))
    common = {
        "id": {"type": "string", "pattern": PLANNED_ID_PATTERN},
        "with": {"type": "object"},
        "depends_on": {"type": "array", "items": {"type": "string"}, "maxItems": 16},
        "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
    }
    uses_form = {
        "type": "object",
        "properties": {**common, "uses": {"type": "string", "enum": names}},
        "required": ["id", "uses", "with", "depends_on", "reason"],
        "additionalProperties": False,
    }
    step_schema: dict[str, Any] = uses_form
    primitives = sorted(set(composable))
    if allow_dynamic_composition and primitives:
        compose_form = {
            "type": "object",
            "properties": {
                **{k: v for k, v in common.items() if k != "with"},
                "compose": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 8,
                    "items": {
                        "type": "object",
                        "properties": {
                            "use": {"type": "string", "enum": primitives},
                            "with": {"type": "object"},
                        },
                        "required": ["use", "with"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["id", "compose", "depends_on", "reason"],
            "additionalProperties": False,
        }
        step_schema = {"anyOf": [uses_form, compose_form]}
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "maxLength": MAX_REASONING_CHARS},
            "steps": {"type": "array", "items": step_schema, "maxItems": max_steps},
            "done": {"type": "boolean"},
        },
        "required": ["reasoning", "steps", "done"],
        "additionalProperties": False,
    }


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists, tuples and dicts in `value` nest more than `limit` levels.

    Checked iteratively, so a value nested any depth is safe to ask about.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
