"""The compiler: a checked `Frame` becomes a Dagster job, built with the composition DSL.

The graph body runs once, at definitions load time, and wires one op per template step (three
for a batch step) along the template's `depends_on`:

- an edge out of a decision takes the decision's output named after the dependent step, so a
  branch the decision does not choose is skipped by Dagster, with everything below it;
- a converge step takes every declared upstream through one fan-in input, preceded by its
  sentinel (see `marigold_dagster.template.frame`), so it runs with whichever upstreams ran;
- a batch step is `split -> map(chunk) -> collect -> merge`; the merge also takes the batch's
  input, so a batch whose chunks produced no rows still knows its columns;
- an edge out of a gate takes the gate's `approved` output, so a rejected gate's branch is
  skipped (see `marigold_dagster.jobs.gate_ops`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dagster import (
    ExecutorDefinition,
    In,
    JobDefinition,
    OpDefinition,
    Out,
    ResourceDefinition,
    graph,
)

from marigold_dagster.jobs.batch_ops import build_chunk_op, build_merge_op, build_split_op
from marigold_dagster.jobs.deployment_resources import fixed_resources
from marigold_dagster.jobs.executors import CELERY_QUEUE_TAG, celery_queue, executor_name
from marigold_dagster.jobs.executors import executor_def as build_executor_def
from marigold_dagster.jobs.gate_ops import build_gate_op
from marigold_dagster.jobs.model_binding import model_backend
from marigold_dagster.jobs.planning_ops import (
    build_collect_op,
    build_fanout_op,
    build_level_op,
    build_plan_op,
    build_planning_result_op,
)
from marigold_dagster.jobs.step_ops import build_converge_op, build_decision_op, build_task_op
from marigold_dagster.keys import (
    APPROVED,
    MODEL_BACKEND_TAG,
    PREVIOUS,
    RETRY_ON_FAILURE_TAG,
    TEMPLATE_TAG,
    TEMPLATE_VERSION_TAG,
)
from marigold_dagster.records.correlation import trace_run
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.model import StepKind


@dataclass(frozen=True)
class PlanningOps:
    """The ops of one planning step: per phase a plan op, level ops, fan-outs and a collect."""

    plans: list[Any]
    levels: list[list[Any]]
    fanouts: list[list[Any]]
    collects: list[Any]
    result: Any


def planning_ops(frame: Frame, step: FrameStep) -> PlanningOps:
    spec = step.planning
    phases = range(1, spec.max_phases + 1)
    depths = range(1, spec.max_depth + 1)
    return PlanningOps(
        plans=[build_plan_op(frame, step, p) for p in phases],
        levels=[[build_level_op(frame, step, p, d) for d in depths] for p in phases],
        fanouts=[[build_fanout_op(frame, step, p, d) for d in depths[1:]] for p in phases],
        collects=[build_collect_op(frame, step, p) for p in phases],
        result=build_planning_result_op(frame, step),
    )


def wire_planning(ops: PlanningOps, upstream: dict[str, Any]) -> Any:
    """plan -> level 1 -> (fan-out -> level k)* -> collect, per phase; then the result op.

    Phases after one that answered done, or stopped, are skipped: none of their ops start.
    """
    previous = None
    phases = []
    for index, plan_op in enumerate(ops.plans):
        inputs = dict(upstream)
        if previous is not None:
            inputs[PREVIOUS] = previous
        planned = plan_op(**inputs)
        levels = ops.levels[index]
        done = planned.level.map(lambda task, op=levels[0]: op(task=task)).collect()
        progress = planned.progress
        closers = []
        for depth, fanout in enumerate(ops.fanouts[index], start=2):
            released = fanout(plan=planned.plan, progress=progress, done_level=done)
            closers.append(released)
            progress = released.progress
            done = released.level.map(lambda task, op=levels[depth - 1]: op(task=task)).collect()
        closers.append(ops.collects[index](plan=planned.plan, progress=progress, done_level=done))
        # A phase closes at its plan op (nothing to run), at the first fan-out with nothing
        # deeper to release (or a spent budget), or at its collect; later fan-outs, and the
        # next phase unless the closer says `next` (not done, not stopped), start no ops.
        phases.extend([planned.closed, *(closer.phase for closer in closers)])
        previous = [closer.next for closer in closers]
    return ops.result(phases=phases)


def _scoped(template: str, built: Any, queues: frozenset[str] | None = None) -> Any:
    """Op definitions renamed `<template>__<op>` and invoked under their own name.

    Dagster requires op definitions to have unique names across every job of a code location,
    and two templates may both have a step called `load`; the alias keeps step keys (and run
    config under `ops:`) as the author wrote them. With `queues` (the template's model resource
    keys, for a Celery job) each invocation is tagged with its Celery queue.
    """
    if isinstance(built, OpDefinition):
        invoked = OpDefinition(
            name=f"{template}__{built.name}",
            ins={d.name: In.from_definition(d) for d in built.input_defs},
            outs={d.name: Out.from_definition(d) for d in built.output_defs},
            compute_fn=_traced(built.compute_fn),
            config_schema=built.config_schema,
            description=built.description,
            tags=built.tags,
            required_resource_keys=built.required_resource_keys,
            retry_policy=built.retry_policy,
            pool=built.pool,
        ).alias(built.name)
        if queues is not None:
            queue = celery_queue(built.required_resource_keys & queues)
            invoked = invoked.tag({CELERY_QUEUE_TAG: queue})
        return invoked
    if isinstance(built, (list, tuple)):
        return type(built)(_scoped(template, item, queues) for item in built)
    if isinstance(built, PlanningOps):
        return PlanningOps(
            **{f.name: _scoped(template, getattr(built, f.name), queues) for f in fields(built)}
        )
    raise TypeError(f"cannot scope {built!r}")


def _traced(compute: Any) -> Any:
    """`compute` preceded by `trace_run`: whichever op runs first tags the run with its task,
    however the run was launched (Launchpad, GraphQL, CLI, schedule, sensor, re-execution)."""

    # Unannotated: Dagster reads the `context` annotation, and this module's are strings.
    def compute_traced(context, inputs):  # type: ignore[no-untyped-def]
        trace_run(context.instance, context.run, {MODEL_BACKEND_TAG: model_backend()})
        yield from compute(context, inputs)

    return compute_traced


def compile_frame(
    frame: Frame,
    *,
    resource_defs: Mapping[str, ResourceDefinition | Any] | None = None,
    executor_def: ExecutorDefinition | None = None,
) -> JobDefinition:
    """The Dagster job for `frame`, named after the template.

    Its executor is `executor_def` when given, else the one `executor_name` picks (the
    template's `executor:`, the deployment's `MARIGOLD_EXECUTOR`, or in process).
    """
    executor = executor_name(frame.template.executor)
    if executor_def is None:
        executor_def = build_executor_def(executor)
    queues = frozenset(frame.template.models.values()) if executor == "celery" else None
    builders = {
        StepKind.TASK: build_task_op,
        StepKind.DECISION: build_decision_op,
        StepKind.CONVERGE: build_converge_op,
        StepKind.GATE: build_gate_op,
    }
    ops: dict[str, Any] = {}
    for step in frame:
        if step.kind is StepKind.PLANNING:
            ops[step.name] = planning_ops(frame, step)
        elif step.kind is StepKind.BATCH:
            ops[step.name] = (
                build_split_op(frame, step),
                build_chunk_op(frame, step),
                build_merge_op(frame, step),
            )
        else:
            ops[step.name] = builders[step.kind](frame, step)
    ops = {name: _scoped(frame.name, built, queues) for name, built in ops.items()}

    @graph(name=frame.name, description=frame.template.description or None)
    def template_graph() -> None:
        handles: dict[str, Any] = {}

        def edge(upstream: str, downstream: str) -> Any:
            source = frame.steps[upstream]
            if source.kind is StepKind.DECISION:
                return getattr(handles[upstream], downstream)
            if source.kind is StepKind.GATE:
                return getattr(handles[upstream], APPROVED)
            return handles[upstream]

        for step in frame:
            upstream = {dep: edge(dep, step.name) for dep in step.step.depends_on}
            if step.kind is StepKind.CONVERGE:
                fan_in = [edge(dep, step.name) for dep in step.step.depends_on]
                if step.sentinel is not None:
                    decision = handles[step.sentinel.decision]
                    fan_in.insert(0, getattr(decision, step.sentinel.output))
                handles[step.name] = ops[step.name](upstream=fan_in)
            elif step.kind is StepKind.PLANNING:
                handles[step.name] = wire_planning(ops[step.name], upstream)
            elif step.kind is StepKind.BATCH:
                split, chunk, merge = ops[step.name]
                results = split(**upstream).map(lambda c, chunk=chunk: chunk(chunk=c))
                batch_input = upstream[step.step.depends_on[0]]
                handles[step.name] = merge(chunks=results.collect(), batch_input=batch_input)
            else:
                handles[step.name] = ops[step.name](**upstream)

    tags = {
        **frame.template.tags,
        TEMPLATE_TAG: frame.name,
        TEMPLATE_VERSION_TAG: str(frame.template.version),
    }
    if any(step.kind is StepKind.GATE for step in frame):
        # A failed run of a gated template is not relaunched whole by the run-retry daemon
        # (`run_retries` in dagster.yaml): a relaunch would ask the gate again. Op-level retries
        # still apply; a paused run ends successfully and is never retried.
        tags[RETRY_ON_FAILURE_TAG] = "false"
    return template_graph.to_job(
        resource_defs=fixed_resources(resource_defs or {}),
        tags=tags,
        executor_def=executor_def,
    )
