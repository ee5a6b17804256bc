"""Batch steps: cursor-based fan-out of rows into chunks, one mapped Dagster step per chunk.

A batch step `triage` compiles to three ops: `triage__split` yields one dynamic output per
chunk (a row range over the input's Parquet file, never the rows themselves), `triage` runs the
capability on one chunk (step keys `triage[rows_0_499]`, ...), and `triage__merge` collects the
chunks into one table and reconciles the counts. `failure_strategy` decides what a chunk that
still fails after its retries does:

- `fail_fast`: the chunk fails the run; chunks not yet started see the failure and stand down;
- `continue`: the chunk's rows are recorded as failed and every other chunk carries on;
- `isolate`: the chunk is re-run row by row so only the rows that fail are set aside.

Rows set aside are dead letters (`marigold_dagster.runtime.dead_letters`): the merge writes
them, whole and with their errors, to `<step>__dead_letters.parquet`, and checks that every
input row is either in the merged table or there, once. Chunks the split yielded that never
reported (a run killed before they started, then re-executed from failure) are run by the merge
itself.
"""

from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    DynamicOut,
    DynamicOutput,
    In,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
)

from marigold_dagster.artifacts import StepValue
from marigold_dagster.jobs.step_ops import (
    describe,
    input_config_schema,
    model_resource_keys,
    op_tags,
)
from marigold_dagster.keys import (
    BATCH_INPUT,
    CHUNK,
    CHUNKS,
    RESULT,
    merge_name,
    split_name,
)
from marigold_dagster.runtime.chunks import (
    ChunkOutcome,
    ChunkSpec,
    merge_chunks,
    run_chunk,
    split_into_chunks,
)
from marigold_dagster.runtime.outputs import retry_policy
from marigold_dagster.template.frame import Frame, FrameStep


def build_split_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """Yield one chunk per `batch.size` rows; refuse to fan out past the cap."""
    spec = step.batch

    def compute(
        context: OpExecutionContext, inputs: Mapping[str, StepValue]
    ) -> Iterator[DynamicOutput]:
        yield from split_into_chunks(context, frame, step, inputs[step.step.depends_on[0]])

    return OpDefinition(
        compute_fn=compute,
        name=split_name(step.name),
        ins={dep: In(StepValue) for dep in step.step.depends_on},
        outs={CHUNK: DynamicOut(ChunkSpec)},
        description=f"Split the input of batch step '{step.name}' into chunks of {spec.size} rows",
        tags=op_tags(frame, step),
    )


def build_chunk_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """Run the batch capability on one chunk, applying the failure strategy on the last try."""
    spec = step.batch
    policy = retry_policy(step.step.retry)
    max_retries = policy.max_retries if policy else 0

    def compute(context: OpExecutionContext, inputs: Mapping[str, ChunkSpec]) -> Iterator[Output]:
        yield from run_chunk(context, frame, step, inputs[CHUNK], max_retries)

    return OpDefinition(
        compute_fn=compute,
        name=step.name,
        ins={CHUNK: In(ChunkSpec)},
        outs={RESULT: Out(ChunkOutcome, is_required=spec.failure_strategy != "fail_fast")},
        description=describe(step),
        config_schema=input_config_schema(frame, step),
        required_resource_keys=model_resource_keys(frame, step),
        tags=op_tags(frame, step),
        retry_policy=policy,
        pool=step.step.pool,
    )


def build_merge_op(frame: Frame, step: FrameStep) -> OpDefinition:
    """Collect every chunk into one table, in row order, and reconcile the counts."""

    def compute(
        context: OpExecutionContext, inputs: Mapping[str, Any]
    ) -> Iterator[Output | AssetCheckEvaluation]:
        yield from merge_chunks(context, frame, step, inputs[CHUNKS], inputs[BATCH_INPUT])

    return OpDefinition(
        compute_fn=compute,
        name=merge_name(step.name),
        ins={CHUNKS: In(list), BATCH_INPUT: In(StepValue)},
        outs={RESULT: Out(StepValue)},
        description=f"Merge the chunks of batch step '{step.name}' and reconcile row counts",
        required_resource_keys=model_resource_keys(frame, step),
        tags=op_tags(frame, step),
    )
