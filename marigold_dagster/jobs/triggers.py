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
trigger are relative to the template file, like input defaults. Problems that need more than
one field (an unknown input, a missing path, an unknown parent template, a loop of follow-ups)
are found by `check_triggers` and reported with file:line like every template problem.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    DagsterInvalidDefinitionError,
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

from grammar_ops import Finding
from marigold_dagster.errors import TemplateError
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
    """The sensors and schedules the templates declare (check them first: `check_triggers`)."""
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


# Checks that need more than one field, or more than one template.

Where = tuple[str | int, ...]


def check_triggers(frames: Sequence[Frame]) -> list[TemplateError]:
    """Every problem in the templates' triggers, one `TemplateError` per template that has any."""
    frame_of = {frame.name: frame for frame in frames}
    errors = []
    for frame in frames:
        problems = _problems(frame, frame_of)
        if problems:
            located = [
                frame.located(Finding(code, where, message)) for where, code, message in problems
            ]
            errors.append(TemplateError(frame.path, located))
    return errors


def _problems(frame: Frame, frame_of: Mapping[str, Frame]) -> list[tuple[Where, str, str]]:
    triggers = frame.template.triggers
    found: list[tuple[Where, str, str]] = []
    if triggers.watch is not None:
        watch, where = triggers.watch, ("triggers", "watch")
        if _known_input(frame, watch.input, (*where, "input"), found):
            kind = frame.template.inputs[watch.input].kind
            if kind == "documents":
                found.append(
                    (
                        (*where, "input"),
                        "INPUT_NOT_A_FILE",
                        f"watch launches one run per new file, but input '{watch.input}' is "
                        "kind documents (a folder); watch a table or json input",
                    )
                )
        if watch.input in watch.inputs:
            found.append(
                (
                    (*where, "inputs", watch.input),
                    "INPUT_GIVEN_TWICE",
                    f"input '{watch.input}' is given by each new file; remove it from `inputs`",
                )
            )
        for name in watch.inputs:
            _known_input(frame, name, (*where, "inputs", name), found)
        _all_required(frame, {watch.input, *watch.inputs}, where, "its path in `inputs`", found)
    if triggers.schedule is not None:
        scheduled, where = triggers.schedule, ("triggers", "schedule")
        if not _valid_cron(scheduled.cron):
            found.append(
                (
                    (*where, "cron"),
                    "INVALID_CRON",
                    f"'{scheduled.cron}' is not a cron expression Dagster accepts: five fields "
                    "(minute hour day-of-month month day-of-week) with valid ranges, "
                    "e.g. '0 2 * * *'",
                )
            )
        for name in scheduled.inputs:
            _known_input(frame, name, (*where, "inputs", name), found)
        _all_required(frame, set(scheduled.inputs), where, "its path in `inputs`", found)
    if triggers.after is not None:
        found += _after_problems(frame, triggers.after, frame_of)
    return found


def _after_problems(
    frame: Frame, after: AfterTrigger, frame_of: Mapping[str, Frame]
) -> list[tuple[Where, str, str]]:
    where: Where = ("triggers", "after")
    found: list[tuple[Where, str, str]] = []
    parent = frame_of.get(after.template)
    if after.template == frame.name or parent is None:
        others = ", ".join(sorted(set(frame_of) - {frame.name})) or "none"
        why = "a template cannot follow itself" if parent is frame else "no such template here"
        found.append(
            (
                (*where, "template"),
                "UNKNOWN_TEMPLATE",
                f"'{after.template}': {why}; templates it can follow: {others}",
            )
        )
        return found
    loop = _follow_up_loop(frame.name, frame_of)
    if loop:
        found.append(
            (
                (*where, "template"),
                "FOLLOW_UP_LOOP",
                f"follow-ups form a loop ({' -> '.join(loop)}): each finished run would start "
                "the next forever; break it by removing one `after:`",
            )
        )
    parent_inputs = set(parent.template.inputs)
    if after.inputs == "none":
        passed: set[str] = set()
    elif after.inputs == "same":
        passed = parent_inputs & set(frame.template.inputs)
    else:
        passed = set(after.inputs)
        for mine, theirs in after.inputs.items():
            _known_input(frame, mine, (*where, "inputs", mine), found)
            if theirs not in parent_inputs:
                declared = ", ".join(sorted(parent_inputs)) or "none"
                found.append(
                    (
                        (*where, "inputs", mine),
                        "UNKNOWN_INPUT",
                        f"'{after.template}' has no input '{theirs}'; its inputs: {declared}",
                    )
                )
    _all_required(
        frame, passed, where, f"an input of the same name in '{after.template}' or a mapping", found
    )
    return found


def _known_input(
    frame: Frame, name: str, where: Where, found: list[tuple[Where, str, str]]
) -> bool:
    if name in frame.template.inputs:
        return True
    declared = ", ".join(sorted(frame.template.inputs)) or "none"
    found.append(
        (where, "UNKNOWN_INPUT", f"'{frame.name}' has no input '{name}'; declared: {declared}")
    )
    return False


def _all_required(
    frame: Frame, given: set[str], where: Where, hint: str, found: list[tuple[Where, str, str]]
) -> None:
    for name, spec in frame.template.inputs.items():
        if spec.default is None and name not in given:
            found.append(
                (
                    where,
                    "MISSING_INPUT",
                    f"input '{name}' has no default, so this trigger must give it: {hint}",
                )
            )


def _follow_up_loop(start: str, frame_of: Mapping[str, Frame]) -> list[str]:
    """The loop of `after:` links through `start` (start -> parent -> ... -> start), if any."""
    path, name = [start], start
    while True:
        after = frame_of[name].template.triggers.after if name in frame_of else None
        if after is None:
            return []
        name = after.template
        if name == start:
            return [*path, name]
        if name in path:
            return []  # a loop that `start` only leads into is reported at its own members
        path.append(name)


def _valid_cron(cron: str) -> bool:
    """Whether Dagster accepts `cron` as a schedule (it checks when a schedule is defined)."""
    try:
        ScheduleDefinition(name="cron_check", cron_schedule=cron, job_name="cron_check")
    except DagsterInvalidDefinitionError:
        return False
    return True
