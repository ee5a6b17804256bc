"""The read tier: runs, their steps, plans, lineage, dead letters and waiting gates.

Everything is read from the Dagster instance the CLI opens (`open_instance`), through the same
records functions `marigold runs`, `marigold lineage` and `marigold run` use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from dagster import DagsterEventType, DagsterInstance, RunsFilter, TableMetadataValue

from marigold_dagster import keys
from marigold_dagster.mcp.failures import ToolProblem
from marigold_dagster.mcp.models import (
    BudgetUseInfo,
    DeadLetters,
    LineageResult,
    Page,
    PlanAttempt,
    PlannedStepProvenance,
    PlanResult,
    RunInfo,
    RunList,
    RunSummaryResult,
    StepResult,
    StepState,
    TaskInfo,
    WaitingGate,
    WaitingGates,
)
from marigold_dagster.mcp.offline import frame_of, load_frames
from marigold_dagster.mcp.settings import ServerSettings
from marigold_dagster.records.gate_decisions import reexecution_chain
from marigold_dagster.records.gate_queue import waiting_gates
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.lineage import task_lineage
from marigold_dagster.records.run_history import RunFacts, recent_runs, run_facts, use_text
from marigold_dagster.records.run_summary import RunSummary, summarise_run
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import StepKind, Template


@contextmanager
def instance_of(settings: ServerSettings) -> Iterator[DagsterInstance]:
    """The instance in DAGSTER_HOME, else the project's dagster.yaml, closed after use."""
    instance, _ = open_instance(settings.project_dir)
    with instance:
        yield instance


def ceilings(settings: ServerSettings) -> dict[str, Template]:
    """The templates that load, by name: their budgets are the ceilings runs are shown against."""
    frames, _ = load_frames(settings)
    return {frame.name: frame.template for frame in frames}


def run_info(facts: RunFacts, templates: Mapping[str, Template]) -> RunInfo:
    use = facts.use
    return RunInfo(
        run_id=facts.run_id,
        template=facts.template,
        version=facts.version,
        status=facts.status,
        correlation_id=facts.correlation_id,
        parent_correlation_id=facts.parent_correlation_id,
        started_at=facts.started_at,
        steps=dict(facts.step_counts),
        budget=BudgetUseInfo(
            steps=use.steps,
            phases=use.phases,
            tokens=use.tokens,
            cost_usd=use.cost_usd,
            text=use_text(facts, templates),
        ),
    )


def facts_of(instance: DagsterInstance, run_id: str) -> RunFacts:
    records = instance.get_run_records(RunsFilter(run_ids=[run_id]), limit=1)
    if not records:
        raise ToolProblem(
            "NOT_FOUND",
            f"no run {run_id} in this Dagster instance; list_runs shows recent run ids",
        )
    return run_facts(instance, records[0])


def step_states(summary: RunSummary) -> list[StepState]:
    return [
        StepState(
            name=step.name,
            kind=step.kind,
            status=str(step.status),
            attempts=step.attempts,
            duration_s=step.duration_s,
            rows=step.rows,
            detail=step.detail,
        )
        for step in summary.steps
    ]


def _page(offset: int, limit: int, total: int | None, more: bool) -> Page:
    return Page(
        offset=offset, limit=limit, total=total, next_offset=offset + limit if more else None
    )


def list_runs(
    settings: ServerSettings,
    template: str | None,
    correlation_id: str | None,
    offset: int,
    limit: int,
) -> RunList:
    with instance_of(settings) as instance:
        if correlation_id:
            lineage = task_lineage(instance, correlation_id)
            node = next(n for n in lineage.root.walk() if n.correlation_id == lineage.asked)
            runs = list(node.runs)
            shown = runs[offset : offset + limit]
            more = offset + limit < len(runs)
            total: int | None = len(runs)
        else:
            fetched = recent_runs(instance, offset + limit + 1, template)
            shown = fetched[offset : offset + limit]
            more = len(fetched) > offset + limit
            total = None
        templates = ceilings(settings)
        return RunList(
            runs=[run_info(facts, templates) for facts in shown],
            page=_page(offset, limit, total, more),
        )


def _run_frame(settings: ServerSettings, facts: RunFacts) -> Frame:
    return frame_of(settings, facts.template)


def get_run(settings: ServerSettings, run_id: str) -> RunSummaryResult:
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        summary = summarise_run(instance, run_id, _run_frame(settings, facts))
        return RunSummaryResult(
            run=run_info(facts, ceilings(settings)),
            steps=step_states(summary),
            waiting_gates=[s.name for s in summary.steps if s.status == keys.StepStatus.PAUSED],
        )


def _frame_step(frame: Frame, name: str, kind: StepKind | None = None) -> FrameStep:
    step = frame.steps.get(name)
    if step is None or (kind is not None and step.kind is not kind):
        names = [s.name for s in frame if kind is None or s.kind is kind]
        what = f"{kind.value} step" if kind else "step"
        raise ToolProblem("NOT_FOUND", f"'{name}' is not a {what} of '{frame.name}'", names)
    return step


def _outputs(
    instance: DagsterInstance, run_ids: list[str], step_key: str, output: str
) -> dict[str, Any] | None:
    """The metadata of the newest `output` of `step_key` in `run_ids` (a lineage, newest first)."""
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_OUTPUT):
            event = entry.dagster_event
            if entry.step_key != step_key or event is None:
                continue
            data = event.step_output_data
            if data.output_name == output:
                return {k: v.value for k, v in data.metadata.items()}
    return None


def _failure(instance: DagsterInstance, run_ids: list[str], step_key: str) -> dict[str, Any]:
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
            event = entry.dagster_event
            if entry.step_key != step_key or event is None or event.step_failure_data is None:
                continue
            user = event.step_failure_data.user_failure_data
            return {k: v.value for k, v in (user.metadata if user else {}).items()}
    return {}


def _preview(value: Any) -> Any:
    """A step's preview as JSON: a table preview becomes its records."""
    if isinstance(value, TableMetadataValue):
        return _jsonable([dict(record.data) for record in value.records])
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _rows(path: Path, offset: int, limit: int) -> tuple[list[str], list[dict[str, Any]], int]:
    table = pq.read_table(path)
    rows = table.slice(offset, limit).to_pylist()
    return list(table.column_names), _jsonable(rows), table.num_rows


def _run_file(instance: DagsterInstance, run_ids: list[str], stem: str) -> Path | None:
    """`<stem>.parquet` in the run folder of the newest run of `run_ids` that wrote one."""
    for run_id in run_ids:
        path = Path(instance.storage_directory()) / "marigold" / run_id / f"{stem}.parquet"
        if path.is_file():
            return path
    return None


def get_step_result(
    settings: ServerSettings, run_id: str, step: str, offset: int, limit: int
) -> StepResult:
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        frame = _run_frame(settings, facts)
        frame_step = _frame_step(frame, step)
        state = summarise_run(instance, run_id, frame).step(step)
        chain = reexecution_chain(instance, run_id)
        key = keys.result_op_name(frame_step)
        output = "decided" if frame_step.kind in (StepKind.DECISION, StepKind.GATE) else "result"
        metadata = _outputs(instance, chain, key, output) or {}
        path_value = metadata.get(keys.OUTPUT_PATH_KEY)
        path = Path(path_value) if isinstance(path_value, str) else _run_file(instance, chain, key)
        result = StepResult(
            run_id=run_id,
            step=step,
            status=str(state.status),
            rows=state.rows,
            preview=_preview(metadata.get(keys.PREVIEW_KEY)),
        )
        if path is not None and path.is_file():
            columns, records, total = _rows(path, offset, limit)
            result.file, result.columns, result.records = str(path), columns, records
            result.page = _page(offset, limit, total, offset + limit < total)
        return result


def get_plan(settings: ServerSettings, run_id: str, step: str, phase: int) -> PlanResult:
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        frame = _run_frame(settings, facts)
        _frame_step(frame, step, StepKind.PLANNING)
        chain = reexecution_chain(instance, run_id)
        op = keys.plan_op_name(step, phase)
        metadata = _outputs(instance, chain, op, keys.PLAN)
        status = "accepted"
        if metadata is None:
            metadata = _failure(instance, chain, op)
            status = "rejected" if metadata else "not_planned"
        attempts = [
            PlanAttempt(
                attempt=item.get("attempt", index + 1),
                accepted=bool(item.get("accepted")),
                findings=list(item.get("findings") or []),
                prompt_tokens=item.get("prompt_tokens"),
                completion_tokens=item.get("completion_tokens"),
                answer=item.get("answer"),
            )
            for index, item in enumerate(metadata.get(keys.VALIDATION_KEY) or [])
        ]
        return PlanResult(
            run_id=run_id,
            step=step,
            phase=phase,
            status=status,
            fragment_id=metadata.get(keys.FRAGMENT_ID_KEY),
            fragment=metadata.get(keys.FRAGMENT_KEY),
            estimate=metadata.get(keys.ESTIMATE_KEY),
            budget=metadata.get(keys.BUDGET_KEY),
            attempts=attempts,
            provenance=_provenance(instance, chain, frame.name, step),
        )


def _provenance(
    instance: DagsterInstance, run_ids: list[str], template: str, step: str
) -> list[PlannedStepProvenance]:
    """Each planned step's provenance, from its materialization of the planned-steps asset."""
    asset = keys.planned_steps_asset_key(template, step)
    found: dict[str, PlannedStepProvenance] = {}
    for run_id in reversed(run_ids):
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization is None or materialization.asset_key != asset:
                continue
            partition = materialization.partition or entry.step_key or "?"
            values = {
                k: _jsonable(v.value)
                for k, v in materialization.metadata.items()
                if k.startswith("marigold/")
            }
            found[partition] = PlannedStepProvenance(id=partition, metadata=values)
    return list(found.values())


def get_lineage(settings: ServerSettings, correlation_id: str) -> LineageResult:
    with instance_of(settings) as instance:
        lineage = task_lineage(instance, correlation_id)
        templates = ceilings(settings)
        tasks: list[TaskInfo] = []

        def visit(node: Any, depth: int, parent: str | None) -> None:
            tasks.append(
                TaskInfo(
                    correlation_id=node.correlation_id,
                    parent_correlation_id=parent,
                    depth=depth,
                    runs=[run_info(facts, templates) for facts in node.runs],
                )
            )
            for child in node.children:
                visit(child, depth + 1, node.correlation_id)

        visit(lineage.root, 0, lineage.outside_parent)
        use = lineage.root.total_use()
        return LineageResult(
            asked=lineage.asked,
            root=lineage.root.correlation_id,
            outside_parent=lineage.outside_parent,
            tasks=tasks,
            total=BudgetUseInfo(
                steps=use.steps,
                phases=use.phases,
                tokens=use.tokens,
                cost_usd=use.cost_usd,
                text=f"{use.steps} steps, {use.tokens:,} tokens, ${use.cost_usd:.2f}",
            ),
        )


def dead_letters_file(instance: DagsterInstance, run_id: str, step: str) -> Path | None:
    """The dead-letter table batch step `step` of run `run_id` wrote, if it set any row aside."""
    chain = reexecution_chain(instance, run_id)
    metadata = _outputs(instance, chain, keys.merge_name(step), "result") or {}
    given = metadata.get(keys.DEAD_LETTERS_PATH_KEY)
    if isinstance(given, str) and Path(given).is_file():
        return Path(given)
    return _run_file(instance, chain, f"{step}__dead_letters")


def list_dead_letters(
    settings: ServerSettings, run_id: str, step: str, offset: int, limit: int
) -> DeadLetters:
    with instance_of(settings) as instance:
        facts = facts_of(instance, run_id)
        _frame_step(_run_frame(settings, facts), step, StepKind.BATCH)
        path = dead_letters_file(instance, run_id, step)
        if path is None:
            return DeadLetters(
                run_id=run_id,
                step=step,
                file=None,
                total=0,
                records=[],
                page=_page(0, limit, 0, False),
            )
        _, records, total = _rows(path, offset, limit)
        return DeadLetters(
            run_id=run_id,
            step=step,
            file=str(path),
            total=total,
            records=records,
            page=_page(offset, limit, total, offset + limit < total),
        )


def list_waiting_gates(settings: ServerSettings, template: str | None) -> WaitingGates:
    with instance_of(settings) as instance:
        states = waiting_gates(instance, template)
    identity = settings.identity
    return WaitingGates(
        identity=identity,
        gates=[
            WaitingGate(
                run_id=state.pause.run_id,
                template=state.pause.template,
                step=state.pause.step,
                prompt=state.pause.prompt,
                approvers=list(state.pause.approvers),
                paused_at=state.pause.paused_at,
                deadline=state.pause.deadline,
                may_decide=identity is not None and state.pause.may_decide(identity),
            )
            for state in states
        ],
    )
