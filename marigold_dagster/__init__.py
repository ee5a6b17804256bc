"""Marigold on Dagster: YAML templates compiled into Dagster jobs, planning steps filled by a model.

The packages, from the bottom up: `template` (the YAML model and its loader), `planning`
(fragments, validation, the planner), `keys` (every name written into Dagster), `records` (what
is read from and written to the instance), `runtime` (what runs inside an op), `jobs` (template
to Definitions), `runs` (in-process, dry and resumed runs) and `cli`. `errors` holds the whole
exception tree.

The names below load their module on first use, so importing `marigold_dagster.template` or
`marigold_dagster.planning` does not import Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marigold_dagster.errors import MarigoldError, PlanRejected, TemplateError
    from marigold_dagster.jobs import build_defs, compile_frame
    from marigold_dagster.runs import dry_run_planning, run_locally
    from marigold_dagster.template import Frame, load_template, load_templates

_HOMES = {
    "Frame": "marigold_dagster.template",
    "MarigoldError": "marigold_dagster.errors",
    "PlanRejected": "marigold_dagster.errors",
    "TemplateError": "marigold_dagster.errors",
    "build_defs": "marigold_dagster.jobs",
    "compile_frame": "marigold_dagster.jobs",
    "dry_run_planning": "marigold_dagster.runs",
    "load_template": "marigold_dagster.template",
    "load_templates": "marigold_dagster.template",
    "run_locally": "marigold_dagster.runs",
}

__all__ = [
    "Frame",
    "MarigoldError",
    "PlanRejected",
    "TemplateError",
    "build_defs",
    "compile_frame",
    "dry_run_planning",
    "load_template",
    "load_templates",
    "run_locally",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'marigold_dagster' has no attribute '{name}'")
    return getattr(importlib.import_module(home), name)
