"""Gate decisions: who approved or rejected a paused gate, and why, kept in the Dagster instance.

A gate pauses a run by recording an engine event on its step with `PAUSED_AT_GATE` in the
metadata and ending without output, so the run ends successfully and is tagged as paused at the
gate (see `marigold_dagster.runtime.gates`); that engine event is the pause record (runs from
before this design paused by failing the step, and their failure event is read the same way).
A decision is a runless
`AssetObservation` on the asset key `[template, step, "gate"]` whose partition is the id of the
paused run, so decisions are durable, listed on that asset's page in the Dagster UI (one entry
per decision, with who, what and why), and found by run id with one indexed query.

A re-executed run reads decisions for itself and every run it descends from, so the gate of a
resumed run finds the decision recorded for the run that paused.

    >>> record_decision(instance, run_id, "sign_off", "approve", by="alice", reason="checked")
    >>> gate_state(instance, run_id, "sign_off").status
    'approved'
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dagster import (
    AssetObservation,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogEntry,
    MetadataValue,
)

from marigold_dagster import keys
from marigold_dagster.errors import GateDecisionError, GateTimedOut
from marigold_dagster.keys import (
    DECISION_JOB,
    DECISION_OP,
    PAUSED_AT_GATE,
    GateStatus,
    gate_asset_key,
    gate_partitions_name,
)
from marigold_dagster.records.dagster_private import engine_event_data
from marigold_dagster.records.metadata import metadata_float, metadata_str, metadata_strs
from marigold_dagster.records.principals import (
    APPROVERS_ENV,
    ApproverMap,
    Principal,
    load_approver_map,
    os_user_principal,
)

DECISIONS = ("approve", "reject")
Verdict = Literal["approve", "reject"]


@dataclass(frozen=True)
class GatePause:
    """A run waiting at a gate: what is asked, who may answer, and until when."""

    run_id: str
    template: str
    step: str
    prompt: str
    approvers: tuple[str, ...]
    timeout_s: float | None
    paused_at: float  # the first pause of this gate in the run's lineage

    @property
    def deadline(self) -> float | None:
        return None if self.timeout_s is None else self.paused_at + self.timeout_s

    def may_decide(self, name: str) -> bool:
        return not self.approvers or name in self.approvers

    def timed_out(self, at: float) -> bool:
        return self.deadline is not None and at > self.deadline

    def timeout_detail(self) -> str:
        return (
            f"timed out: no decision within {self.timeout_s:g} s of the pause at "
            f"{iso(self.paused_at)}"
        )


@dataclass(frozen=True)
class GateDecision:
    """One recorded decision on a paused run's gate."""

    run_id: str
    template: str
    step: str
    decision: Verdict
    by: str
    reason: str
    decided_at: float
    principal: str = ""  # who the platform checked decided, e.g. `os_user:alice (uid 1000)`

    @property
    def approved(self) -> bool:
        return self.decision == "approve"

    def describe(self) -> str:
        """`approved by alice: checked` / `rejected by bob: too costly`."""
        verb = "approved" if self.approved else "rejected"
        return f"{verb} by {self.by}: {self.reason}"


@dataclass(frozen=True)
class GateState:
    """Where a gate of a run stands: `pending`, `approved`, `rejected` or `timed_out`."""

    status: GateStatus
    pause: GatePause
    decision: GateDecision | None = None

    @property
    def detail(self) -> str:
        if self.decision is not None:
            return self.decision.describe()
        if self.status is GateStatus.TIMED_OUT:
            return self.pause.timeout_detail()
        return f"waiting for a decision: {self.pause.prompt}"


def pause_metadata(
    *,
    run_id: str,
    template: str,
    step: str,
    prompt: str,
    approvers: Sequence[str],
    timeout_s: float | None,
    paused_at: float,
) -> dict[str, Any]:
    """The failure metadata of a pause: the marker, what is asked, who may decide and how."""
    who = " or ".join(approvers) if approvers else "anyone"
    config = {"run_id": run_id, "step": step, "decision": "approve", "by": "NAME", "reason": "..."}
    metadata: dict[str, Any] = {
        PAUSED_AT_GATE: step,
        keys.TEMPLATE_TAG: template,
        keys.PROMPT_KEY: prompt,
        keys.APPROVERS_KEY: MetadataValue.json(list(approvers)),
        keys.WHO_MAY_DECIDE_KEY: who,
        keys.PAUSED_AT_KEY: paused_at,
        keys.APPROVE_COMMAND_KEY: (
            f'marigold approve {run_id} --step {step} --by NAME --reason "..."'
        ),
        keys.REJECT_COMMAND_KEY: (
            f'marigold reject {run_id} --step {step} --by NAME --reason "..."'
        ),
        keys.DECISION_JOB_KEY: DECISION_JOB,
        keys.DECISION_JOB_CONFIG_KEY: MetadataValue.json(
            {"ops": {DECISION_OP: {"config": config}}}
        ),
        keys.THEN_KEY: (
            "re-execute this run from the gate and downstream (`marigold resume`, or in the UI "
            "Re-execute with the gate step and downstream selected)"
        ),
    }
    if timeout_s is not None:
        metadata[keys.TIMEOUT_S_KEY] = float(timeout_s)
        metadata[keys.DECIDE_BY_KEY] = iso(paused_at + timeout_s)
    return metadata


def reexecution_chain(instance: DagsterInstance, run_id: str) -> list[str]:
    """`run_id`, its parent, the parent's parent ... up to the run the chain started from."""
    lineage = []
    current: str | None = run_id
    while current is not None and current not in lineage:
        lineage.append(current)
        run = instance.get_run_by_id(current)
        current = run.parent_run_id if run is not None else None
    return lineage


def find_pause(instance: DagsterInstance, run_ids: Sequence[str], step: str) -> GatePause | None:
    """The latest pause of gate `step` in any of `run_ids` (a lineage, newest first)."""
    for run_id in run_ids:
        records = instance.get_records_for_run(
            run_id,
            of_type={DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_FAILURE},
            ascending=False,
        ).records
        for record in records:
            entry = record.event_log_entry
            if entry.step_key != step:
                continue
            metadata = pause_record(entry)
            if metadata.get(PAUSED_AT_GATE) != step:
                continue
            timeout = metadata.get(keys.TIMEOUT_S_KEY)
            return GatePause(
                run_id=run_id,
                template=metadata_str(metadata, keys.TEMPLATE_TAG),
                step=step,
                prompt=metadata_str(metadata, keys.PROMPT_KEY),
                approvers=metadata_strs(metadata, keys.APPROVERS_KEY),
                timeout_s=(
                    metadata_float(metadata, keys.TIMEOUT_S_KEY) if timeout is not None else None
                ),
                paused_at=metadata_float(metadata, keys.PAUSED_AT_KEY, entry.timestamp),
            )
    return None


def pause_record(entry: EventLogEntry) -> dict[str, Any]:
    """The metadata of a pause in `entry` (a gate's engine event, or an older run's step
    failure), or an empty dict when `entry` records no pause."""
    event = entry.dagster_event
    if event is None:
        return {}
    if event.event_type is DagsterEventType.ENGINE_EVENT and event.engine_event_data:
        raw = event.engine_event_data.metadata
    elif event.event_type is DagsterEventType.STEP_FAILURE and event.step_failure_data:
        user = event.step_failure_data.user_failure_data
        raw = user.metadata if user else {}
    else:
        return {}
    metadata = {k: v.value for k, v in raw.items()}
    return metadata if PAUSED_AT_GATE in metadata else {}


def find_decisions(
    instance: DagsterInstance, template: str, step: str, run_ids: Sequence[str]
) -> list[GateDecision]:
    """Decisions recorded for gate `step` of any run in `run_ids`, oldest first."""
    result = instance.fetch_observations(
        AssetRecordsFilter(gate_asset_key(template, step), asset_partitions=list(run_ids)),
        limit=100,
        ascending=True,
    )
    decisions = []
    for record in result.records:
        observation = record.asset_observation
        if observation is None:
            continue
        found = _decision_from(observation.metadata, template, step)
        if found is not None:
            decisions.append(found)
    return decisions


def _decision_from(
    metadata: Mapping[str, MetadataValue], template: str, step: str
) -> GateDecision | None:
    values = {key: value.value for key, value in metadata.items()}
    verdict = values.get(keys.DECISION_KEY)
    if verdict not in DECISIONS:
        return None
    return GateDecision(
        run_id=metadata_str(values, keys.RUN_ID_KEY),
        template=template,
        step=step,
        decision=verdict,  # type: ignore[arg-type]
        by=metadata_str(values, keys.BY_KEY),
        reason=metadata_str(values, keys.REASON_KEY),
        decided_at=metadata_float(values, keys.DECIDED_AT_KEY),
        principal=metadata_str(values, keys.PRINCIPAL_KEY) if keys.PRINCIPAL_KEY in values else "",
    )


def decide_gate(pause: GatePause, decisions: Sequence[GateDecision], now: float) -> GateState:
    """The state of a paused gate given the decisions recorded in its run's lineage.

    The first decision by someone allowed to decide, recorded with the principal the platform
    checked and made before any deadline, counts; with none, a gate past its deadline counts as
    rejected (`timed_out`), otherwise it is pending.
    """
    for decision in decisions:
        if not decision.principal:
            continue  # not recorded by `record_decision`: nobody was checked
        if pause.may_decide(decision.by) and not pause.timed_out(decision.decided_at):
            status = GateStatus.APPROVED if decision.approved else GateStatus.REJECTED
            return GateState(status, pause, decision)
    if pause.timed_out(now):
        return GateState(GateStatus.TIMED_OUT, pause)
    return GateState(GateStatus.PENDING, pause)


def gate_state(
    instance: DagsterInstance, run_id: str, step: str, *, now: float | None = None
) -> GateState:
    """Where gate `step` of run `run_id` (or of the runs it was re-executed from) stands.

    Raises:
        GateDecisionError: when that run never paused at that gate.
    """
    lineage = reexecution_chain(instance, run_id)
    pause = find_pause(instance, lineage, step)
    if pause is None:
        raise GateDecisionError(_not_paused_message(instance, run_id, step))
    decisions = find_decisions(instance, pause.template, step, lineage)
    return decide_gate(pause, decisions, time.time() if now is None else now)


def record_decision(
    instance: DagsterInstance,
    run_id: str,
    step: str,
    decision: str,
    *,
    by: str,
    reason: str,
    now: float | None = None,
    principal: Principal | None = None,
    approvers: ApproverMap | None = None,
) -> GateDecision:
    """Record that `by` approved or rejected gate `step` of paused run `run_id`, and why.

    `principal` is who is deciding, as the platform checked it (default: the OS user running
    this process); it must be allowed to act as `by` by `approvers` (default: the map in
    `MARIGOLD_APPROVERS`; a name it does not list only by a principal of that name). The
    principal is recorded beside the claimed name.

    The decision is appended to the instance (see the module docstring) and noted in the paused
    run's event log; resuming the run (re-executing the gate and what follows) lets the gate
    act on it.

    Raises:
        GateDecisionError: the run is not paused at that gate, it was already decided, `by` is
            not one of its approvers or the principal may not act as `by`, the decision is not
            approve/reject, or by/reason is empty.
        GateTimedOut: the gate's timeout passed; it counts as rejected.
    """
    if decision not in DECISIONS:
        raise GateDecisionError(f"decision must be one of {', '.join(DECISIONS)}; got {decision!r}")
    by, reason = by.strip(), reason.strip()
    if not by:
        raise GateDecisionError("say who decides: `by` must name a person (an approver)")
    if not reason:
        raise GateDecisionError("say why: `reason` must not be empty; it is kept for audit")
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise GateDecisionError(f"no run {run_id} in this Dagster instance")
    lineage = reexecution_chain(instance, run_id)
    pause = find_pause(instance, lineage[:1], step)
    if pause is None or not run.is_finished:
        raise GateDecisionError(_not_paused_message(instance, run_id, step))
    at = time.time() if now is None else now
    state = decide_gate(pause, find_decisions(instance, pause.template, step, lineage), at)
    if state.decision is not None:
        raise GateDecisionError(
            f"gate '{step}' of run {run_id} was already {state.decision.describe()} "
            f"(at {iso(state.decision.decided_at)}); a gate takes one decision"
        )
    if not pause.may_decide(by):
        raise GateDecisionError(
            f"'{by}' may not decide gate '{step}' of template '{pause.template}'; "
            f"its approvers are: {', '.join(pause.approvers)}"
        )
    principal = os_user_principal() if principal is None else principal
    approvers = load_approver_map() if approvers is None else approvers
    if not approvers.may_act_as(principal, by):
        raise GateDecisionError(
            f"{principal} may not act as approver '{by}' of gate '{step}'; who may: "
            f"{approvers.who_may_act_as(by)}. The deployment maps approver names to users and "
            f"groups in the file named by {APPROVERS_ENV}"
        )
    if state.status is GateStatus.TIMED_OUT:
        raise GateTimedOut(
            f"gate '{step}' of run {run_id} {pause.timeout_detail()} (deadline "
            f"{iso(pause.deadline or 0)}); it counts as rejected. Resume the run "
            f"(`marigold resume {run_id}`) to end that branch"
        )
    recorded = GateDecision(
        run_id,
        pause.template,
        step,
        decision,  # type: ignore[arg-type]
        by,
        reason,
        at,
        str(principal),
    )
    instance.add_dynamic_partitions(gate_partitions_name(pause.template, step), [run_id])
    instance.report_runless_asset_event(
        AssetObservation(
            asset_key=gate_asset_key(pause.template, step),
            partition=run_id,
            description=f"gate '{step}' {recorded.describe()}",
            metadata={
                keys.DECISION_KEY: decision,
                keys.BY_KEY: by,
                keys.PRINCIPAL_KEY: str(principal),
                keys.REASON_KEY: reason,
                keys.RUN_ID_KEY: run_id,
                keys.STEP_KEY: step,
                keys.DECIDED_AT_KEY: at,
                keys.DECIDED_AT_ISO_KEY: iso(at),
                keys.PROMPT_KEY: pause.prompt,
            },
        )
    )
    _note_in_run(instance, run, recorded)
    return recorded


def _note_in_run(instance: DagsterInstance, run: DagsterRun, decision: GateDecision) -> None:
    """Show the decision in the paused run's own event log, where an operator looks first."""
    instance.report_engine_event(
        f"Gate '{decision.step}' {decision.describe()}; resume with `marigold resume "
        f"{run.run_id}` (or re-execute '{decision.step}' and downstream)",
        run,
        engine_event_data(
            {
                keys.GATE_KEY: decision.step,
                keys.DECISION_KEY: decision.decision,
                keys.BY_KEY: decision.by,
                keys.PRINCIPAL_KEY: decision.principal,
                keys.REASON_KEY: decision.reason,
            }
        ),
    )


def _not_paused_message(instance: DagsterInstance, run_id: str, step: str) -> str:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return f"no run {run_id} in this Dagster instance"
    return (
        f"run {run_id} of job '{run.job_name}' ({run.status.value}) is not paused at a gate "
        f"named '{step}'; decide the run tagged `{PAUSED_AT_GATE}: {step}` "
        "(its gate step's event log shows the command)"
    )


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
