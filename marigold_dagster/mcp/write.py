"""The write tier: launch, dry-run a planning step, decide a gate, resume, reprocess dead letters.

Each operation has a `preview_*` that checks the request and says what would happen, and a
`do_*` that calls the same function as the CLI: `run_locally` (`marigold run`),
`dry_run_planning` (`marigold plan --dry-run`), `decide_gate` (`marigold approve|reject`),
`resume_run` (`marigold resume`). The server lets `do_*` run only with a preview's token.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping

from dagster import DagsterRunStatus

from marigold_dagster.jobs.launch_inputs import input_run_config
from marigold_dagster.keys import CORRELATION_TAG, PAUSED_AT_GATE, GateStatus
from marigold_dagster.mcp.failures import ToolProblem
from marigold_dagster.mcp.models import (
    DryRunResult,
    GateDecisionResult,
    LaunchResult,
    PlanAttempt,
    ResumeResult,
)
from marigold_dagster.mcp.offline import frame_of
from marigold_dagster.mcp.read import (
    ceilings,
    dead_letters_file,
    facts_of,
    instance_of,
    run_info,
    step_states,
)
from marigold_dagster.mcp.settings import ServerSettings
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.records.gate_decisions import gate_state
from marigold_dagster.runs.dry_run import dry_run_planning
from marigold_dagster.runs.gate_commands import decide_gate
from marigold_dagster.runs.local_run import run_locally
from marigold_dagster.runs.resume import resume_run, steps_left
from marigold_dagster.template.model import StepKind

logger = logging.getLogger(__name__)


def preview_launch(
    settings: ServerSettings,
    template: str,
    inputs: Mapping[str, str],
    parent_correlation_id: str | None,
    wait: bool = True,
) -> list[str]:
    frame = frame_of(settings, template)
    input_run_config(frame, inputs)  # unknown inputs fail here, as at launch
    correlation_tags(parent_correlation_id)  # a blank parent fails here
    given = {name: inputs.get(name, spec.default) for name, spec in frame.template.inputs.items()}
    effects = [
        f"run template '{frame.name}' v{frame.template.version} ({len(frame.steps)} steps) to "
        "its end or its first gate, in this server's process, on its Dagster instance",
        f"inputs: {given or 'none'}",
        f"budget ceilings: {frame.template.budget.model_dump()}",
    ]
    if parent_correlation_id:
        effects.append(f"as a child task of {parent_correlation_id}")
    if not wait:
        effects.append("in the background: the answer comes at once, with the task's id")
    return effects


def do_launch(
    settings: ServerSettings,
    template: str,
    inputs: Mapping[str, str],
    parent_correlation_id: str | None,
    wait: bool = True,
) -> LaunchResult:
    """Run the template to its end (or first gate); with `wait` false, in a background thread.

    The task's correlation id is chosen here, so a caller that does not wait can follow the run
    with `list_runs(correlation_id)` as soon as it starts.
    """
    tags = correlation_tags(parent_correlation_id)
    launch = functools.partial(
        run_locally,
        template,
        settings.templates_dir,
        dict(inputs),
        project_dir=settings.project_dir,
        tags=tags,
        parent_correlation_id=parent_correlation_id,
    )
    if not wait:
        name = f"marigold-launch-{tags[CORRELATION_TAG][:8]}"
        threading.Thread(target=_logged(launch), name=name, daemon=True).start()
        return LaunchResult(correlation_id=tags[CORRELATION_TAG], running=True)
    outcome = launch()
    with instance_of(settings) as instance:
        facts = facts_of(instance, outcome.summary.run_id)
    return LaunchResult(
        correlation_id=facts.correlation_id,
        run=run_info(facts, ceilings(settings)),
        steps=step_states(outcome.summary),
        files=str(outcome.artifacts),
    )


def _logged(launch: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            launch()
        except Exception:  # nobody waits for this thread: the log is where its failure goes
            logger.exception("a background launch failed before its run was recorded")

    return run


def preview_dry_run(
    settings: ServerSettings, template: str, step: str | None, inputs: Mapping[str, str]
) -> list[str]:
    frame = frame_of(settings, template)
    planning = [s.name for s in frame if s.kind is StepKind.PLANNING]
    if not planning:
        raise ToolProblem("NOT_FOUND", f"template '{template}' has no planning step")
    if step is not None and step not in planning:
        raise ToolProblem("NOT_FOUND", f"'{step}' is not a planning step of '{template}'", planning)
    input_run_config(frame, inputs)
    chosen = step or planning[0]
    return [
        f"run the steps before '{chosen}' on a throwaway instance",
        f"ask the planner model for '{chosen}' (it uses model tokens) and validate its answers",
        "execute nothing the planner proposes",
    ]


def do_dry_run(
    settings: ServerSettings, template: str, step: str | None, inputs: Mapping[str, str]
) -> DryRunResult:
    dry = dry_run_planning(template, settings.templates_dir, step, dict(inputs))
    outcome = dry.outcome
    fragment = outcome.fragment
    return DryRunResult(
        template=dry.template,
        step=dry.step,
        accepted=dry.accepted,
        attempts=[
            PlanAttempt(
                attempt=a.number,
                accepted=a.accepted,
                findings=[str(f) for f in a.findings],
                prompt_tokens=a.prompt_tokens,
                completion_tokens=a.completion_tokens,
                answer=a.answer,
            )
            for a in outcome.attempts
        ],
        fragment=outcome.attempts[-1].answer if fragment is not None else None,
        estimate=(
            f"{fragment.estimate.steps} steps, ~{fragment.estimate.tokens:,} tokens, "
            f"${fragment.estimate.cost_usd:.4f}"
            if fragment is not None
            else None
        ),
        budget=dry.budget.describe(),
    )


def _identity(settings: ServerSettings) -> str:
    if not settings.identity:
        raise ToolProblem(
            "INVALID_ARGUMENT",
            "this server was started without an identity, so it cannot decide gates; "
            "start it with `marigold mcp --as NAME` (NAME one of the gate's approvers)",
        )
    return settings.identity


def preview_decision(
    settings: ServerSettings, run_id: str, step: str, decision: str, reason: str
) -> list[str]:
    by = _identity(settings)
    if not reason.strip():
        raise ToolProblem("INVALID_ARGUMENT", "say why: `reason` is kept for audit")
    with instance_of(settings) as instance:
        state = gate_state(instance, run_id, step)
    if state.status is not GateStatus.PENDING:
        raise ToolProblem(
            "GATE_DECISION", f"gate '{step}' of run {run_id} is {state.status}: {state.detail}"
        )
    if not state.pause.may_decide(by):
        raise ToolProblem(
            "GATE_DECISION",
            f"'{by}' may not decide gate '{step}' of template '{state.pause.template}'",
            state.pause.approvers,
        )
    return [
        f"record that {by} decided '{decision}' on gate '{step}' of run {run_id} "
        f"({state.pause.prompt!r}), reason: {reason!r}",
        "then resume the run from the gate (re-execution from failure, in this process)",
    ]


def do_decision(
    settings: ServerSettings, run_id: str, step: str, decision: str, reason: str
) -> GateDecisionResult:
    by = _identity(settings)
    with instance_of(settings) as instance:
        outcome = decide_gate(
            instance,
            run_id,
            step,
            decision,
            by=by,
            reason=reason,
            definitions_file=settings.definitions_file,
        )
    recorded, resumed = outcome.decision, outcome.resumed
    return GateDecisionResult(
        run_id=run_id,
        step=step,
        decision=recorded.decision,
        by=recorded.by,
        reason=recorded.reason,
        resumed_run_id=resumed.run_id if resumed else None,
        resumed_status=(("PAUSED" if resumed.paused_at else resumed.status) if resumed else None),
    )


def preview_resume(settings: ServerSettings, run_id: str) -> list[str]:
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        if facts.status == "PAUSED":
            gate = instance.get_run_by_id(run_id).tags[PAUSED_AT_GATE]  # type: ignore[union-attr]
            return [f"re-execute run {run_id} from gate '{gate}': the gate and what follows it"]
        if facts.status != DagsterRunStatus.FAILURE.value:
            raise ToolProblem(
                "INVALID_ARGUMENT",
                f"run {run_id} is {facts.status}; only a failed or paused run can be resumed",
            )
        left = steps_left(instance, run_id)
    if not left:
        raise ToolProblem("INVALID_ARGUMENT", f"every step of run {run_id} succeeded")
    return [f"re-execute run {run_id} from failure: {len(left)} step(s) run again: {left[:10]}"]


def do_resume(settings: ServerSettings, run_id: str) -> ResumeResult:
    with instance_of(settings) as instance:
        resumed = resume_run(instance, run_id, settings.definitions_file, log_level="WARNING")
    status = "PAUSED" if resumed.paused_at else resumed.status
    return ResumeResult(parent_run_id=resumed.parent_run_id, run_id=resumed.run_id, status=status)


def _reprocess_plan(
    settings: ServerSettings, run_id: str, step: str, input_name: str | None
) -> tuple[str, dict[str, str], str]:
    """The template, launch inputs and parent task of reprocessing `step`'s dead letters."""
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        path = dead_letters_file(instance, run_id, step)
    frame = frame_of(settings, facts.template)
    if path is None:
        raise ToolProblem("NOT_FOUND", f"step '{step}' of run {run_id} dead-lettered no rows")
    tables = [name for name, spec in frame.template.inputs.items() if spec.kind == "table"]
    if input_name is None:
        if len(tables) != 1:
            raise ToolProblem("INVALID_ARGUMENT", "say which input the rows replace", tables)
        input_name = tables[0]
    if input_name not in tables:
        raise ToolProblem("NOT_FOUND", f"'{input_name}' is not a table input", tables)
    return facts.template, {input_name: str(path)}, facts.correlation_id


def preview_reprocess(
    settings: ServerSettings, run_id: str, step: str, input_name: str | None
) -> list[str]:
    template, inputs, parent = _reprocess_plan(settings, run_id, step, input_name)
    return [
        f"run template '{template}' again with {inputs}",
        f"as a child task of {parent}, the task of run {run_id}",
    ]


def do_reprocess(
    settings: ServerSettings, run_id: str, step: str, input_name: str | None
) -> LaunchResult:
    template, inputs, parent = _reprocess_plan(settings, run_id, step, input_name)
    return do_launch(settings, template, inputs, parent)
