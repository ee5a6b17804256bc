"""Planning: how a planner model fills a planning step with a validated fragment.

`fragment` is the shape the planner answers in (and its JSON schema), `validation` checks a
fragment against the catalog, the frame and the budget before one step of it runs, `prompt`
builds the planner prompt (instructions in `prompts/`), `planner` runs the plan-validate-retry
loop, and `budget` is the pure arithmetic of ceilings and estimates. Nothing here imports
Dagster.
"""

from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.fragment import Fragment
from marigold_dagster.planning.planner import PlanOutcome, PlanRequest, plan_fragment
from marigold_dagster.planning.validation import PlanningScope, ValidatedFragment, validate_fragment

__all__ = [
    "BudgetStatus",
    "BudgetUse",
    "Fragment",
    "PlanOutcome",
    "PlanRequest",
    "PlanningScope",
    "ValidatedFragment",
    "plan_fragment",
    "validate_fragment",
]
