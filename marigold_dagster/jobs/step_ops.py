"""Op factories for the static step kinds: task, decision and converge.

Each template step becomes one `OpDefinition` named after the step, so step keys in the
Dagster UI are the names the author wrote. Batch steps live in `marigold_dagster.jobs.batch_ops`.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    Field,
    In,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
)

from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue
from marigold_dagster.keys import DECIDED, RESULT, UPSTREAM
from marigold_dagster.runtime.outputs import (
    retry_policy,
)
from marigold_dagster.runtime.steps import run_converge, run_decision, run_task
from marigold_dagster.template.frame import Frame, FrameStep


def op_tags(frame: Frame, step: FrameStep) -> dict[str, str]:
    return {
        **step.step.tags,
        keys.TEMPLATE_TAG: frame.name,
        keys.STEP_KIND_TAG: step.kind.value,
    }


def model_resource_keys(frame: Frame, step: FrameStep) -> set[str]:
    """The resource keys of the models a step's capability calls."""
    roles = step.composition.model_roles if step.composition else frozenset()
    return {frame.template.models[role] for role in roles}


def input_config_schema(frame: Frame, step: FrameStep) -> dict[str, Field] | None:
    """Op config for the template inputs this step reads: one path per input, launch-supplied."""
    names = sorted(step.composition.template_inputs) if step.composition else []
    if not names:
        return None
    schema = {}
    for name in names:
        spec = frame.template.inputs[name]
        description = f"{spec.kind} input '{name}': a path. {spec.description}".strip()
        if spec.default is not None:
            # A template's default path is relative to the template file, not the launch folder.
            default = str(frame.resolve(spec.default))
            schema[name] = Field(str, default_value=default, description=description)
        else:
            schema[name] = Field(str, description=description)
    return schema


def build_task_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A task: run the step's capability on its first upstream's result."""

    def compute(context: OpExecutionContext, inputs: Mapping[str, StepValue]) -> Iterator[Output]:
        yield from run_task(context, frame, step, inputs)

    return _op(frame, step, compute, {RESULT: Out(StepValue)})


def build_decision_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A decision: one optional output per declared branch, plus an always-emitted `decided`."""
    branches = step.branches

    def compute(context: OpExecutionContext, inputs: Mapping[str, StepValue]) -> Iterator[Output]:
        yield from run_decision(context, frame, step, inputs)

    outs = {branch: Out(StepValue, is_required=False) for branch in branches}
    outs[DECIDED] = Out(StepValue)
    return _op(frame, step, compute, outs)


def build_converge_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A converge: one fan-in input fed by every declared upstream (and a sentinel, first).

    Dagster runs a fan-in op with whichever values were produced and skips it only when none
    were; the sentinel is present exactly when the region this step closes ran.
    """

    def compute(
        context: OpExecutionContext, inputs: Mapping[str, list[StepValue]]
    ) -> Iterator[Output]:
        yield from run_converge(context, frame, step, inputs)

    # optional: a converge below a gate the run is paused at ends without output
    result = Out(StepValue, is_required=False)
    return _op(frame, step, compute, {RESULT: result}, ins={UPSTREAM: In(list)})


def _op(
    frame: Frame,
    step: FrameStep,
    compute: Any,
    outs: dict[str, Out],
    *,
    ins: dict[str, In] | None = None,
    name: str | None = None,
) -> OpDefinition:
    return OpDefinition(
        compute_fn=compute,
        name=name or step.name,
        ins=ins if ins is not None else {dep: In(StepValue) for dep in step.step.depends_on},
        outs=outs,
        description=describe(step),
        config_schema=input_config_schema(frame, step),
        required_resource_keys=model_resource_keys(frame, step),
        tags=op_tags(frame, step),
        retry_policy=retry_policy(step.step.retry),
        pool=step.step.pool,
    )


def describe(step: FrameStep) -> str:
    if step.step.description:
        return step.step.description
    capability = step.composition.source if step.composition else "join"
    return f"{step.kind.value} step running `{capability}`"
