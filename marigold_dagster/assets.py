"""Asset keys and specs: template inputs, step results, plans and planned steps as assets.

Each template declares `AssetSpec`s with `deps` following its data flow, so the Dagster asset
graph draws input -> steps -> plan -> planned outputs -> result; runs report materializations of
them (with audit and provenance metadata) from inside the ops.
"""

from __future__ import annotations

from dagster import AssetKey, AssetSpec

from marigold_dagster.frame import Frame
from marigold_dagster.template import StepKind


def input_asset_key(template: str, name: str) -> AssetKey:
    return AssetKey([template, "inputs", name])


def step_asset_key(template: str, step: str) -> AssetKey:
    return AssetKey([template, step])


def plan_asset_key(template: str, step: str) -> AssetKey:
    return AssetKey([template, step, "plan"])


def planned_step_asset_key(template: str, step: str, planned_id: str) -> AssetKey:
    return AssetKey([template, step, "planned", planned_id])


def template_asset_specs(frame: Frame) -> list[AssetSpec]:
    """Specs for a template's inputs, steps and plans, with lineage along `depends_on`."""
    name = frame.name
    group = name
    specs = [
        AssetSpec(
            input_asset_key(name, input_name),
            description=spec.description or f"{spec.kind} input '{input_name}'",
            group_name=group,
            kinds={"marigold"},
        )
        for input_name, spec in frame.template.inputs.items()
    ]
    for step in frame:
        deps = [step_asset_key(name, upstream) for upstream in step.step.depends_on]
        if step.composition is not None:
            deps += [input_asset_key(name, n) for n in sorted(step.composition.template_inputs)]
        if step.kind is StepKind.PLANNING:
            specs.append(
                AssetSpec(
                    plan_asset_key(name, step.name),
                    deps=deps,
                    description=f"The accepted plan of planning step '{step.name}'",
                    group_name=group,
                    kinds={"marigold"},
                )
            )
            deps = [plan_asset_key(name, step.name)]
        specs.append(
            AssetSpec(
                step_asset_key(name, step.name),
                deps=deps,
                description=step.step.description or f"{step.kind.value} step '{step.name}'",
                group_name=group,
                kinds={"marigold"},
            )
        )
    return specs
