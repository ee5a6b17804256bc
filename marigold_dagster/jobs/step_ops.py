"""Op factories for the static step kinds: task, decision and converge.

Each template step becomes one `OpDefinition` named after the step, so step keys in the
Dagster UI are the names the author wrote. Batch steps live in `marigold_dagster.jobs.batch_ops`.
"""

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
from dagster import (
    AssetMaterialization,
    Failure,
    Field,
    In,
    MetadataValue,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
)
from dagster import Backoff as DagsterBackoff
from dagster import Jitter as DagsterJitter

from grammar_ops import Decision, GrammarError, Kind
from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue, artifacts_dir, as_table, store_value
from marigold_dagster.errors import InputOutsideRoots
from marigold_dagster.jobs.launch_inputs import confine_input
from marigold_dagster.keys import DECIDED, RESULT, STEP_COUNT_KEY, UPSTREAM, step_asset_key
from marigold_dagster.runtime.composition import primitive_context, run_composition, step_metadata
from marigold_dagster.runtime.error_text import without_file_content
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import RetrySpec


def materializations(frame: Frame, step: FrameStep, metadata: Mapping[str, Any]) -> list[Any]:
    """The step's asset materialization, when the template records one for this step.

    Each is one more event on the instance (a quarter more per step on SQLite), so by default
    only results are recorded: steps no other step consumes.
    """
    if frame.template.materialize != "every_step" and frame.consumers(step.name):
        return []
    return [
        AssetMaterialization(
            asset_key=step_asset_key(frame.name, step.name),
            metadata={k: v for k, v in metadata.items() if k != STEP_COUNT_KEY},
        )
    ]


def retry_policy(spec: RetrySpec | None) -> RetryPolicy | None:
    """The Dagster RetryPolicy for a template `retry:` block (None: no retries)."""
    if spec is None or spec.max_attempts <= 1:
        return None
    backoff = {"exponential": DagsterBackoff.EXPONENTIAL, "linear": DagsterBackoff.LINEAR}
    jitter = {"full": DagsterJitter.FULL, "plus_minus": DagsterJitter.PLUS_MINUS}
    return RetryPolicy(
        max_retries=spec.max_attempts - 1,
        delay=spec.delay_s or None,
        backoff=backoff.get(spec.backoff),
        jitter=jitter.get(spec.jitter),
    )


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


def template_inputs(context: OpExecutionContext, frame: Frame, step: FrameStep) -> dict[str, str]:
    """The launch-supplied input paths of a step, checked before anything runs: each must
    resolve under an input root (`launch_inputs.confine_input`) and exist."""
    supplied: Mapping[str, str] = context.op_config or {}
    checked = {}
    storage = context.instance.storage_directory()
    for name, path in supplied.items():
        kind = frame.template.inputs[name].kind
        try:
            resolved = confine_input(frame, name, path, storage)
        except InputOutsideRoots as error:
            raise Failure(str(error), allow_retries=False) from None
        exists = os.path.isdir(resolved) if kind == "documents" else os.path.isfile(resolved)
        if not exists:
            what = "a folder" if kind == "documents" else "a file"
            raise Failure(
                f"input '{name}' of template '{frame.name}' must be {what}, but {resolved} "
                "does not exist; pass an existing path in the run config under "
                f"ops.{step.name}.config.{name}",
                allow_retries=False,
            )
        checked[name] = resolved
    return checked


def step_failure(step: FrameStep, error: Exception) -> Failure:
    """A Failure for an error retrying cannot fix (bad data, bad config, bad model output).

    Its text never quotes a file's content (see `runtime.error_text`).
    """
    return Failure(
        description=f"step '{step.name}' failed: {without_file_content(str(error))}",
        metadata={keys.ERROR_TYPE_KEY: type(error).__name__},
        allow_retries=False,
    )


def _primary(step: FrameStep, inputs: Mapping[str, StepValue]) -> StepValue | None:
    return inputs[step.step.depends_on[0]] if step.step.depends_on else None


def _run(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    inputs: Mapping[str, StepValue],
    value: Any,
) -> tuple[Any, Any]:
    assert step.composition is not None
    ctx = primitive_context(
        context, frame, step.name, step.composition, inputs, template_inputs(context, frame, step)
    )
    try:
        return run_composition(step.composition, value, ctx, step.step.timeout_s)
    except GrammarError as error:
        failure = step_failure(step, error)
        # The cause's text is recorded too; keep it only when it quotes no file content.
        quoted = failure.description != f"step '{step.name}' failed: {error}"
        raise failure from (None if quoted else error)


def build_task_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A task: run the step's capability on its first upstream's result."""

    def compute(context: OpExecutionContext, inputs: Mapping[str, StepValue]) -> Iterator[Output]:
        primary = _primary(step, inputs)
        result, run = _run(context, frame, step, inputs, primary.load() if primary else None)
        stored = store_value(context.op_handle.name, result, run_artifacts_dir(context))
        metadata = step_metadata(context, step, run, result)
        yield from materializations(frame, step, metadata)
        yield Output(stored, RESULT, metadata=metadata)

    return _op(frame, step, compute, {RESULT: Out(StepValue)})


def build_decision_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A decision: one optional output per declared branch, plus an always-emitted `decided`."""
    branches = list(step.step.branches or [])

    def compute(context: OpExecutionContext, inputs: Mapping[str, StepValue]) -> Iterator[Output]:
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

    outs = {branch: Out(StepValue, is_required=False) for branch in branches}
    outs[DECIDED] = Out(StepValue)
    return _op(frame, step, compute, outs)


def build_converge_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """A converge: one fan-in input fed by every declared upstream (and a sentinel, first).

    Dagster runs a fan-in op with whichever values were produced and skips it only when none
    were; the sentinel is present exactly when the region this step closes ran.
    """
    declared = list(step.step.depends_on)

    def compute(
        context: OpExecutionContext, inputs: Mapping[str, list[StepValue]]
    ) -> Iterator[Output]:
        values = list(inputs[UPSTREAM])
        if step.sentinel is not None:
            values = values[1:]
        ran = {value.step: value for value in values if value.step in declared}
        skipped = [name for name in declared if name not in ran]
        joined = _join(step, [ran[name] for name in declared if name in ran])
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

    return _op(frame, step, compute, {RESULT: Out(StepValue)}, ins={UPSTREAM: In(list)})


def _join(step: FrameStep, values: list[StepValue]) -> Any:
    """Rows from every upstream that ran, tagged with `source_step`; or a mapping of results."""
    if step.input_kind is not Kind.TABLE:
        return {value.step: value.load() for value in values}
    tables = []
    for value in values:
        loaded = value.load()
        table = as_table(loaded)
        source = pa.array([value.step] * table.num_rows, pa.string())
        tables.append(table.append_column("source_step", source))
    if not tables:
        return pa.table({"source_step": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")


def run_artifacts_dir(context: OpExecutionContext) -> Path:
    """The run-scoped folder a step writes its tables to."""
    return artifacts_dir(context.instance.storage_directory(), context.run_id)


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
