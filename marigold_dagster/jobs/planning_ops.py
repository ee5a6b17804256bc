"""Planning steps as Dagster ops: plan, then planned steps level by level, phase by phase.

A planning step `deep_review` with `max_depth: D` and `max_phases: P` compiles, per phase, to

    deep_review__plan -> deep_review__L1[id] ... -> deep_review__L2_fanout -> deep_review__L2[id]
    ... -> deep_review__collect

(phase p > 1 prefixes `p{p}_`: `deep_review__p2_plan`, `deep_review__p2_L1[id]`), and ends in
one op named `deep_review` that hands the planned results to the template's next step. Each
planned step is a mapped Dagster step running its grammar composition through the same runtime
as static steps, with provenance in its metadata. Nothing planned runs before the plan has been
validated; the accepted plan is an op output, so a re-executed run reuses it instead of asking
the planner again.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    DynamicOut,
    In,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
)

from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue
from marigold_dagster.jobs.step_ops import op_tags
from marigold_dagster.keys import (
    CLOSED,
    DONE,
    LEVEL,
    NEXT,
    PHASE,
    PHASES,
    PLAN,
    PREVIOUS,
    PROGRESS,
    RESULT,
    TASK,
    collect_op_name,
    fanout_op_name,
    level_op_name,
    plan_op_name,
)
from marigold_dagster.runtime.outputs import retry_policy
from marigold_dagster.runtime.planned import (
    PhaseResult,
    PlannedResult,
    PlannedTask,
    PlanProgress,
    PlanRecord,
    collect_phase,
    plan_phase,
    planning_result,
    release_level,
    run_planned_step,
)
from marigold_dagster.template.frame import Frame, FrameStep


def build_plan_op(frame: Frame, step: FrameStep, phase: int) -> OpDefinition:
    """Ask the planner for this phase's fragment; yield its depth-1 steps as dynamic outputs."""
    spec = step.planning
    deps = list(step.step.depends_on)
    planner_key = frame.template.models[spec.model]

    def compute(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        yield from plan_phase(context, frame, step, phase, inputs)

    ins = {name: In(StepValue) for name in deps}
    if phase > 1:
        ins[PREVIOUS] = In(list)  # fan-in: from whichever op closed the phase before
    return OpDefinition(
        compute_fn=compute,
        name=plan_op_name(step.name, phase),
        ins=ins,
        outs={
            PLAN: Out(PlanRecord, is_required=False),
            PROGRESS: Out(PlanProgress, is_required=False),
            LEVEL: DynamicOut(PlannedTask, is_required=False),
            CLOSED: Out(PhaseResult, is_required=False),
        },
        description=f"Plan phase {phase} of '{step.name}': {spec.goal[:120]}",
        required_resource_keys={planner_key},
        tags=op_tags(frame, step),
        # a failed planner *call* is retried under the step's `retry:`; a rejected *answer*
        # is re-planned inside the op, up to `planning.max_attempts`
        retry_policy=retry_policy(step.step.retry),
    )


def build_level_op(frame: Frame, step: FrameStep, phase: int, depth: int) -> OpDefinition:
    """Run one planned step of depth `depth`: its composition, with provenance."""

    def compute(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        yield from run_planned_step(context, frame, step, phase, depth, inputs)

    return OpDefinition(
        compute_fn=compute,
        name=level_op_name(step.name, phase, depth),
        ins={TASK: In(PlannedTask)},
        outs={RESULT: Out(PlannedResult)},
        description=f"Planned steps of depth {depth} in phase {phase} of '{step.name}'",
        required_resource_keys=set(frame.template.models.values()),
        tags={**op_tags(frame, step), keys.CREATED_BY_KEY: "planning_step"},
        retry_policy=retry_policy(step.step.retry),
        pool=step.step.pool,
    )


def build_fanout_op(frame: Frame, step: FrameStep, phase: int, depth: int) -> OpDefinition:
    """After level `depth - 1` finished: record its results and release level `depth`."""

    def compute(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        yield from release_level(context, frame, step, phase, depth, inputs)

    return OpDefinition(
        compute_fn=compute,
        name=fanout_op_name(step.name, phase, depth),
        ins={PLAN: In(PlanRecord), PROGRESS: In(PlanProgress), DONE: In(list)},
        outs={
            PROGRESS: Out(PlanProgress, is_required=False),
            LEVEL: DynamicOut(PlannedTask, is_required=False),
            PHASE: Out(PhaseResult, is_required=False),
            NEXT: Out(PhaseResult, is_required=False),
        },
        description=f"Release the depth-{depth} planned steps of phase {phase} of '{step.name}'",
        tags=op_tags(frame, step),
    )


def build_collect_op(frame: Frame, step: FrameStep, phase: int) -> OpDefinition:
    """Close a phase: every planned result of it, and whether planning should go on."""

    def compute(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Output]:
        yield from collect_phase(context, frame, step, phase, inputs)

    return OpDefinition(
        compute_fn=compute,
        name=collect_op_name(step.name, phase),
        ins={PLAN: In(PlanRecord), PROGRESS: In(PlanProgress), DONE: In(list)},
        outs={PHASE: Out(PhaseResult), NEXT: Out(PhaseResult, is_required=False)},
        description=f"Collect phase {phase} of '{step.name}'",
        tags=op_tags(frame, step),
    )


def build_planning_result_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """The planning step's own result, in one op named after it: the rows of its terminal
    planned steps (those no other planned step consumed)."""
    spec = step.planning

    def compute(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Any]:
        yield from planning_result(context, frame, step, inputs)

    return OpDefinition(
        compute_fn=compute,
        name=step.name,
        ins={PHASES: In(list)},
        outs={RESULT: Out(StepValue)},
        description=step.step.description or f"Planning step: {spec.goal[:160]}",
        tags=op_tags(frame, step),
    )
