"""Template steps at run time: what the task, decision and converge ops run.

`run_task` runs the capability on the first upstream result; `run_decision` runs it and emits
one output per chosen branch (refusing undeclared ones); `run_converge` combines whichever
upstreams ran as the step declares (`runtime.convergence`) and runs the capability on that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
)

from grammar_ops import Decision, Kind
from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue, store_value
from marigold_dagster.keys import DECIDED, RESULT, UPSTREAM
from marigold_dagster.runtime.composition import primitive_context, run_composition, step_metadata
from marigold_dagster.runtime.convergence import combine
from marigold_dagster.runtime.error_text import without_file_content
from marigold_dagster.runtime.outputs import (
    materializations,
    run_artifacts_dir,
    step_failure,
    template_inputs,
)
from marigold_dagster.template.frame import Frame, FrameStep


def _primary(step: FrameStep, inputs: Mapping[str, StepValue]) -> StepValue | None:
    return inputs[step.step.depends_on[0]] if step.step.depends_on else None


def _run(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    inputs: Mapping[str, StepValue],
    value: Any,
) -> tuple[Any, Any]:
    ctx = primitive_context(
        context, frame, step.name, step.capability, inputs, template_inputs(context, frame, step)
    )
    try:
        return run_composition(step.capability, value, ctx, step.step.timeout_s)
    except Failure:
        raise
    except Exception as error:
        failure = step_failure(step, error)
        # The cause's text is recorded too; keep it only when it quotes no file content.
        quoted = without_file_content(str(error)) != str(error)
        raise failure from (None if quoted else error)


def run_task(
    context: OpExecutionContext, frame: Frame, step: FrameStep, inputs: Mapping[str, StepValue]
) -> Iterator[Output]:
    """Run the task's capability on its first upstream's result; emit the stored result."""
    primary = _primary(step, inputs)
    result, run = _run(context, frame, step, inputs, primary.load() if primary else None)
    stored = store_value(context.op_handle.name, result, run_artifacts_dir(context))
    metadata = step_metadata(context, step, run, result)
    yield from materializations(frame, step, metadata)
    yield Output(stored, RESULT, metadata=metadata)


def run_decision(
    context: OpExecutionContext, frame: Frame, step: FrameStep, inputs: Mapping[str, StepValue]
) -> Iterator[Output]:
    """Run the decision; emit the input on each chosen branch and the record as `decided`."""
    branches = step.branches
    primary = _primary(step, inputs)
    decision, run = _run(context, frame, step, inputs, primary.load() if primary else None)
    assert isinstance(decision, Decision)
    undeclared = [b for b in decision.branches if b not in branches]
    if undeclared:
        raise Failure(
            f"decision '{step.name}' chose undeclared branch(es) {undeclared}; "
            f"it may only choose among its declared branches {branches}",
            allow_retries=False,
        )
    chosen = [b for b in branches if b in decision.branches]
    passed = StepValue(
        step=step.name,
        kind=primary.kind if primary else Kind.NOTHING,
        payload=primary.payload if primary else None,
    )
    for branch in chosen:
        yield Output(passed, branch)
    record = {
        "chosen": chosen,
        "not_chosen": [b for b in branches if b not in chosen],
        "reason": decision.reason,
    }
    metadata = step_metadata(context, step, run, None)
    metadata.update(
        {
            keys.CHOSEN_KEY: MetadataValue.json(chosen),
            keys.NOT_CHOSEN_KEY: MetadataValue.json(record["not_chosen"]),
            keys.REASON_KEY: decision.reason or "",
        }
    )
    yield from materializations(frame, step, metadata)
    yield Output(StepValue(step.name, Kind.JSON, record), DECIDED, metadata=metadata)


def run_converge(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    inputs: Mapping[str, list[StepValue]],
) -> Iterator[Output]:
    """Join whichever upstreams ran (the sentinel aside); run the capability on the join."""
    declared = list(step.step.depends_on)
    values = list(inputs[UPSTREAM])
    if step.sentinel is not None:
        values = values[1:]
    ran = {value.step: value for value in values}
    unknown = sorted(set(ran) - set(declared))
    if unknown:  # a result that names no declared upstream would be dropped: never silently
        raise Failure(
            f"converge '{step.name}' received results from {unknown}, which are not among its "
            f"declared upstreams {declared}",
            allow_retries=False,
        )
    skipped = [name for name in declared if name not in ran]
    joined = combine(step, [ran[name] for name in declared if name in ran])
    run = None
    result = joined
    if step.composition is not None:
        result, run = _run(context, frame, step, ran, joined)
    stored = store_value(context.op_handle.name, result, run_artifacts_dir(context))
    metadata = step_metadata(context, step, run, result)
    metadata[keys.CONVERGED_KEY] = ", ".join(ran) or "(none)"
    metadata[keys.NOT_RUN_UPSTREAM_KEY] = ", ".join(skipped) or "(none)"
    yield from materializations(frame, step, metadata)
    yield Output(stored, RESULT, metadata=metadata)
