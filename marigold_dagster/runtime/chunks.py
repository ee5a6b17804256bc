"""Chunk processing for batch steps: what the split, chunk and merge ops run.

A chunk is a row range over the input's Parquet file. `split_into_chunks` plans the ranges and
refuses to fan out past the cap, `run_chunk` runs the capability on one range and applies the
failure strategy on the last try (`isolate` re-runs it row by row), and `merge_chunks` collects
every outcome in row order, runs chunks that never reported, writes dead letters and checks
that every input row ends in exactly one place.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterEventType,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
)
from tenacity import RetryCallState

from grammar_ops import ConfigurationError, is_transient
from grammar_ops.context import PrimitiveContext
from marigold_dagster import keys
from marigold_dagster.artifacts import (
    StepValue,
    TableRef,
    as_table,
    store_table_parts,
    store_value,
)
from marigold_dagster.errors import InputOutsideRoots
from marigold_dagster.keys import (
    CHUNK,
    RESULT,
    StepStatus,
    split_name,
    step_asset_key,
)
from marigold_dagster.records.markdown import markdown_text
from marigold_dagster.records.metadata import metadata_int, metadata_str
from marigold_dagster.runtime.composition import (
    PREVIEW_ROWS,
    StepRun,
    primitive_context,
    run_composition,
    step_metadata,
)
from marigold_dagster.runtime.dead_letters import (
    DeadLetter,
    ModelFailureRecorder,
    dead_letter,
    dead_letter_table,
    strip_dead_letter_columns,
)
from marigold_dagster.runtime.input_roots import confine_input
from marigold_dagster.runtime.outputs import (
    materializations,
    run_artifacts_dir,
    step_failure,
    step_retrying,
    template_inputs,
)
from marigold_dagster.template.frame import Frame, FrameStep


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk: rows `[start, stop)` of the batch input's Parquet file."""

    source: TableRef
    start: int
    stop: int
    index: int
    total: int

    @property
    def mapping_key(self) -> str:
        return f"rows_{self.start}_{self.stop - 1}"


@dataclass(frozen=True)
class ChunkOutcome:
    """What became of one chunk."""

    chunk: ChunkSpec
    status: StepStatus  # succeeded, partial or failed
    output: StepValue | None
    failed_rows: tuple[DeadLetter, ...] = field(default_factory=tuple)


def fanout_cap(frame: Frame, step: FrameStep) -> int:
    spec = step.batch
    return spec.max_fanout or frame.template.budget.max_fanout


def _as_table_ref(context: OpExecutionContext, value: StepValue, chunk_rows: int) -> TableRef:
    """The batch input as a Parquet file whose row groups are the chunks, so a chunk reads only
    its own rows; rewritten once here when the upstream file is laid out otherwise."""
    payload = value.payload
    if isinstance(payload, TableRef):
        groups = payload.row_group_rows()
        if all(rows == chunk_rows for rows in groups[:-1]) and (
            not groups or groups[-1] <= chunk_rows
        ):
            return payload
    table = as_table(value.load())
    stored = store_value(
        f"{context.op_handle.name}__input",
        table,
        run_artifacts_dir(context),
        row_group_size=chunk_rows,
    )
    assert isinstance(stored.payload, TableRef)
    return stored.payload


_START, _STOP, _INDEX, _TOTAL = (
    keys.START_KEY,
    keys.STOP_KEY,
    keys.INDEX_KEY,
    keys.TOTAL_KEY,
)


def _chunk_metadata(chunk: ChunkSpec) -> dict[str, Any]:
    """What the split records about each chunk, so the merge can tell which never reported."""
    return {
        keys.SOURCE_PATH_KEY: MetadataValue.path(chunk.source.path),
        keys.SOURCE_ROWS_KEY: chunk.source.num_rows,
        _START: chunk.start,
        _STOP: chunk.stop,
        _INDEX: chunk.index,
        _TOTAL: chunk.total,
    }


def progress_line(step_name: str, chunk: ChunkSpec, outcome: ChunkOutcome, seconds: float) -> str:
    """`batch 'triage': chunk 3 of 6 done, rows 80-119, 40 rows in 0.52 s (77.0 rows/s)`.

    From the chunk's own counts: no query of the run's event log.
    """
    rows = chunk.stop - chunk.start
    rate = rows / max(seconds, 1e-6)
    failed = f", {len(outcome.failed_rows)} failed" if outcome.failed_rows else ""
    return (
        f"batch '{step_name}': chunk {chunk.index + 1} of {chunk.total} done, rows "
        f"{chunk.start}-{chunk.stop - 1}{failed}, {rows} rows in {seconds:.2f} s "
        f"({rate:.1f} rows/s)"
    )


def process_chunk(
    context: OpExecutionContext,
    step: FrameStep,
    chunk: ChunkSpec,
    ctx: PrimitiveContext,
    *,
    attempts: int,
    may_retry: bool,
) -> tuple[ChunkOutcome, Any, StepRun | None]:
    """Run the capability on `chunk`; on a failure that is final, apply the failure strategy.

    Raises a retryable `Failure` when `may_retry` and the failure is transient (Dagster's
    RetryPolicy tries the chunk again, with the template's backoff and jitter); a `Failure`
    under `fail_fast`; and a `Failure` for a configuration error whatever the strategy, since
    no row of any chunk can succeed (it is never dead-lettered row by row).
    """
    spec = step.batch
    rows = strip_dead_letter_columns(chunk.source.load_slice(chunk.start, chunk.stop))
    try:
        result, run = run_composition(step.capability, rows, ctx, step.step.timeout_s)
    except Failure:
        raise
    except Exception as error:
        if isinstance(error, ConfigurationError):
            raise step_failure(step, error) from error
        if may_retry and is_transient(error):
            raise step_failure(step, error) from error
        if spec.failure_strategy == "fail_fast":
            raise step_failure(step, error) from error
        context.log.warning(
            f"chunk {chunk.mapping_key} failed after {attempts} attempt(s): {error}"
        )
        if spec.failure_strategy == "continue":
            failed = tuple(
                dead_letter(row, error, attempts) for row in range(chunk.start, chunk.stop)
            )
            return ChunkOutcome(chunk, StepStatus.FAILED, None, failed), None, None
        outcome, merged = _isolate(context, step, chunk, rows, ctx, attempts)
        return outcome, merged, None
    stored = store_value(f"{step.name}[{chunk.mapping_key}]", result, run_artifacts_dir(context))
    return ChunkOutcome(chunk, StepStatus.SUCCEEDED, stored), result, run


def _isolate(
    context: OpExecutionContext,
    step: FrameStep,
    chunk: ChunkSpec,
    rows: pa.Table,
    ctx: PrimitiveContext,
    attempts: int,
) -> tuple[ChunkOutcome, Any]:
    """Re-run a failed chunk one row at a time; keep what succeeds, dead-letter what fails.

    Each row runs with its model clients wrapped in a `ModelFailureRecorder`, so its dead letter
    carries that row's own model error and last answer, not the chunk's summary.
    """
    kept: list[pa.Table] = []
    failed: list[DeadLetter] = []
    for offset in range(rows.num_rows):
        recorders = {role: ModelFailureRecorder(client) for role, client in ctx.models.items()}
        row_ctx = dataclasses.replace(ctx, models=recorders)
        try:
            result, _ = run_composition(
                step.capability, rows.slice(offset, 1), row_ctx, step.step.timeout_s
            )
        except Exception as error:
            seen = [failure for recorder in recorders.values() for failure in recorder.failures]
            failed.append(dead_letter(chunk.start + offset, error, attempts + 1, seen))
            continue
        kept.append(as_table(result))
    merged = pa.concat_tables(kept, promote_options="permissive") if kept else None
    output = (
        store_value(f"{step.name}[{chunk.mapping_key}]", merged, run_artifacts_dir(context))
        if merged is not None
        else None
    )
    status = StepStatus.PARTIAL if kept else StepStatus.FAILED
    return ChunkOutcome(chunk, status, output, tuple(failed)), merged


def _sibling_failed(context: OpExecutionContext, step_name: str) -> bool:
    records = context.instance.get_records_for_run(
        context.run_id, of_type=DagsterEventType.STEP_FAILURE
    ).records
    prefix = f"{step_name}["
    return any((r.event_log_entry.step_key or "").startswith(prefix) for r in records)


def recorded_chunks(context: OpExecutionContext, step_name: str) -> list[ChunkSpec] | None:
    """The chunks the batch's split yielded, from this run's event log or its ancestors'.

    A re-executed run that did not re-run the split finds them in the run it re-executes; None
    when no run in the chain has a successful split (the merge then trusts what it collected).
    """
    instance = context.instance
    key = split_name(step_name)
    run_id: str | None = context.run_id
    while run_id is not None:
        records = instance.get_records_for_run(
            run_id, of_type={DagsterEventType.STEP_OUTPUT, DagsterEventType.STEP_SUCCESS}
        ).records
        entries = [r.event_log_entry for r in records if r.event_log_entry.step_key == key]
        if any(e.dagster_event_type is DagsterEventType.STEP_SUCCESS for e in entries):
            chunks = []
            for entry in entries:
                if entry.dagster_event_type is not DagsterEventType.STEP_OUTPUT:
                    continue
                data = entry.get_dagster_event().step_output_data
                meta = {k: v.value for k, v in data.metadata.items()}
                source = TableRef(
                    metadata_str(meta, keys.SOURCE_PATH_KEY),
                    metadata_int(meta, keys.SOURCE_ROWS_KEY),
                )
                chunks.append(
                    ChunkSpec(
                        source,
                        metadata_int(meta, _START),
                        metadata_int(meta, _STOP),
                        metadata_int(meta, _INDEX),
                        metadata_int(meta, _TOTAL),
                    )
                )
            return chunks
        run = instance.get_run_by_id(run_id)
        run_id = run.parent_run_id if run is not None else None
    return None


def _chunk_template_inputs(
    context: OpExecutionContext, frame: Frame, step: FrameStep
) -> dict[str, str]:
    """The template inputs the chunk op was launched with (its op config in the run config)."""
    names = sorted(step.composition.template_inputs) if step.composition else []
    run_config: Mapping[str, Any] = context.run_config  # plain config dicts, as launched
    supplied = run_config.get("ops", {}).get(step.name, {}).get("config", {}) or {}
    inputs = {}
    for name in names:
        spec = frame.template.inputs[name]
        path = supplied.get(name) or (str(frame.resolve(spec.default)) if spec.default else None)
        if path is not None:
            storage = context.instance.storage_directory()
            try:
                inputs[name] = confine_input(frame, name, path, storage)
            except InputOutsideRoots as error:
                raise Failure(str(error), allow_retries=False) from None
    return inputs


def _catch_up(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    missing: list[ChunkSpec],
) -> list[ChunkOutcome]:
    """Run the chunks that never reported here, with the chunk's failure strategy and tries.

    Dagster's re-execution from failure re-runs mapped steps that failed or were interrupted,
    but not those that had not started when the parent run died (dagster-io/dagster#30077,
    #30248), nor chunks that stood down under fail_fast; without this their rows would be lost.
    """
    keys = ", ".join(chunk.mapping_key for chunk in missing)
    context.log.warning(
        f"batch '{step.name}': {len(missing)} chunk(s) never reported ({keys}), e.g. because "
        "this run re-executes one that was killed before they started; running them here"
    )
    ctx = primitive_context(
        context,
        frame,
        step.name,
        step.capability,
        {},
        _chunk_template_inputs(context, frame, step),
    )
    tries = step.step.retry.max_attempts if step.step.retry else 1
    outcomes = []
    for chunk in missing:

        def log_retry(state: RetryCallState, chunk: ChunkSpec = chunk) -> None:
            failure = state.outcome.exception() if state.outcome else None
            context.log.warning(
                f"chunk {chunk.mapping_key} try {state.attempt_number} of {tries} failed; "
                f"retrying in {state.upcoming_sleep:.2f} s: {getattr(failure, 'description', '')}"
            )

        for attempt in step_retrying(step.step.retry, log_retry):
            with attempt:
                number = attempt.retry_state.attempt_number
                outcome, _, _ = process_chunk(
                    context, step, chunk, ctx, attempts=number, may_retry=number < tries
                )
        outcomes.append(outcome)
    return outcomes


def _table_part(outcome: ChunkOutcome, directory: Path) -> TableRef:
    """A chunk's output as a Parquet file (chunk outputs that are records are written once)."""
    assert outcome.output is not None
    if isinstance(outcome.output.payload, TableRef):
        return outcome.output.payload
    table = as_table(outcome.output.load())
    stored = store_value(f"{outcome.output.step}__table", table, directory)
    assert isinstance(stored.payload, TableRef)
    return stored.payload


def _empty_result(
    context: OpExecutionContext, frame: Frame, step: FrameStep, batch_input: StepValue
) -> pa.Table:
    """What the batch produces from zero rows: its capability run on none, so columns are kept.

    Used when no chunk produced a row (no chunks at all, or every row dead-lettered).
    """
    if isinstance(batch_input.payload, TableRef):
        empty = pq.read_schema(batch_input.payload.path).empty_table()
    else:
        empty = as_table(batch_input.load()).slice(0, 0)
    empty = strip_dead_letter_columns(empty)
    ctx = primitive_context(
        context, frame, step.name, step.capability, {}, _chunk_template_inputs(context, frame, step)
    )
    try:
        result, _ = run_composition(step.capability, empty, ctx, step.step.timeout_s)
    except Exception as error:  # the rows are accounted for already; keep the input's columns
        context.log.warning(
            f"batch '{step.name}': its capability failed on zero rows ({error}); the empty "
            "result keeps the input's columns"
        )
        return empty
    return as_table(result).slice(0, 0)


def reconciliation(rows_in: int, processed: int, dead_lettered: int) -> str:
    """Where every input row went, e.g. "240 rows: 231 processed, 9 dead-lettered"."""
    return f"{rows_in} rows: {processed} processed, {dead_lettered} dead-lettered"


def _check_every_row_once(
    step: FrameStep, outcomes: list[ChunkOutcome], failed: list[DeadLetter], rows_in: int
) -> None:
    """Fail the merge unless the chunks cover rows [0, rows_in) once, dead letters inside them."""
    problems = []
    position = 0
    for outcome in outcomes:
        if outcome.chunk.start != position:
            problems.append(f"rows {position}-{outcome.chunk.start - 1} are in no chunk")
        position = max(position, outcome.chunk.stop)
        rows = range(outcome.chunk.start, outcome.chunk.stop)
        if any(letter.row not in rows for letter in outcome.failed_rows):
            problems.append(f"chunk {outcome.chunk.mapping_key} dead-lettered a row outside it")
    if position != rows_in:
        problems.append(f"the chunks cover {position} of {rows_in} rows")
    if len({letter.row for letter in failed}) != len(failed):
        problems.append("a row was dead-lettered twice")
    if problems:
        raise Failure(
            f"batch '{step.name}' cannot account for every input row exactly once: "
            + "; ".join(problems),
            allow_retries=False,
        )


def split_into_chunks(
    context: OpExecutionContext, frame: Frame, step: FrameStep, primary: StepValue
) -> Iterator[DynamicOutput]:
    """Yield one chunk per `batch.size` rows of `primary`; refuse to fan out past the cap."""
    spec = step.batch
    cap = fanout_cap(frame, step)
    source = _as_table_ref(context, primary, spec.size)
    total = math.ceil(source.num_rows / spec.size)
    if total > cap:
        needed = math.ceil(source.num_rows / cap)
        raise Failure(
            f"batch step '{step.name}' would fan out into {total} chunks "
            f"({source.num_rows} rows at batch.size {spec.size}), over its cap of {cap} "
            f"(max_fanout); raise batch.size to at least {needed} or raise the cap",
            allow_retries=False,
        )
    context.log.info(
        f"batch '{step.name}': {source.num_rows} rows in {total} chunks of {spec.size}"
    )
    for index in range(total):
        start = index * spec.size
        chunk = ChunkSpec(source, start, min(start + spec.size, source.num_rows), index, total)
        yield DynamicOutput(
            chunk,
            mapping_key=chunk.mapping_key,
            output_name=CHUNK,
            metadata=_chunk_metadata(chunk),
        )


def run_chunk(
    context: OpExecutionContext, frame: Frame, step: FrameStep, chunk: ChunkSpec, max_retries: int
) -> Iterator[Output]:
    """Run the batch capability on `chunk`, applying the failure strategy on the last try."""
    spec = step.batch
    composition = step.capability
    if spec.failure_strategy == "fail_fast" and _sibling_failed(context, step.name):
        context.log.warning(
            f"chunk {chunk.mapping_key} stands down: another chunk of '{step.name}' failed "
            "(failure_strategy fail_fast)"
        )
        return
    ctx = primitive_context(
        context, frame, step.name, composition, {}, template_inputs(context, frame, step)
    )
    started = time.perf_counter()
    outcome, result, run = process_chunk(
        context,
        step,
        chunk,
        ctx,
        attempts=context.retry_number + 1,
        may_retry=context.retry_number < max_retries,
    )
    metadata = step_metadata(
        context, step, run, result, status=outcome.status, counts_as_step=False
    )
    # One event per chunk carries this: keep it short (the merge has the preview and detail).
    for bulky in (keys.DETAIL_KEY, keys.PREVIEW_KEY):
        metadata.pop(bulky, None)
    metadata[keys.CHUNK_KEY] = f"{chunk.index + 1} of {chunk.total}"
    metadata[keys.FAILED_ROWS_KEY] = len(outcome.failed_rows)
    yield Output(outcome, RESULT, metadata=metadata)
    context.log.info(progress_line(step.name, chunk, outcome, time.perf_counter() - started))


def merge_chunks(
    context: OpExecutionContext,
    frame: Frame,
    step: FrameStep,
    reported: list[ChunkOutcome],
    batch_input: StepValue,
) -> Iterator[Output | AssetCheckEvaluation]:
    """Collect every chunk into one table, in row order, and reconcile the counts.

    Every input row ends in exactly one place: the merged table (processed) or the dead-letter
    table. Chunks the split yielded but that never reported are run here first (`_catch_up`);
    a second outcome for the same rows is ignored; the counts are then checked row by row.
    """
    by_start: dict[int, ChunkOutcome] = {}
    for outcome in reported:
        if outcome.chunk.start in by_start:
            context.log.warning(f"ignoring a second outcome for {outcome.chunk.mapping_key}")
            continue
        by_start[outcome.chunk.start] = outcome
    expected = recorded_chunks(context, step.name)
    missing = [c for c in expected or [] if c.start not in by_start]
    if missing:
        for outcome in _catch_up(context, frame, step, missing):
            by_start[outcome.chunk.start] = outcome
    outcomes = [by_start[start] for start in sorted(by_start)]
    source = expected[0].source if expected else (outcomes[0].chunk.source if outcomes else None)
    rows_in = (
        source.num_rows
        if source is not None
        else sum(o.chunk.stop - o.chunk.start for o in outcomes)
    )
    directory = run_artifacts_dir(context)
    parts = [_table_part(o, directory) for o in outcomes if o.output is not None]
    if parts:  # streamed, one chunk file in memory at a time
        written = store_table_parts(context.op_handle.name, parts, directory)
        head = parts[0].load_slice(0, PREVIEW_ROWS)
    else:
        head = _empty_result(context, frame, step, batch_input)
        written = store_value(context.op_handle.name, head, directory)
    # The batch's result is the template step's: a converge identifies its upstreams by it.
    stored = dataclasses.replace(written, step=step.name)
    assert isinstance(stored.payload, TableRef)
    failed = [row for outcome in outcomes for row in outcome.failed_rows]
    processed = sum(o.chunk.stop - o.chunk.start - len(o.failed_rows) for o in outcomes)
    _check_every_row_once(step, outcomes, failed, rows_in)
    by_status = {
        status: sum(1 for outcome in outcomes if outcome.status == status)
        for status in (StepStatus.SUCCEEDED, StepStatus.PARTIAL, StepStatus.FAILED)
    }
    status = StepStatus.SUCCEEDED if not failed else StepStatus.PARTIAL
    line = reconciliation(rows_in, processed, len(failed))
    context.log.info(f"batch '{step.name}': {line}")
    metadata = step_metadata(context, step, None, head, status=status)
    metadata[keys.ROW_COUNT_KEY] = stored.payload.num_rows
    metadata.update(
        {
            keys.CHUNKS_KEY: len(outcomes),
            keys.CHUNKS_SUCCEEDED_KEY: by_status[StepStatus.SUCCEEDED],
            keys.CHUNKS_PARTIAL_KEY: by_status[StepStatus.PARTIAL],
            keys.CHUNKS_FAILED_KEY: by_status[StepStatus.FAILED],
            keys.CHUNKS_CAUGHT_UP_KEY: len(missing),
            keys.ROWS_IN_KEY: rows_in,
            keys.ROWS_PROCESSED_KEY: processed,
            keys.ROWS_OUT_KEY: stored.payload.num_rows,
            keys.ROWS_FAILED_KEY: len(failed),
            keys.ROWS_DEAD_LETTERED_KEY: len(failed),
            keys.RECONCILIATION_KEY: line,
            keys.OUTPUT_PATH_KEY: MetadataValue.path(stored.payload.path),
        }
    )
    if failed:
        assert source is not None
        failures = pa.Table.from_pylist(
            [{"row": r.row, "error": r.error, "attempts": r.attempts} for r in failed]
        )
        failures_value = store_value(f"{step.name}__failed_rows", failures, directory)
        assert isinstance(failures_value.payload, TableRef)
        letters = dead_letter_table(source.load(), failed, step.name)
        letters_value = store_value(f"{step.name}__dead_letters", letters, directory)
        assert isinstance(letters_value.payload, TableRef)
        metadata[keys.FAILED_ROWS_PATH_KEY] = MetadataValue.path(failures_value.payload.path)
        metadata[keys.DEAD_LETTERS_PATH_KEY] = MetadataValue.path(letters_value.payload.path)
        metadata[keys.FAILED_ROWS_PREVIEW_KEY] = MetadataValue.md(
            "\n".join(f"- row {row.row}: {markdown_text(row.error)}" for row in failed[:5])
        )
        context.log.warning(
            f"batch '{step.name}': {len(failed)} row(s) dead-lettered in "
            f"{letters_value.payload.path}; reprocess them by running the template with "
            "that file as its input"
        )
    yield from materializations(frame, step, metadata)
    yield AssetCheckEvaluation(
        asset_key=step_asset_key(frame.name, step.name),
        check_name=keys.EVERY_ROW_PROCESSED_CHECK,
        passed=not failed,
        severity=AssetCheckSeverity.WARN,
        metadata={keys.RECONCILIATION_KEY: line, keys.ROWS_DEAD_LETTERED_KEY: len(failed)},
        description="Every input row was processed; the rest are dead letters, accounted for.",
    )
    yield Output(stored, RESULT, metadata=metadata)
