"""Budget use as the run's event log records it, and the budget entries steps write.

Use is read from the run's own event log (every step records its model usage in its output or
failure metadata), so it is right however the run executes: in one process, in many, or
resumed.
"""

from __future__ import annotations

from typing import Any

from dagster import DagsterEventType, DagsterInstance

from marigold_dagster import keys
from marigold_dagster.keys import COST_KEY, PHASE_COUNT_KEY, STEP_COUNT_KEY, TOKENS_KEY
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.records.metadata import metadata_float, metadata_int
from marigold_dagster.template.model import Budget


def budget_metadata(status: BudgetStatus) -> dict[str, Any]:
    """The budget entries a step records: the sentence and each use as a number."""
    return {
        keys.BUDGET_KEY: status.describe(),
        keys.BUDGET_STEPS_USED_KEY: status.used.steps,
        keys.BUDGET_PHASES_USED_KEY: status.used.phases,
        keys.BUDGET_TOKENS_USED_KEY: status.used.tokens,
        keys.BUDGET_COST_USD_USED_KEY: round(status.used.cost_usd, 6),
    }


def budget_use(instance: DagsterInstance, run_id: str) -> BudgetUse:
    """What run `run_id` has used so far, from its event log."""
    steps = phases = tokens = 0
    cost = 0.0
    counted: set[tuple[str | None, str]] = set()
    types = (
        DagsterEventType.STEP_OUTPUT,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.ASSET_OBSERVATION,  # tokens a step spent before it was retried
    )
    for entry in instance.all_logs(run_id, of_type=set(types)):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type is DagsterEventType.STEP_OUTPUT:
            metadata = event.step_output_data.metadata
        elif event.event_type is DagsterEventType.ASSET_OBSERVATION:
            observed = event.asset_observation_data.asset_observation.metadata
            metadata = observed if keys.SPENT_BEFORE_RETRY_KEY in observed else {}
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


def budget_status(instance: DagsterInstance, run_id: str, budget: Budget) -> BudgetStatus:
    """Template budget `budget` against what run `run_id` has used so far."""
    return BudgetStatus(budget, budget_use(instance, run_id))
