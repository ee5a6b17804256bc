"""Sensors that end every run of a template job with its run summary, however it was launched.

Runs launched from the UI, a schedule or another sensor finish without anyone calling
`record_run_summary`; these run-status sensors (on by default, evaluated by the Dagster daemon)
do it when a template's run succeeds or fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunStatusSensorContext,
    SensorDefinition,
    run_status_sensor,
)

from marigold_dagster.records.run_summary import record_run_summary, summarise_run
from marigold_dagster.template.frame import Frame


def build_run_summary_sensors(
    frames: Sequence[Frame], jobs: Sequence[JobDefinition]
) -> Sequence[SensorDefinition]:
    """One sensor per terminal status, watching every template job."""
    if not jobs:
        return []
    by_job = {frame.name: frame for frame in frames}
    sensors = []
    for status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE):

        @run_status_sensor(
            run_status=status,
            name=f"marigold_run_summary_on_{status.value.lower()}",
            monitored_jobs=list(jobs),
            default_status=DefaultSensorStatus.RUNNING,
            description="Append the Marigold run summary to each finished template run.",
        )
        def summarise(context: RunStatusSensorContext) -> None:
            frame = by_job.get(context.dagster_run.job_name)
            if frame is not None:
                summary = summarise_run(context.instance, context.dagster_run.run_id, frame)
                record_run_summary(context.instance, summary)

        sensors.append(summarise)
    return sensors
