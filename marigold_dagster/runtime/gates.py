"""Gates at run time: where a run pauses for a human decision, and goes on after one.

`pass_gate` looks for a decision recorded for this run (or the run it re-executes). Without one
the gate *pauses*: it records the pause (an engine event on the gate step with `PAUSED_AT_GATE`
in its metadata, saying who may decide and how), tags the run `marigold/paused_at_gate`, and ends
without emitting any output, so Dagster skips what follows and the run ends successfully: a
designed pause, not a failure. Approval re-executes the gate and everything after it from the
paused run's stored outputs (`marigold_dagster.runs.resume`). With a decision the gate records
it and passes the input on when approved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from dagster import (
    OpExecutionContext,
    Output,
)

from grammar_ops import Kind
from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue
from marigold_dagster.keys import (
    APPROVED,
    DECIDED,
    DECISION_JOB,
    GateStatus,
    StepStatus,
)
from marigold_dagster.records.dagster_private import engine_event_data
from marigold_dagster.records.gate_decisions import (
    GatePause,
    decide_gate,
    find_decisions,
    find_pause,
    pause_metadata,
    reexecution_chain,
)
from marigold_dagster.runtime.composition import step_metadata
from marigold_dagster.runtime.outputs import materializations
from marigold_dagster.template.frame import Frame, FrameStep


def _pause(context: OpExecutionContext, pause: GatePause) -> None:
    """Record that the run waits at the gate, saying who may decide and how."""
    metadata = pause_metadata(
        run_id=context.run_id,
        template=pause.template,
        step=pause.step,
        prompt=pause.prompt,
        approvers=pause.approvers,
        timeout_s=pause.timeout_s,
        paused_at=pause.paused_at,
    )
    who = " or ".join(pause.approvers) if pause.approvers else "anyone"
    deadline = f" before {metadata[keys.DECIDE_BY_KEY]}" if pause.timeout_s else ""
    message = (
        f"paused at gate '{pause.step}': {pause.prompt} Waiting for {who} to decide{deadline}: "
        f"{metadata[keys.APPROVE_COMMAND_KEY]} (or `marigold reject ...`), or launch job "
        f"'{DECISION_JOB}' and then re-execute this run from '{pause.step}' with what follows "
        f"(`marigold resume {context.run_id}`)."
    )
    context.instance.add_run_tags(context.run_id, {keys.PAUSED_AT_GATE: pause.step})
    context.instance.report_engine_event(
        message,
        context.dagster_run,
        engine_event_data(metadata),
        step_key=context.get_step_execution_context().step.key,
    )
    context.log.warning(message)


def pass_gate(
    context: OpExecutionContext, frame: Frame, step: FrameStep, inputs: Mapping[str, StepValue]
) -> Iterator[Output]:
    """Pause the run at gate `step` until someone decides; then pass the input on, or not.

    A gate without a decision (and not timed out) fails the run with the pause in its failure
    metadata; re-executing the run from failure after a decision comes back here and goes on.
    """
    spec = step.gate
    declared = list(step.step.depends_on)
    lineage = reexecution_chain(context.instance, context.run_id)
    earlier = find_pause(context.instance, lineage[1:], step.name)
    now = time.time()
    pause = GatePause(
        run_id=context.run_id,
        template=frame.name,
        step=step.name,
        prompt=spec.prompt,
        approvers=tuple(spec.approvers),
        timeout_s=spec.timeout_s,
        paused_at=earlier.paused_at if earlier is not None else now,
    )
    decisions = find_decisions(context.instance, frame.name, step.name, lineage)
    state = decide_gate(pause, decisions, now)
    if state.status is GateStatus.PENDING:
        _pause(context, pause)
        return  # no output: what follows the gate is skipped, and the run ends paused
    if context.dagster_run.tags.get(keys.PAUSED_AT_GATE):
        # a re-execution inherits its paused parent's tags; this run is past the gate
        context.instance.add_run_tags(context.run_id, {keys.PAUSED_AT_GATE: ""})

    approved = state.status is GateStatus.APPROVED
    metadata = step_metadata(context, step, None, None, status=StepStatus(state.status))
    metadata[keys.GATE_KEY] = state.detail
    if state.decision is not None:
        metadata.update(
            {
                keys.DECISION_KEY: state.decision.decision,
                keys.DECIDED_BY_KEY: state.decision.by,
                keys.PRINCIPAL_KEY: state.decision.principal,
                keys.REASON_KEY: state.decision.reason,
                keys.DECIDED_FOR_RUN_KEY: state.decision.run_id,
            }
        )
    context.log.info(f"gate '{step.name}' {state.detail}")
    record = {"status": state.status.value, "detail": state.detail}
    yield from materializations(frame, step, metadata)
    yield Output(StepValue(step.name, Kind.JSON, record), DECIDED, metadata=metadata)
    if approved:
        primary = inputs[declared[0]] if declared else None
        passed = StepValue(
            step=step.name,
            kind=primary.kind if primary else Kind.NOTHING,
            payload=primary.payload if primary else None,
        )
        yield Output(passed, APPROVED)
