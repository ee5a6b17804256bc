"""Planned steps at run time: what the plan, level, fan-out, collect and result ops run.

`plan_phase` asks the planner for a phase's fragment (within the budget) and releases its first
level; `run_planned_step` runs one planned step with its provenance; `release_level` records a
finished level and releases the next (or stops when the budget is spent); `collect_phase`
closes a phase; `planning_result` is the planning step's own result. The values passed between
these ops (`PlanRecord`, `PlanProgress`, `PlannedTask`, ...) are defined here too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    AssetObservation,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
)

from grammar_ops import Composition, Kind, ModelError
from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue, as_table, store_value
from marigold_dagster.errors import PlanRejected
from marigold_dagster.keys import (
    CLOSED,
    DONE,
    LEVEL,
    NEXT,
    PHASE,
    PHASE_COUNT_KEY,
    PHASES,
    PLAN,
    PREVIOUS,
    PROGRESS,
    RESULT,
    STEP_COUNT_KEY,
    TASK,
    StepStatus,
    plan_asset_key,
    planned_steps_asset_key,
    planned_steps_partitions_name,
    step_asset_key,
)
from marigold_dagster.planning.budget import BudgetStatus, BudgetUse
from marigold_dagster.planning.planner import PlanOutcome, PlanRequest, plan_fragment
from marigold_dagster.planning.validation import PlanningScope, ValidatedFragment, columns_read
from marigold_dagster.records.budget_use import budget_metadata, budget_status, budget_use
from marigold_dagster.runtime.composition import (
    output_summary,
    primitive_context,
    run_composition,
    run_metadata,
)
from marigold_dagster.runtime.outputs import run_artifacts_dir, step_failure
from marigold_dagster.template.frame import Frame, FrameStep
from resources.pricing import bound_prices, priced_model

MAX_REASONING_METADATA = 500
ESTIMATE_SAMPLE_ROWS = 500


@dataclass(frozen=True)
class PlannedStepRecord:
    """A validated planned step, as data (its composition is rebuilt from the spec to run)."""

    id: str
    uses: str | None
    compose: tuple[dict[str, Any], ...] | None
    config: dict[str, Any]
    depends_on: tuple[str, ...]
    depth: int
    reason: str
    source: str
    handler_type: str
    spec: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PlanRecord:
    """The accepted plan of one phase (or why there is none)."""

    step: str
    phase: int
    fragment_id: str
    reasoning: str
    done: bool
    steps: tuple[PlannedStepRecord, ...] = ()
    stopped: str = ""


@dataclass(frozen=True)
class PlannedResult:
    """What became of one planned step."""

    id: str
    status: StepStatus  # succeeded or not_run
    value: StepValue | None = None
    reason: str = ""


@dataclass(frozen=True)
class PlanProgress:
    """Results available to the next level: upstream results and planned results so far."""

    inputs: dict[str, StepValue]
    primary: str | None
    planned: dict[str, PlannedResult] = field(default_factory=dict)
    stopped: str = ""

    def with_level(self, results: list[PlannedResult], stopped: str = "") -> PlanProgress:
        planned = {**self.planned, **{r.id: r for r in results}}
        return replace(self, planned=planned, stopped=stopped or self.stopped)

    def value_of(self, name: str) -> StepValue | None:
        if name in self.planned:
            return self.planned[name].value
        return self.inputs.get(name)


@dataclass(frozen=True)
class PlannedTask:
    """One planned step to run, with the results it depends on."""

    plan: PlanRecord
    step: PlannedStepRecord
    inputs: dict[str, StepValue]
    primary: str | None


@dataclass(frozen=True)
class PhaseResult:
    phase: int
    plan: PlanRecord
    progress: PlanProgress

    @property
    def finished(self) -> bool:
        return self.plan.done or bool(self.plan.stopped or self.progress.stopped)


def planning_scope(
    frame: Frame,
    step: FrameStep,
    progress: PlanProgress,
    budget: BudgetStatus | None,
    phase: int = 1,
) -> PlanningScope:
    spec = step.planning
    presets = spec.presets()
    composable = frozenset(name for name in presets if name in frame.catalog.primitives)
    results: dict[str, tuple[Kind, int | None]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    for name, value in progress.inputs.items():
        results[name] = (value.kind, value.rows)
        samples[name] = _sample(value)
    for name, planned in progress.planned.items():
        if planned.value is not None:
            results[name] = (planned.value.kind, planned.value.rows)
            samples[name] = _sample(planned.value)
    return PlanningScope(
        step=step.name,
        template_steps=frozenset(frame.steps),
        results=results,
        primary=progress.primary,
        presets=presets,
        catalog=frame.catalog,
        max_steps=spec.max_steps,
        max_depth=spec.max_depth,
        max_fanout=frame.template.budget.max_fanout,
        allow_dynamic_composition=spec.allow_dynamic_composition,
        composable=composable if spec.allow_dynamic_composition else frozenset(),
        budget=budget,
        max_children=spec.max_children,
        output_columns=output_contract(frame, step),
        last_phase=phase >= spec.max_phases,
        samples={name: rows for name, rows in samples.items() if rows},
        usd_per_token=max(bound_prices(key).per_token() for key in frame.template.models.values()),
    )


def output_contract(frame: Frame, step: FrameStep) -> tuple[str, ...]:
    """The columns the planning step's result must have: `planning.output.columns`, else
    those the template's next steps read from it (known from their configuration)."""
    spec = step.planning
    if spec.output is not None:
        return tuple(spec.output.columns)
    needed: dict[str, None] = {}
    for other in frame.steps.values():
        reads_it = other.step.depends_on[:1] == [step.name]
        if reads_it and other.kind.value in ("task", "batch") and other.composition:
            needed.update(dict.fromkeys(sorted(columns_read(other.composition))))
        joins = getattr(other.step, "combine", None) == "join"
        if joins and step.name in other.step.depends_on:  # a converge joining on its keys
            needed.update(dict.fromkeys(getattr(other.step, "keys", [])))
    return tuple(needed)


def _sample(value: StepValue) -> list[dict[str, Any]]:
    """The first rows of a result, for the plan's estimates (none for a non-table)."""
    if value.kind not in (Kind.TABLE, Kind.RECORDS):
        return []
    loaded = value.load()
    if isinstance(loaded, pa.Table):
        return loaded.slice(0, ESTIMATE_SAMPLE_ROWS).to_pylist()
    if isinstance(loaded, list):
        return [row for row in loaded[:ESTIMATE_SAMPLE_ROWS] if isinstance(row, dict)]
    return []


def plan_request(
    frame: Frame, step: FrameStep, progress: PlanProgress, status: BudgetStatus, phase: int
) -> PlanRequest:
    """The planner call for `step` given what is known so far (shared with the dry run)."""
    spec = step.planning
    sees = spec.sees if spec.sees is not None else list(step.step.depends_on)
    results = {name: value for name, value in progress.inputs.items() if name in sees}
    results.update({rid: r.value for rid, r in progress.planned.items() if r.value is not None})
    return PlanRequest(
        step=step.name,
        goal=spec.goal,
        scope=planning_scope(frame, step, progress, status, phase),
        results=results,
        budget=status,
        max_attempts=spec.max_attempts,
        tier=spec.schema_tier,
        phase=phase,
    )


def _record(step: str, phase: int, fragment: ValidatedFragment, answer: Any) -> PlanRecord:
    digest = hashlib.sha256(json.dumps(answer, sort_keys=True, default=str).encode()).hexdigest()
    steps = tuple(
        PlannedStepRecord(
            id=planned.id,
            uses=planned.uses,
            compose=planned.compose,
            config=planned.config,
            depends_on=planned.depends_on,
            depth=planned.depth,
            reason=planned.reason,
            source=planned.composition.source,
            handler_type=planned.composition.handler_type,
            spec=tuple(planned.composition.spec()),
        )
        for planned in fragment.steps
    )
    return PlanRecord(
        step, phase, f"{step}-p{phase}-{digest[:12]}", fragment.reasoning, fragment.done, steps
    )


def _budget_stop(outcome: PlanOutcome, phase: int) -> str | None:
    """Why planning stops gracefully: the last answer only failed to fit the budget."""
    findings = outcome.attempts[-1].findings if outcome.attempts else ()
    over = [f for f in findings if f.code == "OVER_BUDGET"]
    if not over:
        return None
    ceilings = [m.group(1) for f in over if (m := re.search(r"past (.+?); ", f.message))]
    return f"budget ceiling reached: the plan of phase {phase} would not fit: " + (
        ", ".join(dict.fromkeys(ceilings)) or over[0].message
    )


def _stopped(
    step: FrameStep, phase: int, progress: PlanProgress, reason: str, metadata: dict[str, Any]
) -> Output:
    """The phase's closing output when planning stops at a bound: what ran so far, and why."""
    record = PlanRecord(step.name, phase, "", "", False, stopped=reason)
    return Output(
        PhaseResult(phase, record, replace(progress, stopped=reason)),
        CLOSED,
        metadata={keys.PLANNING_KEY: reason, keys.STOPPED_KEY: reason, **metadata},
    )


def _validation_check(
    frame: Frame, step: FrameStep, outcome: Any, *, passed: bool
) -> AssetCheckEvaluation:
    """The plan's validation as an asset check on the plan asset (attempts and findings)."""
    return AssetCheckEvaluation(
        asset_key=plan_asset_key(frame.name, step.name),
        check_name=keys.PLAN_VALIDATED_CHECK,
        passed=passed,
        metadata=_attempts_metadata(outcome),
        description="The planner's fragment passed every validation rule before anything ran.",
    )


def _attempts_metadata(outcome: Any) -> dict[str, Any]:
    attempts = outcome.attempts
    return {
        keys.ATTEMPTS_KEY: len(attempts),
        keys.REJECTED_ATTEMPTS_KEY: sum(1 for a in attempts if not a.accepted),
        keys.VALIDATION_KEY: MetadataValue.json([a.as_json() for a in attempts]),
    }


def _digest_metadata(outcome: PlanOutcome) -> dict[str, Any]:
    """The model's digests of 10-100 KB results that the prompt showed, and any that failed."""
    if not outcome.digests and not outcome.digest_failures:
        return {}
    return {
        keys.RESULT_DIGESTS_KEY: MetadataValue.json(
            {"digests": outcome.digests, "failed": outcome.digest_failures}
        )
    }


def _tasks(record: PlanRecord, progress: PlanProgress, depth: int) -> Iterator[DynamicOutput]:
    for planned in record.steps:
        if planned.depth != depth:
            continue
        names = planned.depends_on or ((progress.primary,) if progress.primary else ())
        inputs = {}
        for name in names:
            value = progress.value_of(name)
            if value is not None:
                inputs[name] = value
        yield DynamicOutput(
            PlannedTask(record, planned, inputs, progress.primary),
            mapping_key=planned.id,
            output_name=LEVEL,
        )


def _composition(frame: Frame, planned: PlannedStepRecord) -> Composition:
    if planned.compose is not None:
        return frame.catalog.compose(list(planned.compose))
    assert planned.uses is not None
    return frame.catalog.resolve(planned.uses, planned.config)


def _provenance(task: PlannedTask) -> dict[str, Any]:
    planned, plan = task.step, task.plan
    return {
        keys.CREATED_BY_KEY: "planning_step",
        keys.PLANNING_STEP_KEY: plan.step,
        keys.FRAGMENT_ID_KEY: plan.fragment_id,
        keys.PLANNING_PHASE_KEY: plan.phase,
        keys.PLANNING_REASONING_KEY: plan.reasoning[:MAX_REASONING_METADATA],
        keys.PLANNED_REASON_KEY: planned.reason[:MAX_REASONING_METADATA],
        keys.HANDLER_TYPE_KEY: planned.handler_type,
        keys.COMPOSITION_SOURCE_KEY: planned.source,
        keys.COMPOSITION_SPEC_KEY: MetadataValue.json(list(planned.spec)),
        keys.DEPTH_KEY: planned.depth,
    }


def planned_rows(results: Mapping[str, PlannedResult]) -> pa.Table:
    """Rows of the given planned results, tagged with `planned_step`; non-rows as JSON."""
    tables = []
    for planned_id, result in results.items():
        if result.value is None:
            continue
        loaded = result.value.load()
        if isinstance(loaded, pa.Table) or (
            isinstance(loaded, list) and all(isinstance(row, dict) for row in loaded)
        ):
            table = as_table(loaded)
        else:
            value = loaded.model_dump(mode="json") if hasattr(loaded, "model_dump") else loaded
            table = pa.table({"result_json": [json.dumps(value, default=str, sort_keys=True)]})
        column = pa.array([planned_id] * table.num_rows, pa.string())
        if "planned_step" in table.column_names:  # rows an earlier planning step tagged
            table = table.drop_columns(["planned_step"])
        tables.append(table.append_column("planned_step", column))
    if not tables:
        return pa.table({"planned_step": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


def plan_phase(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    phase: int,
    inputs: Mapping[str, Any],
) -> Iterator[Any]:
    """Ask the planner for phase `phase`'s fragment (within the budget); release its first level."""
    spec = step.planning
    deps = list(step.step.depends_on)
    planner_key = frame.template.models[spec.model]
    upstream = {name: inputs[name] for name in deps}
    primary = deps[0] if deps else None
    progress = PlanProgress(dict(upstream), primary)
    # The phase before hands over from whichever of its ops closed it (one, or none at all).
    previous: PhaseResult | None = next(iter(inputs.get(PREVIOUS) or []), None)
    if previous is not None:
        progress = PlanProgress(dict(upstream), primary, dict(previous.progress.planned), "")
    status = budget_status(context.instance, context.run_id, frame.template.budget)
    reason = status.ceiling_reached(BudgetUse(phases=1))
    if reason:
        context.log.warning(f"planning step '{step.name}' phase {phase} not planned: {reason}")
        yield _stopped(step, phase, progress, reason, budget_metadata(status))
        return
    request = plan_request(frame, step, progress, status, phase)
    model = priced_model(planner_key, getattr(context.resources, planner_key))
    try:
        outcome = plan_fragment(model, request)
    except ModelError as error:  # the planner call itself failed: retried under `retry:`
        spent = getattr(error, "outcome", None)
        if spent is not None and spent.usage.requests:  # counted now, not lost to the retry
            yield AssetObservation(
                asset_key=plan_asset_key(frame.name, step.name),
                description=f"tokens the failed planner call of phase {phase} spent",
                metadata={
                    keys.SPENT_BEFORE_RETRY_KEY: True,
                    **_attempts_metadata(spent),
                    **spent.usage.as_metadata(),
                },
            )
        raise step_failure(step, error, what=f"the planner call of '{step.name}'") from error
    except PlanRejected as rejected:
        yield _validation_check(frame, step, rejected.outcome, passed=False)
        yield AssetMaterialization(
            asset_key=plan_asset_key(frame.name, step.name),
            description=f"no plan accepted in phase {phase}",
            metadata={
                keys.PLANNING_PHASE_KEY: phase,
                **_attempts_metadata(rejected.outcome),
                **rejected.outcome.usage.as_metadata(),
            },
        )
        stop = _budget_stop(rejected.outcome, phase) if spec.on_budget == "stop" else None
        if stop:
            context.log.warning(f"planning step '{step.name}' stops: {stop}")
            yield _stopped(
                step,
                phase,
                progress,
                stop,
                {
                    PHASE_COUNT_KEY: 1,
                    **_attempts_metadata(rejected.outcome),
                    **_digest_metadata(rejected.outcome),
                    **rejected.outcome.usage.as_metadata(),
                    **budget_metadata(status),
                },
            )
            return
        raise Failure(
            description=str(rejected),
            metadata={
                **_attempts_metadata(rejected.outcome),
                **_digest_metadata(rejected.outcome),
                PHASE_COUNT_KEY: 1,
                **rejected.outcome.usage.as_metadata(),
            },
            allow_retries=False,
        ) from rejected
    fragment = outcome.fragment
    assert fragment is not None and outcome.prompt is not None
    accepted = outcome.attempts[-1].answer
    record = _record(step.name, phase, fragment, accepted)
    prompt = outcome.prompt
    metadata: dict[str, Any] = {
        PHASE_COUNT_KEY: 1,
        keys.FRAGMENT_ID_KEY: record.fragment_id,
        keys.PLANNING_PHASE_KEY: phase,
        keys.PLANNED_STEPS_KEY: len(record.steps),
        keys.DONE_KEY: fragment.done,
        keys.PROMPT_SHA256_KEY: outcome.attempts[-1].prompt_sha256,
        keys.PROMPT_CHARS_KEY: len(prompt.text),
        keys.PROMPT_PREFIX_CHARS_KEY: len(prompt.prefix),
        keys.CAPABILITY_TIER_KEY: prompt.tier,
        keys.FRAGMENT_KEY: MetadataValue.json(accepted),
        keys.ESTIMATE_KEY: (
            f"{fragment.estimate.steps} steps, ~{fragment.estimate.tokens:,} tokens"
        ),
        **_attempts_metadata(outcome),
        **_digest_metadata(outcome),
        **outcome.usage.as_metadata(),
        **budget_metadata(status),
    }
    yield _validation_check(frame, step, outcome, passed=True)
    # Each planned step materializes the partition named by its id; register them first.
    context.instance.add_dynamic_partitions(
        planned_steps_partitions_name(frame.name, step.name),
        [planned.id for planned in record.steps],
    )
    yield AssetMaterialization(
        asset_key=plan_asset_key(frame.name, step.name),
        description=f"plan of phase {phase}: {fragment.reasoning[:200]}",
        metadata={k: v for k, v in metadata.items() if not k.startswith(keys.BUDGET_PREFIX)},
    )
    if not record.steps:  # done, nothing to run: no level, fan-out or collect starts
        yield Output(PhaseResult(phase, record, progress), CLOSED, metadata=metadata)
        return
    yield Output(record, PLAN, metadata=metadata)
    yield Output(progress, PROGRESS)
    yield from _tasks(record, progress, depth=1)


def run_planned_step(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    phase: int,
    depth: int,
    inputs: Mapping[str, Any],
) -> Iterator[Any]:
    """Run one planned step of depth `depth`: its composition, with provenance."""
    task: PlannedTask = inputs[TASK]
    planned = task.step
    missing = [
        name
        for name in (planned.depends_on or ((task.primary,) if task.primary else ()))
        if name not in task.inputs
    ]
    if missing:
        yield Output(
            PlannedResult(
                planned.id, StepStatus.NOT_RUN, reason=f"dependencies did not run: {missing}"
            ),
            RESULT,
        )
        return
    reason = budget_status(
        context.instance, context.run_id, frame.template.budget
    ).ceiling_reached()
    if reason:
        context.log.warning(f"planned step '{planned.id}' not run: {reason}")
        yield Output(
            PlannedResult(planned.id, StepStatus.NOT_RUN, reason=reason),
            RESULT,
            metadata={keys.STATUS_KEY: StepStatus.NOT_RUN.value, keys.REASON_KEY: reason},
        )
        return
    composition = _composition(frame, planned)
    first = planned.depends_on or ((task.primary,) if task.primary else ())
    value = task.inputs[first[0]].load() if first else None
    ctx = primitive_context(context, frame, planned.id, composition, task.inputs, {})
    try:
        result, run = run_composition(composition, value, ctx, step.step.timeout_s)
    except Failure:
        raise
    except Exception as error:
        failure = step_failure(step, error, what=f"planned step '{planned.id}' of '{step.name}'")
        raise Failure(
            description=failure.description,
            metadata={
                **failure.metadata,
                **_provenance(task),
                STEP_COUNT_KEY: 1,
                **ctx.usage.as_metadata(),
            },
            allow_retries=failure.allow_retries,
        ) from error
    stored = store_value(f"{step.name}__{planned.id}", result, run_artifacts_dir(context))
    metadata = {
        keys.STATUS_KEY: StepStatus.SUCCEEDED.value,
        keys.ATTEMPT_KEY: context.retry_number + 1,
        STEP_COUNT_KEY: 1,
        **_provenance(task),
        **run_metadata(run),
        **output_summary(result),
    }
    yield AssetMaterialization(
        asset_key=planned_steps_asset_key(frame.name, step.name),
        partition=planned.id,
        description=planned.reason[:200] or None,
        metadata=metadata,
    )
    yield Output(PlannedResult(planned.id, StepStatus.SUCCEEDED, stored), RESULT, metadata=metadata)


def release_level(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    phase: int,
    depth: int,
    inputs: Mapping[str, Any],
) -> Iterator[Any]:
    """After level `depth - 1` finished: record its results and release level `depth`.

    When the plan has no step of depth `depth` or more, or the budget is spent, this op closes
    the phase instead (as `collect_phase` would), so no later fan-out or collect starts.
    """
    plan: PlanRecord = inputs[PLAN]
    progress: PlanProgress = inputs[PROGRESS].with_level(list(inputs[DONE]))
    pending = [s for s in plan.steps if s.depth >= depth]
    if not pending:
        yield from _close_phase(step, phase, plan, progress)
        return
    status = budget_status(context.instance, context.run_id, frame.template.budget)
    reason = status.ceiling_reached()
    if reason:
        context.log.warning(
            f"'{step.name}' stops creating work: {reason}; "
            f"{len(pending)} planned step(s) of depth {depth}+ not started"
        )
        yield from _close_phase(step, phase, plan, replace(progress, stopped=reason))
        return
    yield Output(progress, PROGRESS)
    yield from _tasks(plan, progress, depth)


def collect_phase(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    phase: int,
    inputs: Mapping[str, Any],
) -> Iterator[Output]:
    """Close phase `phase` after its deepest level: every planned result of it."""
    plan: PlanRecord = inputs[PLAN]
    progress: PlanProgress = inputs[PROGRESS].with_level(list(inputs[DONE]))
    yield from _close_phase(step, phase, plan, progress)


def _close_phase(
    step: FrameStep, phase: int, plan: PlanRecord, progress: PlanProgress
) -> Iterator[Output]:
    """The phase's result, and (as `next`) whether planning goes on: only then does the next
    phase's plan op start."""
    result = PhaseResult(phase, plan, progress)
    ran = sum(1 for r in progress.planned.values() if r.status == StepStatus.SUCCEEDED)
    if not result.finished and phase < step.planning.max_phases:
        yield Output(result, NEXT)
    yield Output(
        result,
        PHASE,
        metadata={
            keys.PLANNING_PHASE_KEY: phase,
            keys.PLANNED_STEPS_RUN_KEY: ran,
            keys.STOPPED_KEY: progress.stopped or plan.stopped or "",
            keys.DONE_KEY: plan.done,
        },
    )


def planning_result(
    context: OpExecutionContext, frame: Frame, step: FrameStep, inputs: Mapping[str, Any]
) -> Iterator[Any]:
    """The planning step's own result: the rows of its terminal planned steps."""
    phases: list[PhaseResult] = sorted(inputs[PHASES], key=lambda p: p.phase)
    results: dict[str, PlannedResult] = {}
    for phase in phases:
        results.update(phase.progress.planned)
    consumed = {dep for p in phases for s in p.plan.steps for dep in s.depends_on}
    table = planned_rows({rid: r for rid, r in results.items() if rid not in consumed})
    stopped = next(
        (
            p.plan.stopped or p.progress.stopped
            for p in phases
            if p.plan.stopped or p.progress.stopped
        ),
        "",
    )
    spec = step.planning
    last = phases[-1] if phases else None
    if (
        not stopped
        and spec.max_phases > 1
        and last is not None
        and last.phase == spec.max_phases
        and last.plan.fragment_id
        and not last.plan.done
    ):
        stopped = (
            f"planning bound reached: max_phases ({spec.max_phases} of {spec.max_phases} "
            "phases) without the planner answering done"
        )
    used = budget_use(context.instance, context.run_id).plus(BudgetUse(steps=1))  # this step
    status = BudgetStatus(frame.template.budget, used)
    stored = store_value(context.op_handle.name, table, run_artifacts_dir(context))
    planned_ran = sum(1 for r in results.values() if r.status == StepStatus.SUCCEEDED)
    metadata = {
        keys.STATUS_KEY: (StepStatus.STOPPED if stopped else StepStatus.SUCCEEDED).value,
        keys.CREATED_BY_KEY: "template",
        keys.STEP_KIND_TAG: "planning",
        STEP_COUNT_KEY: 1,
        keys.PHASES_PLANNED_KEY: sum(1 for p in phases if p.plan.fragment_id),
        keys.PLANNED_STEPS_RUN_KEY: planned_ran,
        keys.PLANNED_STEPS_NOT_RUN_KEY: len(results) - planned_ran,
        keys.STOPPED_KEY: stopped,
        **budget_metadata(status),
        **output_summary(table),
    }
    yield AssetMaterialization(
        asset_key=step_asset_key(frame.name, step.name),
        description=f"{planned_ran} planned steps in {len(phases)} phase(s)",
        metadata={k: v for k, v in metadata.items() if k != STEP_COUNT_KEY},
    )
    yield Output(stored, RESULT, metadata=metadata)
