"""Definitions for a templates folder: one job per template, with its model resources bound,
and the sensors and schedules the templates' triggers declare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import Definitions, FilesystemIOManager

from grammar_ops import Catalog
from marigold_dagster.jobs.asset_checks import template_asset_checks
from marigold_dagster.jobs.assets import template_asset_specs
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.deployment_resources import fixed_resources
from marigold_dagster.jobs.gate_ops import gate_decision_job
from marigold_dagster.jobs.model_binding import model_resources
from marigold_dagster.jobs.sensors import build_run_summary_sensors
from marigold_dagster.jobs.triggers import build_triggers
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import load_templates


def build_defs(
    templates_dir: Path | str,
    *,
    catalog: Catalog | None = None,
    resources: Mapping[str, Any] | None = None,
) -> Definitions:
    """Load every template in `templates_dir` and compile it into a job.

    Model resource keys the templates name are bound by `model_resources` (an SGLang server when
    `MARIGOLD_SGLANG_URL` is set, the offline model otherwise) unless `resources` binds them.
    Every resource, the IO manager included, is fixed by the deployment: run config cannot set
    any of its settings (see `jobs.deployment_resources`).

    Raises:
        TemplatesInvalid: when any template has problems (each with file:line and field), so
            `dagster definitions validate` fails with that message.
    """
    return defs_for_frames(load_templates(templates_dir, catalog), resources=resources)


def defs_for_frames(
    frames: Sequence[Frame],
    *,
    resources: Mapping[str, Any] | None = None,
    triggers: bool = True,
) -> Definitions:
    """`Definitions` for templates loaded together (`load_templates`, which checks their
    triggers; `triggers=False`: jobs and assets only, for running one template when others in
    its folder are broken)."""
    keys = {key for frame in frames for key in frame.template.models.values()}
    # Step outputs persist even in `execute_in_process` (which swaps Dagster's default IO manager
    # for an in-memory one), so every run can be re-executed from failure, e.g. past a gate.
    # Models, secrets and the IO manager's folder come from the deployment, never a launch.
    bound = fixed_resources(
        {"io_manager": FilesystemIOManager(), **model_resources(keys), **(resources or {})}
    )
    jobs = [compile_frame(frame) for frame in frames]
    built = build_triggers(frames, jobs) if triggers else None
    return Definitions(
        assets=[spec for frame in frames for spec in template_asset_specs(frame)],
        asset_checks=[check for frame in frames for check in template_asset_checks(frame)],
        jobs=[*jobs, gate_decision_job],
        sensors=[
            *build_run_summary_sensors(frames, jobs),
            *(built.sensors if built else []),
        ],
        schedules=built.schedules if built else [],
        resources=bound,
    )
