"""Budget arithmetic: what is left of a template's ceilings, and what a plan would cost.

Pure: what a run has used is read from the event log by `records.budget_use`. Steps count once
per template step (a batch counts once, however many chunks), plus once per planned step; each
planner call counts as one planning phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from marigold_dagster.template.model import Budget

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

    def ceiling_reached(self, extra: BudgetUse = BudgetUse()) -> str | None:
        """Why no more work may start (`budget ceiling reached: ...`), or None when it may.

        The ceilings `used` is past are named; if none, those `used + extra` would pass.
        """
        over = self.exceeded() or self.exceeded(extra)
        return f"budget ceiling reached: {', '.join(over)}" if over else None

    def describe(self) -> str:
        """`47 of 100 steps, 3 of 5 phases, 12,345 of 200,000 tokens, $2.30 of $5.00`."""
        used, budget = self.used, self.budget
        return (
            f"{used.steps} of {budget.max_steps} steps, "
            f"{used.phases} of {budget.max_planning_phases} phases, "
            f"{used.tokens:,} of {budget.max_tokens:,} tokens, "
            f"${used.cost_usd:.2f} of ${budget.max_cost_usd:.2f}"
        )


# A per-row call's own words around the row's text (the primitive's instructions, labels).
INSTRUCTION_TOKENS = 40
# What a constrained answer takes: per JSON property asked for, and for one label.
TOKENS_PER_PROPERTY = 10
LABEL_TOKENS = 4


def estimated_answer_tokens(configs: Iterable[dict[str, Any]]) -> int:
    """Tokens a model-calling config's answers take: a few per schema property or label, else
    the answer bound it sets (`max_tokens`), or a default."""
    configs = list(configs)
    bound = _answer_bound(configs)
    for config in configs:
        schema = config.get("json_schema") or config.get("schema")
        if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
            return min(bound, 4 + TOKENS_PER_PROPERTY * len(schema["properties"]))
        if config.get("labels") or config.get("choices"):
            return min(bound, LABEL_TOKENS)
    return bound


def estimated_prompt_tokens(
    config: dict[str, Any], sample: Sequence[Mapping[str, Any]] | None, count: Any
) -> int:
    """Prompt tokens of one per-row call: its instructions plus the average text of `field` in
    the sample of rows it will see (counted with `count`), or a default without a sample."""
    field = config.get("field")
    if not sample or not isinstance(field, str):
        return ESTIMATED_PROMPT_TOKENS
    texts = [str(row.get(field) or "") for row in sample]
    return INSTRUCTION_TOKENS + round(sum(count(text) for text in texts) / len(texts))


def _answer_bound(configs: list[dict[str, Any]]) -> int:
    for config in configs:
        for key in ("max_tokens", "max_new_tokens"):
            value = config.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return DEFAULT_ANSWER_TOKENS


def estimate_model_tokens(
    calls: int, answer_tokens: int, prompt_tokens: int = ESTIMATED_PROMPT_TOKENS
) -> int:
    """Tokens `calls` model calls are expected to use, prompts included."""
    return calls * (prompt_tokens + answer_tokens)
