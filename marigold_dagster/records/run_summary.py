"""The run summary: every template step of a run, what became of it, and why.

Built from the Dagster instance's event log, so it works for any run (in-process, launched
from the UI, re-executed) and for failed runs too, where the summary matters most. Steps that
did not run are explained: a branch its decision did not choose, or an upstream that failed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from dagster import DagsterEventType, DagsterInstance, EventLogEntry, MetadataValue

from marigold_dagster import keys
from marigold_dagster.keys import PAUSED_AT_GATE, StepStatus, merge_name, split_name
from marigold_dagster.records.dagster_private import engine_event_data
from marigold_dagster.records.gate_decisions import pause_record, reexecution_chain
from marigold_dagster.records.markdown import markdown_text
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import StepKind


@dataclass(frozen=True)
class StepSummary:
    """What happened to one template step in a run."""

    name: str
    kind: str
    status: StepStatus
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    rows: int | None = None
    detail: str = ""

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    template: str
    status: str
    steps: tuple[StepSummary, ...] = field(default_factory=tuple)

    def step(self, name: str) -> StepSummary:
        return next(step for step in self.steps if step.name == name)

    def names(self, status: StepStatus) -> list[str]:
        return [step.name for step in self.steps if step.status == status]

    def render(self) -> str:
        """A plain-text table, one line per template step."""
        header = f"run {self.run_id} of '{self.template}': {self.status}"
        lines = [
            header,
            f"{'step':<24} {'kind':<9} {'status':<10} {'tries':>5} {'secs':>7} {'rows':>7}  detail",
        ]
        for step in self.steps:
            secs = f"{step.duration_s:.2f}" if step.duration_s is not None else "-"
            rows = str(step.rows) if step.rows is not None else "-"
            lines.append(
                f"{step.name:<24} {step.kind:<9} {step.status:<10} {step.attempts:>5} "
                f"{secs:>7} {rows:>7}  {step.detail}"
            )
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table as Markdown, for the Dagster UI."""
        lines = ["| step | kind | status | tries | seconds | rows | detail |", "|---" * 7 + "|"]
        for step in self.steps:
            secs = f"{step.duration_s:.2f}" if step.duration_s is not None else ""
            rows = "" if step.rows is None else str(step.rows)
            detail = markdown_text(step.detail)
            lines.append(
                f"| {step.name} | {step.kind} | {step.status} | {step.attempts} | {secs} "
                f"| {rows} | {detail} |"
            )
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for step in self.steps:
            counted[step.status] = counted.get(step.status, 0) + 1
        return counted


SUMMARY_MESSAGE = "Marigold run summary"


def record_run_summary(instance: DagsterInstance, summary: RunSummary) -> None:
    """Append the summary to the run's own event log, where the Dagster UI shows it last."""
    run = instance.get_run_by_id(summary.run_id)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts().items()))
    instance.report_engine_event(
        f"{SUMMARY_MESSAGE}: {counts}",
        run,
        engine_event_data(
            {
                keys.SUMMARY_KEY: MetadataValue.md(summary.markdown()),
                **{keys.step_count_key(status): n for status, n in summary.counts().items()},
            }
        ),
    )


@dataclass
class _KeyEvents:
    starts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    status: StepStatus | None = None
    failure: str = ""
    pause: str = ""  # a gate: the pause it recorded (it then ends without output)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def summarise_run(instance: DagsterInstance, run_id: str, frame: Frame) -> RunSummary:
    """Summarise run `run_id` of the job compiled from `frame`.

    A run re-executed from failure runs only part of the job; each step it did not run is
    summarised from the latest run it descends from that did (e.g. the steps before a gate).
    """
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    by_key: dict[str, _KeyEvents] = {}
    setup_failure = ""
    for ancestor in reversed(reexecution_chain(instance, run_id)):
        events: dict[str, _KeyEvents] = defaultdict(_KeyEvents)
        setup_failure = ""
        for entry in instance.all_logs(ancestor):
            _record(events, entry)
            setup_failure = setup_failure or _setup_failure(entry)
        by_key.update(events)

    decided: dict[str, list[str]] = {}
    statuses: dict[str, StepSummary] = {}
    for step in frame:
        summary = _summarise_step(step, by_key)
        statuses[step.name] = summary
        if step.kind is StepKind.DECISION and summary.status == StepStatus.SUCCEEDED:
            chosen = by_key[step.name].outputs.get("decided", {}).get(keys.CHOSEN_KEY, [])
            decided[step.name] = list(chosen) if isinstance(chosen, list) else []

    finished = run.is_finished
    steps = []
    for step in frame:
        summary = statuses[step.name]
        if summary.status in (StepStatus.SKIPPED, StepStatus.NOT_RUN) or (
            finished and summary.status == StepStatus.RUNNING
        ):
            summary = _explain_absence(frame, step, statuses, decided, summary, setup_failure)
            statuses[step.name] = summary  # later steps name the cause through this one
        steps.append(summary)
    status = run.status.value
    if any(step.status == StepStatus.PAUSED for step in steps) and status == "SUCCESS":
        status = "PAUSED"  # a designed pause: the run ended successfully, waiting at a gate
    return RunSummary(run_id, frame.name, status, tuple(steps))


def _setup_failure(entry: EventLogEntry) -> str:
    """What failed, when `entry` says a resource (a model client, say) failed its setup."""
    event = entry.dagster_event
    if event is None or event.event_type is not DagsterEventType.RESOURCE_INIT_FAILURE:
        return ""
    error = event.engine_event_data.error if event.engine_event_data else None
    message = error.message.strip().splitlines()[0] if error and error.message else "failed"
    return f"a resource failed its setup ({message})"


def _record(by_key: dict[str, _KeyEvents], entry: EventLogEntry) -> None:
    event = entry.dagster_event
    if event is None or entry.step_key is None:
        return
    key = by_key[entry.step_key]
    kind = event.event_type
    if kind is DagsterEventType.STEP_START:
        key.starts += 1
        key.started_at = key.started_at or entry.timestamp
        key.status = key.status or StepStatus.RUNNING
    elif kind is DagsterEventType.STEP_RESTARTED:
        key.starts += 1  # a retry restarts the step without a second STEP_START
    elif kind is DagsterEventType.STEP_SUCCESS:
        key.status, key.ended_at = StepStatus.SUCCEEDED, entry.timestamp
    elif kind is DagsterEventType.STEP_FAILURE:
        key.status, key.ended_at = StepStatus.FAILED, entry.timestamp
        error = event.step_failure_data.error if event.step_failure_data else None
        user = event.step_failure_data.user_failure_data if event.step_failure_data else None
        key.failure = (user.description if user and user.description else None) or (
            error.message.strip().splitlines()[-1] if error else "failed"
        )
        if user is not None and PAUSED_AT_GATE in user.metadata:
            key.status = StepStatus.PAUSED  # a gate ended the run to wait for a decision
    elif kind is DagsterEventType.STEP_SKIPPED:
        key.status = StepStatus.SKIPPED
    elif kind is DagsterEventType.ENGINE_EVENT and pause_record(entry):
        key.pause = entry.user_message or event.message or "paused"
    elif kind is DagsterEventType.STEP_OUTPUT:
        data = event.step_output_data
        key.outputs[data.output_name] = {k: v.value for k, v in data.metadata.items()}


def _summarise_step(step: FrameStep, by_key: dict[str, _KeyEvents]) -> StepSummary:
    if step.kind is StepKind.BATCH:
        return _summarise_batch(step, by_key)
    events = by_key.get(step.name)
    # a planning step's region: every plan, level, fan-out and planned step, then its result op
    region = (
        [e for k, e in by_key.items() if k.startswith(f"{step.name}__") and e.starts]
        if step.kind is StepKind.PLANNING
        else []
    )
    region_failed = [e for e in region if e.status == StepStatus.FAILED]
    if region_failed and (events is None or events.status is None):
        return StepSummary(
            step.name,
            step.kind.value,
            StepStatus.FAILED,
            attempts=max(e.starts for e in region),
            started_at=min((e.started_at for e in region if e.started_at), default=None),
            ended_at=max((e.ended_at for e in region if e.ended_at), default=None),
            detail=region_failed[0].failure,
        )
    if events is None or events.status is None:
        return StepSummary(step.name, step.kind.value, StepStatus.NOT_RUN)
    if step.kind is StepKind.CONVERGE and events.status == StepStatus.SUCCEEDED:
        if not events.outputs:  # it ended without output: a gate above it is paused
            return StepSummary(step.name, step.kind.value, StepStatus.NOT_RUN, events.starts)
    started_at = min((e.started_at for e in region if e.started_at), default=events.started_at)
    attempts = max((e.starts for e in region), default=events.starts)
    output = next(iter(events.outputs.values()), {}) if events.outputs else {}
    if step.kind in (StepKind.DECISION, StepKind.GATE):
        output = events.outputs.get("decided", output)
    failed = events.status in (StepStatus.FAILED, StepStatus.PAUSED)
    detail = events.failure if failed else _detail(step, output)
    status = (
        StepStatus(output.get(keys.STATUS_KEY, events.status))
        if events.status == StepStatus.SUCCEEDED
        else events.status
    )
    if events.pause and "decided" not in events.outputs:
        status, detail = StepStatus.PAUSED, events.pause  # ended without output: waiting
    return StepSummary(
        step.name,
        step.kind.value,
        status,
        attempts=attempts,
        started_at=started_at,
        ended_at=events.ended_at,
        rows=_int(output.get(keys.ROW_COUNT_KEY)),
        detail=detail,
    )


def _summarise_batch(step: FrameStep, by_key: dict[str, _KeyEvents]) -> StepSummary:
    split = by_key.get(split_name(step.name))
    merge = by_key.get(merge_name(step.name))
    chunks = {k: v for k, v in by_key.items() if k.startswith(f"{step.name}[")}
    if split is None or split.status is None:
        return StepSummary(step.name, step.kind.value, StepStatus.NOT_RUN)
    # Most tries any one piece (split, a chunk, merge) needed: 1 when nothing was retried.
    attempts = max(e.starts for e in (split, merge, *chunks.values()) if e is not None)
    ended = [e.ended_at for e in (split, merge, *chunks.values()) if e and e.ended_at]
    failed = [k for k, v in chunks.items() if v.status == StepStatus.FAILED]
    if split.status == StepStatus.FAILED:
        return StepSummary(
            step.name,
            "batch",
            StepStatus.FAILED,
            attempts,
            split.started_at,
            split.ended_at,
            detail=split.failure,
        )
    if failed:
        first = chunks[failed[0]].failure
        return StepSummary(
            step.name,
            "batch",
            StepStatus.FAILED,
            attempts,
            split.started_at,
            max(ended, default=None),
            detail=f"{len(failed)} of {len(chunks)} chunks failed: {first}",
        )
    if merge is None or merge.status != StepStatus.SUCCEEDED:
        status = merge.status if merge and merge.status else StepStatus.RUNNING
        return StepSummary(step.name, "batch", status, attempts, split.started_at)
    output = merge.outputs.get("result", {})
    detail = (
        f"{output.get(keys.CHUNKS_KEY, 0)} chunks, "
        f"{output.get(keys.ROWS_OUT_KEY, 0)} of {output.get(keys.ROWS_IN_KEY, 0)} rows out, "
        f"{output.get(keys.ROWS_FAILED_KEY, 0)} failed"
    )
    if output.get(keys.ROWS_DEAD_LETTERED_KEY) and output.get(keys.RECONCILIATION_KEY):
        # where every input row went, e.g. "240 rows: 231 processed, 9 dead-lettered"
        detail = f"{detail}; {output[keys.RECONCILIATION_KEY]}"
    return StepSummary(
        step.name,
        "batch",
        StepStatus(output.get(keys.STATUS_KEY, StepStatus.SUCCEEDED)),
        attempts,
        split.started_at,
        merge.ended_at,
        rows=_int(output.get(keys.ROW_COUNT_KEY)),
        detail=detail,
    )


def _detail(step: FrameStep, output: dict[str, Any]) -> str:
    if step.kind is StepKind.DECISION:
        return f"chose: {', '.join(output.get(keys.CHOSEN_KEY) or []) or '(none)'}"
    if step.kind is StepKind.CONVERGE:
        return f"joined: {output.get(keys.CONVERGED_KEY, '')}"
    if step.kind is StepKind.GATE:
        return str(output.get(keys.GATE_KEY, ""))
    if step.kind is StepKind.PLANNING:
        stopped = output.get(keys.STOPPED_KEY)
        detail = (
            f"{output.get(keys.PLANNED_STEPS_RUN_KEY, 0)} planned steps run in "
            f"{output.get(keys.PHASES_PLANNED_KEY, 0)} phase(s); {output.get(keys.BUDGET_KEY)}"
        )
        return f"{detail}; stopped: {stopped}" if stopped else detail
    return str(output.get(keys.CAPABILITY_KEY, ""))


def _explain_absence(
    frame: Frame,
    step: FrameStep,
    statuses: dict[str, StepSummary],
    decided: dict[str, list[str]],
    summary: StepSummary,
    setup_failure: str = "",
) -> StepSummary:
    """Why `step` did not run, naming the real cause: a failed upstream (however far up), a
    resource that failed its setup, a gate, the branch a decision did not choose."""
    upstream = [statuses[name] for name in step.step.depends_on]
    for state in upstream:
        if state.status == StepStatus.FAILED:
            return _with(summary, StepStatus.NOT_RUN, f"upstream '{state.name}' failed")
    for state in upstream:
        if state.status == StepStatus.NOT_RUN and _FAILED_UPSTREAM in state.detail:
            return _with(summary, StepStatus.NOT_RUN, state.detail)  # names the failed step
    if setup_failure and summary.attempts == 0:
        return _with(summary, StepStatus.NOT_RUN, f"not started: {setup_failure}")
    for gate, _ in sorted(step.guard):
        state = statuses[gate]
        ended = state.status in (StepStatus.REJECTED, StepStatus.TIMED_OUT)
        if state.kind == StepKind.GATE.value and ended:
            return _with(summary, StepStatus.SKIPPED, f"gate '{gate}' {state.detail}")
        if state.kind == StepKind.GATE.value and state.status == StepStatus.PAUSED:
            return _with(summary, StepStatus.NOT_RUN, f"waiting at gate '{gate}'")
    for decision, branch in sorted(step.guard):
        if decision in decided and branch not in decided[decision]:
            chose = ", ".join(decided[decision]) or "none"
            return _with(
                summary,
                StepStatus.SKIPPED,
                f"branch '{branch}' not chosen by decision '{decision}' (chose: {chose})",
            )
    for state in upstream:
        if state.status in (StepStatus.SKIPPED, StepStatus.NOT_RUN):
            return _with(
                summary, state.status, state.detail or f"upstream '{state.name}' did not run"
            )
    return _with(
        summary,
        summary.status if summary.status != StepStatus.RUNNING else StepStatus.NOT_RUN,
        summary.detail or "the run ended before this step",
    )


_FAILED_UPSTREAM = "' failed"


def _with(summary: StepSummary, status: StepStatus, detail: str) -> StepSummary:
    return replace(summary, status=status, detail=detail)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) else None
