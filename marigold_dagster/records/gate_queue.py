"""The gates waiting for a decision: paused template runs whose gate nobody has decided yet.

A run counts while its gate is `pending` (see `gate_decisions.gate_state`) and it has not been
re-executed since (a re-executed run that pauses again is the one listed).

    >>> [(state.pause.run_id, state.pause.step) for state in waiting_gates(instance)]
    [('5f0c...', 'sign_off')]
"""

from __future__ import annotations

import time

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from marigold_dagster.keys import GateStatus
from marigold_dagster.records.gate_decisions import GateState, gate_state, pause_record
from marigold_dagster.records.run_history import template_run_records

# Dagster's tag on a re-executed run naming the run it re-executes (Dagster's own value).
PARENT_RUN_ID_TAG = "dagster/parent_run_id"


def paused_gates(instance: DagsterInstance, run_id: str) -> list[str]:
    """The gate steps run `run_id` (itself, not its ancestors) paused at."""
    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_FAILURE}
    ).records
    steps = []
    for record in records:
        if pause_record(record.event_log_entry):
            step = record.event_log_entry.step_key
            if step and step not in steps:
                steps.append(step)
    return steps


def waiting_gates(
    instance: DagsterInstance,
    template: str | None = None,
    *,
    scan: int = 200,
    now: float | None = None,
) -> list[GateState]:
    """Pending gates of the `scan` latest paused template runs (of `template`), newest first
    (a paused run ends successfully; runs from before that design failed at the gate)."""
    at = time.time() if now is None else now
    waiting = []
    for index, record in enumerate(template_run_records(instance, template)):
        if index >= scan:
            break
        run = record.dagster_run
        if run.status not in (DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS):
            continue
        if instance.get_run_records(RunsFilter(tags={PARENT_RUN_ID_TAG: run.run_id}), limit=1):
            continue
        for step in paused_gates(instance, run.run_id):
            state = gate_state(instance, run.run_id, step, now=at)
            if state.status is GateStatus.PENDING:
                waiting.append(state)
    return waiting
