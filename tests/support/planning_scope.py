"""The planning scope the fragment-validation tests share: a template step `review` planning
over test capabilities, with `load` upstream and `earlier` from an earlier phase."""

from __future__ import annotations

from typing import Any

from grammar_ops import Kind, standard_catalog
from marigold_dagster.planning.validation import PlanningScope
from tests.support.capabilities import TEST_CAPABILITIES

CATALOG = standard_catalog().extended(TEST_CAPABILITIES)
TEMPLATE_STEPS = frozenset({"load", "hidden", "review", "finish"})
# `load` is a visible upstream template step; `earlier` a planned step of an earlier phase.
RESULTS: dict[str, tuple[Kind, int | None]] = {
    "load": (Kind.RECORDS, 10),
    "earlier": (Kind.JSON, None),
}
PRESETS: dict[str, dict[str, Any]] = {
    "t.mark": {},
    "t.rows": {},
    "t.explode": {},
    "t.ask_each": {},
    "t.route": {},
    "t.read_input": {},
    "aggregate.count": {},
    "llm.generate": {"max_tokens": 100, "include_input": False},
    "transform.filter": {"where": "id < 2"},
    "transform.select": {},
    "transform.join": {},
    "acquire.read_table": {},
}
COMPOSABLE = frozenset({"transform.filter", "transform.select", "acquire.read_table"})
LOAD_ROWS = 10


def make_scope(**overrides: Any) -> PlanningScope:
    fields: dict[str, Any] = {
        "step": "review",
        "template_steps": TEMPLATE_STEPS,
        "results": RESULTS,
        "primary": "load",
        "presets": PRESETS,
        "catalog": CATALOG,
        "max_steps": 6,
        "max_depth": 3,
        "max_fanout": 4,
    }
    fields.update(overrides)
    return PlanningScope(**fields)
