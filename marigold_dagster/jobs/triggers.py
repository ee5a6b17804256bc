"""Triggers: the sensors and schedules a template's `triggers:` section declares.

- `watch`: a sensor launching one run per new file in a folder, the file given as one input.
  A file's run key is `name@mtime_ns:size`: a stat, no read, so a tick stays cheap however large
  the files; a file rewritten in place (new mtime) is a new delivery and runs again, an untouched
  one never does. A file counts only once it has not changed for `settle_s`, so a file still
  being copied in is not launched half-written. The sensor's cursor holds the keys of the
  settled files it has launched that are still in the folder (so it stays as small as the
  folder); Dagster's run-key check catches a file that leaves and comes back unchanged.
- `schedule`: a cron schedule launching a batch run with fixed input paths.
- `after`: a run-status sensor launching a follow-up run when a run of another template ends
  with the given status, passing on that run's input paths as the trigger says.

Every launched run is a new task: it carries a new correlation id, the template's tags and, when
chained, the parent run's correlation id (see `marigold_dagster.records.correlation`). Paths in a
trigger are relative to the template file, like input defaults. Loading checks what needs more
than one field (an unknown input, a missing path, an unknown parent template, a loop of
follow-ups: `marigold_dagster.template.trigger_checks`), so every trigger built here is sound.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunStatusSensorContext,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    schedule,
    sensor,
)

from marigold_dagster.jobs.launch_inputs import (
    input_run_config,
    run_config_inputs,
)
from marigold_dagster.keys import PARENT_RUN_TAG, PAUSED_AT_GATE, TRIGGER_FILE_TAG, TRIGGER_TAG
from marigold_dagster.records.correlation import correlation_id_of, launch_tags
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.model import AfterTrigger


@dataclass(frozen=True)
class TriggerDefinitions:
    """The Dagster sensors and schedules built from every template's triggers."""

    sensors: list[SensorDefinition]
    schedules: list[ScheduleDefinition]


def build_triggers(frames: Sequence[Frame], jobs: Sequence[JobDefinition]) -> TriggerDefinitions:
    """The sensors and schedules the templates declare (loaded, so their triggers are checked)."""
    frame_of = {frame.name: frame for frame in frames}
    job_of = {job.name: job for job in jobs}
    sensors: list[SensorDefinition] = []
    schedules: list[ScheduleDefinition] = []
    for frame in frames:
        triggers, job = frame.template.triggers, job_of[frame.name]
        if triggers.watch is not None:
            sensors.append(watch_sensor(frame, job))
        if triggers.schedule is not None:
            schedules.append(trigger_schedule(frame, job))
        if triggers.after is not None:
            parent = triggers.after.template
            sensors.append(after_sensor(frame, job, frame_of[parent], job_of[parent]))
    return TriggerDefinitions(sensors, schedules)


def file_run_key(path: Path, stat: os.stat_result) -> str:
    """The run key of one delivery of a file: `name@mtime_ns:size`."""
    return f"{path.name}@{stat.st_mtime_ns}:{stat.st_size}"


def settled_files(
    folder: Path, pattern: str, settle_s: float, now: float
) -> list[tuple[Path, os.stat_result]]:
    """Files in `folder` whose names match `pattern`, unchanged for `settle_s`, by name.

    A link counts only when it resolves inside `folder`: one dropped there that points
    elsewhere would launch a run reading a file nobody put in the folder.
    """
    found = []
    real_folder = Path(os.path.realpath(folder))
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or not fnmatch.fnmatch(entry.name, pattern):
            continue
        if entry.is_symlink() and not Path(os.path.realpath(entry.path)).is_relative_to(
            real_folder
        ):
            continue
        stat = entry.stat()
        if now - stat.st_mtime >= settle_s:
            found.append((Path(entry.path), stat))
    return found


def watch_sensor(frame: Frame, job: JobDefinition) -> SensorDefinition:
    """A sensor launching one run of `job` per new settled file in the watched folder."""
    trigger = frame.template.triggers.watch
    assert trigger is not None, f"template '{frame.name}' declares no watch trigger"
    folder = frame.resolve(trigger.folder)
    fixed = {name: str(frame.resolve(path)) for name, path in trigger.inputs.items()}

    @sensor(
        name=f"{frame.name}_watch",
        job=job,
        minimum_interval_seconds=trigger.interval_s,
        default_status=_sensor_status(trigger.enabled),
        description=(
            f"One run of '{frame.name}' per new file matching '{trigger.pattern}' in {folder}, "
            f"given as input '{trigger.input}'."
        ),
    )
    def watch(context: SensorEvaluationContext) -> SensorResult:
        if not folder.is_dir():
            return SensorResult(skip_reason=f"watched folder {folder} does not exist")
        launched = set(json.loads(context.cursor)) if context.cursor else set()
        files = settled_files(folder, trigger.pattern, trigger.settle_s, time.time())
        present = {file_run_key(path, stat): path for path, stat in files}
        requests = [
            RunRequest(
                run_key=key,
                run_config=input_run_config(frame, {**fixed, trigger.input: str(path)}),
                tags={**launch_tags(frame), TRIGGER_TAG: "watch", TRIGGER_FILE_TAG: str(path)},
            )
            for key, path in present.items()
            if key not in launched
        ]
        cursor = json.dumps(sorted(present))
        if not requests:
            return SensorResult(
                skip_reason=f"no new settled file matching '{trigger.pattern}' in {folder}",
                cursor=cursor,
            )
        return SensorResult(run_requests=requests, cursor=cursor)

    return watch


def trigger_schedule(frame: Frame, job: JobDefinition) -> ScheduleDefinition:
    """A schedule launching `job` on the trigger's cron with its fixed input paths."""
    trigger = frame.template.triggers.schedule
    assert trigger is not None, f"template '{frame.name}' declares no schedule trigger"
    inputs = {name: str(frame.resolve(path)) for name, path in trigger.inputs.items()}

    @schedule(
        name=f"{frame.name}_schedule",
        cron_schedule=trigger.cron,
        execution_timezone=trigger.timezone,
        job=job,
        default_status=(
            DefaultScheduleStatus.RUNNING if trigger.enabled else DefaultScheduleStatus.STOPPED
        ),
        description=f"Run '{frame.name}' at '{trigger.cron}' ({trigger.timezone}).",
    )
    def scheduled(context: ScheduleEvaluationContext) -> RunRequest:
        return RunRequest(
            run_config=input_run_config(frame, inputs),
            tags={**launch_tags(frame), TRIGGER_TAG: "schedule"},
        )

    return scheduled


def after_sensor(
    frame: Frame, job: JobDefinition, parent: Frame, parent_job: JobDefinition
) -> SensorDefinition:
    """A run-status sensor launching `job` as a follow-up when a run of `parent_job` ends."""
    trigger = frame.template.triggers.after
    assert trigger is not None, f"template '{frame.name}' declares no after trigger"
    status = DagsterRunStatus.SUCCESS if trigger.status == "success" else DagsterRunStatus.FAILURE

    @run_status_sensor(
        run_status=status,
        name=f"{frame.name}_after_{parent.name}",
        monitored_jobs=[parent_job],
        request_job=job,
        default_status=_sensor_status(trigger.enabled),
        description=f"Run '{frame.name}' when a run of '{parent.name}' ends: {trigger.status}.",
    )
    def after(context: RunStatusSensorContext) -> RunRequest | SkipReason:
        run = context.dagster_run
        if run.job_name != parent.name:
            return SkipReason(f"run {run.run_id} is of '{run.job_name}', not '{parent.name}'")
        if run.tags.get(PAUSED_AT_GATE):
            return SkipReason(
                f"run {run.run_id} is paused at gate '{run.tags[PAUSED_AT_GATE]}', not finished; "
                "the run that resumes it counts"
            )
        inputs = follow_up_inputs(frame, trigger, parent, run)
        return RunRequest(
            run_key=f"after:{run.run_id}",
            run_config=input_run_config(frame, inputs),
            tags={
                **launch_tags(frame, parent=correlation_id_of(run)),
                TRIGGER_TAG: "after",
                PARENT_RUN_TAG: run.run_id,
            },
        )

    return after


def follow_up_inputs(
    frame: Frame, trigger: AfterTrigger, parent: Frame, run: DagsterRun
) -> dict[str, str]:
    """The input paths a follow-up takes from its parent's finished run."""
    if trigger.inputs == "none":
        return {}
    given = run_config_inputs(parent, run.run_config)
    if trigger.inputs == "same":
        return {name: path for name, path in given.items() if name in frame.template.inputs}
    return {mine: given[theirs] for mine, theirs in trigger.inputs.items() if theirs in given}


def _sensor_status(enabled: bool) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if enabled else DefaultSensorStatus.STOPPED
