"""Running a template's job in this process on a persistent Dagster instance.

This is what `marigold run` does: the same job `dagster dev` shows, executed in process on the
instance in DAGSTER_HOME (or the project's dagster.yaml), so the run appears in the UI after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInvariantViolationError

from marigold_dagster.artifacts import StepValue, artifacts_dir
from marigold_dagster.errors import MarigoldError
from marigold_dagster.jobs.definitions import defs_for_frames
from marigold_dagster.jobs.launch_inputs import input_run_config
from marigold_dagster.keys import CORRELATION_TAG, RESULT, StepStatus, result_op_name
from marigold_dagster.records.correlation import correlation_tags
from marigold_dagster.records.instance import open_instance
from marigold_dagster.records.run_summary import RunSummary, record_run_summary, summarise_run
from marigold_dagster.template.frame import Frame, FrameStep
from marigold_dagster.template.loader import load_template, load_templates_apart
from marigold_dagster.template.model import StepKind


@dataclass(frozen=True)
class LocalRun:
    """A finished run: its summary, the instance home and where its files are."""

    summary: RunSummary
    dagster_home: Path
    artifacts: Path
    outputs: dict[str, StepValue]
    correlation_id: str = ""
    broken_templates: tuple[str, ...] = ()
    """Other templates in the folder that did not load (each error, file:line), not run."""

    @property
    def success(self) -> bool:
        return self.summary.status == "SUCCESS"

    @property
    def paused_at(self) -> list[str]:
        """The gates the run stopped at to wait for a decision (a designed pause, not a crash)."""
        return [step.name for step in self.summary.steps if step.status == StepStatus.PAUSED]


def template_path(templates_dir: Path, template: str) -> Path:
    """The file of template `template` in `templates_dir`, or an error naming those there."""
    for suffix in (".yaml", ".yml"):
        path = templates_dir / f"{template}{suffix}"
        if path.is_file():
            return path
    known = sorted(p.stem for p in templates_dir.glob("*.y*ml"))
    raise MarigoldError(f"no template '{template}' in {templates_dir}; known: {known}")


def run_locally(
    template: str,
    templates_dir: Path,
    inputs: Mapping[str, str] | None = None,
    project_dir: Path | None = None,
    tags: Mapping[str, str] | None = None,
    log_level: str = "CRITICAL",
    parent_correlation_id: str | None = None,
) -> LocalRun:
    """Run template `template` from `templates_dir` to completion in this process.

    Dagster's console log is quiet below `log_level` (by default it prints nothing: the summary
    names each failure once; the event log keeps everything). The run is a new task: it is
    tagged with a new correlation id (unless `tags` gives one) and, when
    `parent_correlation_id` is given, with the task that started it.
    """
    run_tags = {**correlation_tags(parent_correlation_id), **(tags or {})}
    frame, broken = load_one_template(templates_dir, template)
    job = defs_for_frames([frame], triggers=False).resolve_job_def(template)
    instance, home = open_instance(project_dir or Path.cwd())
    with instance:
        run_config = {
            **input_run_config(frame, inputs or {}),
            "loggers": {"console": {"config": {"log_level": log_level}}},
        }
        result = job.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            tags=run_tags,
        )
        summary = summarise_run(instance, result.run_id, frame)
        record_run_summary(instance, summary)
        outputs = {
            step.name: value for step in frame if (value := _output(result, step)) is not None
        }
        folder = artifacts_dir(instance.storage_directory(), result.run_id)
    return LocalRun(summary, home, folder, outputs, run_tags[CORRELATION_TAG], broken)


def load_one_template(templates_dir: Path, template: str) -> tuple[Frame, tuple[str, ...]]:
    """Template `template` of `templates_dir`, and the errors of the other files that are broken.

    A broken neighbour does not stop one valid template from running; its own errors do.

    Raises:
        TemplateError: when `template` itself has problems.
        MarigoldError: when there is no such template.
    """
    path = template_path(templates_dir, template)
    frames, errors = load_templates_apart(templates_dir)
    for error in errors:
        if Path(error.path) == path:
            raise error
    frame = next((f for f in frames if f.path == path), None)
    if frame is None:  # e.g. a file added between the two looks
        frame = load_template(path)
    return frame, tuple(str(error) for error in errors)


def _output(result: Any, step: FrameStep) -> StepValue | None:
    if step.kind is StepKind.DECISION:
        return None  # a decision passes its input through; its choice is in the summary
    try:
        return result.output_for_node(result_op_name(step), RESULT)
    except DagsterInvariantViolationError:  # the step was skipped or failed: no output
        return None
