"""What every compiled step does around its capability: context, deadline, audit metadata.

Static steps, batch chunks and (later) planned steps all run their composition through
`run_composition`, so each gets the same deadline handling, usage accounting and metadata.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa
from dagster import (
    MetadataValue,
    OpExecutionContext,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
)

from grammar_ops import Composition, PrimitiveContext, PrimitiveMetric, StepTimeout, UsageMeter
from marigold_dagster import keys
from marigold_dagster.artifacts import StepValue, artifacts_dir
from marigold_dagster.keys import STEP_COUNT_KEY, StepStatus
from marigold_dagster.template.frame import Frame, FrameStep
from resources.pricing import priced_model

PREVIEW_ROWS = 5


@dataclass
class StepRun:
    """Timing and accounting of one execution of a step's capability."""

    started_at: float
    ended_at: float
    metrics: tuple[PrimitiveMetric, ...]
    usage: UsageMeter

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at


def primitive_context(
    context: OpExecutionContext,
    frame: Frame,
    name: str,
    composition: Composition | None,
    upstream: Mapping[str, StepValue],
    template_inputs: Mapping[str, str],
) -> PrimitiveContext:
    """The grammar-side context for running `composition` as step `name` inside a Dagster op."""
    refs = composition.upstream_refs if composition else frozenset()
    roles = composition.model_roles if composition else frozenset()
    return PrimitiveContext(
        step=name,
        upstream={name: upstream[name].load() for name in refs if name in upstream},
        template_inputs=dict(template_inputs),
        models={role: _model(context, frame.template.models[role]) for role in roles},
        artifacts_dir=artifacts_dir(context.instance.storage_directory(), context.run_id),
        allowed_hosts=frozenset(frame.template.allowed_hosts),
        log=cast(Any, context.log),
    )


def _model(context: OpExecutionContext, resource_key: str) -> Any:
    """The model resource bound to `resource_key`, pricing its calls as the deployment says."""
    return priced_model(resource_key, getattr(context.resources, resource_key))


def run_composition(
    composition: Composition, value: Any, ctx: PrimitiveContext, timeout_s: float | None
) -> tuple[Any, StepRun]:
    """Run `composition` on `value` within `timeout_s`; return the result and its accounting."""
    started = time.time()
    with step_deadline(ctx, timeout_s):
        result = composition.run(value, ctx)
    return result.value, StepRun(started, time.time(), result.metrics, ctx.usage)


@contextmanager
def step_deadline(ctx: PrimitiveContext, timeout_s: float | None) -> Iterator[None]:
    """Enforce `timeout_s` on the block.

    Primitives check `ctx.deadline` between rows and bound their network calls by it. On the
    main thread (where Dagster runs an op's compute) a timer signal also interrupts a primitive
    stuck in one long call.
    """
    if timeout_s is None:
        yield
        return
    ctx.deadline = time.monotonic() + timeout_s
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = None
    if on_main_thread:

        def expire(signum: int, frame: Any) -> None:
            raise StepTimeout(f"step '{ctx.step}' ran past its timeout of {timeout_s:g} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
        ctx.check_deadline()
    except StepTimeout as error:
        raise StepTimeout(f"step '{ctx.step}' ran past its timeout of {timeout_s:g} s") from error
    finally:
        if on_main_thread:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def worker_identity() -> str:
    """`host:pid` of this process: where a step ran (a Celery worker, or the run's process)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def step_metadata(
    context: OpExecutionContext,
    step: FrameStep,
    run: StepRun | None,
    result: Any,
    *,
    status: StepStatus = StepStatus.SUCCEEDED,
    counts_as_step: bool = True,
) -> dict[str, Any]:
    """The audit metadata every step records.

    Short by default (status, who created it, attempt, duration, rows, tokens and cost when a
    model was called); timing and per-primitive metrics sit in one `marigold/detail` JSON entry
    and the first rows in `preview`, a click away in the Dagster UI.
    """
    metadata: dict[str, Any] = {
        keys.STATUS_KEY: status.value,  # Dagster serialises plain strings, not enums
        keys.CREATED_BY_KEY: "template",
        keys.ATTEMPT_KEY: context.retry_number + 1,
        keys.WORKER_KEY: worker_identity(),
    }
    if counts_as_step:
        metadata[STEP_COUNT_KEY] = 1
    if step.composition is not None:
        metadata[keys.CAPABILITY_KEY] = step.composition.source
    metadata.update(run_metadata(run, {"step_kind": step.kind.value}))
    metadata.update(output_summary(result))
    return metadata


def run_metadata(run: StepRun | None, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Duration and model usage of one composition run, with the rest as one detail entry."""
    detail = dict(detail or {})
    metadata: dict[str, Any] = {}
    if run is not None:
        metadata[keys.DURATION_S_KEY] = round(run.duration_s, 4)
        if run.usage.requests:
            metadata.update(run.usage.as_metadata())
        detail.update(
            {
                "started_at": _iso(run.started_at),
                "ended_at": _iso(run.ended_at),
                "primitives": [
                    {
                        "primitive": metric.primitive,
                        "ms": round(metric.duration_s * 1000, 2),
                        "rows_in": metric.rows_in,
                        "rows_out": metric.rows_out,
                    }
                    for metric in run.metrics
                ],
            }
        )
    if detail:
        metadata[keys.DETAIL_KEY] = MetadataValue.json(detail)
    return metadata


def output_summary(value: Any) -> dict[str, Any]:
    """Row count and a short preview of a value (a table, records or JSON).

    Rows are previewed as Dagster table metadata, which the UI renders as a table (and never
    as markdown, so text from the data cannot format the page).
    """
    if isinstance(value, pa.Table):
        return {
            keys.ROW_COUNT_KEY: value.num_rows,
            keys.PREVIEW_KEY: _table_preview(value.slice(0, PREVIEW_ROWS).to_pylist()),
        }
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return {
            keys.ROW_COUNT_KEY: len(value),
            keys.PREVIEW_KEY: _table_preview(value[:PREVIEW_ROWS]),
        }
    if value is None:
        return {}
    return {keys.PREVIEW_KEY: MetadataValue.json(_jsonable(value))}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value[:PREVIEW_ROWS]]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _table_preview(rows: list[dict[str, Any]]) -> TableMetadataValue:
    columns = list(dict.fromkeys(str(key) for row in rows for key in row))
    types = {column: _column_type(rows, column) for column in columns}
    return MetadataValue.table(
        records=[
            TableRecord(data={column: _cell(row.get(column)) for column in columns}) for row in rows
        ],
        schema=TableSchema(columns=[TableColumn(column, types[column]) for column in columns]),
    )


def _column_type(rows: list[dict[str, Any]], column: str) -> str:
    kinds = {type(row.get(column)) for row in rows if row.get(column) is not None}
    if kinds <= {bool} and kinds:
        return "bool"
    if kinds <= {int} and kinds:
        return "int"
    if kinds <= {int, float} and kinds:
        return "float"
    return "string"


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
