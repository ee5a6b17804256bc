"""Task budgets: what a run has used so far, what is left, and what a plan would cost.

Use is read from the run's own event log (every step records its model usage in its output or
failure metadata), so it is right however the run executes: in one process, in many, or
resumed. Steps count once per template step (a batch counts once, however many chunks), plus
once per planned step; each planner call counts as one planning phase.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dagster import DagsterEventType, DagsterInstance

from marigold_dagster.metadata import metadata_float, metadata_int
from marigold_dagster.template import Budget

STEP_COUNT_KEY = "marigold/budget_step"
PHASE_COUNT_KEY = "marigold/budget_phase"
TOKENS_KEY = "llm.total_tokens"
COST_KEY = "llm.cost_usd"

# Per model call when a plan is estimated: prompt instructions plus an unseen row's text.
ESTIMATED_PROMPT_TOKENS = 300
DEFAULT_ANSWER_TOKENS = 64


@dataclass(frozen=True)
class BudgetUse:
    steps: int = 0
    phases: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, other: BudgetUse) -> BudgetUse:
        return BudgetUse(
            self.steps + other.steps,
            self.phases + other.phases,
            self.tokens + other.tokens,
            self.cost_usd + other.cost_usd,
        )


@dataclass(frozen=True)
class BudgetStatus:
    """A template's budget against what a run has used."""

    budget: Budget
    used: BudgetUse

    @property
    def remaining(self) -> BudgetUse:
        return BudgetUse(
            self.budget.max_steps - self.used.steps,
            self.budget.max_planning_phases - self.used.phases,
            self.budget.max_tokens - self.used.tokens,
            self.budget.max_cost_usd - self.used.cost_usd,
        )

    def exceeded(self, extra: BudgetUse = BudgetUse()) -> list[str]:
        """The ceilings that `used + extra` goes past, each said in words."""
        total = self.used.plus(extra)
        budget = self.budget
        over = []
        if total.steps > budget.max_steps:
            over.append(f"max_steps ({total.steps} of {budget.max_steps} steps)")
        if total.phases > budget.max_planning_phases:
            over.append(
                f"max_planning_phases ({total.phases} of {budget.max_planning_phases} phases)"
            )
        if total.tokens > budget.max_tokens:
            over.append(f"max_tokens ({total.tokens:,} of {budget.max_tokens:,} tokens)")
        if total.cost_usd > budget.max_cost_usd + 1e-12:
            over.append(f"max_cost_usd (${total.cost_usd:.2f} of ${budget.max_cost_usd:.2f})")
        return over

    def describe(self) -> str:
        """`47 of 100 steps, 3 of 5 phases, 12,345 of 200,000 tokens, $2.30 of $5.00`."""
        used, budget = self.used, self.budget
        return (
            f"{used.steps} of {budget.max_steps} steps, "
            f"{used.phases} of {budget.max_planning_phases} phases, "
            f"{used.tokens:,} of {budget.max_tokens:,} tokens, "
            f"${used.cost_usd:.2f} of ${budget.max_cost_usd:.2f}"
        )

    def as_metadata(self) -> dict[str, Any]:
        return {
            "marigold/budget": self.describe(),
            "marigold/budget_steps_used": self.used.steps,
            "marigold/budget_phases_used": self.used.phases,
            "marigold/budget_tokens_used": self.used.tokens,
            "marigold/budget_cost_usd_used": round(self.used.cost_usd, 6),
        }


def budget_use(instance: DagsterInstance, run_id: str) -> BudgetUse:
    """What run `run_id` has used so far, from its event log."""
    steps = phases = tokens = 0
    cost = 0.0
    counted: set[tuple[str | None, str]] = set()
    types = (DagsterEventType.STEP_OUTPUT, DagsterEventType.STEP_FAILURE)
    for entry in instance.all_logs(run_id, of_type=set(types)):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type is DagsterEventType.STEP_OUTPUT:
            metadata = event.step_output_data.metadata
        else:
            failure = event.step_failure_data.user_failure_data if event.step_failure_data else None
            metadata = failure.metadata if failure else {}
        values = {key: value.value for key, value in metadata.items()}
        key = (entry.step_key, "step")
        step_count = metadata_int(values, STEP_COUNT_KEY, 0)
        if step_count and key not in counted:
            counted.add(key)
            steps += step_count
        phase_key = (entry.step_key, "phase")
        phase_count = metadata_int(values, PHASE_COUNT_KEY, 0)
        if phase_count and phase_key not in counted:
            counted.add(phase_key)
            phases += phase_count
        tokens += metadata_int(values, TOKENS_KEY, 0)
        cost += metadata_float(values, COST_KEY, 0.0)
    return BudgetUse(steps, phases, tokens, cost)


def estimated_answer_tokens(configs: Iterable[dict[str, Any]]) -> int:
    """The answer bound a model-calling config sets (`max_tokens`), or a default."""
    for config in configs:
        for key in ("max_tokens", "max_new_tokens"):
            value = config.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return DEFAULT_ANSWER_TOKENS


def estimate_model_tokens(calls: int, answer_tokens: int) -> int:
    """Tokens `calls` model calls are expected to use, prompts included."""
    return calls * (ESTIMATED_PROMPT_TOKENS + answer_tokens)
