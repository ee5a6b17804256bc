"""Asset keys and specs: template inputs, step results, plans, planned steps and gate decisions.

Each template declares `AssetSpec`s with `deps` following its data flow, so the Dagster asset
graph draws input -> steps -> plan -> planned steps -> result; runs report materializations of
them (with audit and provenance metadata) from inside the ops. A step asset is declared only
where runs record it (`Frame.materializes`), so the catalog never shows a step that ran as never
materialized; lineage passes through the steps left out. Inputs are observed by the steps
that read them.

What is only known at run time is a dynamic partition of a declared asset: each planned step
is a partition (its planned id) of `<template>/<step>/planned`, and each run's decision of a
gate is a partition (the run id) of `<template>/<step>/gate`. The key is registered with
`instance.add_dynamic_partitions` before the event that uses it.
"""

from __future__ import annotations

from dagster import AssetKey, AssetSpec, DynamicPartitionsDefinition

from marigold_dagster.keys import (
    gate_asset_key,
    gate_partitions_name,
    input_asset_key,
    plan_asset_key,
    planned_steps_asset_key,
    planned_steps_partitions_name,
    step_asset_key,
)
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.model import StepKind


def _declared_deps(frame: Frame, name: str) -> list[AssetKey]:
    """The declared assets step `name` reads: template inputs, and upstream steps that record
    a materialization, looking through those that do not (their lineage passes on)."""
    deps: list[AssetKey] = []
    step = frame.steps[name]
    if step.composition is not None:
        deps += [input_asset_key(frame.name, n) for n in sorted(step.composition.template_inputs)]
    for upstream in step.step.depends_on:
        if frame.materializes(upstream):
            deps.append(step_asset_key(frame.name, upstream))
        else:
            deps += _declared_deps(frame, upstream)
    return list(dict.fromkeys(deps))


def template_asset_specs(frame: Frame) -> list[AssetSpec]:
    """Specs for all of a template's assets, with lineage along `depends_on`."""
    name = frame.name

    def spec(
        key: AssetKey, deps: list[AssetKey], description: str, partitions: str | None = None
    ) -> AssetSpec:
        return AssetSpec(
            key,
            deps=deps,
            description=description,
            group_name=name,
            kinds={"marigold"},
            partitions_def=DynamicPartitionsDefinition(name=partitions) if partitions else None,
        )

    specs = [
        spec(
            input_asset_key(name, input_name),
            [],
            input_spec.description or f"{input_spec.kind} input '{input_name}'",
        )
        for input_name, input_spec in frame.template.inputs.items()
    ]
    for step in frame:
        deps = _declared_deps(frame, step.name)
        if step.kind is StepKind.PLANNING:
            plan, planned = (
                plan_asset_key(name, step.name),
                planned_steps_asset_key(name, step.name),
            )
            specs.append(spec(plan, deps, f"The accepted plan of planning step '{step.name}'"))
            specs.append(
                spec(
                    planned,
                    [plan],
                    f"The steps planning step '{step.name}' created, one partition per planned "
                    "step id, each materialization with its provenance",
                    planned_steps_partitions_name(name, step.name),
                )
            )
            deps = [plan, planned]
        if step.kind is StepKind.GATE:
            gate = gate_asset_key(name, step.name)
            specs.append(
                spec(
                    gate,
                    deps,
                    f"Decisions of gate '{step.name}': who approved or rejected, when and why; "
                    "one partition per paused run",
                    gate_partitions_name(name, step.name),
                )
            )
            deps = [*deps, gate]
        if not frame.materializes(step.name):
            continue  # declared only where runs record it, so the catalog matches what ran
        specs.append(
            spec(
                step_asset_key(name, step.name),
                deps,
                step.step.description or f"{step.kind.value} step '{step.name}'",
            )
        )
    return specs
