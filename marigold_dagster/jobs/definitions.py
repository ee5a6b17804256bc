"""Definitions for a templates folder: one job per template, with its model resources bound,
and the sensors and schedules the templates' triggers declare.

A process that reconstructs a job (a run worker, a multiprocess or Celery step worker) needs that
one job only: `load_defs` gives it a repository whose jobs compile when first asked for, each
template once per process (`template_job`), instead of every template's job.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import (
    Definitions,
    FilesystemIOManager,
    JobDefinition,
    RepositoryDefinition,
    repository,
)

from grammar_ops import Catalog
from marigold_dagster.jobs.asset_checks import template_asset_checks
from marigold_dagster.jobs.assets import template_asset_specs
from marigold_dagster.jobs.compiler import compile_frame
from marigold_dagster.jobs.deployment_resources import fixed_resources
from marigold_dagster.jobs.gate_ops import gate_decision_job
from marigold_dagster.jobs.model_binding import model_resources
from marigold_dagster.jobs.sensors import build_run_summary_sensors
from marigold_dagster.jobs.triggers import build_triggers
from marigold_dagster.records.dagster_private import dagster_reconstructing_job
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import TEMPLATE_SUFFIXES, load_template, load_templates

SINGLETON_REPOSITORY = "__repository__"
"""The name Dagster gives the repository of a module's `Definitions`; the lazy one keeps it."""


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
    bound = _bound_resources(keys, resources)
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


def _bound_resources(keys: set[str], resources: Mapping[str, Any] | None) -> dict[str, Any]:
    return fixed_resources(
        {"io_manager": FilesystemIOManager(), **model_resources(keys), **(resources or {})}
    )


def load_defs(templates_dir: Path | str) -> Definitions | RepositoryDefinition:
    """The definitions a module-level `defs` should hold in this process.

    Where Dagster reconstructs a job from its code pointer (a run worker, a step worker:
    `DefinitionsLoadType.RECONSTRUCTION`), a repository whose jobs compile one at a time when
    asked for (`lazy_job_repository`); everywhere else (a code server, `dagster definitions
    validate`, an import) every template's job with sensors, schedules and assets (`build_defs`).
    """
    if reconstructing_one_job():
        return lazy_job_repository(templates_dir)
    return build_defs(templates_dir)


_every_definition = contextvars.ContextVar("marigold_every_definition", default=False)


@contextmanager
def every_definition() -> Iterator[None]:
    """Within it, `load_defs` builds every definition even where Dagster reconstructs a job
    (Dagster leaves a process's load context at RECONSTRUCTION once it has reconstructed one)."""
    token = _every_definition.set(True)
    try:
        yield
    finally:
        _every_definition.reset(token)


def reconstructing_one_job() -> bool:
    """Whether Dagster is loading definitions to reconstruct a job (outside `every_definition`)."""
    return not _every_definition.get() and dagster_reconstructing_job()


def lazy_job_repository(templates_dir: Path | str) -> RepositoryDefinition:
    """A repository of the folder's template jobs (and the gate decision job), each compiled
    when first asked for: Dagster loads a repository's job dict entries lazily.

    Only the file names are read here (a template's name is its file's stem); a template is
    loaded and validated when its job is asked for, so a step worker reads its own template only.
    """
    jobs: dict[str, Callable[[], JobDefinition]] = {
        name: _job_loader(path) for name, path in template_paths(templates_dir).items()
    }
    jobs[gate_decision_job.name] = _bound_gate_decision_job

    @repository(name=SINGLETON_REPOSITORY)
    def marigold() -> dict[str, Any]:
        return {"jobs": jobs}

    return marigold


def _job_loader(path: Path) -> Callable[[], JobDefinition]:
    # A plain function: Dagster takes a repository dict entry as lazy only if it is one.
    def load() -> JobDefinition:
        return template_job(path)

    return load


def template_paths(templates_dir: Path | str) -> dict[str, Path]:
    """Template name (its file's stem) -> file, for the template files in `templates_dir`."""
    folder = Path(templates_dir)
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in TEMPLATE_SUFFIXES}


_compiled: dict[tuple[Any, ...], JobDefinition] = {}


def template_job(path: Path | str) -> JobDefinition:
    """The job of the template at `path`, bound as `build_defs` binds it, compiled once per
    process for the same file text and `MARIGOLD_*` environment."""
    path = Path(path).resolve()
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("MARIGOLD_")))
    key = (str(path), path.read_bytes(), environment)
    if key not in _compiled:
        frame = load_template(path)
        bound = _bound_resources(set(frame.template.models.values()), None)
        job = compile_frame(frame)
        _compiled[key] = Definitions(jobs=[job], resources=bound).resolve_job_def(job.name)
    return _compiled[key]


def _bound_gate_decision_job() -> JobDefinition:
    bound = _bound_resources(set(), None)
    defs = Definitions(jobs=[gate_decision_job], resources=bound)
    return defs.resolve_job_def(gate_decision_job.name)
