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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
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
    DONE,
    LEVEL,
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
from marigold_dagster.planning.validation import PlanningScope, ValidatedFragment
from marigold_dagster.records.budget_use import budget_metadata, budget_status, budget_use
from marigold_dagster.runtime.composition import (
    output_summary,
    primitive_context,
    run_composition,
    run_metadata,
)
from marigold_dagster.runtime.outputs import run_artifacts_dir, step_failure
from marigold_dagster.template.frame import Frame, FrameStep

MAX_REASONING_METADATA = 500


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
) -> PlanningScope:
    spec = step.planning
    presets = spec.presets()
    composable = frozenset(name for name in presets if name in frame.catalog.primitives)
    results: dict[str, tuple[Kind, int | None]] = {}
    for name, value in progress.inputs.items():
        results[name] = (value.kind, value.rows)
    for name, planned in progress.planned.items():
        if planned.value is not None:
            results[name] = (planned.value.kind, planned.value.rows)
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
    )


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
        scope=planning_scope(frame, step, progress, status),
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


def _validation_check(
    frame: Frame, step: FrameStep, outcome: Any, *, passed: bool
) -> AssetCheckEvaluation:
    """The plan's validation as an asset check on the plan asset (attempts and findings)."""
    return AssetCheckEvaluation(
        asset_key=plan_asset_key(frame.name, step.name),
        check_name="plan_validated",
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
    previous: PhaseResult | None = inputs.get(PREVIOUS)
    if previous is not None:
        progress = PlanProgress(dict(upstream), primary, dict(previous.progress.planned), "")
        if previous.finished:
            record = PlanRecord(
                step.name,
                phase,
                "",
                "",
                True,
                stopped=previous.plan.stopped or previous.progress.stopped,
            )
            yield Output(
                record,
                PLAN,
                metadata={
                    keys.PLANNING_KEY: "not needed: "
                    + (
                        "the planner answered done"
                        if previous.plan.done
                        else previous.plan.stopped or previous.progress.stopped
                    )
                },
            )
            yield Output(progress, PROGRESS)
            return
    status = budget_status(context.instance, context.run_id, frame.template.budget)
    reason = status.ceiling_reached(BudgetUse(phases=1))
    if reason:
        context.log.warning(f"planning step '{step.name}' phase {phase} not planned: {reason}")
        record = PlanRecord(step.name, phase, "", "", False, stopped=reason)
        yield Output(record, PLAN, metadata={keys.PLANNING_KEY: reason, **budget_metadata(status)})
        yield Output(replace(progress, stopped=reason), PROGRESS)
        return
    request = plan_request(frame, step, progress, status, phase)
    model = getattr(context.resources, planner_key)
    try:
        outcome = plan_fragment(model, request)
    except ModelError as error:  # the planner call itself failed: retried under `retry:`
        raise step_failure(step, error, what=f"the planner call of '{step.name}'") from error
    except PlanRejected as rejected:
        yield _validation_check(frame, step, rejected.outcome, passed=False)
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
    """After level `depth - 1` finished: record its results and release level `depth`."""
    plan: PlanRecord = inputs[PLAN]
    progress: PlanProgress = inputs[PROGRESS].with_level(list(inputs[DONE]))
    status = budget_status(context.instance, context.run_id, frame.template.budget)
    reason = status.ceiling_reached()
    pending = [s for s in plan.steps if s.depth >= depth]
    if reason and pending:
        context.log.warning(
            f"'{step.name}' stops creating work: {reason}; "
            f"{len(pending)} planned step(s) of depth {depth}+ not started"
        )
        progress = replace(progress, stopped=reason)
        yield Output(progress, PROGRESS, metadata={keys.STOPPED_KEY: reason})
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
    """Close phase `phase`: every planned result of it, and whether planning should go on."""
    plan: PlanRecord = inputs[PLAN]
    progress: PlanProgress = inputs[PROGRESS].with_level(list(inputs[DONE]))
    result = PhaseResult(phase, plan, progress)
    ran = sum(1 for r in progress.planned.values() if r.status == StepStatus.SUCCEEDED)
    yield Output(
        result,
        RESULT,
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
